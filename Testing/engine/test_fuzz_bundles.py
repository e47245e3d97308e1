"""Fuzzing corrupt bundles (issue 16, item 4): one file (or folder) of a two-version bundle is deleted,
truncated, overwritten, has a byte changed, or has one JSON value altered (model files also with their
checksums re-recorded, as someone who edits both would, so the parsers behind the SHA-256 check are
reached). Then ``info``, ``verify``, ``segment`` and loading the version in full as ``learn`` does each
end in success or a ``BundleError`` (exit 4) naming what was damaged; reading changes nothing in the
bundle, and the other version still loads in full. In-suite: 120 generated damages and the 11 that were
bugs; ``benchmarks/fuzz_inputs.sh`` runs more.
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from ciss_fuzz import VolumeRecipe, expect_clean, fuzz_report, fuzz_settings, quiet_sink, run_segment  # noqa: F401 (fuzz_report: the fixture)
from ciss_test_helpers import record_checksums
from hypothesis import given
from hypothesis import strategies as st

from ciss_engine.bundle import Bundle, write_version
from ciss_engine.commands import verify
from ciss_engine.commands.info import describe_bundle

pytestmark = pytest.mark.usefixtures("fuzz_report")

BUNDLE_BOUND_S = 30.0
BUNDLE_EXIT = (4,)  # the CT is fine: whatever fails is the bundle
VERSIONS = ("1.0.0", "1.1.0")
# JSON values a damaged or hand-edited file may hold where the engine expects something else.
HOSTILE_JSON: tuple[Any, ...] = (None, "", "x", "../../etc", "1.0.0", 0, -1, 7, 1.5, 1e308, -1e308, 2**70, float("nan"), True, [], [0], [1, 2, 3], {}, {"a": 1})
DELETE = "<delete>"
TARGET_WEIGHT = {"metadata.json": 6, "classes.json": 2, "bundle.json": 4, "model.pt": 2, "prototypes.safetensors": 2}


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A bundle of two versions (1.1.0 current) written by the engine's own ``write_version``: an untrained
    two-level network with 16³ patches, so that a fuzzed segment takes milliseconds; robustness does not
    depend on what the weights learnt."""
    import torch

    from ciss_engine.network import NetworkConfig, build_network
    from ciss_engine.preprocessing import PreprocessingConfig
    from ciss_engine.prototypes import FeaturePrototypes
    from ciss_engine.registry import ClassRegistry, make_organ

    root = tmp_path_factory.mktemp("fuzz_bundles") / "bundle"
    registry = ClassRegistry((make_organ("spleen", 1), make_organ("liver", 2)))
    network = NetworkConfig(init_filters=8, blocks_down=(1, 1), blocks_up=(1,), out_channels=registry.num_classes)
    torch.manual_seed(0)
    prototypes = FeaturePrototypes.empty(registry.num_classes, network.init_filters)
    prototypes.update_from_batch(torch.randn(1, network.init_filters, 4, 4, 4), torch.randint(0, registry.num_classes, (1, 4, 4, 4)))
    settings = {"network": network.to_json(), "preprocessing": PreprocessingConfig(spacing_mm=(6.0, 6.0, 6.0), patch_size=(16, 16, 16)).to_json(),
                "status": "published", "step": 1, "parent_version": None}
    history: list[dict[str, Any]] = []
    for step, version in enumerate(VERSIONS, start=1):
        history = [*history, {"version": version, "step": step, "kind": "fuzz", "organs": registry.names}]
        write_version(root, version=version, registry=registry, settings={**settings, "step": step}, state_dict=build_network(network).state_dict(),
                      prototypes=prototypes.to_tensors(), history=history, changelog={version: "fuzzing"}, make_current=True)
    return root


@pytest.fixture(scope="module")
def ct(pristine: Path) -> Path:
    """A CT of 12³ voxels at 4 mm: one window of the bundle's grid."""
    return VolumeRecipe(".nii.gz", (12, 12, 12), "int16", (-1000.0, 40.0, 400.0), 0, tuple(np.diag([4.0, 4.0, 4.0, 1.0]).ravel())).write(pristine.parent / "ct")


