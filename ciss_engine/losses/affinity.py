"""Prototype affinities (PCDD Eqs. 6 and 8) and the affinity-weighted distillation that ORCD and CRCD share."""
from __future__ import annotations

from typing import get_args

import torch
import torch.nn.functional as F
from torch import nn

from ..api.settings import Normalisation
from ..prototypes import region_rows
from .functional import full_precision
from .summands import SUMMANDS, KL_DIRECTIONS, DistillationTerms, KlDirection, Summand, distillation_terms

NORMALISATIONS = get_args(Normalisation)


def _check_affinity_arguments(channels: int, prototypes: torch.Tensor, temperature: float) -> None:
    if prototypes.dim() != 2 or prototypes.shape[1] != channels:
        raise ValueError(f"prototypes {tuple(prototypes.shape)} must be (C, K) with K = {channels} feature channels")
    if not temperature > 0:
        raise ValueError(f"affinity temperature must be > 0, got {temperature}")


def affinity_columns(rows: torch.Tensor, prototypes: torch.Tensor, temperature: float) -> torch.Tensor:
    """Softmax over c of cos(f, p_c)/T_a for feature rows (n, K) and prototypes (C, K) -> (C, n) float32.

    Class-major output because a softmax over the first of two dimensions runs across voxels in vector
    registers, several times faster on CPU than one over a short last dimension. A zero feature vector or
    prototype has cosine 0 with everything.
    """
    _check_affinity_arguments(rows.shape[1], prototypes, temperature)
    with full_precision(rows):
        rows = rows.float()
        unit_prototypes = F.normalize(prototypes.to(rows.device, torch.float32), dim=1)
        lengths = torch.linalg.vector_norm(rows, dim=1).clamp(min=1e-12)
        cosine = (unit_prototypes @ rows.T) / lengths
        return F.softmax(cosine / temperature, dim=0)


def prototype_affinity(features: torch.Tensor, prototypes: torch.Tensor, temperature: float) -> torch.Tensor:
    """a_{i,c} = softmax over c of cos(F_i, p_c)/T_a: how much voxel i looks like each class's prototype.

    Shapes: features (B, K, D', H', W'), prototypes (C, K) -> (B, C, D', H', W') float32, summing to 1 over C.
    """
    _check_affinity_arguments(features.shape[1], prototypes, temperature)
    grid = features.movedim(1, -1)
    columns = affinity_columns(grid.reshape(-1, features.shape[1]), prototypes, temperature)
    return columns.reshape(-1, *grid.shape[:-1]).movedim(0, 1)


class RegionCalibratedDistillation(nn.Module):
    """What ORCD and CRCD share: per-class distillation summands d_{i,c} weighted by prototype affinity over one region.

    Subclasses document the flags and say which features and prototypes they pass to :meth:`distil`.
    ``summand`` picks d (losses/summands.py): ``channel_kl`` [default] keeps the student's optimum at the
    teacher for any weights; ``mib`` is MiB's −p·log q, whose optimum moves to q ∝ a ⊙ p; ``agreement``
    weights each voxel's full MiB term by w_i = (1+|O|)·Σ_c a_{i,c}·p_{i,c} (1 for flat affinities).
    ``mib_scale`` multiplies by (classes in the softmax)/(classes with a teacher): 1 for ORCD, which has no
    class without a teacher, so only CRCD exposes it. ``normalisation`` divides the region's sum by the region's
    voxels (``region``, the paper's mean) or by every voxel of the patches (``patch``, as MiB's KD weighs them).
    """

    # The loss's name in its settings (PCDD's ``orcd_temperature``): errors name the setting to change.
    flag_prefix = "calibrated_distillation"

    def __init__(
        self, temperature: float = 1.0, include_background: bool = True, calibrated: bool = True, summand: Summand = "channel_kl",
        kl_direction: KlDirection = "teacher_first", mib_scale: bool = False, normalisation: Normalisation = "region",
    ) -> None:
        super().__init__()
        if not temperature > 0:
            raise ValueError(f"{self.flag_prefix}_temperature must be > 0, got {temperature}")
        if summand not in SUMMANDS:
            raise ValueError(f"summand must be one of {', '.join(SUMMANDS)}, got {summand!r}")
        if kl_direction not in KL_DIRECTIONS:
            raise ValueError(f"kl_direction must be one of {', '.join(KL_DIRECTIONS)}, got {kl_direction!r}")
        if normalisation not in NORMALISATIONS:
            raise ValueError(f"{self.flag_prefix}_normalisation must be one of {', '.join(NORMALISATIONS)}, got {normalisation!r}")
        self.temperature = temperature
        self.include_background = include_background
        self.calibrated = calibrated
        self.summand = summand
        self.kl_direction = kl_direction
        self.mib_scale = mib_scale
        self.normalisation = normalisation

    def terms(self, logits_new: torch.Tensor, logits_old: torch.Tensor) -> DistillationTerms:
        """This loss's summands of the logits (ORCD and CRCD with equal flags can share one computation)."""
        return distillation_terms(logits_new, logits_old, logits_old.shape[1] - 1, self.summand, self.kl_direction)

    def weigh(self, terms: DistillationTerms, features: torch.Tensor, prototypes: torch.Tensor, region: torch.Tensor) -> torch.Tensor:
        """(1/|M|)·Σ_{i∈M} Σ_c a_{i,c}·d_{i,c} (PCDD Eqs. 7 and 9), 0 for an empty region; |M| is every voxel of
        the patches instead under ``normalisation="patch"``.

        ``terms`` hold d (B, 1+|O|, D, H, W) from :meth:`terms`; prototypes are ordered [0, O, ...] like the
        logits, in the space of ``features``. Affinities are computed on the region's voxels only; features
        coarser than d give affinities upsampled trilinearly, which keeps each voxel's weights a convex
        combination summing to 1.
        """
        first = 0 if self.include_background else 1
        summands = region_rows(terms.summands[:, first:], region)
        voxels = region.numel() if self.normalisation == "patch" else max(summands.shape[0], 1)
        teachers = summands.shape[1]
        if not self.calibrated:
            return summands.sum() / (teachers * voxels)
        if features.shape[2:] == region.shape[1:]:
            # Affinities only weight the loss: no gradient flows through features or prototypes.
            weights = affinity_columns(region_rows(features.detach(), region), prototypes[first:].detach(), self.temperature)
        else:
            grid = prototype_affinity(features.detach(), prototypes[first:].detach(), self.temperature)
            weights = region_rows(F.interpolate(grid, size=region.shape[1:], mode="trilinear", align_corners=False), region).T
        # Flat affinities give each class 1/(classes in the softmax), MiB 1/teachers: rescaled, they agree.
        if self.mib_scale:
            weights = weights * (weights.shape[0] / teachers)
        # The teacher classes {0} ∪ O come first; classes after them (CRCD's new ones) have d = 0.
        if self.summand == "agreement":
            teacher = region_rows(terms.teacher[:, first:], region)
            agreement = teachers * (weights[:teachers] * teacher.T).sum(0)
            return (agreement * summands.mean(1)).sum() / voxels
        return (weights[:teachers] * summands.T).sum() / voxels

    def distil(
        self,
        logits_new: torch.Tensor,
        logits_old: torch.Tensor,
        features: torch.Tensor,
        prototypes: torch.Tensor,
        region: torch.Tensor,
        terms: DistillationTerms | None = None,
    ) -> torch.Tensor:
        """The loss from the logits; pass ``terms`` when they are already computed for the same logits."""
        return self.weigh(self.terms(logits_new, logits_old) if terms is None else terms, features, prototypes, region)
