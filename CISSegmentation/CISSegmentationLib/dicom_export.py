"""DICOM exports of a result in desktop Slicer: DICOM SEG (Slicer's DICOM module) and RTSTRUCT (SlicerRT).

Both exporters reference the CT's DICOM instances, so the CT must have been loaded from DICOM (its
subject-hierarchy item carries the series UIDs). The segment terminology set from the bundle's
SNOMED CT codes becomes the coded segment type in both objects.
"""
from __future__ import annotations

import enum
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import InputError

if TYPE_CHECKING:
    from slicer import vtkMRMLScalarVolumeNode, vtkMRMLScene, vtkMRMLSegmentationNode


class DicomFormat(enum.Enum):
    SEG = "DICOM SEG"
    RTSTRUCT = "DICOM RTSTRUCT"


def _exporter_or_raise(dicom_format: DicomFormat):
    """The DICOM plugin that writes ``dicom_format``; RTSTRUCT needs the SlicerRT extension."""
    if dicom_format is DicomFormat.SEG:
        import DICOMSegmentationPlugin

        return DICOMSegmentationPlugin.DICOMSegmentationPluginClass()
    try:
        import DicomRtImportExportPlugin
    except ImportError as error:
        raise InputError(
            "RTSTRUCT export needs the SlicerRT extension",
            "install SlicerRT from the Extensions Manager (View → Extensions Manager), restart Slicer, then export again",
        ) from error
    return DicomRtImportExportPlugin.DicomRtImportExportPluginClass()


def export_dicom_or_raise(scene: vtkMRMLScene, segmentation_node: vtkMRMLSegmentationNode, volume_node: vtkMRMLScalarVolumeNode,
                          folder: Path, dicom_format: DicomFormat) -> Path:
    """Write ``segmentation_node`` as ``dicom_format`` referencing the DICOM CT ``volume_node`` into ``folder``."""
    import slicer

    hierarchy = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    volume_item = hierarchy.GetItemByDataNode(volume_node)
    if not hierarchy.GetItemUID(volume_item, "DICOM"):
        raise InputError(
            f"CT {volume_node.GetName()!r} was not loaded from DICOM, so a {dicom_format.value} cannot reference it",
            "load the CT through the DICOM module (or export a NIfTI label map instead)",
        )
    segmentation_item = hierarchy.GetItemByDataNode(segmentation_node)
    # The exporters look for the referenced series in the same study as the segmentation.
    hierarchy.SetItemParent(segmentation_item, hierarchy.GetItemParent(volume_item))
    exporter = _exporter_or_raise(dicom_format)
    exportables = exporter.examineForExport(segmentation_item)
    if not exportables:
        raise InputError(f"Slicer found nothing to export as {dicom_format.value}", "segment the CT first; the result must be non-empty")
    Path(folder).mkdir(parents=True, exist_ok=True)
    for exportable in exportables:
        exportable.directory = str(folder)
    message = exporter.export(exportables)
    if message:
        raise InputError(f"{dicom_format.value} export failed: {message}", "see the Python console for details")
    return Path(folder)
