"""Tests of ciss_engine/losses/lwf_kd.py against hand-computed values."""
from __future__ import annotations

import math

import pytest

from ciss_engine.losses import LwfDistillation

from .voxel_tensors import logits_from_probabilities, voxel_mask

NEW = logits_from_probabilities([0.4, 0.2, 0.1, 0.3])  # channels [0, o1, o2, n1]
OLD = logits_from_probabilities([0.5, 0.3, 0.2])


def _tempered(probabilities: list[float], temperature: float) -> list[float]:
    """softmax(log p / T) = p^(1/T) / Σ p^(1/T)."""
    powered = [p ** (1 / temperature) for p in probabilities]
    return [p / sum(powered) for p in powered]


@pytest.mark.parametrize("temperature", [1.0, 2.0])
def test_matches_hand_computation_over_old_channels_only(temperature):
    # The new channel (0.3) is dropped before the softmax: LwF ignores the background shift.
    student = _tempered([0.4, 0.2, 0.1], temperature)
    teacher = _tempered([0.5, 0.3, 0.2], temperature)
    expected = -sum(t * math.log(s) for t, s in zip(teacher, student))
    assert LwfDistillation(temperature)(NEW, OLD).item() == pytest.approx(expected, rel=1e-6)


def test_empty_mask_and_bad_temperature():
    assert LwfDistillation()(NEW, OLD, voxel_mask(False)).item() == 0.0
    with pytest.raises(ValueError, match="temperature"):
        LwfDistillation(0.0)