def copy_bundle(pristine: Path, folder: Path, written: list[str]) -> Path:
    """A copy to damage: hard links (fast; readers never write), except real copies of the files the damage
    writes (``written``), so that the pristine bundle stays pristine."""
    root = Path(shutil.copytree(pristine, folder / "bundle", copy_function=os.link))
    for name in written:
        if (root / name).is_file():
            data = (root / name).read_bytes()
            (root / name).unlink()
            (root / name).write_bytes(data)
    return root


@dataclasses.dataclass(frozen=True)
class Damage:
    """What happens to one file or folder of the bundle (``target`` relative to its root)."""

    target: str
    kind: str  # delete, truncate, flip, empty, garbage, json
    fraction: float = 0.0
    mask: int = 1
    json_path: tuple[Any, ...] = ()
    json_value: Any = None
    rechecksum: bool = False

    def written(self) -> list[str]:
        """The files ``apply`` changes in place (re-recorded checksums go into the version's metadata.json)."""
        return [self.target] + ([str(Path(self.target).parent.parent / "configs" / "metadata.json")] if self.rechecksum else [])

    def apply(self, root: Path) -> None:
        path = root / self.target
        if self.kind == "delete":
            shutil.rmtree(path) if path.is_dir() else path.unlink()
        elif self.kind == "json":
            path.write_text(json.dumps(_altered(json.loads(path.read_text()), self.json_path, self.json_value)))
        else:
            data = bytearray(path.read_bytes())
            if self.kind == "truncate":
                data = data[: int(len(data) * self.fraction)]
            elif self.kind == "flip":
                data[int(self.fraction * (len(data) - 1))] ^= self.mask
            elif self.kind == "empty":
                data = bytearray()
            elif self.kind == "garbage":
                data = bytearray(np.random.default_rng(self.mask).integers(0, 256, int(self.fraction * 4096) + 1, dtype=np.uint8).tobytes())
            path.write_bytes(bytes(data))
        if self.rechecksum and path.parent.name == "models":
            record_checksums(path.parent.parent)


def _altered(document: Any, json_path: tuple[Any, ...], value: Any) -> Any:
    """``document`` with the value at ``json_path`` replaced by ``value`` (or removed for DELETE)."""
    if not json_path:
        return value
    head, rest = json_path[0], json_path[1:]
    copy = list(document) if isinstance(document, list) else dict(document)
    if rest:
        copy[head] = _altered(copy[head], rest, value)
    elif value == DELETE:
        del copy[head]
    else:
        copy[head] = value
    return copy


