"""What the views show: the CT in every slice view, one result in all views, or two versions side by side.

The CT is shown in the slice views only: a volume rendering of it would be redrawn on the server's
CPU (Mesa, as most studio servers have no GPU) for every frame of the 3D view, while organ surfaces
are cheap. Views render on demand (trame-slicer schedules a render when a displayable manager asks
for one), never on a timer.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from trame_slicer.views import Layout, LayoutDirection, ViewLayoutDefinition

from CISSegmentationLib.segmentation_logic import TRAINING_ROLE

if TYPE_CHECKING:
    from slicer import vtkMRMLScalarVolumeNode, vtkMRMLSegmentationNode
    from trame_slicer.app.logic import LayoutButtonLogic
    from trame_slicer.core import SlicerApp

    from CISSegmentationLib.training_set import TrainingSet

    from .session import StudioSession

MAIN_LAYOUT = "Axial Primary"
COMPARE_LAYOUT = "Compare versions"
OLD_VIEW = "Red"  # the axial view of the main layout shows the old version when comparing
NEW_VIEW = "Compare"


class StudioViews:
    """Layouts and visibility of the CT and the results, for one SlicerApp."""

    def __init__(self, slicer_app: SlicerApp, layout_logic: LayoutButtonLogic, session: StudioSession, training_set: TrainingSet) -> None:
        self._slicer_app = slicer_app
        self._layout_logic = layout_logic
        self._session = session
        self._training_set = training_set
        self._camera_fitted_to: vtkMRMLScalarVolumeNode | None = None  # the CT whose organs last framed the 3D camera
        new_view = ViewLayoutDefinition.slice_view("Axial", label=NEW_VIEW, color="#4a90e2")
        layout_logic.layout_manager.register_layout(
            COMPARE_LAYOUT, Layout(LayoutDirection.Horizontal, [ViewLayoutDefinition.axial_view(), new_view])
        )

    def show_ct(self, volume_node: vtkMRMLScalarVolumeNode) -> None:
        """The CT as background of every slice view, views fitted to it."""
        display = self._slicer_app.display_manager
        display.show_volume_in_slice_background(volume_node)
        display.show_volume_in_slice_foreground(None)
        self._camera_fitted_to = None
        self.show_result(None)
        display.reset_views()

    def show_result(self, segmentation_node: vtkMRMLSegmentationNode | None) -> None:
        """One result and the new organs painted on this CT in all views (2D and 3D); every other segmentation hidden.

        The 3D camera is fitted to the first result on a CT only (the CT is not in 3D, so only the organs'
        surfaces give it bounds); later results and painting keep the user's camera.
        """
        self._set_layout(MAIN_LAYOUT)
        volume = self._session.volume_node
        painted = self._training_set.segmentation_logic.segmentations_on(volume, TRAINING_ROLE) if volume is not None else []
        shown = {segmentation_node, *painted} - {None}
        for node in self._segmentation_nodes():
            self._show_in(node, [] if node in shown else None)
        if segmentation_node is not None and self._camera_fitted_to is not volume:
            self._camera_fitted_to = volume
            for view in self._slicer_app.view_manager.get_threed_views():
                view.reset_view()

    def compare(self, old: vtkMRMLSegmentationNode, new: vtkMRMLSegmentationNode) -> None:
        """Old version's result in the left axial view, new version's in the right one, at the same slice (no paint)."""
        self._set_layout(COMPARE_LAYOUT)
        views = self._slicer_app.view_manager
        old_view, new_view = views.get_view(OLD_VIEW), views.get_view(NEW_VIEW)
        for node in self._segmentation_nodes():
            chosen = old_view if node is old else new_view if node is new else None
            self._show_in(node, None if chosen is None else [chosen.get_view_node_id()])
        # The right view shows what the left one shows: same slice, zoom and pan (views keep theirs across layouts).
        old_node, new_node = old_view.get_view_node(), new_view.get_view_node()
        new_node.SetFieldOfView(*old_node.GetFieldOfView())
        new_node.SetXYZOrigin(*old_node.GetXYZOrigin())
        new_view.set_slice_value(old_view.get_slice_value())

    def _set_layout(self, layout_id: str) -> None:
        self._layout_logic.layout_manager.set_layout(layout_id)
        self._layout_logic.data.current_layout_id = layout_id

    def _segmentation_nodes(self) -> list[vtkMRMLSegmentationNode]:
        return list(self._slicer_app.scene.GetNodesByClass("vtkMRMLSegmentationNode"))

    @staticmethod
    def _show_in(node: vtkMRMLSegmentationNode, view_node_ids: list[str] | None) -> None:
        """Visible in these views ([] = all), or hidden (None)."""
        display = node.GetDisplayNode()
        if display is None:
            return
        display.SetVisibility(view_node_ids is not None)
        display.RemoveAllViewNodeIDs()
        for view_node_id in view_node_ids or []:
            display.AddViewNodeID(view_node_id)
