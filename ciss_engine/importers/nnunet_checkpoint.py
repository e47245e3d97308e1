"""``fold_N/checkpoint_final.pth`` of an nnU-Net model, read without running code from it.

nnU-Net saves its checkpoint with ``torch.save`` of a dict that also holds training logs as numpy scalars, so
``torch.load(weights_only=True)`` needs numpy's scalar constructor and numeric dtypes allowed. Those, and only
those, are allowed: every global the file would import is listed first by torch's own scan (nothing unpickled),
and anything else is refused by name. Only the network weights and three facts about the model are kept.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import InputError
from .weights import unsafe_globals

# The numeric dtypes a training log holds; object, string and void dtypes stay refused.
NUMERIC_DTYPES = tuple(
    name for name in dir(np.dtypes)
    if name.endswith("DType") and not name.startswith(("Object", "Str", "Bytes", "Void", "String", "DateTime", "TimeDelta"))
)
WEIGHTS_HINT = ("the file is not a checkpoint nnU-Net wrote, or it was altered; copy the model folder again from its source. "
                "CISSegmentation never loads a checkpoint that would import other Python objects")


def _allowed_globals() -> dict[str, Any]:
    """Global name in the checkpoint → the object it may resolve to (numpy 1 and numpy 2 spell the scalar differently)."""
    from numpy._core import multiarray

    allowed: dict[str, Any] = {"numpy.core.multiarray.scalar": multiarray.scalar, "numpy._core.multiarray.scalar": multiarray.scalar, "numpy.dtype": np.dtype}
    allowed |= {f"numpy.dtypes.{name}": getattr(np.dtypes, name) for name in NUMERIC_DTYPES}
    return allowed


@dataclasses.dataclass(frozen=True)
class NnUNetCheckpoint:
    """What the engine keeps of a checkpoint."""

    network_weights: dict[str, torch.Tensor]
    trainer_name: str
    configuration: str
    mirroring_axes: tuple[int, ...] | None  # on the model's axes; None: the model was not trained to be mirrored


def load_checkpoint_or_raise(path: Path) -> NnUNetCheckpoint:
    allowed = _allowed_globals()
    try:
        found = torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except Exception as error:
        raise InputError(f"cannot read {path}: {error}", "the file is damaged or not a PyTorch checkpoint; copy the model folder again") from error
    refused = [name for name in found if name not in allowed]
    if refused:
        raise InputError(f"refused to load {path}: it would import {', '.join(refused)}, outside the allow-list (numpy scalars and dtypes)", WEIGHTS_HINT)
    try:
        with torch.serialization.safe_globals([(obj, name) for name, obj in allowed.items() if name in found]):
            loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch reports junk as RuntimeError, EOFError, UnpicklingError…
        names = ", ".join(unsafe_globals(path.read_bytes(), error))  # read again only to explain a failure
        raise InputError(f"cannot load {path}: {error} ({names})", WEIGHTS_HINT) from error
    weights = loaded.get("network_weights") if isinstance(loaded, dict) else None
    if not (isinstance(weights, dict) and weights and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in weights.items())):
        raise InputError(f"{path} holds no network_weights", "the file is not a checkpoint nnU-Net wrote at the end of training (checkpoint_final.pth)")
    init_args = loaded.get("init_args") if isinstance(loaded.get("init_args"), dict) else {}
    configuration = init_args.get("configuration") or path.parent.parent.name.split("__")[-1]
    axes = loaded.get("inference_allowed_mirroring_axes")
    mirroring = tuple(int(a) for a in axes) if isinstance(axes, (list, tuple)) else None
    return NnUNetCheckpoint(network_weights=weights, trainer_name=str(loaded.get("trainer_name", "nnUNetTrainer")),
                            configuration=str(configuration), mirroring_axes=mirroring)
