"""Runs one engine command as a child process and turns its JSON-line events into callbacks.

Reader threads only fill a queue; ``poll()`` delivers events in the caller's thread (a QTimer in
Slicer, the event loop in the studio), so the GUI never blocks and never touches Qt from a thread.
State comes from structured events and the exit code, never from free text. Cancel sends SIGTERM
(the engine stops at the next iteration and leaves a resumable checkpoint); after a grace period
the whole process tree is killed, because killing the launcher alone leaves workers running.
"""
from __future__ import annotations

import collections
import dataclasses
import enum
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from ciss_engine.api.events import Done, ErrorEvent, Event, ForgettingGuard, Progress, parse_event
from ciss_engine.errors import ExitCode, error_text

from .errors import EngineFailedError, EngineNotInstalledError

if TYPE_CHECKING:
    import psutil

LOG_TAIL_LINES = 200
PIPE_DRAIN_S = 5.0
E = TypeVar("E", bound=Event)


class JobState(enum.Enum):
    NOT_STARTED = "not started"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    REJECTED = "rejected by the forgetting guard"


def describe_progress(progress: Progress) -> str:
    """``train: 120/400, loss 0.412, about 1 min 35 s left``: the progress line of both front ends."""
    parts = [f"{progress.stage}: {progress.step}/{progress.total}"]
    if progress.loss is not None:
        parts.append(f"loss {progress.loss:.3f}")
    if progress.eta_s is not None:
        parts.append(f"about {int(progress.eta_s // 60)} min {int(progress.eta_s % 60)} s left")
    return ", ".join(parts)


def describe_event(event: Event) -> str:
    """An event as one log line: ``checkpoint_saved: stage=train, iteration=100, path=…``."""
    return f"{event.kind}: " + ", ".join(f"{key}={value}" for key, value in event.payload().items())


def describe_guard(guard: ForgettingGuard | None, *, published: bool) -> str:
    """The guard line of both front ends; an old organ the old version never found has no agreement (None).

    ``Forgetting guard passed: agreement with the old version on the old organs: spleen 0.97, … (threshold 0.9).``"""
    if not guard:
        return "The engine reported no forgetting-guard result."
    if guard.passed:
        verdict = "passed"
    elif published:
        verdict = "failed, and the new version was published because you accepted the forgetting"
    else:
        verdict = "REJECTED the new version"
    scores = ", ".join(f"{organ} {value:.2f}" if value is not None else f"{organ} (not found by the old version)" for organ, value in guard.agreement.items())
    threshold = f" (threshold {guard.threshold})" if guard.threshold is not None else ""
    return " ".join(filter(None, [f"Forgetting guard {verdict}: agreement with the old version on the old organs: {scores or 'not reported'}{threshold}.",
                                  guard.not_compared()]))


def error_lines(error: ErrorEvent) -> list[str]:
    """An ``error`` event as the engine prints it on a terminal (in jsonl mode it is only an event, not on stderr)."""
    return error_text(error.message or "no message", error.hint or "").splitlines()


@dataclasses.dataclass(frozen=True)
class JobResult:
    """How a run ended: state, exit code, the ``done``/``error`` events and the last log lines.

    ``log_tail`` holds stderr and non-event stdout lines, with the engine's error event written in
    among them (``error: …`` / ``  hint: …``), so a failure's details are never empty.
    """

    state: JobState
    exit_code: int | None
    done: Done | None
    error: ErrorEvent | None
    events: tuple[Event, ...]
    log_tail: str

    @property
    def message(self) -> str:
        if self.error and self.error.message:
            return self.error.message
        if self.state is JobState.FAILED:
            return _crash_message(self.exit_code)
        return self.state.value

    @property
    def hint(self) -> str:
        if self.error and self.error.hint:
            return self.error.hint
        if self.state is JobState.FAILED:
            return "the engine's log (below) says what went wrong; run the same command in a terminal to reproduce it"
        return ""

    def last_event(self, kind: type[E]) -> E | None:
        """The last event of type ``kind`` (e.g. ``ForgettingGuard``)."""
        return next((e for e in reversed(self.events) if isinstance(e, kind)), None)

    def to_error(self) -> EngineFailedError:
        """The outcome as an error to show: message, hint, and the log with the engine's error report."""
        return EngineFailedError(self.message, self.hint, self.log_tail)


