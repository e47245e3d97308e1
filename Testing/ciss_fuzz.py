"""The fuzzing property and the Hypothesis strategies shared by the fuzz tests (issue 16, item 4).

The property: whatever file or bundle is given, the engine ends in success or in a ``CissError`` whose
exit code is 2-5 and whose text names the file, within a time bound; never another exception, never a
hang. A generated case is a recipe (shape, dtype, affine, header edits, damage) written to disk only
when run, so a failing example shrinks to a recipe a person can read.

The in-suite example counts are fixed and derandomized (the same cases on every run); the benchmark
``benchmarks/fuzz_inputs.sh`` multiplies them with ``CISS_FUZZ_FACTOR`` and writes the outcome counts
to ``CISS_FUZZ_REPORT``.
"""
from __future__ import annotations

import argparse
import collections
import contextlib
import dataclasses
import datetime
import gzip
import io
import json
import os
import re
import signal
import struct
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from ciss_engine.errors import CissError
from ciss_engine.events import EventSink, ProgressMode

FACTOR = max(1, int(os.environ.get("CISS_FUZZ_FACTOR", "1")))
# Outcome counts per property ("ok", "exit 3", …), written out by ``fuzz_report`` for the benchmark.
TALLY: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
REASONS: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)


def fuzz_settings(examples: int, bound_s: float) -> settings:
    """Derandomized, database-less settings: CI runs the same cases every time. ``bound_s`` is the
    per-case time bound (Hypothesis deadline); ``hard_time_limit`` stops a real hang at twice that."""
    return settings(
        max_examples=examples * FACTOR,
        deadline=datetime.timedelta(seconds=bound_s),
        derandomize=True,
        database=None,
        print_blob=False,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
    )


class CaseTimeout(BaseException):
    """A case ran past its hard limit. A BaseException, so no ``except Exception`` in the engine can
    turn the hang into an ordinary error."""


@contextlib.contextmanager
def hard_time_limit(seconds: float) -> Iterator[None]:
    """Interrupt a case that hangs (SIGALRM, main thread) instead of blocking the suite forever."""

    def expire(signum: int, frame: object) -> None:
        raise CaseTimeout(f"the case ran past {seconds:.0f} s: a hang")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def expect_clean(
    prop: str, action: Callable[[], object], named: list[Path], bound_s: float, *, exit_codes: range | tuple[int, ...] = range(2, 6)
) -> str:
    """Run one case: ``"ok"``, or ``"exit N"`` for a CissError with an exit code in ``exit_codes`` (2-5)
    naming one of ``named``.

    Any other exception propagates: that is the bug Hypothesis shrinks and reports."""
    outcome = "ok"
    with hard_time_limit(2 * bound_s), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # third-party readers warn about odd headers; only the outcome counts
        try:
            action()
        except CissError as error:
            code = int(error.exit_code)
            assert code in exit_codes, f"exit code {code} is not one of {list(exit_codes)} for {error!r}"
            text = f"{error.message}\n{error.hint}"
            assert any(path.name in text for path in named), f"the error names none of {[p.name for p in named]}: {text}"
            outcome = f"exit {code}"
            REASONS[prop][reason(error.message, named)] += 1
    TALLY[prop][outcome] += 1
    return outcome


def quiet_sink() -> EventSink:
    """A sink whose events go nowhere: a fuzz case is judged by how it ends, not by what it printed."""
    return EventSink(ProgressMode.JSONL, stdout=io.StringIO(), stderr=io.StringIO())


def run_segment(bundle: Path, ct: Path, output: Path, *, preview: bool = False) -> None:
    """``ciss segment`` in this process, as the CLI parses and runs it (CPU)."""
    from ciss_engine.commands import segment

    parser = argparse.ArgumentParser()
    segment.add_arguments(parser)
    args = ["-b", str(bundle), "-i", str(ct), "-o", str(output), "--device", "cpu"] + ([] if preview else ["--no-preview"])
    segment.run(parser.parse_args(args), quiet_sink())


def reason(message: str, named: list[Path]) -> str:
    """An error message with the case's paths and numbers taken out: what kind of refusal it was."""
    for path in named:
        message = message.replace(str(path), "FILE")
    message = re.sub(r"/\S+", "PATH", message.split(":")[0] if message.startswith("cannot read") else message)
    return re.sub(r"-?\d[\d.e+-]*", "N", message)[:90]


