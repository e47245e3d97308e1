"""Small tensor helpers shared by the losses: full precision under autocast, masked voxel means, checks."""
from __future__ import annotations

import contextlib

import torch


def full_precision(tensor: torch.Tensor) -> contextlib.AbstractContextManager:
    """Switch autocast off on ``tensor``'s device: log-softmax, cosines and sums must run in float32.

    Under bf16 autocast a softmax over a few classes loses ~3 significant digits, enough to bias
    distillation targets near 0 and 1; callers cast their inputs with ``.float()`` inside this block.
    """
    return torch.autocast(device_type=tensor.device.type, enabled=False)


def masked_voxel_mean(values: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean of per-voxel ``values`` (B, D, H, W) over ``mask`` (bool, same shape); 0 when the mask is empty.

    The empty case stays attached to the graph (0·values), so the total loss can always be backpropagated.
    """
    if mask is None:
        return values.mean()
    if mask.shape != values.shape:
        raise ValueError(f"mask {tuple(mask.shape)} must have the voxel shape {tuple(values.shape)}")
    mask = mask.to(values.dtype)
    return (values * mask).sum() / mask.sum().clamp(min=1.0)


def per_patch_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of per-voxel ``values`` (B, D, H, W) over ``mask`` within each patch -> (B,); 0 for a patch whose mask is empty."""
    if mask.shape != values.shape:
        raise ValueError(f"mask {tuple(mask.shape)} must have the voxel shape {tuple(values.shape)}")
    mask = mask.to(values.dtype)
    return (values * mask).flatten(1).sum(1) / mask.flatten(1).sum(1).clamp(min=1.0)


def check_logits(logits_new: torch.Tensor, logits_old: torch.Tensor, num_old: int) -> None:
    """Raise ValueError unless logits_new is (B, 1+|S|, *V) and logits_old is (B, 1+|O|, *V) with |S| ≥ |O|."""
    if logits_old.shape[1] != num_old + 1:
        raise ValueError(f"logits_old has {logits_old.shape[1]} channels, expected 1+|O| = {num_old + 1}")
    if logits_new.shape[1] < num_old + 1:
        raise ValueError(f"logits_new has {logits_new.shape[1]} channels, fewer than the old model's {num_old + 1}")
    if logits_new.shape[:1] + logits_new.shape[2:] != logits_old.shape[:1] + logits_old.shape[2:]:
        raise ValueError(f"logits_new {tuple(logits_new.shape)} and logits_old {tuple(logits_old.shape)} "
                         "cover different voxels")