def json_paths(document: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every key/index path into a JSON document, the root included."""
    paths = [prefix]
    children = document.items() if isinstance(document, dict) else enumerate(document) if isinstance(document, list) else []
    for key, child in children:
        paths += json_paths(child, (*prefix, key))
    return paths


def bundle_files(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file() and p.name != ".lock")


@st.composite
def damages(draw: st.DrawFn, root: Path) -> Damage:
    folders = [f"versions/{v}{sub}" for v in VERSIONS for sub in ("", "/models", "/configs", "/docs")]
    # The files that steer loading are drawn more often: JSON schemas and weights have the most ways to be wrong.
    weighted = [name for name in bundle_files(root) for _ in range(TARGET_WEIGHT.get(Path(name).name, 1))]
    target = draw(st.sampled_from(weighted + folders))
    if target in folders:
        return Damage(target, "delete")
    kinds = ["delete", "truncate", "flip", "empty", "garbage"] + ["json"] * 10 * target.endswith(".json")
    damage = Damage(target, draw(st.sampled_from(kinds)), fraction=draw(st.floats(0.0, 1.0)), mask=draw(st.integers(1, 255)),
                    rechecksum=target.endswith((".pt", ".safetensors")) and draw(st.booleans()))
    if damage.kind == "json":
        document = json.loads((root / target).read_text())
        json_path = draw(st.sampled_from(json_paths(document)))
        value = draw(st.sampled_from(HOSTILE_JSON + ((DELETE,) if json_path else ())))
        damage = dataclasses.replace(damage, json_path=json_path, json_value=value)
    return damage


def run_verify(root: Path) -> None:
    verify.run(argparse.Namespace(bundle=str(root)), quiet_sink())


def load_in_full(root: Path, version: str | None = None) -> None:
    """What learn reads of a version: metadata, registry, history, weights, prototypes."""
    from ciss_engine.prototypes import FeaturePrototypes

    loaded = Bundle.open_or_raise(root).load(version)
    loaded.load_state_dict()
    stored = loaded.load_prototypes()
    if stored:  # none at all: learn refuses the version itself, naming the file (training/incremental.py)
        FeaturePrototypes.from_tensors(stored)


def digests(root: Path) -> dict[str, str]:
    return {name: hashlib.sha256((root / name).read_bytes()).hexdigest() for name in bundle_files(root)}


def check_damaged_bundle(pristine: Path, ct: Path, damage: Damage) -> None:
    """The property for one damage: every entry point succeeds or names what was damaged (exit 4); the
    bundle is left as it was; the other version still loads in full."""
    with tempfile.TemporaryDirectory(dir=pristine.parent) as folder:
        root = copy_bundle(pristine, Path(folder), damage.written())
        damage.apply(root)
        before = digests(root)
        named = [root / damage.target, root / damage.target / "x"]  # a file's own name, or a folder's (its children's paths hold it)
        expect_clean("bundle info", lambda: describe_bundle(root), named, BUNDLE_BOUND_S, exit_codes=BUNDLE_EXIT)
        expect_clean("bundle verify", lambda: run_verify(root), named, BUNDLE_BOUND_S, exit_codes=BUNDLE_EXIT)
        expect_clean("bundle load", lambda: load_in_full(root), named, BUNDLE_BOUND_S, exit_codes=BUNDLE_EXIT)
        expect_clean("bundle segment", lambda: run_segment(root, ct, Path(folder) / "seg.nii.gz"), named, BUNDLE_BOUND_S, exit_codes=BUNDLE_EXIT)
        assert digests(root) == before, "reading a damaged bundle changed it"
        damaged = next((v for v in VERSIONS if damage.target.startswith(f"versions/{v}")), None)
        if damaged is not None:
            untouched = next(v for v in VERSIONS if v != damaged)
            load_in_full(root, untouched)  # the other version is intact and loads in full


@fuzz_settings(examples=120, bound_s=BUNDLE_BOUND_S)
@given(data=st.data())
def test_a_damaged_bundle_ends_in_success_or_a_clear_error(pristine: Path, ct: Path, data: st.DataObject) -> None:
    check_damaged_bundle(pristine, ct, data.draw(damages(pristine)))


METADATA = "versions/1.1.0/configs/metadata.json"


@pytest.mark.parametrize("damage", [
    # Each was a traceback or an error naming the wrong file before bundle_schema.py (issue 16, item 4).
    Damage(METADATA, "json", json_path=("ciss", "files_sha256"), json_value=""),
    Damage(METADATA, "json", json_path=("ciss", "files_sha256", "models/prototypes.safetensors"), json_value=None),
    Damage(METADATA, "json", json_path=("ciss", "preprocessing", "spacing_mm"), json_value=""),
    Damage(METADATA, "json", json_path=("ciss", "preprocessing", "hu_window"), json_value=None),
    Damage(METADATA, "json", json_path=("ciss", "network", "out_channels"), json_value={}),
    Damage(METADATA, "json", json_path=("ciss", "network", "blocks_down", 0), json_value=7),  # found by the long run
    Damage(METADATA, "json", json_path=("ciss",), json_value=None),
    Damage(METADATA, "json", json_path=("version",), json_value=None),
    Damage("versions/1.1.0/configs/classes.json", "json", json_path=("classes", 0), json_value=0),
    Damage("bundle.json", "json", json_path=("current",), json_value=DELETE),
    Damage("bundle.json", "json", json_path=("accepted_versions",), json_value=5),
], ids=lambda damage: f"{Path(damage.target).name}:{'.'.join(map(str, damage.json_path))}={damage.json_value!r}")
def test_damages_that_were_bugs(pristine: Path, ct: Path, damage: Damage) -> None:
    check_damaged_bundle(pristine, ct, damage)
