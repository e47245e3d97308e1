"""The per-class distillation summands (losses/summands.py): hand-computed values, and the property that
made the per-channel KL the default: whatever the affinity weights, its optimum is the teacher."""
from __future__ import annotations

import math

import pytest
import torch

from ciss_engine.losses.summands import bernoulli_kl, distillation_terms

from .voxel_tensors import logits_from_probabilities

# |O| = 1, |N| = 1: new channels [0, o1, n1], old [0, o1]; q0 = p0 + p_n1.
NEW = logits_from_probabilities([0.3, 0.5, 0.2])
OLD = logits_from_probabilities([0.2, 0.8])


def _kl(p: float, q: float) -> float:
    return p * math.log(p / q) + (1 - p) * math.log((1 - p) / (1 - q))


@pytest.mark.parametrize("direction", ["teacher_first", "student_first"])
def test_channel_kl_matches_hand_computation(direction):
    terms = distillation_terms(NEW, OLD, num_old=1, summand="channel_kl", kl_direction=direction)
    pairs = [(0.2, 0.5), (0.8, 0.5)]  # (teacher, student) per channel
    expected = [_kl(p, q) if direction == "teacher_first" else _kl(q, p) for p, q in pairs]
    torch.testing.assert_close(terms.summands.flatten(), torch.tensor(expected))
    torch.testing.assert_close(terms.teacher.flatten(), torch.tensor([0.2, 0.8]))


def test_mib_summand_is_minus_p_log_q():
    terms = distillation_terms(NEW, OLD, num_old=1, summand="mib")
    torch.testing.assert_close(terms.summands.flatten(), torch.tensor([-0.2 * math.log(0.5), -0.8 * math.log(0.5)]))


def test_bernoulli_kl_is_finite_at_the_edges():
    values = bernoulli_kl(torch.tensor([0.0, 1.0, 1.0]), torch.tensor([1.0, 0.0, 1.0]))
    assert torch.isfinite(values).all() and values[2] == 0


def _optimum(summand: str, weights: torch.Tensor, teacher: torch.Tensor, direction: str = "teacher_first") -> torch.Tensor:
    """The student's unbiased probabilities (q0, q_O) after minimising Σ_c a_c·d_c alone on one voxel."""
    torch.manual_seed(0)
    logits_new = torch.zeros(1, 4, 1, 1, 1, requires_grad=True)  # [0, o1, o2, n1]
    logits_old = teacher.log().reshape(1, 3, 1, 1, 1)
    optimizer = torch.optim.LBFGS([logits_new], max_iter=1000, tolerance_grad=1e-9, tolerance_change=1e-12, line_search_fn="strong_wolfe")

    def objective() -> torch.Tensor:
        optimizer.zero_grad()
        terms = distillation_terms(logits_new, logits_old, num_old=2, summand=summand, kl_direction=direction)
        loss = (weights.reshape(1, 3, 1, 1, 1) * terms.summands).sum()
        loss.backward()
        return loss

    optimizer.step(objective)
    p = logits_new.detach().softmax(1).flatten()
    return torch.stack([p[0] + p[3], p[1], p[2]])


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("direction", ["teacher_first", "student_first"])
def test_channel_kl_optimum_is_the_teacher_for_any_affinity_weights(seed, direction):
    generator = torch.Generator().manual_seed(seed)
    teacher = torch.softmax(torch.randn(3, generator=generator) * 2, 0)
    weights = torch.softmax(torch.randn(3, generator=generator) * 3, 0)  # far from uniform
    torch.testing.assert_close(_optimum("channel_kl", weights, teacher, direction), teacher, atol=2e-3, rtol=0)


def test_mib_optimum_moves_to_weights_times_teacher():
    # METHOD.md §3's example: a background voxel, teacher (0.70, 0.25, 0.05), weights that favour organ 1.
    teacher, weights = torch.tensor([0.70, 0.25, 0.05]), torch.tensor([0.15, 0.70, 0.15])
    optimum = _optimum("mib", weights, teacher)
    moved = weights * teacher / (weights * teacher).sum()
    torch.testing.assert_close(optimum, moved, atol=2e-3, rtol=0)
    assert optimum.argmax() == 1  # the student now calls the background voxel organ 1
    assert _optimum("channel_kl", weights, teacher).argmax() == 0
