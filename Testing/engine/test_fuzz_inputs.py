"""Fuzzing the engine's inputs (issue 16, item 4): generated NIfTI/NRRD CTs and label maps, with odd
dims, dtypes, affines, scl_slope/inter, header edits, truncation and wrong label values, go through
image loading, ``learn``'s validation and ``segment``. Every case ends in success or a ``CissError``
with exit 2-5 that names the file, within a time bound (``ciss_fuzz.expect_clean``).

In-suite examples: load 550 damaged or odd + 100 well-formed, learn validation 150, segment 30; with
dicom/test_fuzz_export.py (100) and test_fuzz_bundles.py (120) 1,050 cases. ``benchmarks/fuzz_inputs.sh``
runs the same properties longer.
"""
from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from ciss_fuzz import (  # noqa: F401 (fuzz_report: the fixture)
    CT_VALUES, LABEL_VALUES, VolumeRecipe, ct_recipes, expect_clean, fuzz_report, fuzz_settings, quiet_sink, run_segment, volume_recipes,
)
from hypothesis import example, given
from hypothesis import strategies as st

from ciss_engine.errors import ExitCode
from ciss_engine.imaging import AFFINE_TOLERANCE_MM, load_volume_or_raise
from ciss_engine.preprocessing import PreprocessingConfig
from ciss_engine.training.cases import prepare_cases

pytestmark = pytest.mark.usefixtures("fuzz_report")

LOAD_BOUND_S, LEARN_BOUND_S, SEGMENT_BOUND_S = 10.0, 20.0, 60.0
# The tiny bundle's grid: what learn would resample the fuzzed cases onto.
TINY_GRID = PreprocessingConfig(spacing_mm=(6.0, 6.0, 6.0), patch_size=(32, 32, 32))
# Label values of the fuzzed learn run (organs 1 and 3): two label maps in three hold only these.
RUN_VALUES = (0.0, 1.0, 3.0)
# An error about the run as a whole, not about one file: it cannot name a file (reported in issue 16).
@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder for the cases' files (Hypothesis forbids function-scoped fixtures in a property)."""
    return tmp_path_factory.mktemp("fuzz")


def _load_and_check(path: Path, role: str) -> None:
    image = load_volume_or_raise(path, role=role, sink=quiet_sink())
    assert len(image.shape) == 3 and min(image.shape) >= 1, image.shape
    assert np.all(np.isfinite(image.affine)), image.affine
    assert np.asarray(image.dataobj).dtype.kind in "biuf", f"{path} loaded as {np.asarray(image.dataobj).dtype}"


# Cases that were tracebacks before (issue 16, item 4), kept as explicit examples.
def regression(suffix: str, dtype: str = "int16", **damage: object) -> VolumeRecipe:
    return VolumeRecipe(suffix, (9, 9, 9), dtype, (0.0, 40.0), 0, tuple(np.diag([1.0, 1.0, 1.0, 1.0]).ravel()), **damage)  # type: ignore[arg-type]


@fuzz_settings(examples=350, bound_s=LOAD_BOUND_S)
@given(recipe=volume_recipes(suffixes=(".nii", ".nii.gz"), palette=CT_VALUES + LABEL_VALUES), role=st.sampled_from(("CT", "label")))
@example(recipe=regression(".nii", nifti_edits=(("scl_inter", float("nan")),)), role="CT")  # nibabel HeaderDataError
@example(recipe=regression(".nii.gz", nifti_edits=(("datatype", 0),)), role="label")  # nibabel HeaderDataError
@example(recipe=regression(".nii", nifti_edits=(("vox_offset", -1.0),)), role="label")  # nibabel HeaderDataError
@example(recipe=regression(".nii", "rgb"), role="CT")  # TypeError in the HU check
def test_loading_any_nifti_ends_in_success_or_a_clear_error(scratch: Path, recipe: VolumeRecipe, role: str) -> None:
    with tempfile.TemporaryDirectory(dir=scratch) as folder:
        path = recipe.write(Path(folder) / "volume")
        expect_clean("load nifti", lambda: _load_and_check(path, role), [path], LOAD_BOUND_S)


@fuzz_settings(examples=200, bound_s=LOAD_BOUND_S)
@given(recipe=volume_recipes(suffixes=(".nrrd",), palette=CT_VALUES + LABEL_VALUES), role=st.sampled_from(("CT", "label")))
@example(recipe=regression(".nrrd", nrrd_edits=(("type", "int128"),)), role="CT")  # KeyError in pynrrd
@example(recipe=regression(".nrrd", nrrd_edits=(("sizes", None),)), role="CT")  # KeyError 'sizes'
@example(recipe=regression(".nrrd", nrrd_edits=(("encoding", "hex"),)), role="label")  # NRRDError
@example(recipe=regression(".nrrd", nrrd_edits=(("endian", "middle"),)), role="label")  # NRRDError
def test_loading_any_nrrd_ends_in_success_or_a_clear_error(scratch: Path, recipe: VolumeRecipe, role: str) -> None:
    with tempfile.TemporaryDirectory(dir=scratch) as folder:
        path = recipe.write(Path(folder) / "volume")
        expect_clean("load nrrd", lambda: _load_and_check(path, role), [path], LOAD_BOUND_S)


