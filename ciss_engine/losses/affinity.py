"""Prototype affinities (PCDD Eqs. 6 and 8) and the affinity-weighted distillation that ORCD and CRCD share."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .functional import full_precision, masked_voxel_mean
from .unbiased_kd import unbiased_distillation_terms


def prototype_affinity(features: torch.Tensor, prototypes: torch.Tensor, temperature: float) -> torch.Tensor:
    """a_{i,c} = softmax over c of cos(F_i, p_c)/T_a: how much voxel i looks like each class's prototype.

    Shapes: features (B, K, D', H', W'), prototypes (C, K) -> (B, C, D', H', W') float32, summing to 1 over C.
    A zero feature vector or prototype has cosine 0 with everything.
    """
    if prototypes.dim() != 2 or prototypes.shape[1] != features.shape[1]:
        raise ValueError(f"prototypes {tuple(prototypes.shape)} must be (C, K) with K = {features.shape[1]} "
                         "feature channels")
    if not temperature > 0:
        raise ValueError(f"affinity temperature must be > 0, got {temperature}")
    with full_precision(features):
        unit_features = F.normalize(features.float(), dim=1)
        unit_prototypes = F.normalize(prototypes.to(features.device, torch.float32), dim=1)
        cosine = torch.einsum("bk...,ck->bc...", unit_features, unit_prototypes)
        return F.softmax(cosine / temperature, dim=1)


def affinity_weighted_distillation(
    terms: torch.Tensor, weights: torch.Tensor | float, region: torch.Tensor
) -> torch.Tensor:
    """(1/|M|)·Σ_{i∈M} Σ_c w_{i,c}·d_{i,c}, 0 for an empty region (PCDD Eqs. 7 and 9).

    Shapes: terms d (B, C, D, H, W); weights (B, C, D', H', W') or a constant (uniform weights); region M
    (B, D, H, W) bool. Weights at a coarser resolution than d are upsampled trilinearly, which keeps each
    voxel's weights a convex combination summing to 1.
    """
    if isinstance(weights, torch.Tensor):
        if weights.shape[:2] != terms.shape[:2]:
            raise ValueError(f"weights {tuple(weights.shape)} and terms {tuple(terms.shape)} need the same (B, C)")
        if weights.shape[2:] != terms.shape[2:]:
            weights = F.interpolate(weights, size=terms.shape[2:], mode="trilinear", align_corners=False)
    return masked_voxel_mean((weights * terms).sum(dim=1), region)


class RegionCalibratedDistillation(nn.Module):
    """What ORCD and CRCD share: MiB's summands d_{i,c} weighted by prototype affinity over one region.

    Subclasses document the flags (``<flag_prefix>.temperature``, ``.include_background``, ``.calibrated``)
    and say which features and prototypes they pass to :meth:`distil`.
    """

    flag_prefix = "calibrated_distillation"

    def __init__(self, temperature: float = 1.0, include_background: bool = True, calibrated: bool = True) -> None:
        super().__init__()
        if not temperature > 0:
            raise ValueError(f"{self.flag_prefix}.temperature must be > 0, got {temperature}")
        self.temperature = temperature
        self.include_background = include_background
        self.calibrated = calibrated

    def distil(
        self,
        logits_new: torch.Tensor,
        logits_old: torch.Tensor,
        features: torch.Tensor,
        prototypes: torch.Tensor,
        region: torch.Tensor,
    ) -> torch.Tensor:
        """Σ_c a_{i,c}·d_{i,c} averaged over ``region``; prototypes are ordered [0, O, ...] like logits_new."""
        first = 0 if self.include_background else 1
        terms = unbiased_distillation_terms(logits_new, logits_old, logits_old.shape[1] - 1)[:, first:]
        if not self.calibrated:
            return affinity_weighted_distillation(terms, 1.0 / terms.shape[1], region)
        # Affinities only weight the loss: no gradient flows through features or prototypes.
        affinity = prototype_affinity(features.detach(), prototypes[first:].detach(), self.temperature)
        # The teacher classes {0} ∪ O come first; classes after them (CRCD's new ones) have d = 0.
        return affinity_weighted_distillation(terms, affinity[:, : terms.shape[1]], region)
