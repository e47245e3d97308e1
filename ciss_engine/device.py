"""Choosing the device and the mixed-precision mode: CUDA with AMP when present, else CPU in float32 (bf16 on request)."""
from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

from .errors import InputError

if TYPE_CHECKING:
    import torch

DEVICE_CHOICES = ("auto", "cpu", "cuda")


def resolve_device(name: str = "auto") -> torch.device:
    import torch

    if name not in DEVICE_CHOICES:
        raise InputError(f"unknown device {name!r}", f"choose one of {', '.join(DEVICE_CHOICES)}")
    if name == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda was asked for but no CUDA GPU is usable", "install the CUDA build of PyTorch (README) or use --device cpu")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def seed_run(seed: int) -> None:
    """Seed torch and hold cuDNN to deterministic algorithms, so that a seed repeats a training run on CUDA too.

    Without this, two same-seed runs of 50 base iterations on an H200 ended up to 0.039 apart in a weight
    (benchmarks/RESULTS.md (s)); on the CPU they are bitwise equal either way. Other CUDA kernels that add
    with atomics may still differ in the last bits; the cost on a GPU is not measured yet.
    """
    import torch

    torch.manual_seed(seed)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False


def autocast_dtype(device: torch.device, enabled: bool = True, cpu_bf16: bool = False) -> torch.dtype | None:
    """The autocast dtype, or None for float32.

    CUDA: mixed precision unless ``enabled`` is False. CPU: float32 unless ``cpu_bf16`` asks for bf16 and the
    cores have it natively (emulated bf16 is slower). Measured on a 2-core AMD EPYC with native bf16
    (benchmarks/RESULTS.md (p), (q)): bf16 made an iteration 1.23 x cheaper, but phantom base models trained
    in float32 scored higher in three seeds of three, so float32 is the CPU default.
    """
    import torch

    if not enabled:
        return None
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if cpu_bf16 and torch.ops.mkldnn._is_mkldnn_bf16_supported() else None


@contextlib.contextmanager
def autocast(device: torch.device, dtype: torch.dtype | None) -> Iterator[None]:
    import torch

    if dtype is None:
        yield
        return
    with torch.autocast(device_type=device.type, dtype=dtype):
        yield
