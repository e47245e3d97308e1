"""The training set of a Learn step: the new organs painted on one or more CTs, as engine input files.

A case is a segmentation node holding segments named after the new organs, on the grid of its CT
(the segmentation's reference volume). The panel paints them in one training segmentation per CT,
apart from the engine's results, so a side-by-side comparison of versions shows no strokes and the
model's own predictions never become training labels. Label files carry only the new organs, values
1..n in the order of ``--organ``: class-incremental learning never needs the old organs' labels.
"""
from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import InputError
from .segmentation_logic import RESULT_ROLE, ROLE_ATTRIBUTE, SEGMENTATION_CLASS, TRAINING_ROLE, SegmentationLogic
from .volume_io import write_label_array, write_volume_nifti

if TYPE_CHECKING:
    from slicer import vtkMRMLScalarVolumeNode, vtkMRMLScene, vtkMRMLSegmentationNode


@dataclasses.dataclass(frozen=True)
class TrainingCase:
    """A CT and the segmentation in which the new organs are painted."""

    volume_node: vtkMRMLScalarVolumeNode | None
    segmentation_node: vtkMRMLSegmentationNode


@dataclasses.dataclass(frozen=True)
class CaseCounts:
    """Painted voxels per new organ on one CT (what the panel lists)."""

    volume_name: str
    segmentation_name: str
    counts: dict[str, int]

    @property
    def is_annotated(self) -> bool:
        return any(self.counts.values())


@dataclasses.dataclass(frozen=True)
class TrainingFiles:
    """Engine input written for a Learn or Adapt step: one CT and one label file per annotated case."""

    images: tuple[Path, ...]
    labels: tuple[Path, ...]
    counts: tuple[CaseCounts, ...]


def _file_stem(index: int, name: str) -> str:
    return f"case{index:02d}_" + (re.sub(r"[^A-Za-z0-9_-]+", "_", name).strip("_") or "ct")


