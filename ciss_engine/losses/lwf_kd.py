"""Plain knowledge distillation over the old channels: the LwF baseline."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .functional import check_logits, full_precision, masked_voxel_mean


class LwfDistillation(nn.Module):
    """LwF distillation (Li & Hoiem, ECCV 2016, "Learning without Forgetting") for the ``lwf`` strategy.

    Compares the old model's tempered softmax with the current model's tempered softmax restricted to the
    old channels {0} ∪ O, ignoring the new channels altogether (the bias MiB's unbiased KD removes):
    L = mean over voxels of −Σ_{c∈{0}∪O} softmax(z^{t−1}/T)_c · log softmax(zᵗ_{0..|O|}/T)_c.

    Args:
        temperature: T > 0 of both softmaxes; 2.0 as in LwF. No T² factor: LwF does not use one.
    Shapes: logits_new (B, 1+|S|, D, H, W), logits_old (B, 1+|O|, D, H, W), mask (B, D, H, W) bool or None
        -> scalar: mean over all voxels or over the masked voxels (0 if none).
    """

    def __init__(self, temperature: float = 2.0) -> None:
        super().__init__()
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.temperature = temperature

    def forward(
        self, logits_new: torch.Tensor, logits_old: torch.Tensor, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        num_old = logits_old.shape[1] - 1
        check_logits(logits_new, logits_old, num_old)
        with full_precision(logits_new):
            log_p_new = F.log_softmax(logits_new[:, : num_old + 1].float() / self.temperature, dim=1)
            p_old = F.softmax(logits_old.detach().float() / self.temperature, dim=1)
            return masked_voxel_mean(-(p_old * log_p_new).sum(dim=1), mask)
