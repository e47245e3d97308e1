"""The desktop panel's side of a DICOM export: where a CT's DICOM files are, and Slicer's DICOM database.

The RTSTRUCT and SEG themselves are written by the engine (``WorkflowLogic.dicom_export_job``), as in the
studio, so both front ends give the same files for the same result. A CT loaded through Slicer's DICOM module
keeps its instance UIDs in the subject hierarchy; Slicer's DICOM database knows each instance's file.
"""
from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import InputError

if TYPE_CHECKING:
    from slicer import vtkMRMLScalarVolumeNode, vtkMRMLScene

INSTANCE_UIDS_ATTRIBUTE = "DICOM.instanceUIDs"  # set on the volume's item by Slicer's DICOM scalar volume plugin


def series_files_or_raise(scene: vtkMRMLScene, volume_node: vtkMRMLScalarVolumeNode) -> list[Path]:
    """The DICOM files ``volume_node`` was loaded from, as Slicer's DICOM database lists them."""
    import slicer

    hierarchy = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    uids = (hierarchy.GetItemAttribute(hierarchy.GetItemByDataNode(volume_node), INSTANCE_UIDS_ATTRIBUTE) or "").split()
    if not uids:
        raise InputError(f"CT {volume_node.GetName()!r} was not loaded from DICOM, so DICOM files cannot reference it",
                         "load the CT through the DICOM module, or export a NIfTI label map instead")
    files = [slicer.dicomDatabase.fileForInstance(uid) for uid in uids]
    missing = sum(1 for file in files if not file or not Path(file).is_file())
    if missing:
        raise InputError(f"{missing} of the {len(files)} DICOM files of CT {volume_node.GetName()!r} are no longer where Slicer's DICOM database says",
                         "import the CT's folder again in the DICOM module (or reconnect the drive it is on), then export again")
    return [Path(file) for file in files]


def gather_files_or_raise(files: Sequence[Path], folder: Path) -> Path:
    """``folder`` holding exactly ``files`` (links, copies where links are not allowed): ``ciss export`` reads one
    series folder and Slicer's DICOM import reads whole folders, where the files' own folders hold others too."""
    if not files:
        raise InputError("no DICOM files to gather", "load the CT through the DICOM module")
    folder.mkdir(parents=True, exist_ok=True)
    for index, source in enumerate(files):
        target = folder / f"{index:05d}.dcm"
        try:
            target.symlink_to(Path(source).resolve())
        except OSError:  # Windows without the symlink privilege
            shutil.copyfile(source, target)
    return folder


def add_to_dicom_database(files: Sequence[Path], staging: Path) -> None:
    """Copy the written RTSTRUCT and SEG into Slicer's DICOM database (through ``staging``, a new empty folder),
    so the DICOM module lists them with the CT, and nothing else of the folder they were written to."""
    from DICOMLib import DICOMUtils

    DICOMUtils.importDicom(str(gather_files_or_raise(files, staging)), copyFiles=True)
