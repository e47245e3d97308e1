"""Volume nodes ⇄ NIfTI files with the exact voxel → RAS geometry, the engine's exchange format.

The NIfTI affine is the node's IJK→RAS matrix itself (no LPS conversion, no origin/spacing split),
so oblique and flipped volumes keep their grid. NIfTI stores the affine as float32, so a file holds
the matrix to float32 precision; grids are compared with the engine's tolerance
(``ciss_engine.imaging.AFFINE_TOLERANCE_MM``). VTK arrays are (k, j, i), nibabel arrays (i, j, k).
nibabel is imported inside the functions: it arrives with the engine's dependencies
(``install_logic``), after the module has loaded.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import vtk
from vtkmodules.util import numpy_support

from ciss_engine.atomic import write_atomic

from .errors import InputError

if TYPE_CHECKING:
    from slicer import vtkMRMLScalarVolumeNode, vtkMRMLScene, vtkMRMLVolumeNode

VOLUME_CLASS = "vtkMRMLScalarVolumeNode"
LABELMAP_CLASS = "vtkMRMLLabelMapVolumeNode"


def matrix_to_array(matrix: vtk.vtkMatrix4x4) -> np.ndarray:
    return np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)], dtype=np.float64)


def array_to_matrix(array: np.ndarray) -> vtk.vtkMatrix4x4:
    matrix = vtk.vtkMatrix4x4()
    for r in range(4):
        for c in range(4):
            matrix.SetElement(r, c, float(array[r, c]))
    return matrix


def ijk_to_ras(volume_node: vtkMRMLVolumeNode) -> np.ndarray:
    """The 4×4 IJK→RAS matrix of a volume node (the NIfTI affine of its voxels)."""
    matrix = vtk.vtkMatrix4x4()
    volume_node.GetIJKToRASMatrix(matrix)
    return matrix_to_array(matrix)


def grid_shape(volume_node: vtkMRMLVolumeNode) -> tuple[int, int, int]:
    """Voxel counts along i, j, k."""
    return tuple(int(n) for n in volume_node.GetImageData().GetDimensions())  # type: ignore[return-value]


def voxel_array(volume_node: vtkMRMLVolumeNode) -> np.ndarray:
    """A copy of the voxels as an (i, j, k) array."""
    image = volume_node.GetImageData()
    if image is None or image.GetPointData().GetScalars() is None:
        raise InputError(f"volume {volume_node.GetName()!r} has no voxels", "load the CT again (File → Add Data)")
    flat = numpy_support.vtk_to_numpy(image.GetPointData().GetScalars())
    return flat.reshape(tuple(reversed(image.GetDimensions()))).transpose(2, 1, 0).copy()


def image_data_from_array(array_ijk: np.ndarray) -> vtk.vtkImageData:
    """A vtkImageData (origin 0, spacing 1: geometry lives in the node) holding an (i, j, k) array."""
    if array_ijk.ndim != 3:
        raise InputError(f"expected a 3D array, got shape {array_ijk.shape}", "give one 3D volume")
    if array_ijk.dtype == np.bool_:
        array_ijk = array_ijk.astype(np.uint8)
    image = vtk.vtkImageData()
    image.SetDimensions(*array_ijk.shape)
    flat = np.ascontiguousarray(array_ijk.transpose(2, 1, 0)).ravel()
    image.GetPointData().SetScalars(numpy_support.numpy_to_vtk(flat, deep=True))
    return image


def add_volume_from_array(scene: vtkMRMLScene, array_ijk: np.ndarray, affine: np.ndarray, *, name: str, labelmap: bool = False) -> vtkMRMLScalarVolumeNode:
    """Add a scalar (or label map) volume node with ``affine`` as IJK→RAS and default display."""
    node: vtkMRMLScalarVolumeNode = scene.AddNewNodeByClass(LABELMAP_CLASS if labelmap else VOLUME_CLASS, name)
    node.SetIJKToRASMatrix(array_to_matrix(affine))
    node.SetAndObserveImageData(image_data_from_array(array_ijk))
    node.CreateDefaultDisplayNodes()
    return node


def write_array_nifti(array_ijk: np.ndarray, affine: np.ndarray, path: Path | str) -> Path:
    """Write an (i, j, k) array with ``affine`` as qform and sform (scanner space, mm), atomically."""
    import nibabel as nib

    image = nib.Nifti1Image(array_ijk, affine)
    image.set_qform(affine, code=1)
    image.set_sform(affine, code=1)
    image.header.set_xyzt_units("mm")
    return write_atomic(Path(path), lambda tmp: nib.save(image, str(tmp)))


def write_volume_nifti(volume_node: vtkMRMLVolumeNode, path: Path | str) -> Path:
    """Write the voxels of a volume node with its IJK→RAS as affine."""
    if volume_node.GetParentTransformNode() is not None:
        raise InputError(
            f"volume {volume_node.GetName()!r} is under a transform",
            "harden the transform first (Data module → right-click the volume → Harden transform)",
        )
    return write_array_nifti(voxel_array(volume_node), ijk_to_ras(volume_node), path)


def write_label_array(labels_ijk: np.ndarray, reference_volume: vtkMRMLVolumeNode, path: Path | str) -> Path:
    """Write a label array that lies on ``reference_volume``'s grid (uint8 when the ids fit)."""
    dtype = np.uint8 if labels_ijk.min(initial=0) >= 0 and labels_ijk.max(initial=0) <= 255 else np.int16
    return write_array_nifti(labels_ijk.astype(dtype), ijk_to_ras(reference_volume), path)