def _crash_message(exit_code: int | None) -> str:
    if exit_code is not None and exit_code < 0:
        try:
            name = signal.Signals(-exit_code).name
        except ValueError:  # a signal number this platform has no name for
            name = str(-exit_code)
        reason = " (out of memory?)" if name == "SIGKILL" else ""
        return f"the engine crashed: killed by {name}{reason}"
    return f"the engine stopped with exit code {exit_code} and no error message"


@dataclasses.dataclass
class JobCallbacks:
    """What a front end wants to hear; every callback runs inside ``EngineJob.poll``."""

    on_progress: Callable[[Progress], None] | None = None
    on_event: Callable[[Event], None] | None = None
    on_log: Callable[[str], None] | None = None
    on_finished: Callable[[JobResult], None] | None = None


class EngineJob:
    """One run of ``command``; start it, then call ``poll()`` regularly or ``wait()``.

    >>> job = EngineJob([python, "-m", "ciss_engine", "segment", ..., "--progress", "jsonl"], callbacks=JobCallbacks(on_progress=print))
    >>> job.start(); result = job.wait()
    """

    def __init__(self, command: Sequence[str], *, env: dict[str, str] | None = None, cwd: str | None = None,
                 callbacks: JobCallbacks | None = None, cancel_grace_s: float = 10.0, engine_command: str | None = None) -> None:
        self.command = [str(part) for part in command]
        self.engine_command = engine_command  # the ``ciss`` sub-command: it decides the keys of the done event
        self.env = env
        self.cwd = cwd
        self.callbacks = callbacks or JobCallbacks()
        self.cancel_grace_s = cancel_grace_s
        self.state = JobState.NOT_STARTED
        self.result: JobResult | None = None
        self._process: subprocess.Popen[str] | None = None
        self._queue: queue.Queue[tuple[str, Any]] = queue.Queue()
        self._threads: list[threading.Thread] = []
        self._events: list[Event] = []
        self._log_tail: collections.deque[str] = collections.deque(maxlen=LOG_TAIL_LINES)
        self._cancel_deadline: float | None = None
        self._descendants: dict[int, psutil.Process] = {}  # psutil is imported on cancel: it arrives with the engine
        self._exited_at: float | None = None

    @property
    def is_running(self) -> bool:
        return self.state is JobState.RUNNING

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def start(self) -> EngineJob:
        """Start the process; a missing interpreter is reported as an engine that is not installed."""
        flags = subprocess.CREATE_NO_WINDOW if sys.platform == "win32" else 0
        try:
            self._process = subprocess.Popen(
                self.command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                encoding="utf-8", errors="replace", bufsize=1, env=self.env, cwd=self.cwd, creationflags=flags,
            )
        except OSError as error:
            raise EngineNotInstalledError(
                f"cannot start the engine ({self.command[0]}): {error.strerror}",
                "install the engine (CISSegmentation → Install) or set CISS_ENGINE_PYTHON to a Python that has it",
            ) from error
        self.state = JobState.RUNNING
        for stream, kind in ((self._process.stdout, "stdout"), (self._process.stderr, "stderr")):
            thread = threading.Thread(target=self._read, args=(stream, kind), daemon=True, name=f"ciss-{kind}")
            thread.start()
            self._threads.append(thread)
        return self

    def _read(self, stream, kind: str) -> None:
        for line in stream:
            self._queue.put((kind, line.rstrip("\r\n")))
        stream.close()

    def poll(self) -> bool:
        """Deliver what arrived; escalate a pending cancel; finish when the process is gone. True while running."""
        if self.state is not JobState.RUNNING:
            return False
        self._deliver_queued()
        if self._cancel_deadline is not None:
            self._escalate_cancel()
        if self._process.poll() is not None:
            self._exited_at = self._exited_at or time.monotonic()
            # A grandchild that inherited the pipes can keep them open after the engine exits.
            if not any(t.is_alive() for t in self._threads) or time.monotonic() - self._exited_at > PIPE_DRAIN_S:
                self._deliver_queued()
                self._finish()
                return False
        return True

    def wait(self, timeout_s: float | None = None, interval_s: float = 0.05) -> JobResult:
        """Poll until the process ends (tests, scripts and the headless runner)."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while self.poll():
            if deadline is not None and time.monotonic() > deadline:
                self.cancel(grace_s=0)
                deadline = None
            time.sleep(interval_s)
        assert self.result is not None
        return self.result

    def cancel(self, grace_s: float | None = None) -> None:
        """Ask the engine to stop (SIGTERM); the tree is killed if it is still alive after ``grace_s``."""
        if self.state is not JobState.RUNNING or self._cancel_deadline is not None:
            return
        self._remember_descendants()
        self._cancel_deadline = time.monotonic() + (self.cancel_grace_s if grace_s is None else grace_s)
        if self._process.poll() is None:
            self._process.terminate()

    def _remember_descendants(self) -> None:
        """Children are found through the parent, so record them while it lives (orphans get re-parented)."""
        import psutil

        try:
            for child in psutil.Process(self._process.pid).children(recursive=True):
                self._descendants[child.pid] = child
        except psutil.NoSuchProcess:
            pass

    def _escalate_cancel(self) -> None:
        if self._process.poll() is None:
            self._remember_descendants()
            if time.monotonic() < self._cancel_deadline:
                return
            # Through Popen, not psutil: Popen must reap its own child to learn the exit status.
            self._process.kill()
        self._kill_remembered()

    def _kill_remembered(self) -> None:
        """Kill the workers the engine started (they outlive it when it is killed or exits on SIGTERM)."""
        import psutil

        survivors = [p for p in self._descendants.values() if p.is_running()]
        for process in survivors:
            try:
                process.kill()
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(survivors, timeout=1)

    def _deliver_queued(self) -> None:
        while True:
            try:
                kind, line = self._queue.get_nowait()
            except queue.Empty:
                return
            event = parse_event(line, self.engine_command) if kind == "stdout" else None
            if event is None:
                self._log_tail.append(line)
                if self.callbacks.on_log:
                    self.callbacks.on_log(line)
                continue
            self._events.append(event)
            if isinstance(event, ErrorEvent):
                self._log_tail.extend(error_lines(event))
            if isinstance(event, Progress) and self.callbacks.on_progress:
                self.callbacks.on_progress(event)
            if self.callbacks.on_event:
                self.callbacks.on_event(event)

    def _finish(self) -> None:
        code = self._process.returncode
        if self._cancel_deadline is not None:
            self._kill_remembered()
        done = next((e for e in reversed(self._events) if isinstance(e, Done)), None)
        error = next((e for e in reversed(self._events) if isinstance(e, ErrorEvent)), None)
        if self._cancel_deadline is not None and code != ExitCode.OK:
            state = JobState.CANCELLED
        elif code == ExitCode.OK:
            state = JobState.SUCCEEDED
        elif code == ExitCode.FORGETTING_REJECTED:
            state = JobState.REJECTED
        elif code == ExitCode.CANCELLED:
            state = JobState.CANCELLED
        else:
            state = JobState.FAILED
        self.state = state
        self.result = JobResult(state, code, done, error, tuple(self._events), "\n".join(self._log_tail))
        if self.callbacks.on_finished:
            self.callbacks.on_finished(self.result)
