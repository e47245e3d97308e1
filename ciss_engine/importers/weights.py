"""Reading another tool's weights without running code from them: what a checkpoint would import, found
without unpickling it, and how a state dict differs from the network it should fit."""
from __future__ import annotations

import io
import re

import torch


def unsafe_globals(data: bytes, error: Exception) -> list[str]:
    """The Python objects a checkpoint would import, found without unpickling it (torch's own scan, or its message
    for checkpoints in the legacy format that the scan does not read)."""
    try:
        found = torch.serialization.get_unsafe_globals_in_checkpoint(io.BytesIO(data))
    except Exception:  # legacy (non-zip) format
        found = []
    return found or re.findall(r"GLOBAL ([\w.]+)", str(error)) or ["an object that is not a tensor"]


def fit_problem(state: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> str | None:
    missing = [key for key in expected if key not in state]
    unexpected = [key for key in state if key not in expected]
    wrong = [f"{key} {tuple(state[key].shape)} instead of {tuple(value.shape)}" for key, value in expected.items() if key in state and state[key].shape != value.shape]
    parts = [f"{label}: {', '.join(items[:3])}{' …' if len(items) > 3 else ''}" for label, items in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)) if items]
    return "; ".join(parts) or None
