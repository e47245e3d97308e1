"""Tests of ciss_engine/pseudo_labels.py: exact median thresholds, Eq. 4's rules, region masks."""
from __future__ import annotations

import math

import pytest
import torch

from ciss_engine.pseudo_labels import (
    EntropyThresholds,
    exact_median,
    fixed_thresholds,
    make_pseudo_labels,
    old_model_entropy,
    region_masks,
)

from .voxel_tensors import logits_from_probabilities, voxel_labels, voxel_mask


def entropy(*probabilities: float) -> float:
    return -sum(p * math.log(p) for p in probabilities)


def test_exact_median():
    assert exact_median(torch.tensor([3.0, 1.0, 2.0])) == 2.0
    assert exact_median(torch.tensor([4.0, 1.0, 3.0, 2.0])) == 2.5


def test_entropy_in_nats():
    prediction, values = old_model_entropy(logits_from_probabilities([0.2, 0.6, 0.2], [0.7, 0.2, 0.1]))
    assert prediction.flatten().tolist() == [1, 0]
    torch.testing.assert_close(values.flatten(), torch.tensor([entropy(0.2, 0.6, 0.2), entropy(0.7, 0.2, 0.1)]))


def test_thresholds_are_medians_over_all_batches_with_floor():
    estimator = EntropyThresholds(num_old=3)
    estimator.update(logits_from_probabilities([0.1, 0.8, 0.05, 0.05], [0.2, 0.6, 0.1, 0.1], [0.7, 0.1, 0.1, 0.1]))
    estimator.update(logits_from_probabilities([0.02, 0.94, 0.02, 0.02], [0.3, 0.4, 0.2, 0.1]))
    # Class 3: near-certain voxels, entropy ≈ 2.5e-4, below the floor.
    estimator.update(logits_from_probabilities([1e-5, 1e-5, 1e-5, 1 - 3e-5]))
    # Class 1 got four voxels: the median is the mean of the two middle entropies, over both batches.
    middle = (entropy(0.1, 0.8, 0.05, 0.05) + entropy(0.2, 0.6, 0.1, 0.1)) / 2
    thresholds = estimator.thresholds()
    assert thresholds[0].item() == pytest.approx(middle, rel=1e-6)
    assert thresholds[1].item() == pytest.approx(1e-3)  # never predicted: the floor
    assert thresholds[2].item() == pytest.approx(1e-3)


def test_mask_limits_the_voxels():
    estimator = EntropyThresholds(num_old=1)
    estimator.update(logits_from_probabilities([0.1, 0.9], [0.4, 0.6]), mask=voxel_mask(True, False))
    assert estimator.thresholds().item() == pytest.approx(entropy(0.1, 0.9), rel=1e-6)


def test_fixed_thresholds_flag():
    assert fixed_thresholds(2, 0.5).tolist() == [0.5, 0.5]
    with pytest.raises(ValueError, match="> 0"):
        fixed_thresholds(2, 0.0)


def test_pseudo_label_rules():
    logits_old = logits_from_probabilities(
        [0.05, 0.9, 0.05],  # confident old class 1 (u ≈ 0.39 < 0.5) -> 1
        [0.3, 0.4, 0.3],  # argmax 1 but u ≈ 1.09 > 0.5 -> 0
        [0.9, 0.05, 0.05],  # old argmax is background -> 0, however certain
        [0.05, 0.9, 0.05],  # labelled new class 3: the new label wins -> 3
        [0.05, 0.9, 0.05],  # ignored stays ignored -> 255
        [0.05, 0.05, 0.9],  # class 2 has τ = 0.3 < u ≈ 0.39 -> 0
        [0.01, 0.01, 0.98],  # class 2, u ≈ 0.11 < 0.3 -> 2
    )
    labels = voxel_labels(0, 0, 0, 3, 255, 0, 0)
    pseudo = make_pseudo_labels(labels, logits_old, torch.tensor([0.5, 0.3]), num_old=2)
    assert pseudo.flatten().tolist() == [1, 0, 0, 3, 255, 0, 2]
    assert pseudo.dtype == labels.dtype


def test_region_masks_partition_labelled_voxels():
    old_region, current_region = region_masks(voxel_labels(1, 0, 0, 3, 255, 0, 2), num_old=2)
    assert old_region.flatten().tolist() == [True, False, False, False, False, False, True]
    assert current_region.flatten().tolist() == [False, True, True, True, False, True, False]


def test_shape_checks():
    with pytest.raises(ValueError, match="1\\+\\|O\\|"):
        make_pseudo_labels(voxel_labels(0), logits_from_probabilities([0.5, 0.5]), torch.tensor([0.5, 0.5]), num_old=2)
    with pytest.raises(ValueError, match="different voxels"):
        make_pseudo_labels(voxel_labels(0, 0), logits_from_probabilities([0.5, 0.5]), torch.tensor([0.5]), num_old=1)
    with pytest.raises(ValueError, match="channels"):
        EntropyThresholds(num_old=2).update(logits_from_probabilities([0.5, 0.5]))
