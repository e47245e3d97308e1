"""MiB's unbiased cross-entropy on the new labels (with confident old-class pseudo-labels allowed)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..prototypes import IGNORE_INDEX
from .functional import full_precision

class UnbiasedCrossEntropy(nn.Module):
    """Unbiased cross-entropy (MiB, Cermelli et al. CVPR 2020, "unbiased cross-entropy"; METHOD.md §3).

    A voxel labelled 0 at step t may be background or an old organ (old labels are gone), so its target
    probability is p₀ + Σ_{o∈O} p_o = logsumexp of the log-probabilities over channels {0} ∪ O. This is
    MiB's choice for the CE (background absorbs the OLD classes); the q₀ = p₀ + Σ_{n∈N} p_n of METHOD.md's
    notation is the mapping of the distillation (:func:`unbiased_distillation_terms`), not of this loss.
    A voxel labelled c ∈ O (a confident pseudo-label) or n ∈ N uses ordinary CE, −log p_c. Feed the
    pseudo-labels Ỹ here, never merge them into 0. With |O| = 0 this is plain CE.

    Args:
        num_old: |O|, the number of old foreground classes (channels 1..|O|).
        ignore_index: label of voxels without a loss, 255.
    Returns the mean over non-ignored voxels (0 if none).
    Shapes: logits (B, 1+|S|, D, H, W) ordered [0, O, N], labels (B, D, H, W) long in 0..|S| or ignore_index.
    Raises:
        ValueError: on a bad argument, or a label outside 0..|S| that is not ignore_index.
    """

    def __init__(self, num_old: int, ignore_index: int = IGNORE_INDEX) -> None:
        super().__init__()
        if num_old < 0:
            raise ValueError(f"num_old must be ≥ 0, got {num_old}")
        self.num_old = num_old
        self.ignore_index = ignore_index

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        loss, valid = self.voxel_losses(logits, labels)
        return loss.sum() / valid.sum().clamp(min=1)

    def voxel_losses(self, logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The loss of every voxel (B, D, H, W) float32, 0 where ignored, and the non-ignored voxels (bool):
        for losses that weigh voxels or patches unevenly (CiNuSeg's hard negatives and trade-off)."""
        num_channels = logits.shape[1]
        if num_channels < self.num_old + 1 or logits.shape[:1] + logits.shape[2:] != labels.shape:
            raise ValueError(f"logits {tuple(logits.shape)} and labels {tuple(labels.shape)} must be (B, 1+|S|, *V) "
                             f"and (B, *V) with 1+|S| ≥ {self.num_old + 1}")
        valid = labels != self.ignore_index
        if bool(((labels < 0) | (labels >= num_channels))[valid].any()):
            raise ValueError(f"labels must lie in 0..{num_channels - 1} or be {self.ignore_index}")
        with full_precision(logits):
            log_p = F.log_softmax(logits.float(), dim=1)
            log_p_label = log_p.gather(1, torch.where(valid, labels, 0).long().unsqueeze(1)).squeeze(1)
            log_p_background = torch.logsumexp(log_p[:, : self.num_old + 1], dim=1)
            loss = -torch.where(labels == 0, log_p_background, log_p_label) * valid
        return loss, valid
