"""``ciss export`` (ciss_engine/commands/export.py): labels + DICOM CT + registry → RTSTRUCT and SEG."""
from __future__ import annotations

import argparse
import io
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from ciss_engine.commands import export
from ciss_engine.dicom import read_ct_series, read_rtstruct, read_seg
from ciss_engine.errors import BundleError, InputError
from ciss_engine.events import EventSink
from ciss_engine.network import NetworkConfig
from ciss_engine.preprocessing import PreprocessingConfig
from ciss_engine.registry import ClassRegistry

from .synthetic_dicom import ORGANS, phantom_label


def run_export(*argv: object) -> list[dict]:
    """Parse like the CLI and run; the jsonl events it wrote."""
    parser = argparse.ArgumentParser(prog="ciss export")
    export.add_arguments(parser)
    stdout = io.StringIO()
    export.run(parser.parse_args([str(a) for a in argv]), EventSink("jsonl", stdout=stdout, stderr=io.StringIO()))
    return [json.loads(line) for line in stdout.getvalue().splitlines()]


@pytest.fixture
def classes_file(tmp_path: Path) -> Path:
    path = tmp_path / "classes.json"
    path.write_text(json.dumps(ClassRegistry(tuple(ORGANS)).to_json()))
    return path


def save_labels(path: Path, label: np.ndarray, like: nib.Nifti1Image) -> Path:
    """A label NIfTI on the CT's grid, keeping the CT's header extension as `ciss segment` should."""
    image = nib.Nifti1Image(label.astype(np.uint8), like.affine)
    for extension in like.header.extensions:
        image.header.extensions.append(extension)
    nib.save(image, path)
    return path


def test_export_writes_rtstruct_and_seg_that_read_back(oblique_series, classes_file, tmp_path):
    label = phantom_label()
    labels = save_labels(tmp_path / "labels.nii.gz", label, read_ct_series(oblique_series.folder))
    events = run_export("--labels", labels, "--ct", oblique_series.folder, "--classes", classes_file, "--output", tmp_path / "out")
    done = events[-1]
    assert done["event"] == "done" and done["frame_of_reference_uid"] == oblique_series.frame_of_reference_uid
    # The empty organ is reported once, not once per format.
    assert sum(e["event"] == "warning" and "liver" in e["message"] for e in events) == 1
    rtstruct = read_rtstruct(Path(done["outputs"]["rtstruct"]), oblique_series.folder)
    seg = read_seg(Path(done["outputs"]["seg"]), oblique_series.folder)
    for organ in ORGANS[:3]:
        np.testing.assert_array_equal(rtstruct[organ.name], label == organ.label)
        np.testing.assert_array_equal(seg[organ.name], label == organ.label)


def test_labels_in_another_axis_order_are_reoriented_exactly(oblique_series, classes_file, tmp_path):
    ct = read_ct_series(oblique_series.folder)
    label = phantom_label()
    flipped = nib.Nifti1Image(label, ct.affine).as_reoriented(np.array([[1, -1], [0, 1], [2, 1]]))  # i reversed, i↔j swapped
    labels = tmp_path / "flipped.nii.gz"
    nib.save(flipped, labels)
    events = run_export("--labels", labels, "--ct", oblique_series.folder, "--classes", classes_file, "--format", "seg", "--output", tmp_path / "out")
    assert list(events[-1]["outputs"]) == ["seg"]
    np.testing.assert_array_equal(read_seg(Path(events[-1]["outputs"]["seg"]), oblique_series.folder)["spleen"], label == 1)


def test_labels_of_another_frame_of_reference_are_refused_naming_both(make_series, classes_file, tmp_path):
    first, second = make_series("first"), make_series("second")  # identical grids, different Frames of Reference
    labels = save_labels(tmp_path / "labels.nii.gz", phantom_label(), read_ct_series(first.folder))
    with pytest.raises(InputError, match="Frame of Reference") as error:
        run_export("--labels", labels, "--ct", second.folder, "--classes", classes_file, "--output", tmp_path / "out")
    assert str(labels) in error.value.message and str(second.folder) in error.value.message
    assert not (tmp_path / "out").exists()


def test_resampled_labels_are_refused_naming_both(oblique_series, classes_file, tmp_path):
    ct = read_ct_series(oblique_series.folder)
    shifted = ct.affine.copy()
    shifted[:3, 3] += 1.0
    labels = tmp_path / "shifted.nii.gz"
    nib.save(nib.Nifti1Image(phantom_label(), shifted), labels)
    with pytest.raises(InputError, match="not on the voxel grid") as error:
        run_export("--labels", labels, "--ct", oblique_series.folder, "--classes", classes_file, "--output", tmp_path / "out")
    assert str(labels) in error.value.message and str(oblique_series.folder) in error.value.message


def test_organs_come_from_the_bundle_current_version(oblique_series, tmp_path):
    bundle = tmp_path / "bundle"
    configs = bundle / "versions" / "1.1.0" / "configs"
    configs.mkdir(parents=True)
    (bundle / "versions" / "1.1.0" / "docs").mkdir()
    (bundle / "versions" / "1.1.0" / "docs" / "history.json").write_text("[]")
    (bundle / "bundle.json").write_text(json.dumps({"format": "ciss-bundle", "format_version": 1, "current": "1.1.0"}))
    # Only the class registry matters to export, but a bundle's metadata must be whole to load (bundle_schema.py).
    settings = {"format_version": 1, "network": NetworkConfig(out_channels=3).to_json(), "preprocessing": PreprocessingConfig().to_json()}
    metadata = {"version": "1.1.0", "ciss": settings}
    (configs / "metadata.json").write_text(json.dumps(metadata))
    (configs / "classes.json").write_text(json.dumps(ClassRegistry(tuple(ORGANS[:2])).to_json()))
    labels = save_labels(tmp_path / "labels.nii.gz", phantom_label(), read_ct_series(oblique_series.folder))
    events = run_export("--labels", labels, "--ct", oblique_series.folder, "--bundle", bundle, "--format", "rtstruct", "--output", tmp_path / "out")
    assert any(e["event"] == "warning" and "label values [3]" in e["message"] for e in events)  # kidney_left is not in this bundle
    assert sorted(read_rtstruct(Path(events[-1]["outputs"]["rtstruct"]), oblique_series.folder)) == ["kidney_right", "spleen"]


def test_registry_arguments_and_format_validator(oblique_series, tmp_path):
    with pytest.raises(argparse.ArgumentTypeError, match="rtstruct, seg"):
        export.formats("rtstruct,nifti")
    assert export.formats("SEG, rtstruct,seg") == ["seg", "rtstruct"]
    with pytest.raises(InputError, match="exactly one class registry"):
        run_export("--labels", tmp_path / "l.nii.gz", "--ct", oblique_series.folder, "--output", tmp_path / "out")
    with pytest.raises(BundleError):
        run_export("--labels", tmp_path / "l.nii.gz", "--ct", oblique_series.folder, "--bundle", tmp_path / "none", "--output", tmp_path / "out")
