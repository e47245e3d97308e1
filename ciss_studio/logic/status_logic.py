"""Runs one engine job at a time on the server's event loop and shows its progress, outcome and errors.

``EngineJob.poll`` is called from an asyncio task every ``POLL_S``: events arrive in the loop's thread
(never from the reader threads), so results enter the MRML scene safely. Jobs run on the server, not in
the page: a closed or reconnected browser tab changes nothing; the next page shows the same state.
"""
from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Callable
from functools import wraps
from typing import Any

from trame_server import Server
from trame_server.utils.asynchronous import create_task

from ciss_engine.api.events import Done, Event, JobFinished, JobStarted, Progress
from ciss_engine.errors import error_text
from CISSegmentationLib.errors import CissError, InputError
from CISSegmentationLib.job_runner import EngineJob, JobCallbacks, JobResult, JobState, describe_event, describe_progress

from ..ui.status_ui import StatusState, StatusUI
from .context import StudioContext
from .panel_logic import PanelLogic

POLL_S = 0.1
LOG_LINES = 80
logger = logging.getLogger(__name__)


def internal_error(error: Exception) -> CissError:
    return CissError(f"internal error of the studio: {error!r}", "report this with the studio's log (the terminal that runs `ciss-studio`)")


class StatusLogic(PanelLogic[StatusState]):
    """The one engine job of the session; other panels start jobs here and report errors here."""

    def __init__(self, server: Server, context: StudioContext) -> None:
        super().__init__(server, context, StatusState)
        self._job: EngineJob | None = None
        self._log: collections.deque[str] = collections.deque(maxlen=LOG_LINES)

    def set_ui(self, ui: StatusUI) -> None:
        ui.cancel_clicked.connect(self._on_cancel_clicked)
        ui.dismiss_clicked.connect(self._on_dismiss_clicked)

    @property
    def is_busy(self) -> bool:
        return self._job is not None and self._job.is_running

    def guarded(self, handler: Callable[..., Any]) -> Callable[..., None]:
        """``handler`` with its errors shown in the page (message, hint) instead of raised into the server."""
        @wraps(handler)
        def run(*args: Any) -> None:
            try:
                handler(*args)
            except CissError as error:
                self.show_error(error)
            except Exception as error:  # a bug: say so in the page, keep the session alive
                logger.exception("studio action failed")
                self.show_error(internal_error(error))
        return run

    def show_error(self, error: CissError, log_tail: str = "") -> None:
        self.data.error, self.data.hint = error.message, error.hint
        self.data.error_log = log_tail or getattr(error, "log_tail", "")
        self.data.message = ""
        if self.context.sink is not None:
            self.context.sink.log(error_text(error.message, error.hint))

    def show_message(self, text: str) -> None:
        self.data.message, self.data.error, self.data.hint, self.data.error_log = text, "", "", ""

    def start(self, job: EngineJob, *, title: str, command: str) -> None:
        """Start ``job`` (made by ``WorkflowLogic``, result handler included) and poll it until it ends."""
        if self.is_busy:
            raise InputError(f"the engine is busy: {self.data.title}", "wait until it finishes, or click Cancel")
        bring_in = job.callbacks.on_finished

        def on_finished(result: JobResult) -> None:
            try:
                if bring_in is not None:
                    bring_in(result)  # the result enters the scene first; this may start the next job
            finally:
                self._on_job_finished(command, title, result)

        job.callbacks = JobCallbacks(on_progress=self._on_progress, on_event=self._on_event, on_log=self._on_log, on_finished=on_finished)
        self._log.clear()
        self._log.append(f"--- {title}: {' '.join(job.command[1:])}")
        job.start()
        self._job = job
        self.data.is_busy, self.data.title, self.data.progress, self.data.detail = True, title, 0.0, "starting the engine"
        self.data.log = "\n".join(self._log)
        self.show_message("")
        if self.context.sink is not None:
            self.context.sink.emit(JobStarted(command=command, title=title))
        create_task(self._poll_until_done(job))

    def shutdown(self, grace_s: float = 20.0) -> None:
        """The server stops: cancel a running job (the engine leaves a checkpoint, never a half-written bundle)."""
        if self.is_busy:
            self._job.cancel(grace_s=grace_s)
            self._job.wait(timeout_s=grace_s + 5)

    async def _poll_until_done(self, job: EngineJob) -> None:
        while True:
            with self.state:
                running = self._poll(job)
            if not running:
                return
            await asyncio.sleep(POLL_S)

    def _poll(self, job: EngineJob) -> bool:
        try:
            running = job.poll()
        except CissError as error:  # bringing the result into the scene failed
            self.show_error(error)
            running = False
        except Exception as error:  # a bug must not leave the page busy forever
            logger.exception("engine job handler failed")
            self.show_error(internal_error(error), "\n".join(self._log))
            running = False
        if not running and self._job is job:
            self._job = None
            self.data.is_busy = False
        return running

    def _on_progress(self, progress: Progress) -> None:
        self.data.progress = round(100.0 * progress.fraction, 1)
        self.data.detail = describe_progress(progress)

    def _on_event(self, event: Event) -> None:
        if not isinstance(event, (Progress, Done)):  # errors, metrics, checkpoints, the guard: one log line each
            self._on_log(describe_event(event))

    def _on_log(self, line: str) -> None:
        self._log.append(line)
        self.data.log = "\n".join(self._log)

    def _on_job_finished(self, command: str, title: str, result: JobResult) -> None:
        if result.state is JobState.FAILED:  # the log: the command, the engine's log lines and its events
            self.show_error(CissError(result.message, result.hint), "\n".join(self._log))
        elif result.state is JobState.CANCELLED:
            self.show_message(f"{title}: cancelled; the bundle is unchanged")
        if self.context.sink is not None:
            self.context.sink.emit(JobFinished(command=command, state=result.state.name.lower(), message=result.message,
                                               exit_code=result.exit_code))
            self.context.sink.log(f"{title}: {result.state.value}")

    def _on_cancel_clicked(self) -> None:
        if self.is_busy:
            self._job.cancel()
            self.data.detail = "cancelling: the engine saves a checkpoint and stops"

    def _on_dismiss_clicked(self) -> None:
        self.data.error, self.data.hint, self.data.error_log = "", "", ""