def read_nifti_or_raise(path: Path | str, *, role: str):
    """Load a NIfTI file fully (a truncated file fails here, not later); ``role`` words the errors."""
    import nibabel as nib

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{role} not found: {path}", "check the path; volumes are exchanged as NIfTI (.nii.gz)")
    try:
        lazy = nib.load(str(path))
        data = np.asarray(lazy.dataobj)
    except Exception as error:  # nibabel raises many types for damaged files
        raise InputError(f"cannot read {role} {path}: {error}", "the file is damaged; write it again") from error
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    # VTK takes native byte order only; NIfTI files may be big-endian.
    data = data.astype(data.dtype.newbyteorder("="), copy=False)
    if data.ndim != 3:
        raise InputError(f"{role} {path} has shape {data.shape}; a 3D volume is required", "give one 3D volume")
    return data, np.asarray(lazy.affine, dtype=np.float64)


def read_volume_nifti(scene: vtkMRMLScene, path: Path | str, *, name: str | None = None, labelmap: bool = False) -> vtkMRMLScalarVolumeNode:
    """Load a NIfTI file as a volume node whose IJK→RAS is the file's affine."""
    data, affine = read_nifti_or_raise(path, role="label map" if labelmap else "volume")
    node_name = name or Path(path).name.split(".")[0]
    return add_volume_from_array(scene, data, affine, name=node_name, labelmap=labelmap)


def check_same_grid_or_raise(affine: np.ndarray, shape: tuple[int, ...], volume_node: vtkMRMLVolumeNode, *, what: str) -> None:
    """``what`` (a label file, a segmentation) must lie on ``volume_node``'s voxel grid."""
    from ciss_engine.imaging import AFFINE_TOLERANCE_MM

    volume_shape = grid_shape(volume_node)
    if tuple(shape) != volume_shape:
        raise InputError(
            f"{what} has {tuple(shape)} voxels but CT {volume_node.GetName()!r} has {volume_shape}",
            f"annotate on the CT's own grid: in Segment Editor choose {volume_node.GetName()!r} as source volume",
        )
    difference = float(np.abs(affine - ijk_to_ras(volume_node)).max())
    if difference > AFFINE_TOLERANCE_MM:
        raise InputError(
            f"{what} and CT {volume_node.GetName()!r} have different geometry (voxel → RAS differs by {difference:.4g} mm)",
            f"the annotation belongs to another image or orientation; annotate it on {volume_node.GetName()!r} "
            "(Segment Editor → Specify geometry → source volume) or load the matching CT",
        )


def read_label_array_or_raise(path: Path | str, reference_volume: vtkMRMLVolumeNode) -> np.ndarray:
    """The (i, j, k) integer label array of a NIfTI file that lies on ``reference_volume``'s grid."""
    data, affine = read_nifti_or_raise(path, role="label map")
    check_same_grid_or_raise(affine, data.shape, reference_volume, what=f"label map {path}")
    if data.dtype.kind == "f":
        if not np.array_equal(data, np.round(data)):
            raise InputError(f"label map {path} holds non-integer values", "write organ ids as integers (a label map, not probabilities)")
    return data.astype(np.int16)
