"""Copies the shown result for correction and keeps the list of the bundle's organs drawn on each CT (Adapt's labels).

A result is the model's prediction and never a label; its copy, in the CT's annotations, is the site's contour once
the clinician has corrected it. Every other segmentation holding organs under the bundle's names (imported contours)
counts as well, as ``ciss adapt`` reads them (``WorkflowLogic.adapt_job``).
"""
from __future__ import annotations

from trame_server import Server

from CISSegmentationLib.errors import InputError

from ..ui.contours_ui import ContourRow, ContoursState, ContoursUI
from .context import StudioContext
from .editing import RecountAfterStrokes, open_segment_editor
from .panel_logic import PanelLogic
from .status_logic import StatusLogic


class ContoursLogic(PanelLogic[ContoursState]):
    def __init__(self, server: Server, context: StudioContext, status: StatusLogic) -> None:
        super().__init__(server, context, ContoursState)
        self._status = status
        for signal in (self.session.bundle_changed, self.session.ct_changed, self.session.result_added):
            signal.connect(self._on_session_changed)
        self._recount_later = RecountAfterStrokes(context, self.state, self.recount)

    def set_ui(self, ui: ContoursUI) -> None:
        ui.correct_clicked.connect(self._status.guarded(self.correct))

    def correct(self) -> None:
        """The shown result's organs copied into the CT's annotations, the segment editor open on the first of them."""
        volume = self.session.volume_or_raise()
        result = self.session.shown_result()
        if result is None:
            raise InputError("no result to correct on this CT", "click Segment all organs, then Correct this result")
        training_set = self.context.workflow.training_set
        copied = training_set.copy_result_for_correction(result, volume)
        if not copied:
            raise InputError(f"the result of version {self.session.shown_version} holds no organ", "segment the CT again, then correct the new result")
        self.context.views.show_result(None)  # the copies alone: the result drawn over them would hide the corrections
        open_segment_editor(self.context, self.state, training_set.training_segmentation(volume), volume, copied[0])
        self.recount()
        self._status.show_message(f"Version {self.session.shown_version}'s organs copied for correction: correct them, then Adapt to this site")

    def recount(self) -> None:
        """The bundle's organs drawn per CT, for this panel and for Adapt."""
        names = self.session.bundle.registry.names if self.session.bundle is not None else []
        training_set = self.context.workflow.training_set
        drawn = [case for case in training_set.summarize(training_set.find_cases(names), names) if case.is_annotated] if names else []
        self.session.set_site_contours(drawn)
        self.data.contours = [
            ContourRow(case.volume_name, " · ".join(f"{organ} {count:,}" for organ, count in case.counts.items() if count) + " voxels")
            for case in drawn
        ]

    def _on_session_changed(self, *_args) -> None:
        self.data.can_correct = self.session.bundle is not None and bool(self.session.results)
        self.recount()