@pytest.fixture(scope="module")
def fuzz_report() -> Iterator[None]:
    """After a module's properties ran: add their outcome counts to $CISS_FUZZ_REPORT (JSON), if set."""
    yield
    target = os.environ.get("CISS_FUZZ_REPORT")
    if not target:
        return
    path = Path(target)
    report = json.loads(path.read_text()) if path.is_file() else {}
    for prop, counts in TALLY.items():
        report[prop] = {"cases": sum(counts.values()), "outcomes": dict(sorted(counts.items())), "refusals": dict(REASONS[prop].most_common())}
    path.write_text(json.dumps(report, indent=2, sort_keys=True))


# ---------------------------------------------------------------------------------------- recipes

# Hypothesis draws the ends of a list more often: those are the everyday types of CTs and label maps.
NIFTI_DTYPES = ("int16", "int8", "uint16", "complex64", "int32", "rgb", "uint32", "int64", "complex128", "uint64", "float64", "float32", "uint8")
NRRD_DTYPES = ("int16", "int8", "uint16", "int32", "uint32", "int64", "uint64", "float64", "float32", "uint8")
RGB = np.dtype([("R", "u1"), ("G", "u1"), ("B", "u1")])
CT_VALUES = (-1024.0, -1000.0, 0.0, 40.0, 400.0, 3000.0, -32768.0, 32767.0, 1e10, -1e10, 0.5, 2.0**31, float("nan"), float("inf"), float("-inf"))
LABEL_VALUES = (0.0, 1.0, 2.0, 3.0, 4.0, 5.0, -1.0, 255.0, 256.0, 300.0, 0.5, -3.5, 2.0**40, float("nan"), float("inf"))

# NIfTI-1 header fields (offset, struct code) and the hostile values a fuzz edit writes there.
NIFTI_FIELDS: dict[str, tuple[int, str, tuple[object, ...]]] = {
    "sizeof_hdr": (0, "i", (0, -1, 540, 0x5C010000)),
    "dim0": (40, "h", (-1, 0, 1, 2, 4, 5, 7, 8, 100)),
    "dim1": (42, "h", (-5, 0, 1, 2, 7, 30000, 32767)),
    "dim2": (44, "h", (-5, 0, 1, 30000)),
    "dim3": (46, "h", (-5, 0, 1, 30000)),
    "dim4": (48, "h", (-1, 0, 1, 2)),
    "datatype": (70, "h", (0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 768, 1024, 1280, 1536, 1792, 2048, 2304, 999, -1)),
    "bitpix": (72, "h", (0, 1, 7, 999)),
    "qfac": (76, "f", (0.0, -1.0, 2.0, float("nan"))),
    "pixdim1": (80, "f", (0.0, -2.0, 1e-9, 1e30, float("nan"), float("inf"))),
    "pixdim3": (88, "f", (0.0, -2.0, 1e-9, 1e30, float("nan"), float("inf"))),
    "vox_offset": (108, "f", (-1.0, 0.0, 348.0, 351.0, 353.0, 400.0, 1e9, float("nan"), float("inf"))),
    "scl_slope": (112, "f", (0.0, 1.0, -1.0, 2.5, 1e-30, 1e30, 3.4e38, float("nan"), float("inf"), float("-inf"))),
    "scl_inter": (116, "f", (0.0, -1024.0, 1e30, float("nan"), float("inf"), float("-inf"))),
    "qform_code": (252, "h", (-1, 0, 1, 2, 4, 5, 300)),
    "sform_code": (254, "h", (-1, 0, 1, 2, 4, 5, 300)),
    "quatern_b": (256, "f", (0.0, 0.5, 2.0, float("nan"), float("inf"))),
    "quatern_d": (264, "f", (0.0, 0.5, 2.0, float("nan"))),
    "qoffset_x": (268, "f", (float("nan"), 1e30)),
    "srow_x0": (280, "f", (0.0, -1.0, 1e-8, 1e30, float("nan"), float("inf"))),
    "srow_y1": (300, "f", (0.0, 1e30, float("nan"))),
    "srow_z3": (324, "f", (1e30, float("nan"), float("-inf"))),
    "magic": (344, "4s", (b"ni1\0", b"n+2\0", b"\0\0\0\0", b"N+1\0")),
    "extension_flag": (348, "B", (1, 255)),
    "extension_size": (352, "i", (-16, 0, 8, 16, 1_000_000)),
}

