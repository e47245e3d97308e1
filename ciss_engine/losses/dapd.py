"""DAPD: dual-aligned prototype distillation (PCDD Eqs. 10-12)."""
from __future__ import annotations

from typing import get_args

import torch
from torch import nn

from ..api.settings import BackgroundMode
from ..prototypes import local_prototypes

BACKGROUND_MODES = get_args(BackgroundMode)


def prototype_distance(prototypes: torch.Tensor, targets: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
    """L_pd (PCDD Eq. 11): mean over the present classes of ‖q̂_c − p_c‖², 0 if none is present.

    Shapes: prototypes (C, K), targets (C, K), present (C,) bool -> scalar.
    """
    squared = ((prototypes - targets.to(prototypes)) ** 2).sum(dim=1)
    present = present.to(squared.dtype)
    return (squared * present).sum() / present.sum().clamp(min=1.0)


class DualAlignedPrototypeDistillation(nn.Module):
    """DAPD (PCDD Eqs. 10-12): pull the current model's local prototypes of {0} ∪ O towards the old
    model's local prototypes on the same batch and towards the stored global prototypes.

    L = λ_ll·L_pd(q̂, p̂^{t−1}) + λ_lg·L_pd(q̂, p) with L_pd the mean over classes present in the batch of
    ‖q̂_c − p_c‖². q̂ are the current model's local prototypes on the pseudo-labels Ỹ (gradient flows into
    the current features), p̂^{t−1} the old model's on the same Ỹ (detached; its background is the mean
    over Ỹ ∈ {0} ∪ N, everything the old model calls background), p the stored global prototypes (old
    classes and last step's background).

    Args:
        num_old: |O|; labels 1..|O| are old classes.
        num_new: |N|; labels |O|+1..|O|+|N| are new classes, grouped with 0 as the background.
        lambda_ll: weight of the local-local term; None means 0.01/K (METHOD.md's starting point) with K the
            feature channels (PCDD setting ``lambda_ll``).
        lambda_lg: weight of the local-global term; None means 0.01/K (PCDD setting ``lambda_lg``).
        background: the current background prototype q̂₀: ``"mean_of_current_region"`` [default], the mean
            of Fᵗ over Ỹ ∈ {0} ∪ N; or ``"sum_of_class_means"``, the paper's literal form, the sum of the
            means over Ỹ = 0 and over each present new class (PCDD setting ``dapd_background``).
    Shapes: features_new (B, K, D', H', W'), features_old (B, K, D', H', W'), pseudo_labels (B, D, H, W) long
        (downsampled by nearest neighbour if F is coarser; 255 ignored), global_prototypes (1+|O|, K)
        -> scalar (0 when no class of {0} ∪ O is present).
    """

    def __init__(
        self,
        num_old: int,
        num_new: int,
        lambda_ll: float | None = None,
        lambda_lg: float | None = None,
        background: BackgroundMode = "mean_of_current_region",
    ) -> None:
        super().__init__()
        if num_old < 1 or num_new < 1:
            raise ValueError(f"DAPD needs old and new classes, got num_old={num_old}, num_new={num_new}")
        if background not in BACKGROUND_MODES:
            raise ValueError(f"dapd_background must be one of {BACKGROUND_MODES}, got {background!r}")
        for name, value in (("lambda_ll", lambda_ll), ("lambda_lg", lambda_lg)):
            if value is not None and value < 0:
                raise ValueError(f"dapd.{name} must be ≥ 0, got {value}")
        self.num_old = num_old
        self.num_new = num_new
        self.lambda_ll = lambda_ll
        self.lambda_lg = lambda_lg
        self.background = background

    def forward(
        self,
        features_new: torch.Tensor,
        features_old: torch.Tensor,
        pseudo_labels: torch.Tensor,
        global_prototypes: torch.Tensor,
    ) -> torch.Tensor:
        num_teacher = self.num_old + 1
        if features_new.shape != features_old.shape:
            raise ValueError(f"current {tuple(features_new.shape)} and old {tuple(features_old.shape)} features differ")
        if tuple(global_prototypes.shape) != (num_teacher, features_new.shape[1]):
            raise ValueError(f"global prototypes {tuple(global_prototypes.shape)} must be (1+|O|, K) = "
                             f"({num_teacher}, {features_new.shape[1]})")
        is_new = (pseudo_labels > self.num_old) & (pseudo_labels <= self.num_old + self.num_new)
        teacher_labels = torch.where(is_new, 0, pseudo_labels)
        old_local, present = local_prototypes(features_old.detach(), teacher_labels, num_teacher)
        current_local = self._current_prototypes(features_new, pseudo_labels, teacher_labels)
        default_weight = 0.01 / features_new.shape[1]
        lambda_ll = default_weight if self.lambda_ll is None else self.lambda_ll
        lambda_lg = default_weight if self.lambda_lg is None else self.lambda_lg
        return (lambda_ll * prototype_distance(current_local, old_local.detach(), present)
                + lambda_lg * prototype_distance(current_local, global_prototypes.detach(), present))

    def _current_prototypes(
        self, features: torch.Tensor, pseudo_labels: torch.Tensor, teacher_labels: torch.Tensor
    ) -> torch.Tensor:
        """q̂ (1+|O|, K) for {0} ∪ O, with the background built as the ``background`` flag says."""
        num_teacher = self.num_old + 1
        if self.background == "mean_of_current_region":
            return local_prototypes(features, teacher_labels, num_teacher)[0]
        per_class, _ = local_prototypes(features, pseudo_labels, num_teacher + self.num_new)
        # Absent classes have zero rows, so summing every row of {0} ∪ N sums the present class means.
        background = per_class[:1] + per_class[num_teacher:].sum(0, keepdim=True)
        return torch.cat([background, per_class[1:num_teacher]])