@fuzz_settings(examples=100, bound_s=LOAD_BOUND_S)
@given(recipe=volume_recipes(palette=LABEL_VALUES[:8], hostile=False).filter(lambda r: len(r.shape) == 3 and r.dtype not in ("complex64", "complex128", "rgb")))
@example(recipe=regression(".nii.gz", "int64"))  # refused as damaged before
@example(recipe=regression(".nrrd", "uint64", big_endian=True))
def test_a_well_formed_volume_loads(scratch: Path, recipe: VolumeRecipe) -> None:
    """The other half of the property: a well-formed 3D file of any real dtype (64-bit integers and
    big-endian included, as SimpleITK and older tools write them) is read, never refused as damaged."""
    with tempfile.TemporaryDirectory(dir=scratch) as folder:
        path = recipe.write(Path(folder) / "label")
        assert expect_clean("load well-formed", lambda: _load_and_check(path, "label"), [path], LOAD_BOUND_S) == "ok"
        np.testing.assert_array_equal(np.asarray(load_volume_or_raise(path, role="label").dataobj), recipe.data())


@st.composite
def learn_cases(draw: st.DrawFn) -> tuple[VolumeRecipe, VolumeRecipe, str]:
    """A CT (mostly usable) and a label map, mostly on the CT's grid, with label values from the run,
    from outside it, negative, fractional or non-finite."""
    ct = draw(ct_recipes(hostile_share=4))
    palette = draw(st.sampled_from((RUN_VALUES, RUN_VALUES, LABEL_VALUES)))
    label = draw(volume_recipes(palette=palette, shape=ct.shape, affine=ct.affine, hostile=draw(st.integers(0, 2)) == 0))
    if palette == RUN_VALUES:
        label = dataclasses.replace(label, palette=RUN_VALUES)  # every organ of the run, and background
    return ct, label, draw(st.sampled_from(("error", "background")))


@fuzz_settings(examples=150, bound_s=LEARN_BOUND_S)
@given(case=learn_cases())
@example(case=(regression(".nii", "int16", big_endian=True), dataclasses.replace(regression(".nii", "uint8"), palette=RUN_VALUES), "error"))  # torch: byte order
def test_learn_validation_ends_in_success_or_a_clear_error(scratch: Path, case: tuple[VolumeRecipe, VolumeRecipe, str]) -> None:
    ct_recipe, label_recipe, other_labels = case
    with tempfile.TemporaryDirectory(dir=scratch) as folder:
        ct, label = ct_recipe.write(Path(folder) / "ct"), label_recipe.write(Path(folder) / "label")

        def validate() -> None:
            # Organ values 1 and 3 of the label files become the run's new classes 5 and 6, as `ciss learn --organs a=1,b=3` asks.
            cases = prepare_cases([ct], [label], value_to_class={1: 5, 3: 6}, other_labels=other_labels, config=TINY_GRID, sink=quiet_sink())
            assert set(np.unique(np.asarray(cases[0].label)).tolist()) <= {0, 5, 6}

        expect_clean("learn validation", validate, [ct, label], LEARN_BOUND_S)


@fuzz_settings(examples=30, bound_s=SEGMENT_BOUND_S)
@given(recipe=ct_recipes(), preview=st.sampled_from((False, False, False, True)))
@example(recipe=dataclasses.replace(regression(".nrrd"), affine=(1.0, 0, 0, -1e300, 0, 1.0, 0, 0, 0, 0, 1.0, 0, 0, 0, 0, 1.0)), preview=False)  # an infinite output affine
def test_segment_ends_in_success_or_a_clear_error(scratch: Path, tiny_bundle: Path, recipe: VolumeRecipe, preview: bool) -> None:
    with tempfile.TemporaryDirectory(dir=scratch) as folder:
        ct, output = recipe.write(Path(folder) / "ct"), Path(folder) / "out" / "seg.nii.gz"
        outcome = expect_clean("segment", lambda: run_segment(tiny_bundle, ct, output, preview=preview), [ct], SEGMENT_BOUND_S)
        if outcome == "ok":  # a label map on the CT's own grid, which reads back through the same checks
            written, image = load_volume_or_raise(output, role="label"), load_volume_or_raise(ct, sink=quiet_sink())
            assert written.shape == image.shape and np.allclose(written.affine, image.affine, atol=AFFINE_TOLERANCE_MM)
            assert set(np.unique(np.asarray(written.dataobj)).tolist()) <= set(range(5))
        else:
            assert not output.exists(), "a failed segment left a label map behind"


def test_cli_exits_with_an_input_error_and_no_traceback(tmp_path: Path, tiny_bundle: Path) -> None:
    """The same property end to end in a real process (one case: a process start costs seconds): a NRRD
    whose 'space directions' pynrrd cannot parse (NRRDError, a traceback before) ends in exit 3 with one
    error event naming the file."""
    recipe = VolumeRecipe(".nrrd", (9, 9, 9), "int16", (0.0,), 0, tuple(np.eye(4).ravel()), nrrd_edits=(("space directions", "abc"),))
    ct = recipe.write(tmp_path / "ct")
    result = subprocess.run(
        [sys.executable, "-m", "ciss_engine", "segment", "-b", str(tiny_bundle), "-i", str(ct), "-o", str(tmp_path / "seg.nii.gz"), "--progress", "jsonl"],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == ExitCode.INPUT_ERROR, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    assert events[-1]["event"] == "error" and ct.name in events[-1]["message"] and events[-1]["hint"]
    assert "Traceback" not in result.stderr
