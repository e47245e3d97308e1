"""MiB's unbiased knowledge distillation and its per-class summands, shared by ORCD and CRCD."""
from __future__ import annotations

import torch
from torch import nn

from .functional import masked_voxel_mean
from .summands import distillation_terms


def unbiased_distillation_terms(logits_new: torch.Tensor, logits_old: torch.Tensor, num_old: int) -> torch.Tensor:
    """Per-class summands d_{i,c} = −p^{t−1}_{i,c}·log q_{i,c} of MiB's unbiased KD (METHOD.md §3).

    The old model's background also covers what are new classes today, so the current model's matching
    probability is q₀ = pᵗ₀ + Σ_{n∈N} pᵗₙ; for an old class, q_c = pᵗ_c. The old probabilities are
    detached.

    Shapes: logits_new (B, 1+|S|, D, H, W) ordered [0, O, N], logits_old (B, 1+|O|, D, H, W)
        -> d (B, 1+|O|, D, H, W) float32, channel 0 = background.
    """
    return distillation_terms(logits_new, logits_old, num_old, summand="mib").summands


class UnbiasedKnowledgeDistillation(nn.Module):
    """MiB unbiased KD (Cermelli et al. CVPR 2020, "unbiased distillation"): the old model's softmax vs
    the current model's, with the current background and new classes merged into the old background.

    L = mean over voxels of (1/(|O|+1))·Σ_{c∈{0}∪O} d_{i,c}, with d from :func:`unbiased_distillation_terms`
    (dividing by the number of old channels as MiB's code does). This is "PCDD with calibration off".

    Shapes: logits_new (B, 1+|S|, D, H, W), logits_old (B, 1+|O|, D, H, W), mask (B, D, H, W) bool or None
        -> scalar: mean over all voxels, or over the masked voxels (0 if none). MiB's code divides a masked
        sum by all voxels; we divide by the masked count so that ORCD/CRCD without calibration equal this
        loss on their regions.
    """

    def forward(
        self, logits_new: torch.Tensor, logits_old: torch.Tensor, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        terms = unbiased_distillation_terms(logits_new, logits_old, logits_old.shape[1] - 1)
        return masked_voxel_mean(terms.mean(dim=1), mask)
