"""The soft Dice of the organs a step labels (new organs; in ``ciss adapt`` the labelled ones), reduced three ways.

MONAI's per-patch Dice scores a patch that does not hold an organ 1 − ε/(Σp + ε) for it, whatever it paints there: a
constant, so false voxels in such a patch get no gradient from it. Pooled over the batch (MONAI's ``batch=True``) the
organ in one patch makes them count, but a large organ's own patches then also weigh against every other patch's
volume. ``organ_volume`` keeps each patch's own Dice where it holds the organ and, where it does not, scores the false
voxels against the organ's size: Σp / (Σp + V), V the organ's mean labelled volume over the batch's patches holding it,
so a false pancreas voxel weighs against a pancreas and a false liver voxel against a liver.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
from monai.losses import DiceLoss

from ..api.settings import DiceReduction

_SMOOTH = 1e-5  # MONAI's smooth_nr and smooth_dr: the per-patch cells equal its DiceLoss


def organ_volume_dice(probabilities: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """1 − Dice per patch and organ where the patch holds the organ, Σp / (Σp + V) where it does not, 0 for an organ no
    patch of the batch holds (nothing to weigh its voxels against); the mean over patches and organs.
    ``probabilities`` and one-hot ``targets``: (B, C, *spatial)."""
    spatial = tuple(range(2, probabilities.ndim))
    overlap, painted, labelled = (probabilities * targets).sum(spatial), probabilities.sum(spatial), targets.sum(spatial)
    holds = labelled > 0
    mean_volume = labelled.sum(0) / holds.sum(0).clamp(min=1)
    own = 1 - (2 * overlap + _SMOOTH) / (painted + labelled + _SMOOTH)
    against_volume = painted / (painted + mean_volume + _SMOOTH)
    return torch.where(holds, own, torch.where(mean_volume > 0, against_volume, torch.zeros_like(against_volume))).mean()


def organ_dice(reduction: DiceReduction) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The soft Dice loss of (probabilities, one-hot targets) reduced as ``reduction`` says."""
    if reduction == "organ_volume":
        return organ_volume_dice
    return DiceLoss(include_background=True, softmax=False, to_onehot_y=False, batch=reduction == "batch")