# NRRD header fields and the values a fuzz edit puts there (None: the line is deleted).
NRRD_FIELDS: dict[str, tuple[str | None, ...]] = {
    "type": (None, "int128", "block", "unsigned char", "double", "long double"),
    "dimension": (None, "0", "2", "4", "-1", "x"),
    "sizes": (None, "0 9 9", "-9 9 9", "9 81", "9 9 9 1", "90000 90000 90000", "300 300 300", "a b c", "9 9"),
    "space directions": (None, "none (0,1,0) (0,0,1)", "(nan,0,0) (0,1,0) (0,0,1)", "(0,0,0) (0,1,0) (0,0,1)", "(1e30,0,0) (0,1,0) (0,0,1)",
                         "abc", "(1,0) (0,1) (0,0)", "(1,0,0) (1,0,0) (0,0,1)", "(1,0,0) (0,1,0)"),
    "space origin": (None, "(nan,0,0)", "(x,0,0)", "(1e300,0,0)", "(0,0)"),
    "space": (None, "scanner-xyz", "RAS", "3D-left-handed", "", "left-posterior-superior-time"),
    "encoding": (None, "bzip2", "hex", "txt", "raw", "gzip", "zzz"),
    "endian": (None, "big", "middle"),
    "byte skip": ("-1", "5", "1000000000", "-7"),
    "line skip": ("3", "1000000"),
    "data file": ("missing.raw", "LIST", "."),
    "kinds": ("RGB-color domain domain", "???", "domain"),
}


