"""What the panels share: the open bundle and CT, the results per bundle version, the organs being added, the site's
contours of the bundle's organs."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING

from undo_stack import Signal

from CISSegmentationLib.errors import BundleError, InputError

if TYPE_CHECKING:
    from slicer import vtkMRMLScalarVolumeNode, vtkMRMLSegmentationNode

    from ciss_engine.registry import OrganClass
    from CISSegmentationLib.bundle_reader import BundleInfo
    from CISSegmentationLib.training_set import CaseCounts
    from CISSegmentationLib.workflow_logic import LearnOutcome


@dataclasses.dataclass
class StudioSession:
    """The session's data; panels react to its signals instead of calling each other."""

    bundle: BundleInfo | None = None
    volume_node: vtkMRMLScalarVolumeNode | None = None
    ct_source: Path | None = None  # the file or DICOM folder the CT was read from (DICOM exports reference it)
    results: dict[str, vtkMRMLSegmentationNode] = dataclasses.field(default_factory=dict)  # bundle version → result on this CT
    shown_version: str | None = None  # the result the views show (and Export writes)
    new_organs: list[OrganClass] = dataclasses.field(default_factory=list)  # added, painted, not learned yet
    last_learn: LearnOutcome | None = None
    site_contours: list[CaseCounts] = dataclasses.field(default_factory=list)  # the bundle's organs drawn per CT: Adapt's labels

    bundle_changed = Signal()
    ct_changed = Signal()
    result_added = Signal(str)  # the bundle version whose result arrived
    new_organs_changed = Signal()
    site_contours_changed = Signal()

    @property
    def is_dicom_ct(self) -> bool:
        return self.ct_source is not None and self.ct_source.is_dir()

    def bundle_or_raise(self) -> BundleInfo:
        if self.bundle is None:
            raise BundleError("no bundle open", "type the bundle folder (it holds bundle.json and versions/) under Bundle and click Open")
        return self.bundle

    def volume_or_raise(self) -> vtkMRMLScalarVolumeNode:
        if self.volume_node is None:
            raise InputError("no CT open", "type the CT's path (NIfTI or NRRD file, or a DICOM series folder) under CT and click Open")
        return self.volume_node

    def shown_result(self) -> vtkMRMLSegmentationNode | None:
        return self.results.get(self.shown_version) if self.shown_version else None

    def set_bundle(self, bundle: BundleInfo) -> None:
        self.bundle = bundle
        self.bundle_changed.emit()

    def set_ct(self, volume_node: vtkMRMLScalarVolumeNode, source: Path) -> None:
        """A new CT: the previous CT's results no longer apply; its painted organs stay (Learn uses every CT)."""
        self.volume_node, self.ct_source = volume_node, source
        self.results.clear()
        self.shown_version = None
        self.ct_changed.emit()

    def add_result(self, version: str, segmentation_node: vtkMRMLSegmentationNode) -> None:
        self.results[version] = segmentation_node
        self.shown_version = version
        self.result_added.emit(version)

    def set_new_organs(self, organs: list[OrganClass]) -> None:
        self.new_organs = organs
        self.new_organs_changed.emit()

    def set_site_contours(self, contours: list[CaseCounts]) -> None:
        self.site_contours = contours
        self.site_contours_changed.emit()
