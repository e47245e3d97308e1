"""What every step on a bundle's current version shares (``ciss learn`` and ``ciss adapt``): the parent it
starts from, the run's fingerprint and checkpoint folder, the verdict of a run that had finished when stopped,
the whole-CT labels the forgetting guard compares, and the end of a step: its version written as published or
rejected, its checkpoints removed, the error of a rejected one."""
from __future__ import annotations

import contextlib
import dataclasses
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ..api.bundle_record import STATUS_PUBLISHED, STATUS_REJECTED
from ..api.events import ForgettingGuard
from ..api.settings import parse_settings_or_raise, settings_record
from ..bundle import Bundle, BundleVersion
from ..errors import BundleError, ForgettingRejected
from ..events import EventSink
from ..forgetting_guard import GuardResult
from ..inference import sliding_window_outputs
from .finished_runs import version_written_by
from .loop_config import LoopConfig
from .run_record import history_entry, training_record

if TYPE_CHECKING:
    from .cases import PreparedCase
    from .loop import LoopResult


@dataclasses.dataclass(frozen=True, kw_only=True)
class StepRequest:
    """What ``ciss learn`` and ``ciss adapt`` both take: the bundle, the step's CTs and labels, the schedule,
    the strategy with its ``--setting`` texts, and how the forgetting guard and a resume behave."""

    bundle: Path
    images: Sequence[Path]
    labels: Sequence[Path]
    loop: LoopConfig
    strategy: str
    strategy_settings: dict[str, str] = dataclasses.field(default_factory=dict)  # NAME → text of --setting NAME=VALUE
    batch_size: int = 2
    seed: int = 0
    fixed_threshold: float | None = None
    guard_threshold: float = 0.9
    accept_forgetting: bool = False
    resume: bool = False
    parent_version: str | None = None

    def resolved_strategy(self) -> dict[str, Any]:
        """The strategy and every setting it runs with, defaults filled in: part of the run's fingerprint, so a run
        resumed after a release changed a default starts afresh instead of finishing under other settings."""
        return settings_record(self.strategy, parse_settings_or_raise(self.strategy, self.strategy_settings))


def learn_work_dir(bundle: Path) -> Path:
    """Checkpoints of unfinished steps: inside the bundle root but outside ``versions/``, one folder a run."""
    return Path(bundle) / ".learn-work"


def learn_run_dir(bundle: Path, fingerprint: str) -> Path:
    """The checkpoint folder of one run, keyed by its fingerprint (parent, data, settings): two runs never
    share a checkpoint, and ``--resume`` with the same arguments finds its own."""
    return learn_work_dir(bundle) / fingerprint[:16]


def remove_run_checkpoints(bundle: Path, fingerprint: str) -> None:
    """A finished run's checkpoint folder, and the work folder when no other run left one to resume."""
    shutil.rmtree(learn_run_dir(bundle, fingerprint), ignore_errors=True)
    with contextlib.suppress(OSError):
        learn_work_dir(bundle).rmdir()


def parent_or_raise(bundle: Bundle, requested: str | None, *, action: str = "learn") -> BundleVersion:
    """The current version, which a step must start from (``requested`` may only name it)."""
    current = bundle.current_version
    if requested is not None and requested != current:
        status = bundle.load(requested).status
        why = "was rejected by the forgetting guard" if status == STATUS_REJECTED else f"is not the current version ({current})"
        raise BundleError(f"cannot {action} from version {requested}: it {why}", f"{action} from the current version, or make {requested} current first with `ciss rollback --to {requested}`")
    parent = bundle.load(current)
    if parent.status == STATUS_REJECTED:
        raise BundleError(f"the current version {current} is marked rejected", "roll back to a published version first")
    return parent


def rejected(version: str, parent_version: str, guard: GuardResult, *, action: str = "Learn", advice: str = "") -> ForgettingRejected:
    """The error of a rejected step; ``advice`` adds what measured to help to the hint's "other settings"."""
    return ForgettingRejected(
        f"version {version} was saved as rejected: old organs changed on the step's CTs ({', '.join(f'{n} {guard.agreement[n]:.2f}' for n in guard.failing_organs)} < {guard.threshold})",
        f"version {parent_version} stays current. {action} again (more iterations, other settings{advice}), or pass --accept-forgetting to accept the drop knowingly",
    )


