"""Adds a new organ as a segment of the CT's annotation segmentation and opens the segment editor on it.

Every trame-slicer effect (paint, erase, draw, scissors, threshold, islands, smoothing…) then edits
that segment. Learn collects the painted organs of every CT (``TrainingSetLogic.find_cases``); the
painted voxels per CT are recounted shortly after the strokes stop.
"""
from __future__ import annotations

from trame_server import Server

from ciss_engine.registry import OrganClass, parse_rgb
from CISSegmentationLib.bundle_reader import catalog_rgb, known_organ_names, new_organ_or_raise
from CISSegmentationLib.errors import InputError
from CISSegmentationLib.terminology import organ_name_or_raise

from ..state import hex_color
from ..ui.organ_ui import NewOrganRow, OrganState, OrganUI
from .context import StudioContext
from .editing import RecountAfterStrokes, open_segment_editor
from .panel_logic import PanelLogic
from .status_logic import StatusLogic


class OrganLogic(PanelLogic[OrganState]):
    def __init__(self, server: Server, context: StudioContext, status: StatusLogic) -> None:
        super().__init__(server, context, OrganState)
        self._status = status
        self.data.known_names = known_organ_names()
        self.bind_changes({self.name.name: self._on_name_changed})
        for signal in (self.session.bundle_changed, self.session.ct_changed, self.session.new_organs_changed):
            signal.connect(self._on_session_changed)
        self._recount_later = RecountAfterStrokes(context, self.state, self._recount)

    def set_ui(self, ui: OrganUI) -> None:
        ui.add_clicked.connect(self._status.guarded(self._on_add_clicked))
        ui.paint_clicked.connect(self._status.guarded(self._on_paint_clicked))

    def add_organ(self, text: str, color: str) -> OrganClass:
        """The organ a Learn step will add, with an empty segment on the open CT, ready to paint."""
        organ = new_organ_or_raise(self.session.bundle_or_raise(), organ_name_or_raise(text), parse_rgb(color), pending=self.session.new_organs)
        self.session.set_new_organs([o for o in self.session.new_organs if o.name != organ.name] + [organ])
        self.paint(organ)
        return organ

    def paint(self, organ: OrganClass) -> None:
        """Select the organ's segment on the open CT (created if missing) with the Paint effect active."""
        volume = self.session.volume_or_raise()
        segmentation = self.context.workflow.training_set.training_segmentation(volume)
        segment_id = self.context.workflow.segmentation_logic.add_organ_segment(segmentation, organ)
        self.context.views.show_result(self.session.shown_result())
        open_segment_editor(self.context, self.state, segmentation, volume, segment_id)
        self._recount()

    def _on_add_clicked(self) -> None:
        self.add_organ(self.data.name, self.data.color)

    def _on_paint_clicked(self, name: str) -> None:
        organ = next((o for o in self.session.new_organs if o.name == name), None)
        if organ is None:
            raise InputError(f"{name!r} is not a new organ of this session", "add it again with Add new organ")
        self.paint(organ)

    def _on_name_changed(self, text: str) -> None:
        """A catalog organ brings its colour; a name still being typed may be invalid, which Add reports."""
        try:
            rgb = catalog_rgb(organ_name_or_raise(text or ""))
        except InputError:
            return
        if rgb is not None:
            self.data.color = hex_color(rgb)

    def _on_session_changed(self) -> None:
        self.data.can_add = self.session.bundle is not None and self.session.volume_node is not None
        self._recount()

    def _recount(self) -> None:
        """Painted voxels of each new organ on every CT of the scene."""
        organs = self.session.new_organs
        names = [organ.name for organ in organs]
        training_set = self.context.workflow.training_set
        summary = training_set.summarize(training_set.find_cases(names), names) if names else []
        self.data.new_organs = [
            NewOrganRow(organ.name, hex_color(organ.rgb),
                        "; ".join(f"{case.volume_name}: {case.counts[organ.name]:,} voxels" for case in summary if case.counts[organ.name]) or "not painted yet")
            for organ in organs
        ]
