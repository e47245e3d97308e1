"""Reading CT series: geometry, HU, compressed syntaxes, the real dcmqi series (ciss_engine/dicom/series.py)."""
from __future__ import annotations

import importlib.util

import nibabel as nib
import nrrd
import numpy as np
import pydicom
import pytest
from pydicom.uid import JPEG2000Lossless, JPEGLSLossless, RLELossless

from ciss_engine.dicom import dicom_reference, is_dicom_folder, read_ct_series, scan_series

from .synthetic_dicom import SHAPE, phantom_hu, rotation

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def test_oblique_series_keeps_orientation_and_hu(oblique_series):
    image = read_ct_series(oblique_series.folder)
    assert image.shape == SHAPE
    assert image.get_data_dtype() == np.int16
    np.testing.assert_array_equal(np.asanyarray(image.dataobj), oblique_series.hu)
    np.testing.assert_allclose(image.affine, oblique_series.expected_affine_ras(), atol=1e-5)
    # Each slice's first voxel lands on the ImagePositionPatient written into its file.
    for k, position in enumerate(oblique_series.positions):
        np.testing.assert_allclose(LPS_TO_RAS[:3, :3] @ position, (image.affine @ [0, 0, k, 1])[:3], atol=1e-5)
    assert dicom_reference(image) == {
        "SeriesInstanceUID": oblique_series.series_uid,
        "FrameOfReferenceUID": oblique_series.frame_of_reference_uid,
        "StudyInstanceUID": "1.2.826.0.1.3680043.8.498.1",
    }


def test_affine_survives_a_nifti_round_trip(oblique_series, tmp_path):
    path = tmp_path / "ct.nii.gz"
    nib.save(read_ct_series(oblique_series.folder), path)
    loaded = nib.load(path)
    np.testing.assert_allclose(loaded.affine, oblique_series.expected_affine_ras(), atol=1e-4)
    assert dicom_reference(loaded)["FrameOfReferenceUID"] == oblique_series.frame_of_reference_uid


def test_slope_and_intercept_are_applied_and_give_float_when_not_integer(make_series):
    hu = phantom_hu().astype(np.float64) / 2.0  # half-HU steps need slope 0.5
    series = make_series("halves", hu=hu, slope=0.5, intercept=-1000.0)
    image = read_ct_series(series.folder)
    assert image.get_data_dtype() == np.float32
    np.testing.assert_array_equal(np.asanyarray(image.dataobj), hu.astype(np.float32))


def test_gantry_tilt_is_kept_as_a_shear(make_series):
    series = make_series("tilted", tilt_mm_per_slice=0.4)
    image = read_ct_series(series.folder)
    np.testing.assert_allclose(image.affine, series.expected_affine_ras(), atol=1e-5)
    # column 2 = normal·2.5 + column direction·0.4 (both unit vectors, orthogonal): length sqrt(2.5² + 0.4²)
    assert np.linalg.norm(image.affine[:3, 2]) == pytest.approx(np.hypot(2.5, 0.4), abs=1e-5)


@pytest.mark.parametrize(
    ("syntax", "plugin"),
    [(RLELossless, None), (JPEG2000Lossless, "openjpeg"), (JPEGLSLossless, "jpeg_ls")],
)
def test_compressed_transfer_syntaxes_decode_to_the_same_hu(make_series, syntax, plugin):
    if plugin and importlib.util.find_spec(plugin) is None:
        pytest.skip(f"the {plugin} codec plugin is not installed")
    hu = phantom_hu((64, 48, 3))  # JPEG 2000's default 6 resolution levels need tiles of 32+ pixels
    series = make_series(f"compressed-{syntax.name.replace(' ', '')}", hu=hu, rotation_matrix=rotation(0, 0, 20), transfer_syntax=syntax)
    np.testing.assert_array_equal(np.asanyarray(read_ct_series(series.folder).dataobj), hu)


def test_is_dicom_folder(oblique_series, tmp_path):
    assert is_dicom_folder(oblique_series.folder)
    assert not is_dicom_folder(next(oblique_series.folder.iterdir()))  # a file, not a folder
    (tmp_path / "nifti").mkdir()
    nib.save(nib.Nifti1Image(np.zeros((2, 2, 2), np.int16), np.eye(4)), tmp_path / "nifti" / "ct.nii.gz")
    assert not is_dicom_folder(tmp_path / "nifti")


def test_dcmqi_series_matches_its_nrrd_geometry(dcmqi_folder):
    """The dcmqi NRRD (LPS, written by Slicer from the same series) is an independent geometry truth."""
    image = read_ct_series(dcmqi_folder / "ct")
    _, header = nrrd.read(str(dcmqi_folder / "liver_seg.nrrd"))
    expected = np.eye(4)
    expected[:3, :3] = np.asarray(header["space directions"]).T
    expected[:3, 3] = header["space origin"]
    assert image.shape == (512, 512, 3)
    np.testing.assert_allclose(image.affine, LPS_TO_RAS @ expected, atol=1e-4)
    assert scan_series(dcmqi_folder / "ct").paths[0].name == "03.dcm"  # lowest along the normal first, not by name
    # RescaleIntercept is -1024, slope 1; 03.dcm (z = -128.69) is slice 0 and 01.dcm (z = -126.69) slice 2.
    for k, name in ((0, "03.dcm"), (2, "01.dcm")):
        stored = pydicom.dcmread(dcmqi_folder / "ct" / name).pixel_array.T.astype(np.int32)
        np.testing.assert_array_equal(np.asanyarray(image.dataobj)[:, :, k], stored - 1024)
