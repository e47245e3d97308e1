"""Fuzzing ``ciss export`` (issue 16, item 4): generated label NIfTIs (dtypes, values, geometry, header
edits, Frame of Reference extensions, damage) against one synthetic DICOM CT series. Every case ends in
RTSTRUCT/SEG files or a ``CissError`` with exit 2-5 that names the label file (``ciss_fuzz.expect_clean``).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from ciss_fuzz import LABEL_VALUES, VolumeRecipe, expect_clean, fuzz_report, fuzz_settings, quiet_sink, volume_recipes  # noqa: F401 (fuzz_report: the fixture)
from hypothesis import given
from hypothesis import strategies as st

from ciss_engine.commands import export
from ciss_engine.dicom import read_ct_series
from ciss_engine.errors import ExitCode
from ciss_engine.registry import ClassRegistry

from .synthetic_dicom import ORGANS, SHAPE, SyntheticSeries, phantom_hu, write_ct_series

pytestmark = pytest.mark.usefixtures("fuzz_report")

EXPORT_BOUND_S = 30.0
ORGAN_VALUES = (0.0, 1.0, 2.0, 3.0, 4.0)


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> tuple[SyntheticSeries, tuple[float, ...], Path]:
    """The CT series, its voxel → RAS affine (where labels made on it lie) and a classes.json."""
    folder = tmp_path_factory.mktemp("fuzz_export")
    series = write_ct_series(folder / "ct", phantom_hu())
    classes = folder / "classes.json"
    classes.write_text(json.dumps(ClassRegistry(tuple(ORGANS)).to_json()))
    return series, tuple(float(v) for v in read_ct_series(series.folder).affine.ravel()), classes


def frame_extension(frame_of_reference_uid: str) -> bytes:
    """The header extension `ciss segment` writes on a DICOM CT's labels (dicom/series.py)."""
    return json.dumps({"ciss_dicom": {"SeriesInstanceUID": "1.2.3", "FrameOfReferenceUID": frame_of_reference_uid}}).encode()


@st.composite
def export_labels(draw: st.DrawFn, affine: tuple[float, ...], frame_of_reference_uid: str) -> VolumeRecipe:
    """A label map, mostly on the series' grid with organ ids, else with odd values, grids or damage."""
    palette = draw(st.sampled_from((ORGAN_VALUES, ORGAN_VALUES, LABEL_VALUES)))
    extensions = (frame_extension("1.2.826.0.1.999"), b"\xff\x00 not json", frame_extension(frame_of_reference_uid))
    recipe = draw(volume_recipes(suffixes=(".nii", ".nii.gz"), palette=palette, shape=SHAPE, affine=affine, max_side=20,
                                 hostile=draw(st.integers(0, 2)) == 0, extensions=extensions))
    if palette == ORGAN_VALUES:
        recipe = dataclasses.replace(recipe, palette=ORGAN_VALUES)  # every organ of the registry, and background
    # Mostly organ-like blocks; voxel noise (thousands of contours, seconds of RTSTRUCT) now and then.
    return dataclasses.replace(recipe, block=draw(st.sampled_from((4, 4, 4, 4, 1))))


def run_export(labels: Path, series: SyntheticSeries, classes: Path, output: Path, formats: str, seg_type: str) -> None:
    """``ciss export`` in this process, as the CLI parses and runs it."""
    parser = argparse.ArgumentParser()
    export.add_arguments(parser)
    args = parser.parse_args(["--labels", str(labels), "--ct", str(series.folder), "--classes", str(classes), "--output", str(output),
                              "--format", formats, "--seg-type", seg_type])
    export.run(args, quiet_sink())


@st.composite
def export_cases(draw: st.DrawFn, target: tuple[SyntheticSeries, tuple[float, ...], Path]) -> tuple[VolumeRecipe, str, str]:
    series, affine, _ = target
    return (draw(export_labels(affine, series.frame_of_reference_uid)), draw(st.sampled_from(("rtstruct", "seg", "rtstruct,seg"))),
            draw(st.sampled_from(("binary", "labelmap"))))


def check_export(target: tuple[SyntheticSeries, tuple[float, ...], Path], recipe: VolumeRecipe, formats: str, seg_type: str) -> str:
    """The property for one label file: the DICOM files asked for, or a clear error and no file at all."""
    series, _, classes = target
    with tempfile.TemporaryDirectory(dir=series.folder.parent) as folder:
        labels, output = recipe.write(Path(folder) / "labels"), Path(folder) / "out"
        outcome = expect_clean("export", lambda: run_export(labels, series, classes, output, formats, seg_type), [labels], EXPORT_BOUND_S)
        written = sorted(p.name for p in output.glob("*.dcm")) if output.is_dir() else []
        assert written == (sorted(export.OUTPUT_NAMES[f] for f in formats.split(",")) if outcome == "ok" else []), (outcome, written)
    return outcome


@fuzz_settings(examples=100, bound_s=EXPORT_BOUND_S)
@given(data=st.data())
def test_export_ends_in_dicom_files_or_a_clear_error(target: tuple[SyntheticSeries, tuple[float, ...], Path], data: st.DataObject) -> None:
    check_export(target, *data.draw(export_cases(target)))


@pytest.mark.parametrize("damage", [
    # Each was a traceback (or an error naming no label file) before export read labels like every input.
    {"nifti_edits": (("vox_offset", 1e9),)},  # OSError while reading
    {"nifti_edits": (("datatype", 999),)},  # nibabel HeaderDataError
    {"keep_fraction": 0.8},  # OSError: a truncated .nii
    {"palette": (0.0,)},  # no organ: the error named the CT folder only
], ids=["offset-past-end", "unknown-datatype", "truncated", "no-organ"])
def test_label_maps_that_were_bugs(target: tuple[SyntheticSeries, tuple[float, ...], Path], damage: dict) -> None:
    recipe = dataclasses.replace(VolumeRecipe(".nii", SHAPE, "uint8", ORGAN_VALUES, 0, target[1], block=4), **damage)
    assert check_export(target, recipe, "rtstruct,seg", "binary") == "exit 3"


def test_cli_export_of_a_truncated_label_map_exits_3_without_traceback(target: tuple[SyntheticSeries, tuple[float, ...], Path], tmp_path: Path) -> None:
    series, affine, classes = target
    labels = VolumeRecipe(".nii.gz", SHAPE, "uint8", ORGAN_VALUES, 0, affine, keep_fraction=0.5).write(tmp_path / "labels")
    result = subprocess.run(
        [sys.executable, "-m", "ciss_engine", "export", "--labels", str(labels), "--ct", str(series.folder), "--classes", str(classes),
         "--output", str(tmp_path / "out"), "--progress", "jsonl"],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == ExitCode.INPUT_ERROR, result.stderr
    error = [json.loads(line) for line in result.stdout.splitlines() if line.strip()][-1]
    assert error["event"] == "error" and "labels.nii.gz" in error["message"] and "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
