"""Segments all organs on the open CT through the engine (``ciss segment``) and shows the result."""
from __future__ import annotations

from collections.abc import Callable

from trame_server import Server

from CISSegmentationLib.workflow_logic import SegmentOutcome

from ..ui.segment_ui import SegmentState, SegmentUI
from .context import StudioContext
from .panel_logic import PanelLogic
from .status_logic import StatusLogic


class SegmentLogic(PanelLogic[SegmentState]):
    def __init__(self, server: Server, context: StudioContext, status: StatusLogic) -> None:
        super().__init__(server, context, SegmentState)
        self._status = status
        self.session.bundle_changed.connect(self._on_inputs_changed)
        self.session.ct_changed.connect(self._on_inputs_changed)
        self.bind_changes({self.name.shown_version: self._on_shown_version_changed})

    def set_ui(self, ui: SegmentUI) -> None:
        ui.segment_clicked.connect(self._status.guarded(self._on_segment_clicked))

    def segment(self, version: str | None = None, *, then: Callable[[str], None] | None = None) -> None:
        """Segment with ``version`` (default: current); ``then(version)`` runs once the result is in the scene."""
        bundle = self.session.bundle_or_raise()
        volume = self.session.volume_or_raise()

        def on_done(outcome: SegmentOutcome) -> None:
            if outcome.segmentation_node is None:  # failed or cancelled: the status panel says why
                return
            if outcome.volume_node is not self.session.volume_node:  # another CT was opened meanwhile
                self.context.slicer_app.scene.RemoveNode(outcome.segmentation_node)
                return
            self.session.add_result(outcome.version, outcome.segmentation_node)
            self.data.versions = list(self.session.results)
            self.data.shown_version = outcome.version
            self.context.views.show_result(outcome.segmentation_node)
            self._status.show_message(f"Segmented {volume.GetName()} with version {outcome.version}")
            if then is not None:
                then(outcome.version)

        job = self.context.workflow.segment_job(bundle=bundle, volume_node=volume, version=version, on_done=on_done)
        self._status.start(job, title=f"Segmenting all organs with version {version or bundle.current}", command="segment")

    def _on_segment_clicked(self) -> None:
        self.segment()

    def _on_inputs_changed(self) -> None:
        self.data.is_ready = self.session.bundle is not None and self.session.volume_node is not None
        self.data.versions = list(self.session.results)

    def _on_shown_version_changed(self, version: str) -> None:
        """The user chose another result (the callback also follows the server's own changes: those are shown already)."""
        node = self.session.results.get(version)
        if node is not None and version != self.session.shown_version:
            self.session.shown_version = version
            self.context.views.show_result(node)
