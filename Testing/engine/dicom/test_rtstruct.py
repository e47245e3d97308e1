"""RTSTRUCT export and read-back (ciss_engine/dicom/rtstruct.py) on synthetic oblique and real dcmqi series."""
from __future__ import annotations

import nrrd
import numpy as np
import pydicom
import pytest

from ciss_engine.dicom import DicomWarning, read_rtstruct, scan_series, write_rtstruct
from ciss_engine.errors import InputError
from ciss_engine.registry import make_organ

from .synthetic_dicom import ORGANS, dice, phantom_label, rotation


def test_oblique_round_trip_per_organ(oblique_series, tmp_path):
    label = phantom_label()
    with pytest.warns(DicomWarning, match="liver"):  # label 4 is empty
        path = write_rtstruct(label, ORGANS, oblique_series.folder, tmp_path / "rs.dcm")
    masks = read_rtstruct(path, oblique_series.folder)
    assert sorted(masks) == ["kidney_left", "kidney_right", "spleen"]
    for organ in ORGANS[:3]:
        assert dice(masks[organ.name], label == organ.label) >= 0.98
        np.testing.assert_array_equal(masks[organ.name], label == organ.label)  # voxel-edge contours are exact


def test_contours_reference_the_series(oblique_series, tmp_path):
    ds = pydicom.dcmread(write_rtstruct(phantom_label(), ORGANS[:3], oblique_series.folder, tmp_path / "rs.dcm"))
    series = scan_series(oblique_series.folder)
    uid_at_slice = {str(d.SOPInstanceUID): k for k, d in zip(series.slots, series.datasets)}
    frame = ds.ReferencedFrameOfReferenceSequence[0]
    assert frame.FrameOfReferenceUID == oblique_series.frame_of_reference_uid == ds.FrameOfReferenceUID
    referenced_series = frame.RTReferencedStudySequence[0].RTReferencedSeriesSequence[0]
    assert referenced_series.SeriesInstanceUID == oblique_series.series_uid
    assert {i.ReferencedSOPInstanceUID for i in referenced_series.ContourImageSequence} == set(uid_at_slice)
    normal = np.cross(oblique_series.row_direction, oblique_series.column_direction)
    for roi_contour in ds.ROIContourSequence:
        for contour in roi_contour.ContourSequence:
            k = uid_at_slice[contour.ContourImageSequence[0].ReferencedSOPInstanceUID]
            points = np.asarray(contour.ContourData, dtype=float).reshape(-1, 3)
            assert contour.NumberOfContourPoints == len(points) >= 4
            # Every point lies in the plane of the image it references.
            np.testing.assert_allclose((points - oblique_series.positions[k]) @ normal, 0.0, atol=1e-3)
    # The one-voxel hole of the spleen is its own contour on each of its 5 slices: 2 contours a slice.
    spleen = next(c for c in ds.ROIContourSequence if c.ReferencedROINumber == 1)
    assert len(spleen.ContourSequence) == 10


def test_roi_names_colours_and_codes_come_from_the_registry(oblique_series, tmp_path):
    with pytest.warns(DicomWarning):
        ds = pydicom.dcmread(write_rtstruct(phantom_label(), ORGANS, oblique_series.folder, tmp_path / "rs.dcm"))
    names = {roi.ROINumber: roi.ROIName for roi in ds.StructureSetROISequence}
    assert names == {1: "spleen", 2: "kidney_right", 3: "kidney_left"}
    colours = {c.ReferencedROINumber: list(c.ROIDisplayColor) for c in ds.ROIContourSequence}
    assert colours[2] == list(make_organ("kidney_right", 2).rgb)
    kidney = next(o for o in ds.RTROIObservationsSequence if o.ReferencedROINumber == 2)
    code = kidney.RTROIIdentificationCodeSequence[0]
    assert (code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning) == ("64033007", "SCT", "Kidney")
    assert code.SegmentedPropertyTypeModifierCodeSequence[0].CodeMeaning == "Right"
    assert kidney.RTROIInterpretedType == "ORGAN"
    assert ds.ApprovalStatus == "UNAPPROVED"


