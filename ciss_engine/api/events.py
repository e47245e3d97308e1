"""Events of a run, typed: the JSON lines that ``ciss … --progress jsonl`` and ``ciss-studio`` write on stdout.

Each kind is an ``EventKind`` and each payload a frozen dataclass whose fields are the line's keys, in the
order they are written. The engine builds these objects and ``EventSink`` writes their ``to_json()``; the front
ends read the lines back with ``parse_event``. A renamed kind or key therefore fails in a test or a type check
instead of silently in a front end. Lines of a newer engine still parse: an unknown kind becomes an
``UnknownEvent`` and unknown keys land in ``extra``; both are logged.
"""
from __future__ import annotations

import dataclasses
import enum
import json
import logging
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

EVENT_KEY = "event"  # the key that names the kind on every line
logger = logging.getLogger(__name__)


class EventKind(enum.StrEnum):
    PROGRESS = "progress"
    METRIC = "metric"
    WARNING = "warning"
    ERROR = "error"
    DONE = "done"
    CHECKPOINT_SAVED = "checkpoint_saved"
    FORGETTING_GUARD = "forgetting_guard"
    GRADIENT_SHARES = "gradient_shares"
    # ciss-studio's own events (its server log, read by the studio tests)
    SERVER_STARTED = "server_started"
    JOB_STARTED = "job_started"
    JOB_FINISHED = "job_finished"


def optional() -> Any:
    """A key written only when its value is not None: an extra that some runs of the emitter add."""
    return dataclasses.field(default=None, metadata={"omit_none": True})


# Every payload: immutable, and built with keywords, so that a renamed key fails where the event is made.
typed_payload = dataclasses.dataclass(frozen=True, kw_only=True)


@typed_payload
class Event:
    """One line: ``{"event": KIND, <fields in order>}``. ``extra``: keys this version does not know (read only)."""

    KIND: ClassVar[str]
    extra: Mapping[str, Any] = dataclasses.field(default_factory=dict, compare=False, repr=False)

    @property
    def kind(self) -> str:
        return self.KIND

    def payload(self) -> dict[str, Any]:
        """The keys after ``event``, as written (extras of a newer engine last)."""
        keys = {
            field.name: getattr(self, field.name)
            for field in dataclasses.fields(self)
            if field.name != "extra" and not (field.metadata.get("omit_none") and getattr(self, field.name) is None)
        }
        return {**keys, **self.extra}

    def to_json(self) -> dict[str, Any]:
        return {EVENT_KEY: str(self.kind), **self.payload()}

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> Event:
        """The event of ``payload`` (the line without ``event``); unknown keys go to ``extra``."""
        names = {field.name for field in dataclasses.fields(cls)} - {"extra"}
        known = {key: value for key, value in payload.items() if key in names}
        return cls(**known, extra={key: value for key, value in payload.items() if key not in names})


@typed_payload
class UnknownEvent(Event):
    """A kind this version does not know (a newer engine), or a known kind whose required keys are missing."""

    KIND = "unknown"
    name: str

    @property
    def kind(self) -> str:
        return self.name


@typed_payload
class Progress(Event):
    """``step`` of ``total`` in ``stage``; training adds its loss and learning rate."""

    KIND = EventKind.PROGRESS
    stage: str
    step: int
    total: int
    eta_s: float | None = None  # always written; null until the stage has a rate
    loss: float | None = optional()
    lr: float | None = optional()

    @property
    def fraction(self) -> float:
        return min(1.0, self.step / self.total) if self.total > 0 else 0.0


@typed_payload
class Metric(Event):
    """A measurement; its keys depend on ``stage`` (the subclasses below)."""

    KIND = EventKind.METRIC
    stage: str


@typed_payload
class TrainMetric(Metric):
    stage: str = "train"
    seconds_per_iteration: float
    peak_memory_mb: float | None


@typed_payload
class EvaluateMetric(Metric):
    stage: str = "evaluate"
    case: str
    scores: dict[str, Any]


@typed_payload
class ProtocolMetric(Metric):
    stage: str = "protocol"
    seed: int
    strategy: str
    old: float | None
    new: float | None
    all: float | None


@typed_payload
class WarningEvent(Event):
    """An input that can be used but deserves a look."""

    KIND = EventKind.WARNING
    message: str
    hint: str
    file: str | None = optional()


@typed_payload
class ErrorEvent(Event):
    """Why a run failed; ``log`` names the crash log of an unexpected error."""

    KIND = EventKind.ERROR
    message: str
    hint: str = ""
    exit_code: int | None = optional()
    log: str | None = optional()


@typed_payload
class CheckpointSaved(Event):
    """A resumable checkpoint of ``stage`` at ``iteration`` is in ``path`` (``--resume`` continues from it)."""

    KIND = EventKind.CHECKPOINT_SAVED
    stage: str
    iteration: int
    path: str


@typed_payload
class ForgettingGuard(Event):
    """The guard's verdict on ``version``: agreement per old organ (None: the old version did not find it)."""

    KIND = EventKind.FORGETTING_GUARD
    version: str
    passed: bool
    threshold: float
    agreement: dict[str, float | None]
    failing_organs: list[str]
    postprocessed: list[str] = dataclasses.field(default_factory=list)  # organs compared as kept in large pieces; empty in older lines
    # organ: the step's CTs (0-based, in the order given) it was not compared on, its earlier training labels holding none there
    known_absent: dict[str, list[int]] = dataclasses.field(default_factory=dict)

    def not_compared(self, cts: Sequence[str] | None = None) -> str:
        """The organs left out and where, in words (``cts``: the step's CT names; else numbered from 1); empty when none was."""
        where = "; ".join(f"{organ} on {', '.join(cts[i] if cts else f'CT {i + 1}' for i in indices)}" for organ, indices in self.known_absent.items())
        return f"Not compared where the model's training labels held none of the organ: {where}." if where else ""


