"""The per-class distillation summands d_{i,c} that ORCD and CRCD weight by prototype affinity (METHOD.md §3).

Why not only MiB's: its summand −p_c·log q_c is one term of a cross-entropy over classes, so weighting the
classes unevenly moves the student's optimum to q ∝ a ⊙ p (a background voxel that looks like the spleen
is pulled towards spleen). The per-channel Bernoulli KL has its minimum at q_c = p_c whatever the weights,
so calibration changes how hard each class is held, never where the student is pulled.
"""
from __future__ import annotations

import dataclasses
from typing import get_args

import torch
import torch.nn.functional as F

from ..api.settings import KlDirection, Summand
from .functional import check_logits, full_precision

SUMMANDS = get_args(Summand)
KL_DIRECTIONS = get_args(KlDirection)

# Probabilities are clamped to [ε, 1 − ε] in float32 so that log(1 − q) stays finite.
EPSILON = 1e-6


@dataclasses.dataclass(frozen=True)
class DistillationTerms:
    """d (B, 1+|O|, D, H, W) float32, and the teacher's probabilities p^{t−1} on the same voxels (detached)."""

    summands: torch.Tensor
    teacher: torch.Tensor


def unbiased_log_probabilities(logits_new: torch.Tensor, num_old: int) -> torch.Tensor:
    """log q over {0} ∪ O (B, 1+|O|, ...): today's background and new classes merged into the old background."""
    log_p_new = F.log_softmax(logits_new.float(), dim=1)
    background_and_new = torch.cat([log_p_new[:, :1], log_p_new[:, num_old + 1 :]], dim=1)
    return torch.cat([torch.logsumexp(background_and_new, dim=1, keepdim=True), log_p_new[:, 1 : num_old + 1]], dim=1)


def bernoulli_kl(first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    """KL(Bern(first) ‖ Bern(second)) elementwise, both clamped to [ε, 1 − ε]."""
    first, second = first.clamp(EPSILON, 1 - EPSILON), second.clamp(EPSILON, 1 - EPSILON)
    return first * (first.log() - second.log()) + (1 - first) * (torch.log1p(-first) - torch.log1p(-second))


def distillation_terms(
    logits_new: torch.Tensor, logits_old: torch.Tensor, num_old: int, summand: Summand = "channel_kl", kl_direction: KlDirection = "teacher_first",
) -> DistillationTerms:
    """The summands d_{i,c} for every class with a teacher, and the teacher probabilities.

    Shapes: logits_new (B, 1+|S|, D, H, W) ordered [0, O, N], logits_old (B, 1+|O|, D, H, W).
    """
    if summand not in SUMMANDS:
        raise ValueError(f"summand must be one of {', '.join(SUMMANDS)}, got {summand!r}")
    if kl_direction not in KL_DIRECTIONS:
        raise ValueError(f"kl_direction must be one of {', '.join(KL_DIRECTIONS)}, got {kl_direction!r}")
    check_logits(logits_new, logits_old, num_old)
    with full_precision(logits_new):
        log_q = unbiased_log_probabilities(logits_new, num_old)
        p_old = F.softmax(logits_old.detach().float(), dim=1)
        if summand != "channel_kl":
            return DistillationTerms(-p_old * log_q, p_old)
        q = log_q.exp()
        pair = (p_old, q) if kl_direction == "teacher_first" else (q, p_old)
        return DistillationTerms(bernoulli_kl(*pair), p_old)
