"""Volume node ⇄ NIfTI keeps the exact voxel → RAS geometry (tests ``CISSegmentationLib/volume_io.py``)."""
from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import slicer
from slicer_logic_helpers import data_dir, make_tiny_phantom, oblique_lps_affine

from CISSegmentationLib.errors import InputError
from CISSegmentationLib.volume_io import (
    add_volume_from_array,
    ijk_to_ras,
    read_label_array_or_raise,
    read_volume_nifti,
    voxel_array,
    write_array_nifti,
    write_volume_nifti,
)


def _as_float32(affine: np.ndarray) -> np.ndarray:
    """What a NIfTI sform can hold: the affine rounded to float32."""
    return affine.astype(np.float32).astype(np.float64)


def test_written_affine_is_the_ijk_to_ras_and_voxels_keep_ijk_order(scene, tmp_path):
    image = np.arange(3 * 4 * 5, dtype=np.int16).reshape(3, 4, 5)
    affine = np.diag([1.5, 2.0, 2.5, 1.0])
    affine[:3, 3] = [-15.0, 8.0, -30.0]
    node = add_volume_from_array(scene, image, affine, name="ct")
    # Voxel (i=2, j=1, k=3) holds 2*20 + 1*5 + 3 = 48 by construction.
    assert node.GetImageData().GetScalarComponentAsDouble(2, 1, 3, 0) == 48
    written = nib.load(str(write_volume_nifti(node, tmp_path / "ct.nii.gz")))
    assert np.array_equal(written.affine, affine)
    assert written.header["sform_code"] == 1 and written.header["qform_code"] == 1
    assert np.array_equal(np.asarray(written.dataobj), image)
    assert np.asarray(written.dataobj).dtype == np.int16


def test_oblique_lps_flipped_volume_round_trips_at_nifti_precision(scene, tmp_path):
    affine = oblique_lps_affine()
    phantom = make_tiny_phantom(affine)
    node = add_volume_from_array(scene, phantom.image, affine, name="oblique")
    assert np.allclose(ijk_to_ras(node), affine, rtol=0, atol=1e-12)
    path = write_volume_nifti(node, tmp_path / "oblique.nii.gz")
    written = nib.load(str(path))
    assert np.array_equal(written.affine, _as_float32(ijk_to_ras(node)))
    reloaded = read_volume_nifti(scene, path, name="reloaded")
    assert np.allclose(ijk_to_ras(reloaded), written.affine, rtol=0, atol=1e-12)
    assert np.array_equal(voxel_array(reloaded), phantom.image)


def test_slicer_own_nifti_reader_sees_the_same_geometry(slicer_core, tmp_path):
    """Slicer's ITK reader (LPS internally) must place our file's voxels where we meant them."""
    affine = oblique_lps_affine()
    phantom = make_tiny_phantom(affine)
    node = add_volume_from_array(slicer_core.scene, phantom.image, affine, name="oblique")
    path = write_volume_nifti(node, tmp_path / "oblique.nii.gz")
    loaded = slicer_core.volumes_logic.AddArchetypeVolume(str(path), "by_slicer")
    assert loaded is not None
    assert np.allclose(ijk_to_ras(loaded), affine, atol=1e-4)
    assert np.array_equal(voxel_array(loaded), phantom.image)


def test_real_ct_loads_with_the_file_affine(scene, tmp_path):
    path = data_dir() / "ct" / "chest_4x" / "image.nii.gz"  # LAS orientation, 2.81 × 2.81 × 2.5 mm
    if not path.is_file():
        pytest.skip(f"shared CT not found at {path}; set CISS_DATA")
    source = nib.load(str(path))
    node = read_volume_nifti(scene, path)
    assert np.allclose(ijk_to_ras(node), source.affine, rtol=0, atol=1e-9)
    assert source.affine[0, 0] < 0  # LAS: the first axis runs to patient left
    again = nib.load(str(write_volume_nifti(node, tmp_path / "again.nii.gz")))
    assert np.array_equal(again.affine, _as_float32(source.affine))
    assert np.array_equal(np.asarray(again.dataobj), np.asarray(source.dataobj))


def test_label_file_on_another_grid_is_refused(scene, tmp_path, tiny_phantom):
    ct = add_volume_from_array(scene, tiny_phantom.image, tiny_phantom.affine, name="ct")
    shifted = tiny_phantom.affine.copy()
    shifted[:3, 3] += [0.75, 0.0, 0.0]  # half a voxel along i
    write_array_nifti(tiny_phantom.labels, shifted, tmp_path / "shifted.nii.gz")
    with pytest.raises(InputError, match="different geometry") as caught:
        read_label_array_or_raise(tmp_path / "shifted.nii.gz", ct)
    assert "ct" in caught.value.hint
    write_array_nifti(tiny_phantom.labels[:, :, :-1], tiny_phantom.affine, tmp_path / "short.nii.gz")
    with pytest.raises(InputError, match=r"\(20, 16, 11\) voxels"):
        read_label_array_or_raise(tmp_path / "short.nii.gz", ct)
    write_array_nifti(tiny_phantom.labels, tiny_phantom.affine, tmp_path / "good.nii.gz")
    assert np.array_equal(read_label_array_or_raise(tmp_path / "good.nii.gz", ct), tiny_phantom.labels)


def test_transformed_volume_is_not_written_silently(scene, tmp_path, tiny_phantom):
    node = add_volume_from_array(scene, tiny_phantom.image, tiny_phantom.affine, name="moved")
    transform = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "shift")
    node.SetAndObserveTransformNodeID(transform.GetID())
    with pytest.raises(InputError, match="under a transform"):
        write_volume_nifti(node, tmp_path / "moved.nii.gz")
    assert not (tmp_path / "moved.nii.gz").exists()


def test_damaged_file_names_the_file(scene, tmp_path):
    broken = tmp_path / "broken.nii.gz"
    broken.write_bytes(b"\x1f\x8b not really gzip")
    with pytest.raises(InputError, match="broken.nii.gz"):
        read_volume_nifti(scene, broken)
    assert slicer.vtkMRMLScalarVolumeNode  # the scene stayed usable: nothing half-added
    assert scene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode") == 0
