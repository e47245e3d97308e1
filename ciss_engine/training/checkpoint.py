"""Resumable checkpoints: weights, optimizer state, the iteration and any state a step changes every
iteration, tied to one run by a fingerprint."""
from __future__ import annotations

import dataclasses
import io
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from ..atomic import write_bytes_atomic
from ..errors import InputError

CHECKPOINT_NAME = "checkpoint.pt"


@dataclasses.dataclass(frozen=True)
class ExtraState:
    """State besides weights and optimizer that the loss changes every iteration (a step's running
    prototypes): saved with each checkpoint and restored on resume, or a resumed run would differ."""

    save: Callable[[], dict[str, torch.Tensor]]
    restore: Callable[[dict[str, torch.Tensor]], None]


def save_checkpoint(
    work_dir: Path, *, network: torch.nn.Module, optimizer: torch.optim.Optimizer, scheduler: torch.optim.lr_scheduler.LRScheduler, iteration: int,
    fingerprint: str, extra: dict[str, torch.Tensor] | None = None,
) -> Path:
    # Plain tensors only (MONAI's MetaTensor would not load with weights_only=True).
    plain = {name: tensor.detach().cpu().as_subclass(torch.Tensor) for name, tensor in (extra or {}).items()}
    state = {"model": network.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "iteration": iteration,
             "fingerprint": fingerprint, "extra": plain}
    buffer = io.BytesIO()  # serialised in memory: a full disk then fails in Python's write, as a clear OSError
    torch.save(state, buffer)
    return write_bytes_atomic(Path(work_dir) / CHECKPOINT_NAME, buffer.getvalue())


def load_checkpoint_or_raise(work_dir: Path, *, fingerprint: str) -> dict[str, Any] | None:
    """The checkpoint of this very run (same data and settings), loaded without executing code; None when
    the run left none (it was stopped before its first checkpoint: it starts over)."""
    path = Path(work_dir) / CHECKPOINT_NAME
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError) as error:
        raise InputError(f"cannot read checkpoint {path}: {error}", f"delete {path} and run without --resume") from error
    if "scheduler" not in state:
        raise InputError(f"checkpoint {path} was written by an older CISSegmentation, without its learning-rate schedule",
                         f"delete {work_dir} and run without --resume")
    if state.get("fingerprint") != fingerprint:
        raise InputError(
            f"checkpoint {path} belongs to a run with other data or settings",
            f"resume with exactly the same arguments, or delete {work_dir} and run without --resume",
        )
    return state
