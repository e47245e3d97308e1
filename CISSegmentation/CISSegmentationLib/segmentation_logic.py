"""Segmentation nodes ⇄ label maps on a CT's grid, with the bundle's organ names, colours and codes.

A label map's value is the organ's label id in the bundle (``classes.json``). Export goes through
the segmentation's merged labelmap in the CT's reference geometry (otherwise Slicer crops it to the
labels' bounding box); import shares one labelmap layer across all organs, as Slicer's own import does.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import slicer
import vtk
from vtkmodules.util import numpy_support

from ciss_engine.registry import OrganClass

from .errors import InputError
from .terminology import apply_organ
if TYPE_CHECKING:
    from slicer import vtkMRMLScene, vtkMRMLSegmentationNode, vtkMRMLVolumeNode, vtkOrientedImageData

from .volume_io import array_to_matrix, grid_shape, ijk_to_ras, matrix_to_array, read_label_array_or_raise, write_label_array

SEGMENTATION_CLASS = "vtkMRMLSegmentationNode"
# What a segmentation node of ours is for, stored in the scene (it survives saving and reloading it).
ROLE_ATTRIBUTE = "CISSegmentation.Role"
RESULT_ROLE = "result"  # the engine's output: the model's own predictions, never training labels
TRAINING_ROLE = "training"  # what the user draws on one CT: new organs painted, the bundle's organs corrected from a result
# Segment origins within this fraction of a voxel of a CT voxel centre lie on the CT's grid.
GRID_TOLERANCE_VOXELS = 1e-3


def binary_labelmap_name() -> str:
    return slicer.vtkSegmentationConverter.GetSegmentationBinaryLabelmapRepresentationName()


def reference_geometry(volume_node: vtkMRMLVolumeNode, values: np.ndarray | None = None) -> vtkOrientedImageData:
    """A vtkOrientedImageData on the volume's grid, empty or holding an (i, j, k) ``values`` array."""
    image = slicer.vtkOrientedImageData()
    image.SetDimensions(*grid_shape(volume_node))
    image.SetImageToWorldMatrix(array_to_matrix(ijk_to_ras(volume_node)))
    if values is not None:
        flat = np.ascontiguousarray(values.transpose(2, 1, 0)).ravel()
        image.GetPointData().SetScalars(numpy_support.numpy_to_vtk(flat, deep=True))
    return image


