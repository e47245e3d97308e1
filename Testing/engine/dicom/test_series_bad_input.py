"""Bad CT series folders: each fails (or warns) naming the folder and the fix (ciss_engine/dicom/series.py)."""
from __future__ import annotations

import io
import json
import shutil

import numpy as np
import pydicom
import pytest
from pydicom.uid import generate_uid

from ciss_engine.dicom import DicomWarning, read_ct_series
from ciss_engine.errors import InputError
from ciss_engine.events import EventSink

from .synthetic_dicom import phantom_hu


def test_several_series_fail_listing_them_and_series_uid_picks_one(make_series, tmp_path):
    first = make_series("a")
    second = make_series("b", hu=phantom_hu(seed=1), slice_step=3.0)
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    for series in (first, second):
        for path in series.folder.iterdir():
            shutil.copy(path, mixed / f"{series.folder.name}-{path.name}")
    with pytest.raises(InputError) as error:
        read_ct_series(mixed)
    assert first.series_uid in error.value.message and second.series_uid in error.value.message
    assert "--series-uid" in error.value.hint
    np.testing.assert_array_equal(np.asanyarray(read_ct_series(mixed, series_uid=second.series_uid).dataobj), second.hu)
    with pytest.raises(InputError, match="is not in"):
        read_ct_series(mixed, series_uid="1.2.3.4")


def test_missing_slice_warns_and_is_interpolated(make_series):
    series = make_series("gap", skip_slices=(3,))
    with pytest.warns(DicomWarning, match="1 slice\\(s\\) missing"):
        image = read_ct_series(series.folder)
    volume = np.asanyarray(image.dataobj)
    assert volume.shape == series.hu.shape
    np.testing.assert_allclose(image.affine, series.expected_affine_ras(), atol=1e-5)
    np.testing.assert_array_equal(volume[:, :, 2], series.hu[:, :, 2])
    # Halfway between slices 2 and 4: the mean of the two, kept exact (so the volume is float32).
    np.testing.assert_array_equal(volume[:, :, 3], (series.hu[:, :, 2].astype(np.float32) + series.hu[:, :, 4]) / 2)


def test_missing_slice_warning_reaches_the_event_stream(make_series):
    series = make_series("gap-events", skip_slices=(5, 6))
    stdout, stderr = io.StringIO(), io.StringIO()
    read_ct_series(series.folder, sink=EventSink("jsonl", stdout=stdout, stderr=stderr))
    events = [json.loads(line) for line in stdout.getvalue().splitlines()]
    warnings = [e for e in events if e["event"] == "warning"]
    assert len(warnings) == 1 and "2 slice(s) missing" in warnings[0]["message"] and str(series.folder) in warnings[0]["hint"]
    assert "warning:" in stderr.getvalue()


def test_irregular_spacing_fails(make_series):
    series = make_series("irregular")
    moved = next(p for p in series.folder.iterdir())
    dataset = pydicom.dcmread(moved)
    x, y, z = (float(v) for v in dataset.ImagePositionPatient)
    dataset.ImagePositionPatient = [x, y, z + 1.1]  # 1.1 mm off a 2.5 mm grid: steps 3.6 and 1.4
    dataset.save_as(moved)
    with pytest.raises(InputError, match="not a regular grid") as error:
        read_ct_series(series.folder)
    assert str(series.folder) in error.value.message


def test_non_ct_modality_fails(make_series):
    series = make_series("mr", modality="MR")
    with pytest.raises(InputError, match="is MR, not CT") as error:
        read_ct_series(series.folder)
    assert "CT" in error.value.hint


def test_duplicate_slices_fail(make_series):
    series = make_series("duplicate")
    first = next(p for p in series.folder.iterdir())
    copy = pydicom.dcmread(first)
    copy.SOPInstanceUID = copy.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    copy.save_as(series.folder / "copy.dcm")
    with pytest.raises(InputError, match="same position"):
        read_ct_series(series.folder)


def test_folder_without_dicom_fails(tmp_path):
    (tmp_path / "notes.txt").write_text("not DICOM")
    with pytest.raises(InputError, match="no DICOM images") as error:
        read_ct_series(tmp_path)
    assert "series" in error.value.hint


def test_gap_in_a_short_series_is_found_from_the_smallest_step(make_series):
    series = make_series("four", hu=phantom_hu((20, 16, 4)), skip_slices=(2,))  # steps 2.5 and 5 mm: a median would be 3.75
    with pytest.warns(DicomWarning, match="1 slice\\(s\\) missing"):
        image = read_ct_series(series.folder)
    assert image.shape == (20, 16, 4)


def test_localizer_in_the_series_is_left_out(make_series):
    series = make_series("with-scout")
    scout = pydicom.dcmread(next(series.folder.iterdir()))
    scout.ImageType = ["ORIGINAL", "PRIMARY", "LOCALIZER"]
    scout.ImageOrientationPatient = [1, 0, 0, 0, 0, -1]  # a coronal scout
    scout.SOPInstanceUID = scout.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    scout.save_as(series.folder / "scout.dcm")
    with pytest.warns(DicomWarning, match="1 localizer"):
        image = read_ct_series(series.folder)
    np.testing.assert_array_equal(np.asanyarray(image.dataobj), series.hu)
