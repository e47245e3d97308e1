"""Tests of ciss_engine/losses/unbiased_ce.py against hand-computed values."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from ciss_engine.losses import UnbiasedCrossEntropy

from .voxel_tensors import logits_from_probabilities, voxel_labels

# Channels [0, old 1, new 2]; one voxel per case below.
LOGITS = logits_from_probabilities(
    [0.5, 0.3, 0.2],  # labelled 0: target p0 + p_old = 0.8
    [0.2, 0.1, 0.7],  # labelled 2 (new): target 0.7
    [0.1, 0.6, 0.3],  # labelled 1 (confident pseudo-label): target 0.6
    [0.9, 0.05, 0.05],  # labelled 255: no loss
)
LABELS = voxel_labels(0, 2, 1, 255)


def test_mean_over_labelled_voxels_matches_hand_computation():
    expected = -(math.log(0.5 + 0.3) + math.log(0.7) + math.log(0.6)) / 3
    assert UnbiasedCrossEntropy(num_old=1)(LOGITS, LABELS).item() == pytest.approx(expected, rel=1e-6)


def test_background_absorbs_old_classes_not_new_ones():
    # MiB's CE: a background voxel may be an old organ, so its target is p0 + p_old (0.8), not p0 + p_new (0.7).
    loss = UnbiasedCrossEntropy(num_old=1)(LOGITS[..., :1], LABELS[..., :1]).item()
    assert loss == pytest.approx(-math.log(0.8), rel=1e-6)
    assert loss != pytest.approx(-math.log(0.7), rel=1e-3)


def test_no_old_classes_is_plain_cross_entropy():
    logits = torch.randn(2, 3, 2, 3, 4)
    labels = torch.randint(0, 3, (2, 2, 3, 4))
    labels[0, 0, 0, 0] = 255
    expected = F.cross_entropy(logits, labels, ignore_index=255)
    torch.testing.assert_close(UnbiasedCrossEntropy(num_old=0)(logits, labels), expected)


def test_all_ignored_gives_zero_and_no_gradient():
    logits = LOGITS.clone().requires_grad_(True)
    loss = UnbiasedCrossEntropy(num_old=1)(logits, torch.full_like(LABELS, 255))
    loss.backward()
    assert loss.item() == 0.0 and torch.count_nonzero(logits.grad) == 0


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="labels must lie"):
        UnbiasedCrossEntropy(num_old=1)(LOGITS, voxel_labels(0, 3, 1, 255))
    with pytest.raises(ValueError, match="1\\+\\|S\\|"):
        UnbiasedCrossEntropy(num_old=3)(LOGITS, LABELS)
