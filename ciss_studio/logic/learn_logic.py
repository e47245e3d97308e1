"""Runs ``ciss learn`` on the painted new organs, or ``ciss adapt`` on the site's corrected contours of the bundle's
organs, then previews the new version beside the old one.

The engine publishes a new version only when it is complete and the forgetting guard passed (or was
overridden), so a cancelled, failed or disconnected run never leaves a half-written bundle. A passed
step can still be rejected here: that rolls the bundle back to the previous version.
"""
from __future__ import annotations

from trame_server import Server

from CISSegmentationLib.errors import InputError
from CISSegmentationLib.job_runner import JobCallbacks, JobResult, JobState, describe_guard
from CISSegmentationLib.workflow_logic import LearnOutcome

from ..ui.learn_ui import LearnState, LearnUI
from .compare_logic import CompareLogic
from .context import StudioContext
from .data_logic import DataLogic
from .panel_logic import PanelLogic
from .segment_logic import SegmentLogic
from .status_logic import StatusLogic


def iterations_or_raise(text: str) -> int | None:
    """The Iterations field: empty = the preset's budget, else a positive whole number."""
    if not text.strip():
        return None
    if not text.strip().isdigit() or int(text) < 1:
        raise InputError(f"invalid number of iterations {text!r}", "type a positive whole number, or leave Iterations empty to use the preset")
    return int(text)


class LearnLogic(PanelLogic[LearnState]):
    def __init__(self, server: Server, context: StudioContext, status: StatusLogic, data: DataLogic, segment: SegmentLogic,
                 compare: CompareLogic) -> None:
        super().__init__(server, context, LearnState)
        self._status, self._data, self._segment, self._compare = status, data, segment, compare
        self.session.new_organs_changed.connect(self._on_new_organs_changed)
        self.session.site_contours_changed.connect(self._on_site_contours_changed)

    def set_ui(self, ui: LearnUI) -> None:
        ui.learn_clicked.connect(self._status.guarded(self._on_learn_clicked))
        ui.adapt_clicked.connect(self._status.guarded(self.adapt))
        ui.accept_clicked.connect(self._status.guarded(self._on_accept_clicked))
        ui.reject_clicked.connect(self._status.guarded(self._on_reject_clicked))

    def learn(self) -> None:
        organs = list(self.session.new_organs)
        if not organs:
            raise InputError("no new organ to learn", "add a new organ under New organ, paint it on at least one CT, then click Learn")
        job = self.context.workflow.learn_job(
            bundle=self.session.bundle_or_raise(), new_organs=organs, preset=self.data.preset, iterations=iterations_or_raise(self.data.iterations),
            on_done=self._on_learned,
        )
        self.data.guard_verdict, self.data.guard_text, self.data.show_decision = "", "", False
        self._status.start(job, title=f"Learning {', '.join(o.name for o in organs)}", command="learn")

    def adapt(self) -> None:
        """A domain step on the site's contours; the organs drawn nowhere are pseudo-labelled and guarded by the engine."""
        if not self.session.site_contours:
            raise InputError("no organ of the bundle is drawn on any CT",
                             "segment a CT, click Correct this result and correct its organs in the segment editor, then Adapt")
        job = self.context.workflow.adapt_job(
            bundle=self.session.bundle_or_raise(), preset=self.data.preset, iterations=iterations_or_raise(self.data.iterations),
            on_done=self._on_learned,
        )
        self.data.guard_verdict, self.data.guard_text, self.data.show_decision = "", "", False
        self._status.start(job, title="Adapting the bundle's organs to this site", command="adapt")

    def _on_learn_clicked(self) -> None:
        self.learn()

    def _on_learned(self, outcome: LearnOutcome) -> None:
        self.session.last_learn = outcome
        state = outcome.result.state
        if state not in (JobState.SUCCEEDED, JobState.REJECTED):  # failed or cancelled: the status panel says so
            return
        self.data.guard_verdict = "passed" if state is JobState.SUCCEEDED else "rejected"
        self.data.guard_text = describe_guard(outcome.forgetting_guard, published=state is JobState.SUCCEEDED)
        self.data.show_decision = True
        self._data.reload_bundle()  # a rejected version is in the bundle's history too: accepting it needs it listed
        if outcome.is_rejected:
            self.data.accept_text, self.data.reject_text = f"Accept version {outcome.new_version} anyway", "Keep the current version"
            return
        self.data.accept_text, self.data.reject_text = f"Keep version {outcome.new_version}", f"Reject it (back to {outcome.previous_version})"
        self._drop_learned_organs()
        self._preview(outcome.previous_version, outcome.new_version)

    def _preview(self, old: str, new: str) -> None:
        """Segment the open CT with the new version (and the old one if needed), then compare them side by side."""
        if self.session.volume_node is None:
            return

        def compare(_version: str) -> None:
            self._compare.compare(old, new)

        def segment_new(_version: str | None = None) -> None:
            self._segment.segment(new, then=compare)

        if old in self.session.results:
            segment_new()
        else:
            self._segment.segment(old, then=segment_new)

    def _on_accept_clicked(self) -> None:
        self.data.show_decision = False
        outcome = self.session.last_learn
        if outcome is not None and outcome.is_rejected:
            # The rejected version is complete on disk: accepting it is a pointer change, not a second run.
            job = self.context.workflow.rollback_job(
                bundle=self.session.bundle_or_raise(), version=outcome.new_version, accept_forgetting=True,
                callbacks=JobCallbacks(on_finished=lambda result: self._on_accepted(result, outcome)),
            )
            self._status.start(job, title=f"Accepting version {outcome.new_version}", command="rollback")
        elif outcome is not None:
            self._status.show_message(f"Version {outcome.new_version} is the bundle's current version")

    def _on_accepted(self, result: JobResult, outcome: LearnOutcome) -> None:
        if result.state is JobState.SUCCEEDED:
            self._data.reload_bundle()
            self._drop_learned_organs()
            self._preview(outcome.previous_version, outcome.new_version)

    def _drop_learned_organs(self) -> None:
        """The new organs the bundle's current version now segments are new no more; after an adapt step, none."""
        known = set(self.session.bundle_or_raise().registry.names)
        self.session.set_new_organs([organ for organ in self.session.new_organs if organ.name not in known])

    def _on_reject_clicked(self) -> None:
        self.data.show_decision = False
        outcome = self.session.last_learn
        if outcome is None or outcome.is_rejected:
            self._status.show_message("The bundle keeps its current version")
            return
        bundle = self.session.bundle_or_raise()
        job = self.context.workflow.rollback_job(bundle=bundle, version=outcome.previous_version,
                                                  callbacks=JobCallbacks(on_finished=self._on_rolled_back))
        self._status.start(job, title=f"Rolling back to {outcome.previous_version}", command="rollback")

    def _on_rolled_back(self, result: JobResult) -> None:
        if result.state is JobState.SUCCEEDED:
            self._data.reload_bundle()
            self._status.show_message(f"Rejected: the bundle is back at version {self.session.bundle.current}")

    def _on_new_organs_changed(self) -> None:
        self.data.organ_names = ", ".join(organ.name for organ in self.session.new_organs)

    def _on_site_contours_changed(self) -> None:
        self.data.can_adapt = bool(self.session.site_contours)