class TrainingSetLogic:
    """Finds, measures and writes the training cases of one MRML scene."""

    def __init__(self, scene: vtkMRMLScene) -> None:
        self.scene = scene
        self.segmentation_logic = SegmentationLogic(scene)

    def training_segmentation(self, volume_node: vtkMRMLScalarVolumeNode) -> vtkMRMLSegmentationNode:
        """Where the user draws on this CT (new organs, corrected organs): its training segmentation, created empty the first time."""
        existing = self.segmentation_logic.segmentations_on(volume_node, TRAINING_ROLE)
        return existing[-1] if existing else self.segmentation_logic.create_segmentation(
            volume_node, name=f"{volume_node.GetName()} annotations", role=TRAINING_ROLE
        )

    def copy_result_for_correction(self, result_node: vtkMRMLSegmentationNode, volume_node: vtkMRMLScalarVolumeNode) -> list[str]:
        """Every organ of a result copied into the CT's training segmentation, replacing earlier copies of the same
        organs, where Segment Editor corrects them into the site's contours (the labels of an Adapt step). The
        result itself stays the model's prediction and is never read as a label. Returns the copied segments' ids.
        """
        if result_node.GetAttribute(ROLE_ATTRIBUTE) != RESULT_ROLE:
            raise InputError(f"segmentation {result_node.GetName()!r} is not a result of the engine", "segment the CT first, then correct its result")
        if result_node.GetNodeReference(result_node.GetReferenceImageGeometryReferenceRole()) is not volume_node:
            raise InputError(f"segmentation {result_node.GetName()!r} is not a result on CT {volume_node.GetName()!r}", "segment this CT, then correct its result")
        source, target = result_node.GetSegmentation(), self.training_segmentation(volume_node).GetSegmentation()
        copied = []
        for segment_id in source.GetSegmentIDs():
            name = source.GetSegment(segment_id).GetName()
            earlier = target.GetSegmentIdBySegmentName(name)
            if earlier:
                target.RemoveSegment(earlier)
            if not target.CopySegmentFromSegmentation(source, segment_id):
                raise InputError(f"Slicer could not copy organ {name!r} of {result_node.GetName()!r}", "segment the CT again, then correct the new result")
            copied.append(target.GetSegmentIdBySegmentName(name))
        return copied

    def find_cases(self, organ_names: Sequence[str]) -> list[TrainingCase]:
        """Every segmentation but the engine's results holding a segment named after a new organ, with its CT (or None)."""
        cases = []
        nodes = self.scene.GetNodesByClass(SEGMENTATION_CLASS)
        for index in range(nodes.GetNumberOfItems()):
            node = nodes.GetItemAsObject(index)
            if node.GetAttribute(ROLE_ATTRIBUTE) == RESULT_ROLE:
                continue
            segmentation = node.GetSegmentation()
            if any(segmentation.GetSegmentIdBySegmentName(name) for name in organ_names):
                cases.append(TrainingCase(node.GetNodeReference(node.GetReferenceImageGeometryReferenceRole()), node))
        return cases

    def summarize(self, cases: Sequence[TrainingCase], organ_names: Sequence[str]) -> list[CaseCounts]:
        """Voxel counts per organ and CT; a case without a CT counts nothing."""
        summary = []
        for case in cases:
            counts = (
                self.segmentation_logic.voxel_counts(case.segmentation_node, case.volume_node, organ_names)
                if case.volume_node is not None
                else dict.fromkeys(organ_names, 0)
            )
            volume_name = case.volume_node.GetName() if case.volume_node is not None else "(no CT)"
            summary.append(CaseCounts(volume_name, case.segmentation_node.GetName(), counts))
        return summary

    def write_or_raise(self, cases: Sequence[TrainingCase], organ_names: Sequence[str], folder: Path, *, every_organ: bool = True) -> TrainingFiles:
        """Check every case, then write the annotated ones as ``caseNN_<CT>_image/label.nii.gz``.

        ``every_organ``: each organ must be drawn on some CT (a Learn step's new organs); otherwise any of them
        (an Adapt step's labelled organs: the ones drawn nowhere are kept by the forgetting guard)."""
        if not organ_names:
            raise InputError("no new organ to learn", "click Add new organ, give its name and paint it on a CT")
        values = {name: value for value, name in enumerate(organ_names, start=1)}
        annotated: list[tuple[TrainingCase, Any, CaseCounts]] = []
        for case in cases:
            if case.volume_node is None:
                raise InputError(
                    f"segmentation {case.segmentation_node.GetName()!r} has no CT",
                    "open it in Segment Editor and choose its CT as source volume",
                )
            self.segmentation_logic.check_on_grid_or_raise(case.segmentation_node, case.volume_node, organ_names)
            labels = self.segmentation_logic.label_array(case.segmentation_node, case.volume_node, values)
            counts = {name: int((labels == value).sum()) for name, value in values.items()}
            if any(counts.values()):
                annotated.append((case, labels, CaseCounts(case.volume_node.GetName(), case.segmentation_node.GetName(), counts)))
        if not every_organ and not annotated:
            raise InputError(
                "no organ of the bundle is drawn on any CT",
                "import the site's contours with segments named as the bundle's organs, or copy a result and correct it in Segment Editor, then Adapt",
            )
        for name in organ_names if every_organ else ():
            if not any(summary.counts[name] for _, _, summary in annotated):
                raise InputError(
                    f"{name!r} is not painted on any CT",
                    f"select the segment {name!r} in Segment Editor and paint it on at least one CT, then click Learn",
                )
        images, label_paths = [], []
        for index, (case, labels, _) in enumerate(annotated):
            stem = _file_stem(index, case.volume_node.GetName())
            images.append(write_volume_nifti(case.volume_node, Path(folder) / f"{stem}_image.nii.gz"))
            label_paths.append(write_label_array(labels, case.volume_node, Path(folder) / f"{stem}_label.nii.gz"))
        return TrainingFiles(tuple(images), tuple(label_paths), tuple(summary for _, _, summary in annotated))