@dataclasses.dataclass(frozen=True)
class VolumeRecipe:
    """How to write one volume file; ``write`` makes it. Damage is applied to the finished file's bytes."""

    suffix: str  # ".nii", ".nii.gz" or ".nrrd"
    shape: tuple[int, ...]
    dtype: str
    palette: tuple[float, ...]
    seed: int
    affine: tuple[float, ...]  # 16 values, row-major
    big_endian: bool = False
    nifti_edits: tuple[tuple[str, object], ...] = ()
    nrrd_edits: tuple[tuple[str, str | None], ...] = ()
    nrrd_encoding: str = "gzip"
    extension: bytes | None = None  # a NIfTI header extension's content (JSON, or junk)
    block: int = 1  # voxels per side of a constant block: organ-like regions rather than noise
    keep_fraction: float | None = None  # truncate the file to this fraction of its bytes
    flip: tuple[float, int] | None = None  # (position as a fraction, XOR mask) of one damaged byte

    def data(self) -> np.ndarray:
        """The voxels: values drawn from the palette, cast to the dtype as a careless exporter would."""
        rng = np.random.default_rng(self.seed)
        values = rng.choice(np.asarray(self.palette, dtype=np.float64), size=tuple(-(-n // self.block) for n in self.shape))
        for axis in range(len(self.shape)):
            values = np.repeat(values, self.block, axis=axis)
        values = values[tuple(slice(0, n) for n in self.shape)]
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if self.dtype == "rgb":
                out = np.zeros(self.shape, dtype=RGB)
                out["R"] = np.nan_to_num(values).astype(np.uint8)
                return out
            return values.astype(self.dtype)

    def write(self, stem: Path) -> Path:
        """Write ``stem`` + suffix; the path."""
        path = stem.with_name(stem.name + self.suffix)
        raw = self._nrrd_bytes(path) if self.suffix == ".nrrd" else self._nifti_bytes()
        if self.suffix == ".nii.gz":
            raw = gzip.compress(raw, mtime=0)
        path.write_bytes(damage(raw, self.keep_fraction, self.flip))
        return path

    def _nifti_bytes(self) -> bytes:
        import nibabel as nib

        data = self.data()
        header = nib.Nifti1Header(endianness=">" if self.big_endian else "<")
        image = nib.Nifti1Image(data, np.eye(4), header=header, dtype=data.dtype)
        if self.extension is not None:
            image.header.extensions.append(nib.nifti1.Nifti1Extension("comment", self.extension))
        raw = bytearray(image.to_bytes())
        order = ">" if self.big_endian else "<"
        # The geometry goes into the sform as stored, whatever it is (nibabel would refuse NaN); no qform.
        with np.errstate(over="ignore"):
            raw[280:328] = np.asarray(self.affine, dtype=np.float64).reshape(4, 4)[:3].ravel().astype(order + "f4").tobytes()
        struct.pack_into(order + "hh", raw, 252, 0, 1)
        for name, value in self.nifti_edits:
            offset, code, _ = NIFTI_FIELDS[name]
            raw.extend(bytes(max(0, offset + struct.calcsize(code) - len(raw))))  # a field past a tiny volume's end
            struct.pack_into(order + code, raw, offset, value)
        return bytes(raw)

    def _nrrd_bytes(self, path: Path) -> bytes:
        import nrrd

        matrix = np.asarray(self.affine, dtype=np.float64).reshape(4, 4)
        header = {"space": "right-anterior-superior", "space directions": matrix[:3, :3].T, "space origin": matrix[:3, 3], "encoding": self.nrrd_encoding}
        if self.big_endian:
            header["endian"] = "big"
        scratch = path.with_name(path.name + ".tmp")
        with np.errstate(all="ignore"):
            nrrd.write(str(scratch), self.data(), header)
        written = scratch.read_bytes()
        scratch.unlink()
        head, _, body = written.partition(b"\n\n")
        lines = head.decode("ascii").split("\n")
        for name, value in self.nrrd_edits:
            lines = [line for line in lines if not line.startswith(f"{name}:")]
            if value is not None:
                lines.append(f"{name}: {value}")
        return "\n".join(lines).encode("ascii") + b"\n\n" + body


def damage(raw: bytes, keep_fraction: float | None, flip: tuple[float, int] | None) -> bytes:
    """A file cut short and/or with one byte changed, as a broken transfer or disk leaves it."""
    data = bytearray(raw)
    if flip is not None and data:
        position = int(flip[0] * (len(data) - 1))
        data[position] ^= flip[1]
    if keep_fraction is not None:
        data = data[: int(len(data) * keep_fraction)]
    return bytes(data)


# ------------------------------------------------------------------------------------- strategies

SPACINGS_MM = (0.3, 1.0, 2.5, 6.0)
MIN_SIDE = 8
WILD_SPACINGS_MM = (0.0, 1e-6, 0.05, 25.0, 1e6, float("nan"), float("inf"))


@st.composite
def affines(draw: st.DrawFn, *, wild: bool = True) -> tuple[float, ...]:
    """A voxel → RAS matrix: axis-aligned, permuted, flipped or oblique; with ``wild`` also singular,
    non-finite, microscopic or astronomic ones."""
    spacing = [draw(st.sampled_from(SPACINGS_MM)) * draw(st.sampled_from((1.0, -1.0))) for _ in range(3)]
    kind = draw(st.sampled_from(("diagonal", "permuted", "oblique") + (("singular", "wild spacing", "wild origin") if wild else ())))
    if kind == "permuted":
        direction = np.eye(3)[list(draw(st.permutations([0, 1, 2])))]
    elif kind == "oblique":
        a, b = (np.radians(draw(st.integers(-60, 60))) for _ in range(2))
        direction = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]]) @ np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    else:
        direction = np.eye(3)
    matrix = np.eye(4)
    matrix[:3, :3] = direction * np.asarray(spacing)
    matrix[:3, 3] = [draw(st.sampled_from((0.0, -120.5, 300.0))) for _ in range(3)]
    if kind == "singular":
        matrix[:3, draw(st.integers(0, 2))] = matrix[:3, draw(st.integers(0, 2))] * draw(st.sampled_from((0.0, 1.0)))
    elif kind == "wild spacing":
        with np.errstate(invalid="ignore"):
            matrix[:3, draw(st.integers(0, 2))] *= draw(st.sampled_from(WILD_SPACINGS_MM))
    elif kind == "wild origin":
        matrix[draw(st.integers(0, 2)), 3] = draw(st.sampled_from((1e30, -1e300, float("nan"), float("inf"))))
    return tuple(float(v) for v in matrix.ravel())


