"""The training dtype: the device's autocast choice, unless oneDNN's bf16 convolutions would train the network wrongly.

Measured on a CPU with native bf16 (AMD EPYC with AVX-512 bf16, torch 2.13.0 and 2.14.1): a 3-D convolution
whose input is smaller than its kernel (a 3×3×3 convolution over a 2×2×2 map: the SegResNet's deepest level for
16³ patches) gets weight gradients from oneDNN's bf16 backward that change from run to run and reach 1e35, where
float32 gives the same finite gradient every time. One such iteration made every weight NaN. From 3×3×3 maps on
(24³ patches and up) the bf16 gradients are repeatable and within bf16 rounding of float32's.
"""
from __future__ import annotations

import torch


def has_map_smaller_than_kernel(network: torch.nn.Module, example: torch.Tensor) -> bool:
    """Whether a patch shaped like ``example`` (1, C, X, Y, Z) brings some 3-D convolution a map smaller than its kernel."""
    found: list[torch.nn.Module] = []

    def check(module: torch.nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        if any(size < kernel for size, kernel in zip(inputs[0].shape[2:], module.kernel_size)):
            found.append(module)

    convolutions = [m for m in network.modules() if isinstance(m, (torch.nn.Conv3d, torch.nn.ConvTranspose3d)) and max(m.kernel_size) > 1]
    handles = [m.register_forward_pre_hook(check) for m in convolutions]
    was_training = network.training
    try:
        network.eval()  # no batch-norm statistics move for this look
        with torch.no_grad():
            network(example)
    finally:
        network.train(was_training)
        for handle in handles:
            handle.remove()
    return bool(found)


def training_dtype(device_choice: torch.dtype | None, device: torch.device, network: torch.nn.Module, example: torch.Tensor) -> torch.dtype | None:
    """``device_choice`` (``device.autocast_dtype``), or float32 (None) where CPU bf16 would meet a map smaller than a kernel."""
    if device_choice is torch.bfloat16 and device.type == "cpu" and has_map_smaller_than_kernel(network, example):
        return None
    return device_choice