class SegmentationLogic:
    """Creates, imports, exports and measures segmentations of one MRML scene.

    >>> logic = SegmentationLogic(scene)
    >>> node = logic.import_label_map("seg.nii.gz", ct_node, registry.organs, name="CT organs")
    """

    def __init__(self, scene: vtkMRMLScene) -> None:
        self.scene = scene

    def create_segmentation(self, reference_volume: vtkMRMLVolumeNode, *, name: str, role: str | None = None) -> vtkMRMLSegmentationNode:
        """An empty segmentation on ``reference_volume``'s grid, shown in 2D and 3D, with an optional ``ROLE_ATTRIBUTE``."""
        node = self.scene.AddNewNodeByClass(SEGMENTATION_CLASS, name)
        node.CreateDefaultDisplayNodes()
        node.SetReferenceImageGeometryParameterFromVolumeNode(reference_volume)
        if role:
            node.SetAttribute(ROLE_ATTRIBUTE, role)
        return node

    def segmentations_on(self, reference_volume: vtkMRMLVolumeNode, role: str) -> list[vtkMRMLSegmentationNode]:
        """The segmentations of ``role`` made on ``reference_volume``, oldest first."""
        nodes = self.scene.GetNodesByClass(SEGMENTATION_CLASS)
        return [
            node for node in (nodes.GetItemAsObject(i) for i in range(nodes.GetNumberOfItems()))
            if node.GetAttribute(ROLE_ATTRIBUTE) == role and node.GetNodeReference(node.GetReferenceImageGeometryReferenceRole()) is reference_volume
        ]

    def import_label_map(self, label_path: Path | str, reference_volume: vtkMRMLVolumeNode, organs: Sequence[OrganClass], *, name: str,
                         show_3d: bool = True, role: str | None = None) -> vtkMRMLSegmentationNode:
        """One segment per organ (empty when absent), named, coloured and coded from the registry; ``role`` as in ``create_segmentation``."""
        labels = read_label_array_or_raise(label_path, reference_volume)
        by_label = {organ.label: organ for organ in organs}
        unknown = sorted(set(np.unique(labels).tolist()) - set(by_label) - {0})
        if unknown:
            raise InputError(
                f"label map {label_path} holds values {unknown} that are not organs of the bundle",
                "segment with the bundle version whose classes.json lists these labels",
            )
        node = self.create_segmentation(reference_volume, name=name, role=role)
        segmentation = node.GetSegmentation()
        if labels.any():
            ok = slicer.vtkSlicerSegmentationsModuleLogic.ImportLabelmapToSegmentationNode(reference_geometry(reference_volume, labels), node, "")
            if not ok:
                raise InputError(f"Slicer could not import label map {label_path}", "check that the file is a label map of this CT")
        for segment_id in list(segmentation.GetSegmentIDs()):
            segment = segmentation.GetSegment(segment_id)
            apply_organ(segment, by_label[segment.GetLabelValue()])
        for index, organ in enumerate(sorted(organs, key=lambda o: o.label)):
            if not segmentation.GetSegmentIdBySegmentName(organ.name):
                segment_id = segmentation.AddEmptySegment(organ.name, organ.name)
                apply_organ(segmentation.GetSegment(segment_id), organ)
            segmentation.SetSegmentIndex(segmentation.GetSegmentIdBySegmentName(organ.name), index)
        if show_3d:
            node.CreateClosedSurfaceRepresentation()
        return node

    def add_organ_segment(self, segmentation_node: vtkMRMLSegmentationNode, organ: OrganClass) -> str:
        """The segment of a new organ to paint (created empty unless one with its name exists)."""
        segmentation = segmentation_node.GetSegmentation()
        segment_id = segmentation.GetSegmentIdBySegmentName(organ.name)
        if not segment_id:
            segment_id = segmentation.AddEmptySegment(organ.name, organ.name)
        apply_organ(segmentation.GetSegment(segment_id), organ)
        return segment_id

    def set_segment_mask(self, segmentation_node: vtkMRMLSegmentationNode, segment_id: str, mask: np.ndarray, reference_volume: vtkMRMLVolumeNode) -> None:
        """Replace a segment's voxels by an (i, j, k) mask on the reference grid (what painting does)."""
        if tuple(mask.shape) != grid_shape(reference_volume):
            raise InputError(f"mask shape {mask.shape} differs from CT grid {grid_shape(reference_volume)}", "give a mask on the CT's grid")
        image = reference_geometry(reference_volume, (mask > 0).astype(np.uint8))
        ok = slicer.vtkSlicerSegmentationsModuleLogic.SetBinaryLabelmapToSegment(
            image, segmentation_node, segment_id, slicer.vtkSlicerSegmentationsModuleLogic.MODE_REPLACE
        )
        if not ok:
            raise InputError(f"Slicer could not set the voxels of segment {segment_id!r}", "check that the segment exists")

    def check_on_grid_or_raise(self, segmentation_node: vtkMRMLSegmentationNode, reference_volume: vtkMRMLVolumeNode, names: Sequence[str]) -> None:
        """The painted segments ``names`` must lie on the CT's voxel grid, so export never resamples."""
        volume_matrix = ijk_to_ras(reference_volume)
        ras_to_ijk = np.linalg.inv(volume_matrix)
        segmentation = segmentation_node.GetSegmentation()
        for name in names:
            segment_id = segmentation.GetSegmentIdBySegmentName(name)
            image = segmentation_node.GetBinaryLabelmapInternalRepresentation(segment_id) if segment_id else None
            if image is None or image.IsEmpty():
                continue
            matrix = vtk.vtkMatrix4x4()
            image.GetImageToWorldMatrix(matrix)
            segment_matrix = matrix_to_array(matrix)
            in_ct_voxels = ras_to_ijk @ segment_matrix
            axes_match = np.allclose(in_ct_voxels[:3, :3], np.eye(3), atol=GRID_TOLERANCE_VOXELS)
            offset = in_ct_voxels[:3, 3]
            if not axes_match or not np.allclose(offset, np.round(offset), atol=GRID_TOLERANCE_VOXELS):
                raise InputError(
                    f"segment {name!r} of {segmentation_node.GetName()!r} is not on the voxel grid of CT {reference_volume.GetName()!r}",
                    f"the segmentation was made for another image; paint {name!r} with {reference_volume.GetName()!r} as source volume "
                    "(Segment Editor → Specify geometry → source volume) or pair the segmentation with its own CT",
                )

    def label_array(self, segmentation_node: vtkMRMLSegmentationNode, reference_volume: vtkMRMLVolumeNode, values: Mapping[str, int]) -> np.ndarray:
        """An (i, j, k) int16 label array on the CT's grid: segment named ``name`` → ``values[name]``.

        Segments missing from the node are skipped; where segments overlap, the later one wins.
        """
        shape = grid_shape(reference_volume)
        segmentation = segmentation_node.GetSegmentation()
        segment_ids, label_values = vtk.vtkStringArray(), vtk.vtkIntArray()
        for name, value in values.items():
            segment_id = segmentation.GetSegmentIdBySegmentName(name)
            if segment_id:
                segment_ids.InsertNextValue(segment_id)
                label_values.InsertNextValue(int(value))
        if segment_ids.GetNumberOfValues() == 0:
            return np.zeros(shape, dtype=np.int16)
        segmentation_node.CreateBinaryLabelmapRepresentation()
        merged = slicer.vtkOrientedImageData()
        ok = segmentation_node.GenerateMergedLabelmapForAllSegments(
            merged, slicer.vtkSegmentation.EXTENT_REFERENCE_GEOMETRY, reference_geometry(reference_volume), segment_ids, label_values
        )
        if not ok or tuple(merged.GetDimensions()) != shape:
            raise InputError(f"Slicer could not export {segmentation_node.GetName()!r} on the grid of {reference_volume.GetName()!r}", "check the segmentation's geometry")
        flat = numpy_support.vtk_to_numpy(merged.GetPointData().GetScalars())
        return flat.reshape(tuple(reversed(shape))).transpose(2, 1, 0).astype(np.int16)

    def voxel_counts(self, segmentation_node: vtkMRMLSegmentationNode, reference_volume: vtkMRMLVolumeNode, names: Sequence[str]) -> dict[str, int]:
        """Painted voxels of each named segment inside the CT (0 when missing or empty)."""
        return {name: int(np.count_nonzero(self.label_array(segmentation_node, reference_volume, {name: 1}))) for name in names}

    def export_label_map(self, segmentation_node: vtkMRMLSegmentationNode, reference_volume: vtkMRMLVolumeNode, organs: Sequence[OrganClass],
                         path: Path | str) -> Path:
        """Write a NIfTI label map on the CT's grid with the bundle's label ids."""
        labels = self.label_array(segmentation_node, reference_volume, {organ.name: organ.label for organ in organs})
        return write_label_array(labels, reference_volume, path)
