"""The studio's CT reader keeps each format's exact voxel → RAS geometry (no browser needed)."""
from __future__ import annotations

from pathlib import Path

import nibabel as nib
import nrrd
import numpy as np
import pytest
from engine.dicom.synthetic_dicom import rotation, write_ct_series

import ciss_studio  # noqa: F401  (makes CISSegmentationLib importable in a checkout)
from ciss_engine.errors import InputError
from ciss_studio.logic.ct_reader import describe_ct, read_ct_or_raise
from CISSegmentationLib.volume_io import ijk_to_ras, voxel_array

LPS = np.diag([-1.0, -1.0, 1.0])


@pytest.fixture(scope="module")
def slicer_app():
    from trame_slicer.core import SlicerApp

    return SlicerApp()


@pytest.fixture(scope="module")
def ct(phantom_cohort) -> tuple[np.ndarray, np.ndarray, Path]:
    image = nib.load(phantom_cohort[2] / "image.nii.gz")
    return np.asarray(image.dataobj), image.affine, phantom_cohort[2] / "image.nii.gz"


def test_nifti_keeps_its_affine_and_voxels(slicer_app, ct):
    voxels, affine, path = ct
    node = read_ct_or_raise(slicer_app, path)
    assert node.GetName() == "image"
    np.testing.assert_allclose(ijk_to_ras(node), affine, atol=1e-4)
    np.testing.assert_array_equal(voxel_array(node), voxels)
    assert describe_ct(node) == "56×48×40 voxels of 6.00×6.00×6.00 mm"


def test_nrrd_in_lps_gives_the_same_ras_grid(slicer_app, ct, tmp_path):
    voxels, affine, _ = ct
    oblique = affine.copy()
    oblique[:3, :3] = rotation(20, 0, 10) @ affine[:3, :3]  # not axis-aligned: a transposed or sign-flipped reader shows
    path = tmp_path / "ct_042.nrrd"
    nrrd.write(str(path), voxels, {"space": "left-posterior-superior", "space directions": (LPS @ oblique[:3, :3]).T,
                                   "space origin": LPS @ oblique[:3, 3]})
    node = read_ct_or_raise(slicer_app, path)
    assert node.GetName() == "ct_042"
    np.testing.assert_allclose(ijk_to_ras(node), oblique, atol=1e-4)
    np.testing.assert_array_equal(voxel_array(node), voxels)


def test_a_dicom_folder_is_read_as_its_series(slicer_app, tmp_path):
    hu = np.arange(20 * 16 * 8, dtype=np.int16).reshape(20, 16, 8) - 500
    series = write_ct_series(tmp_path / "series", hu, rotation_matrix=rotation(15, 5, 0))
    node = read_ct_or_raise(slicer_app, series.folder)
    assert node.GetName() == "series"
    np.testing.assert_allclose(ijk_to_ras(node), series.expected_affine_ras(), atol=1e-4)
    np.testing.assert_array_equal(voxel_array(node), hu)


@pytest.mark.parametrize("name", ["missing.nii.gz", "notes.txt"])
def test_a_missing_or_unknown_file_is_refused_naming_it(slicer_app, tmp_path, name):
    path = tmp_path / name
    if name.endswith(".txt"):
        path.write_text("not a CT")
    with pytest.raises(InputError) as error:
        read_ct_or_raise(slicer_app, path)
    assert str(path) in error.value.message and "DICOM" in error.value.hint
