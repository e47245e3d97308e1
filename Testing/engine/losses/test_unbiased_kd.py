"""Tests of ciss_engine/losses/unbiased_kd.py against hand-computed values."""
from __future__ import annotations

import math

import pytest
import torch

from ciss_engine.losses import UnbiasedKnowledgeDistillation, unbiased_distillation_terms

from .voxel_tensors import logits_from_probabilities, voxel_mask

# |O| = 2, |N| = 1: new channels [0, o1, o2, n1], old channels [0, o1, o2].
NEW = logits_from_probabilities([0.4, 0.2, 0.1, 0.3], [0.1, 0.1, 0.7, 0.1])
OLD = logits_from_probabilities([0.5, 0.3, 0.2], [0.25, 0.25, 0.5])
# d_{i,c} = −p_old·log q with q0 = p0 + p_new (background absorbs today's new organs), q_c = p_c.
VOXEL_0 = [-0.5 * math.log(0.4 + 0.3), -0.3 * math.log(0.2), -0.2 * math.log(0.1)]
VOXEL_1 = [-0.25 * math.log(0.1 + 0.1), -0.25 * math.log(0.1), -0.5 * math.log(0.7)]


def test_terms_match_hand_computation():
    terms = unbiased_distillation_terms(NEW, OLD, num_old=2)
    expected = torch.tensor([VOXEL_0, VOXEL_1]).T.reshape(1, 3, 1, 1, 2)
    torch.testing.assert_close(terms, expected.float())


def test_loss_is_channel_mean_then_voxel_mean():
    expected = (sum(VOXEL_0) / 3 + sum(VOXEL_1) / 3) / 2
    assert UnbiasedKnowledgeDistillation()(NEW, OLD).item() == pytest.approx(expected, rel=1e-6)


def test_mask_averages_over_masked_voxels_only():
    kd = UnbiasedKnowledgeDistillation()
    assert kd(NEW, OLD, voxel_mask(False, True)).item() == pytest.approx(sum(VOXEL_1) / 3, rel=1e-6)
    assert kd(NEW, OLD, voxel_mask(False, False)).item() == 0.0


def test_gradient_reaches_only_the_current_model():
    new = NEW.clone().requires_grad_(True)
    old = OLD.clone().requires_grad_(True)
    UnbiasedKnowledgeDistillation()(new, old).backward()
    assert new.grad is not None and torch.count_nonzero(new.grad) > 0
    assert old.grad is None


def test_mismatched_old_class_count_raises():
    with pytest.raises(ValueError, match="1\\+\\|O\\|"):
        unbiased_distillation_terms(NEW, OLD, num_old=1)
    with pytest.raises(ValueError, match="different voxels"):
        unbiased_distillation_terms(NEW, OLD[..., :1], num_old=2)