def test_dcmqi_liver_round_trip(dcmqi_folder, tmp_path):
    liver_mask, _ = nrrd.read(str(dcmqi_folder / "liver_seg.nrrd"))  # same (i, j, k) order as the series
    label = (liver_mask > 0).astype(np.uint8) * 7
    path = write_rtstruct(label, [make_organ("liver", 7)], dcmqi_folder / "ct", tmp_path / "rs.dcm")
    masks = read_rtstruct(path, dcmqi_folder / "ct")
    assert dice(masks["liver"], label == 7) >= 0.98
    np.testing.assert_array_equal(masks["liver"], label == 7)


def test_files_pass_the_dicom_validator(oblique_series, dcmqi_folder, dciodvfy, tmp_path):
    with pytest.warns(DicomWarning):
        synthetic = write_rtstruct(phantom_label(), ORGANS, oblique_series.folder, tmp_path / "synthetic.dcm")
    liver_mask, _ = nrrd.read(str(dcmqi_folder / "liver_seg.nrrd"))
    real = write_rtstruct(liver_mask.astype(np.uint8), [make_organ("liver", 1)], dcmqi_folder / "ct", tmp_path / "real.dcm")
    assert dciodvfy(synthetic) == []
    assert dciodvfy(real) == []


def test_another_frame_of_reference_is_refused(make_series, tmp_path):
    first = make_series("first")
    second = make_series("second")  # same geometry, its own Frame of Reference
    with pytest.warns(DicomWarning):
        path = write_rtstruct(phantom_label(), ORGANS, first.folder, tmp_path / "rs.dcm")
    with pytest.raises(InputError, match="Frame of Reference") as error:
        read_rtstruct(path, second.folder)
    assert first.frame_of_reference_uid in error.value.message and second.frame_of_reference_uid in error.value.message
    with pytest.raises(InputError, match="Frame of Reference"):
        write_rtstruct(phantom_label(), ORGANS, second.folder, tmp_path / "x.dcm", frame_of_reference_uid=first.frame_of_reference_uid)


def test_label_off_the_series_grid_and_empty_labels_are_refused(oblique_series, tmp_path):
    with pytest.raises(InputError, match="shape") as error:
        write_rtstruct(phantom_label()[:, :, :5], ORGANS, oblique_series.folder, tmp_path / "rs.dcm")
    assert str(oblique_series.folder) in error.value.message
    with pytest.warns(DicomWarning), pytest.raises(InputError, match="none of the organs"):
        write_rtstruct(np.zeros_like(phantom_label()), ORGANS, oblique_series.folder, tmp_path / "rs.dcm")
    assert not (tmp_path / "rs.dcm").exists()


def test_contours_on_a_missing_slice_keep_their_place_without_an_image(make_series, tmp_path):
    series = make_series("gap", skip_slices=(3,))
    label = phantom_label()
    with pytest.warns(DicomWarning, match="missing"):
        path = write_rtstruct(label, ORGANS[:3], series.folder, tmp_path / "rs.dcm")
    with pytest.warns(DicomWarning, match="missing"):
        masks = read_rtstruct(path, series.folder)
    np.testing.assert_array_equal(masks["spleen"], label == 1)  # slice 3 included, from its plane position
    contours = pydicom.dcmread(path).ROIContourSequence[0].ContourSequence
    assert sum("ContourImageSequence" not in c for c in contours) == 2  # spleen outline and hole on slice 3


def test_tilted_series_round_trip(make_series, tmp_path):
    series = make_series("tilted", rotation_matrix=rotation(10, 20, 0), tilt_mm_per_slice=0.5)
    label = phantom_label()
    masks = read_rtstruct(write_rtstruct(label, ORGANS[:3], series.folder, tmp_path / "rs.dcm"), series.folder)
    for organ in ORGANS[:3]:
        np.testing.assert_array_equal(masks[organ.name], label == organ.label)
