"""What every training run records in the version it writes, base model or step: the run's fingerprint, its
training settings and its history entry. One place, so ``ciss info``, ``--resume`` and the studio read the
same fields from every kind of version (``api/bundle_record.StepRecord`` reads them back)."""
from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .loop_config import LoopConfig

if TYPE_CHECKING:  # the record is written without torch's import cost where only its fields are read
    from .loop import LoopResult

RUN_FINGERPRINT = "run_fingerprint"


def run_fingerprint(fields: dict[str, Any]) -> str:
    """SHA-256 of a run's JSON-ready defining fields (parent, data, settings): ``--resume`` finds its checkpoint
    and its finished version by it."""
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()


def training_record(loop: LoopConfig, *, batch_size: int, seed: int, fingerprint: str, **particular: Any) -> dict[str, Any]:
    """The ``training`` settings of a version: the schedule, batch, seed, the run's fingerprint and what is particular to its kind."""
    return {**dataclasses.asdict(loop), "batch_size": batch_size, "seed": seed, **particular, RUN_FINGERPRINT: fingerprint}


def history_entry(
    *, version: str, step: int, kind: str, organs: Sequence[str], data: Sequence[str], organs_per_case: Sequence[Sequence[str]], strategy: str,
    parent_version: str | None, result: LoopResult, metrics: dict[str, float] | None = None, **particular: Any,
) -> dict[str, Any]:
    """One history entry: which version, what it learned from which data (each case's hash and the organs its label
    map holds: a later step's guard reads which organs a CT was taught to lack, forgetting_guard.organs_known_absent)
    with which strategy, its last losses and cost (``metrics`` adds to seconds an iteration and peak memory), and what
    is particular to its kind."""
    return {
        "version": version,
        "step": step,
        "kind": kind,
        "organs": list(organs),
        "data_sha256": list(data),
        "organs_per_case": [list(names) for names in organs_per_case],
        "iterations": result.iterations,
        "strategy": strategy,
        **particular,
        "losses": result.last_losses,
        "metrics": {"seconds_per_iteration": result.seconds_per_iteration, "peak_memory_mb": result.peak_memory_mb, **(metrics or {})},
        "parent_version": parent_version,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
