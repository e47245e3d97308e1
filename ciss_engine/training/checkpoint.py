"""Resumable checkpoints: weights, optimizer state and the iteration, tied to one run by a fingerprint."""
from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import torch

from ..atomic import write_atomic
from ..errors import InputError

CHECKPOINT_NAME = "checkpoint.pt"


def save_checkpoint(work_dir: Path, *, network: torch.nn.Module, optimizer: torch.optim.Optimizer, iteration: int, fingerprint: str) -> Path:
    state = {"model": network.state_dict(), "optimizer": optimizer.state_dict(), "iteration": iteration, "fingerprint": fingerprint}
    return write_atomic(Path(work_dir) / CHECKPOINT_NAME, lambda tmp: torch.save(state, tmp))


def load_checkpoint_or_raise(work_dir: Path, *, fingerprint: str) -> dict[str, Any]:
    """The checkpoint of this very run (same data and settings), loaded without executing code."""
    path = Path(work_dir) / CHECKPOINT_NAME
    if not path.is_file():
        raise InputError(f"no checkpoint to resume in {work_dir}", "run without --resume to start from the beginning")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError) as error:
        raise InputError(f"cannot read checkpoint {path}: {error}", f"delete {path} and run without --resume") from error
    if state.get("fingerprint") != fingerprint:
        raise InputError(
            f"checkpoint {path} belongs to a run with other data or settings",
            f"resume with exactly the same arguments, or delete {work_dir} and run without --resume",
        )
    return state
