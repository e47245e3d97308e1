"""A CT from a path on the studio's computer (NIfTI, NRRD or a DICOM series folder) as a volume node.

The voxel → RAS geometry is kept exactly: NIfTI and DICOM go through the same readers as the engine
(``volume_io`` and ``ciss_engine.dicom``), NRRD through Slicer's own reader, so the studio shows an NRRD
exactly as the desktop Slicer opens it.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ciss_engine.imaging import NIFTI_SUFFIXES, NRRD_SUFFIXES
from CISSegmentationLib.errors import InputError
from CISSegmentationLib.volume_io import add_volume_from_array, grid_shape, ijk_to_ras, read_volume_nifti

if TYPE_CHECKING:
    from slicer import vtkMRMLScalarVolumeNode
    from trame_slicer.core import SlicerApp

FORMATS_HINT = "give a NIfTI (.nii, .nii.gz) or NRRD (.nrrd) file, or a folder holding one DICOM CT series"


def ct_node_name(path: Path) -> str:
    """``/data/ct_042.nii.gz`` → ``ct_042``; a DICOM folder keeps its folder name."""
    name = path.name
    for suffix in (*NIFTI_SUFFIXES, *NRRD_SUFFIXES):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def read_ct_or_raise(slicer_app: SlicerApp, path: Path) -> vtkMRMLScalarVolumeNode:
    """Load the CT at ``path`` into the app's scene."""
    if not str(path).strip() or not path.exists():
        raise InputError(f"CT not found: {path}", f"check the path (a path on the computer that runs the studio); {FORMATS_HINT}")
    name = ct_node_name(path)
    if path.is_dir():
        from ciss_engine.dicom import read_ct_series

        image = read_ct_series(path)
        return add_volume_from_array(slicer_app.scene, np.asarray(image.dataobj), image.affine, name=name)
    lower = path.name.lower()
    if lower.endswith(NIFTI_SUFFIXES):
        return read_volume_nifti(slicer_app.scene, path, name=name)
    if lower.endswith(NRRD_SUFFIXES):
        nodes = slicer_app.io_manager.load_volumes([str(path)])
        if not nodes:
            raise InputError(f"cannot read CT {path}", "the NRRD file is damaged or not a volume; export it again from the source")
        nodes[0].SetName(name)
        return nodes[0]
    raise InputError(f"CT {path} has an unknown file type", FORMATS_HINT)


def describe_ct(volume_node: vtkMRMLScalarVolumeNode) -> str:
    """``122×101×112 voxels of 3.00×3.00×3.00 mm``."""
    spacing = np.linalg.norm(ijk_to_ras(volume_node)[:3, :3], axis=0)
    return "×".join(str(n) for n in grid_shape(volume_node)) + " voxels of " + "×".join(f"{s:.2f}" for s in spacing) + " mm"
