"""CiNuSeg's discriminative representation regularisation (DRR, METHOD.md §6), transferred to softmax heads.

On the voxels labelled with a new organ:
- FGL, the new organ's own loss −log p_y, averaged over those voxels only, so a small organ is not drowned
  by the background as in a voxel-averaged CE (the 2-D paper's foreground BCE on the organ's sigmoid);
- BGL, Σ_{c∈{0}∪O} p_c²: what the background and the old organs still claim there (the sigmoid form's
  squared old/background outputs; with a softmax they are the same probabilities);
- NS, hard negatives: new-organ voxels the frozen old model calls an old organ with probability > τ get
  weight 1 + ω in the supervised loss, where old and new organs are most easily confused.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..prototypes import IGNORE_INDEX
from .functional import full_precision, per_patch_mean


def new_organ_voxels(labels: torch.Tensor, num_old: int) -> torch.Tensor:
    """The voxels labelled with a new organ (B, D, H, W) bool."""
    return (labels > num_old) & (labels != IGNORE_INDEX)


def hard_negatives(labels: torch.Tensor, logits_old: torch.Tensor, num_old: int, confidence: float) -> torch.Tensor:
    """New-organ voxels that the old model gives to an old organ with probability above ``confidence`` (B, D, H, W) bool."""
    with torch.no_grad(), full_precision(logits_old):
        old_organ_probability = F.softmax(logits_old.float(), dim=1)[:, 1 : num_old + 1].amax(dim=1)
    return new_organ_voxels(labels, num_old) & (old_organ_probability > confidence)


def new_organ_ce(logits_new: torch.Tensor, labels: torch.Tensor, num_old: int) -> torch.Tensor:
    """FGL per patch (B,) float32: −log p of each voxel's new organ, averaged over the patch's new-organ voxels
    (0 in a patch without any). Shapes: logits_new (B, 1+|S|, D, H, W) ordered [0, O, N], labels (B, D, H, W)."""
    on_new = new_organ_voxels(labels, num_old)
    with full_precision(logits_new):
        log_p = F.log_softmax(logits_new.float(), dim=1)
        return per_patch_mean(-log_p.gather(1, torch.where(on_new, labels, 0).long().unsqueeze(1)).squeeze(1), on_new)


def background_claim(logits_new: torch.Tensor, labels: torch.Tensor, num_old: int) -> torch.Tensor:
    """BGL per patch (B,) float32: Σ_{c∈{0}∪O} p_c² averaged over the patch's new-organ voxels (0 without any)."""
    on_new = new_organ_voxels(labels, num_old)
    with full_precision(logits_new):
        claimed = F.softmax(logits_new.float(), dim=1)[:, : num_old + 1].square().sum(dim=1)
        return per_patch_mean(claimed, on_new)