@typed_payload
class GradientShares(Event):
    """Each loss term's share of the gradient on the shared weights (a term that dominates is visible)."""

    KIND = EventKind.GRADIENT_SHARES
    stage: str
    iteration: int
    shares: dict[str, float]


@typed_payload
class Done(Event):
    """A run's result; its keys depend on the command (the subclasses below, ``DONE_BY_COMMAND``)."""

    KIND = EventKind.DONE


@typed_payload
class TrainDone(Done):
    bundle: str
    version: str
    organs: list[str]


@typed_payload
class LearnDone(TrainDone):
    forgetting_guard: dict[str, Any]


@typed_payload
class AdaptDone(LearnDone):
    """A domain step: the guard on the organs without labels, each labelled organ's DSC against the step's labels
    before and after (``{"before": …, "after": …}``), and the replay vectors per class the version stores."""

    labelled_dsc: dict[str, dict[str, float | None]]
    replay_buffer: dict[str, int]


@typed_payload
class ImportDone(TrainDone):
    source: str


@typed_payload
class RollbackDone(Done):
    bundle: str
    version: str
    previous: str


@typed_payload
class VerifyDone(Done):
    bundle: str
    intact: bool
    versions: list[dict[str, Any]]


@typed_payload
class SegmentDone(Done):
    output: str
    version: str
    volumes_ml: dict[str, float]
    files: list[str]


@typed_payload
class ExportDone(Done):
    outputs: dict[str, str]
    series_uid: str
    frame_of_reference_uid: str


@typed_payload
class EvaluateDone(Done):
    output: str
    mean_dsc: float | None
    per_organ: dict[str, Any]


@typed_payload
class ExportModelDone(Done):
    output: str
    version: str
    organs: list[str]


@typed_payload
class ProtocolDone(Done):
    output: str
    files: list[str]


@typed_payload
class DemoDone(Done):
    output: str
    versions: Any
    forgetting_guard: dict[str, Any] | None


@typed_payload
class PhantomDone(Done):
    output: str
    cases: list[str]
    seeds: list[int]


@typed_payload
class ServerStarted(Event):
    """The studio listens: ``url`` (with the access token when one is required) is what to open."""

    KIND = EventKind.SERVER_STARTED
    url: str
    host: str
    port: int
    token_required: bool


@typed_payload
class JobStarted(Event):
    """The studio started an engine job (its server log; the browser tests wait for it)."""

    KIND = EventKind.JOB_STARTED
    command: str
    title: str


@typed_payload
class JobFinished(Event):
    """How a studio job ended: ``state`` is the ``JobState`` name in lower case."""

    KIND = EventKind.JOB_FINISHED
    command: str
    state: str
    message: str
    exit_code: int | None


EVENT_TYPES: dict[str, type[Event]] = {
    cls.KIND: cls for cls in (Progress, Metric, WarningEvent, ErrorEvent, CheckpointSaved, ForgettingGuard, GradientShares, Done,
                              ServerStarted, JobStarted, JobFinished)
}
METRIC_BY_STAGE: dict[str, type[Metric]] = {"train": TrainMetric, "evaluate": EvaluateMetric, "protocol": ProtocolMetric}
# The done payload of each ``ciss`` command (the sub-command's name, as on the command line).
DONE_BY_COMMAND: dict[str, type[Done]] = {
    "train": TrainDone, "learn": LearnDone, "adapt": AdaptDone, "import": ImportDone, "rollback": RollbackDone, "verify": VerifyDone,
    "segment": SegmentDone, "export": ExportDone, "evaluate": EvaluateDone, "export-model": ExportModelDone,
    "protocol": ProtocolDone, "demo": DemoDone, "phantom": PhantomDone,
}


def event_type(data: Mapping[str, Any], command: str | None = None) -> type[Event] | None:
    """The dataclass of a decoded line; ``command`` (the ``ciss`` sub-command) picks the ``done`` payload."""
    kind = data.get(EVENT_KEY)
    if kind == EventKind.DONE:
        return DONE_BY_COMMAND.get(command or "", Done)
    if kind == EventKind.METRIC:
        return METRIC_BY_STAGE.get(str(data.get("stage")), Metric)
    return EVENT_TYPES.get(kind) if isinstance(kind, str) else None


def event_from_json(data: Mapping[str, Any], command: str | None = None) -> Event:
    """The typed event of a decoded line; what this version does not know is kept and logged, not lost."""
    payload = {key: value for key, value in data.items() if key != EVENT_KEY}
    cls = event_type(data, command)
    if cls is None:
        logger.info("event of unknown kind %r (a newer engine?): kept as UnknownEvent", data.get(EVENT_KEY))
        return UnknownEvent(name=str(data.get(EVENT_KEY)), extra=payload)
    try:
        event = cls.from_payload(payload)
    except TypeError:  # a required key is missing
        logger.warning("%r event without the keys of %s: %s; kept as UnknownEvent", data[EVENT_KEY], cls.__name__, sorted(payload))
        return UnknownEvent(name=str(data[EVENT_KEY]), extra=payload)
    if event.extra and cls is not Done:  # a Done of an unnamed command carries all its keys as extras
        logger.info("%s event with keys this version does not know (a newer engine?): %s", event.kind, sorted(event.extra))
    return event


def parse_event(line: str, command: str | None = None) -> Event | None:
    """The event on ``line``, or None when the line is no JSON event (then it is a log line)."""
    try:
        data = json.loads(line)
    except ValueError:
        return None
    if not isinstance(data, dict) or not isinstance(data.get(EVENT_KEY), str):
        return None
    return event_from_json(data, command)