def damages() -> st.SearchStrategy[tuple[float | None, tuple[float, int] | None]]:
    """Most files arrive intact; the rest are cut short or have one byte changed."""
    fraction = st.floats(0.0, 1.0, allow_nan=False)
    return st.sampled_from(("intact", "intact", "intact", "cut", "flipped", "both")).flatmap(
        lambda kind: st.tuples(
            fraction if kind in ("cut", "both") else st.none(),
            st.tuples(fraction, st.integers(1, 255)) if kind in ("flipped", "both") else st.none(),
        )
    )


@st.composite
def volume_recipes(
    draw: st.DrawFn,
    *,
    suffixes: tuple[str, ...] = (".nii", ".nii.gz", ".nrrd"),
    palette: tuple[float, ...] = CT_VALUES,
    shape: tuple[int, ...] | None = None,
    affine: tuple[float, ...] | None = None,
    max_side: int = 12,
    hostile: bool = True,
    extensions: tuple[bytes, ...] = (),
) -> VolumeRecipe:
    """A volume file recipe. ``shape``/``affine`` given: usually kept (a file on a known grid), sometimes
    changed; ``hostile`` adds header edits and damage; without it the file is well formed, only its
    values, dtype and geometry vary."""
    suffix = draw(st.sampled_from(suffixes))
    if shape is None or draw(st.integers(0, 9)) == 0:
        ndim = draw(st.sampled_from((3, 3, 3, 3, 3, 3, 2, 4, 1)))
        smallest = draw(st.sampled_from((MIN_SIDE, MIN_SIDE, MIN_SIDE, 1)))  # a CT needs 8 voxels an axis
        shape = tuple(draw(st.integers(smallest, max_side)) for _ in range(ndim))
        if len(shape) == 4 and draw(st.booleans()):
            shape = shape[:3] + (1,)
    if affine is None or draw(st.integers(0, 9)) == 0:
        affine = draw(affines(wild=hostile and draw(st.integers(0, 3)) == 0))
    dtypes = NRRD_DTYPES if suffix == ".nrrd" else NIFTI_DTYPES
    recipe = VolumeRecipe(
        suffix=suffix,
        shape=shape,
        dtype=draw(st.sampled_from(dtypes)),
        palette=tuple(draw(st.lists(st.sampled_from(palette), min_size=1, max_size=4))),
        seed=draw(st.integers(0, 2**16)),
        affine=affine,
        big_endian=draw(st.booleans()),
        nrrd_encoding=draw(st.sampled_from(("gzip", "raw", "ascii"))),
        extension=draw(st.sampled_from((None, None, *extensions))) if extensions and suffix != ".nrrd" else None,
    )
    if not hostile:
        return recipe
    values = dict(NRRD_FIELDS) if suffix == ".nrrd" else {name: field[2] for name, field in NIFTI_FIELDS.items()}
    count = draw(st.sampled_from((0, 0, 0, 1, 1, 2, 3)))  # most files have no header edit
    names = draw(st.lists(st.sampled_from(sorted(values)), min_size=count, max_size=count, unique=True))
    edits = tuple((name, draw(st.sampled_from(values[name]))) for name in names)
    keep, flip = draw(damages())
    recipe = dataclasses.replace(recipe, keep_fraction=keep, flip=flip)
    return dataclasses.replace(recipe, nrrd_edits=edits) if suffix == ".nrrd" else dataclasses.replace(recipe, nifti_edits=edits)


@st.composite
def ct_recipes(draw: st.DrawFn, *, hostile_share: int = 3) -> VolumeRecipe:
    """A CT that the network could run on (8-16 voxels an axis at 0.3-6 mm: one 32³ window on the tiny
    bundle's 6 mm grid); one case in ``hostile_share`` is damaged or edited on top."""
    shape = tuple(draw(st.integers(8, 16)) for _ in range(3))
    return draw(volume_recipes(shape=shape, affine=draw(affines(wild=False)), max_side=16, hostile=draw(st.integers(1, hostile_share)) == 1))