def whole_ct_labels(network: torch.nn.Module, cases: Sequence[PreparedCase], *, patch_size: Sequence[int], device: torch.device) -> list[torch.Tensor]:
    """The network's label of every voxel of each whole CT (sliding window), without features: a step's guard takes the
    same labels from its closing pass (prototype_pass.prototypes_and_predictions)."""
    return [
        sliding_window_outputs(network, case.image[None], patch_size=patch_size, device=device)[0][0].argmax(0).to(torch.uint8)
        for case in cases
    ]


def publish_or_reject(
    *, bundle_root: Path, version: str, parent_version: str, fingerprint: str, guard: GuardResult, accept_forgetting: bool, sink: EventSink,
    write: Callable[[str], BundleVersion], cts: Sequence[Path], action: str = "Learn", advice: str = "",
) -> BundleVersion:
    """The end of every step: the guard's verdict announced, ``write(status)`` saves the version as published (the
    guard passed, or the drop was accepted) or rejected (kept, to be accepted later without training again), the
    run's checkpoints go, and a rejected version raises ``ForgettingRejected`` (exit 6)."""
    verdict = ForgettingGuard(version=version, **guard.to_json())
    sink.emit(verdict)
    if verdict.known_absent:
        sink.log(verdict.not_compared([str(ct) for ct in cts]))
    status = STATUS_PUBLISHED if guard.passed or accept_forgetting else STATUS_REJECTED
    written = write(status)
    remove_run_checkpoints(bundle_root, fingerprint)
    if status == STATUS_REJECTED:
        raise rejected(written.version, parent_version, guard, action=action, advice=advice)
    return written


def finished_step(
    bundle: Bundle, fingerprint_of: Callable[[str | None], str], sink: EventSink, *, action: str = "Learn", advice: str = "",
) -> tuple[BundleVersion, GuardResult] | None:
    """``--resume`` of a step that had written its version when it was stopped: that version and its verdict,
    its checkpoints removed (finished_runs.py); None when the step is still to be done. ``fingerprint_of(parent)``
    is the run's fingerprint had it started from that parent."""
    written = version_written_by(bundle, fingerprint_of)
    if written is None:
        return None
    remove_run_checkpoints(bundle.root, fingerprint_of(written.settings.parent_version))
    sink.log(f"this step had already written version {written.version} when it was stopped")
    recorded = written.settings.forgetting_guard
    guard = GuardResult.from_json(recorded)
    if written.status == STATUS_REJECTED:
        raise rejected(written.version, written.settings.parent_version, guard, action=action, advice=advice)
    return written, guard


def step_record(
    request: StepRequest, *, parent: BundleVersion, version: str, step: int, kind: str, organs: Sequence[str], data: Sequence[str],
    organs_per_case: Sequence[Sequence[str]], status: str,
    strategy: dict[str, Any], guard: GuardResult, fingerprint: str, result: LoopResult, metrics: dict[str, float] | None = None,
    training: dict[str, Any] | None = None, **particular: Any,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """What every step writes: its settings over the parent's (``training`` adds to its training record), and its
    history entry (run_record.py) with the strategy's settings, the guard's verdict, the status and what is
    ``particular`` to the kind of step."""
    settings = {
        **parent.settings.to_json(),
        "status": status,
        "strategy": strategy,
        "training": training_record(request.loop, batch_size=request.batch_size, seed=request.seed, fingerprint=fingerprint, **(training or {})),
        "forgetting_guard": guard.to_json(),
        "parent_version": parent.version,
    }
    entry = history_entry(
        version=version, step=step, kind=kind, organs=organs, data=data, organs_per_case=organs_per_case, strategy=strategy["name"], parent_version=parent.version,
        result=result, metrics=metrics, strategy_settings=strategy, forgetting_guard=guard.to_json(), status=status, **particular,
    )
    return settings, entry
