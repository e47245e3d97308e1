"""DICOM SEG export and read-back (ciss_engine/dicom/seg.py): BINARY, LABELMAP, the dcmqi liver SEG."""
from __future__ import annotations

import highdicom as hd
import nrrd
import numpy as np
import pydicom
import pytest

from ciss_engine.dicom import DicomWarning, read_seg, write_seg
from ciss_engine.errors import InputError
from ciss_engine.registry import make_organ

from .synthetic_dicom import ORGANS, phantom_label, rotation


@pytest.mark.parametrize("labelmap", [False, True], ids=["binary", "labelmap"])
def test_seg_round_trip_equals_the_mask(oblique_series, tmp_path, labelmap):
    label = phantom_label()
    with pytest.warns(DicomWarning, match="liver"):
        path = write_seg(label, ORGANS, oblique_series.folder, tmp_path / "seg.dcm", labelmap=labelmap)
    masks = read_seg(path, oblique_series.folder)
    assert sorted(masks) == ["kidney_left", "kidney_right", "spleen"]
    for organ in ORGANS[:3]:
        np.testing.assert_array_equal(masks[organ.name], label == organ.label)
    seg = hd.seg.segread(path)
    assert seg.SegmentationType == ("LABELMAP" if labelmap else "BINARY")
    assert seg.FrameOfReferenceUID == oblique_series.frame_of_reference_uid
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == oblique_series.series_uid


def test_segments_carry_registry_codes_and_colours(oblique_series, tmp_path):
    with pytest.warns(DicomWarning):
        seg = hd.seg.segread(write_seg(phantom_label(), ORGANS, oblique_series.folder, tmp_path / "seg.dcm"))
    assert seg.get_segment_numbers() == [1, 2, 3]  # the empty liver is not a segment
    right_kidney = seg.get_segment_description(2)
    assert right_kidney.segment_label == "kidney_right"
    assert (right_kidney.segmented_property_type.value, right_kidney.segmented_property_type.scheme_designator) == ("64033007", "SCT")
    assert right_kidney.segmented_property_category.value == "123037004"
    item = right_kidney.SegmentedPropertyTypeCodeSequence[0]
    assert item.SegmentedPropertyTypeModifierCodeSequence[0].CodeValue == "24028007"  # SNOMED CT: Right
    rgb = hd.color.CIELabColor.from_dicom_value(tuple(right_kidney.RecommendedDisplayCIELabValue)).to_rgb()
    assert np.abs(np.array(rgb) - ORGANS[1].rgb).max() <= 1  # CIELab in 16-bit steps: RGB back within 1


def test_dcmqi_liver_seg_reads_back_to_the_nrrd_liver(dcmqi_folder):
    liver, _ = nrrd.read(str(dcmqi_folder / "liver_seg.nrrd"))
    masks = read_seg(dcmqi_folder / "liver_seg_dicomseg.dcm", dcmqi_folder / "ct")
    assert list(masks) == ["Liver"]
    np.testing.assert_array_equal(masks["Liver"], liver == 1)


@pytest.mark.filterwarnings("ignore:The string .* person name:UserWarning")  # the dcmqi CT's PatientName
def test_dcmqi_series_seg_round_trip(dcmqi_folder, tmp_path):
    liver, _ = nrrd.read(str(dcmqi_folder / "liver_seg.nrrd"))
    label = (liver == 1).astype(np.uint8) * 4
    with pytest.warns(DicomWarning):  # spleen and kidneys are empty here
        path = write_seg(label, ORGANS, dcmqi_folder / "ct", tmp_path / "seg.dcm")
    np.testing.assert_array_equal(read_seg(path, dcmqi_folder / "ct")["liver"], liver == 1)


def test_binary_seg_passes_the_dicom_validator(oblique_series, dciodvfy, tmp_path):
    """dicom3tools 2022 predates the LABELMAP IOD (2024), so only BINARY is validated here."""
    with pytest.warns(DicomWarning):
        path = write_seg(phantom_label(), ORGANS, oblique_series.folder, tmp_path / "seg.dcm")
    assert dciodvfy(path) == []
    custom = make_organ("tumour_bed_boost_region", 1, rgb=(255, 128, 0))
    # Only a warning for the private scheme 99CISS, which dciodvfy cannot know.
    assert dciodvfy(write_seg(phantom_label() == 1, [custom], oblique_series.folder, tmp_path / "custom.dcm")) == []


def test_another_frame_of_reference_is_refused(make_series, tmp_path):
    first, second = make_series("first"), make_series("second")
    with pytest.warns(DicomWarning):
        path = write_seg(phantom_label(), ORGANS, first.folder, tmp_path / "seg.dcm")
    with pytest.raises(InputError, match="Frame of Reference") as error:
        read_seg(path, second.folder)
    assert second.frame_of_reference_uid in error.value.message


def test_a_ct_image_is_not_a_seg(oblique_series):
    ct_file = next(oblique_series.folder.iterdir())
    assert pydicom.dcmread(ct_file).Modality == "CT"
    with pytest.raises(InputError, match="not a DICOM Segmentation"):
        read_seg(ct_file, oblique_series.folder)


def test_frames_on_a_missing_slice_keep_their_place(make_series, tmp_path):
    series = make_series("gap", skip_slices=(3,))
    label = phantom_label()
    with pytest.warns(DicomWarning, match="missing"):
        path = write_seg(label, ORGANS[:3], series.folder, tmp_path / "seg.dcm")
    with pytest.warns(DicomWarning, match="missing"):
        masks = read_seg(path, series.folder)
    np.testing.assert_array_equal(masks["spleen"], label == 1)


def test_custom_organ_code_uses_a_declared_private_scheme(oblique_series, tmp_path):
    organ = make_organ("tumour_bed_boost_region", 1, rgb=(255, 128, 0))  # code value of 30 characters
    path = write_seg(phantom_label() == 1, [organ], oblique_series.folder, tmp_path / "seg.dcm")
    seg = hd.seg.segread(path)
    code = seg.get_segment_description(1).segmented_property_type
    assert (code.value, code.scheme_designator) == ("custom-tumour_bed_boost_region", "99CISS")
    assert "LongCodeValue" in seg.SegmentSequence[0].SegmentedPropertyTypeCodeSequence[0]  # CodeValue (SH) holds 16
    assert seg.CodingSchemeIdentificationSequence[0].CodingSchemeDesignator == "99CISS"


@pytest.mark.parametrize("labelmap", [False, True], ids=["binary", "labelmap"])
def test_tilted_series_round_trip_through_source_image_references(make_series, tmp_path, labelmap):
    series = make_series("tilted", rotation_matrix=rotation(10, 20, 0), tilt_mm_per_slice=0.5)
    label = phantom_label()
    path = write_seg(label, ORGANS[:3], series.folder, tmp_path / "seg.dcm", labelmap=labelmap)
    with pytest.raises(RuntimeError):  # highdicom sees no regular volume in sheared frames
        hd.seg.segread(path).get_volume()
    masks = read_seg(path, series.folder)
    for organ in ORGANS[:3]:
        np.testing.assert_array_equal(masks[organ.name], label == organ.label)


def test_tilted_series_with_a_missing_slice_is_refused_for_seg(make_series, tmp_path):
    series = make_series("tilted-gap", tilt_mm_per_slice=0.5, skip_slices=(3,))
    with pytest.warns(DicomWarning, match="missing"), pytest.raises(InputError, match="tilted") as error:
        write_seg(phantom_label(), ORGANS[:3], series.folder, tmp_path / "seg.dcm")
    assert "rtstruct" in error.value.hint
