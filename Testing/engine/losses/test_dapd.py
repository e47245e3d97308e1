"""Tests of ciss_engine/losses/dapd.py against hand-computed values."""
from __future__ import annotations

import pytest
import torch

from ciss_engine.losses import DualAlignedPrototypeDistillation

from .voxel_tensors import features_from_vectors, voxel_labels

# |O| = 1, |N| = 1, K = 2. Ỹ: background, old organ, new organ, ignored.
PSEUDO_LABELS = voxel_labels(0, 1, 2, 255)
FEATURES_NEW = features_from_vectors([1.0, 0.0], [0.0, 2.0], [3.0, 0.0], [9.0, 9.0])
FEATURES_OLD = features_from_vectors([0.0, 0.0], [0.0, 1.0], [1.0, 1.0], [9.0, 9.0])
GLOBAL = torch.tensor([[1.0, 1.0], [0.0, 0.0]])
# Old local prototypes: background = mean over Ỹ ∈ {0, 2} = (0.5, 0.5); old organ = (0, 1).
# Default current background = mean over Ỹ ∈ {0, 2} = (2, 0); old organ = (0, 2).
#   L_ll = mean(‖(2,0)−(.5,.5)‖², ‖(0,2)−(0,1)‖²) = mean(2.5, 1) = 1.75
#   L_lg = mean(‖(2,0)−(1,1)‖², ‖(0,2)−(0,0)‖²) = mean(2, 4) = 3
# Literal current background = mean(Ỹ=0) + mean(Ỹ=2) = (1,0) + (3,0) = (4, 0):
#   L_ll = mean(12.5, 1) = 6.75;  L_lg = mean(10, 4) = 7


@pytest.mark.parametrize(
    "background, expected",
    [("mean_of_current_region", 1.75 + 0.5 * 3.0), ("sum_of_class_means", 6.75 + 0.5 * 7.0)],
)
def test_matches_hand_computation(background, expected):
    dapd = DualAlignedPrototypeDistillation(num_old=1, num_new=1, lambda_ll=1.0, lambda_lg=0.5, background=background)
    assert dapd(FEATURES_NEW, FEATURES_OLD, PSEUDO_LABELS, GLOBAL).item() == pytest.approx(expected, rel=1e-6)


def test_default_weights_are_one_hundredth_over_channels():
    dapd = DualAlignedPrototypeDistillation(num_old=1, num_new=1)
    expected = 0.01 / 2 * (1.75 + 3.0)  # K = 2
    assert dapd(FEATURES_NEW, FEATURES_OLD, PSEUDO_LABELS, GLOBAL).item() == pytest.approx(expected, rel=1e-6)


def test_only_present_classes_count():
    # No old-organ voxel: only the background term, ‖(2,0)−(.5,.5)‖² = 2.5 and ‖(2,0)−(1,1)‖² = 2.
    labels = voxel_labels(0, 255, 2, 255)
    dapd = DualAlignedPrototypeDistillation(num_old=1, num_new=1, lambda_ll=1.0, lambda_lg=1.0)
    assert dapd(FEATURES_NEW, FEATURES_OLD, labels, GLOBAL).item() == pytest.approx(4.5, rel=1e-6)
    assert dapd(FEATURES_NEW, FEATURES_OLD, torch.full_like(labels, 255), GLOBAL).item() == 0.0


def test_batch_of_two_gathers_per_voxel_and_gradient_reaches_current_features_only():
    # The same four voxels split over two batch items give the same prototypes and loss.
    features_new = torch.cat([FEATURES_NEW[..., :2], FEATURES_NEW[..., 2:]]).requires_grad_(True)
    features_old = torch.cat([FEATURES_OLD[..., :2], FEATURES_OLD[..., 2:]]).requires_grad_(True)
    labels = torch.cat([PSEUDO_LABELS[..., :2], PSEUDO_LABELS[..., 2:]])
    dapd = DualAlignedPrototypeDistillation(num_old=1, num_new=1, lambda_ll=1.0, lambda_lg=0.5)
    loss = dapd(features_new, features_old, labels, GLOBAL)
    loss.backward()
    assert loss.item() == pytest.approx(1.75 + 1.5, rel=1e-6)
    assert features_old.grad is None
    assert torch.count_nonzero(features_new.grad[1, :, 0, 0, 1]) == 0  # the ignored voxel
    assert torch.count_nonzero(features_new.grad[0]) > 0


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="dapd_background"):
        DualAlignedPrototypeDistillation(1, 1, background="sum")
    with pytest.raises(ValueError, match="lambda_ll"):
        DualAlignedPrototypeDistillation(1, 1, lambda_ll=-1.0)
    with pytest.raises(ValueError, match="global prototypes"):
        DualAlignedPrototypeDistillation(1, 1)(FEATURES_NEW, FEATURES_OLD, PSEUDO_LABELS, torch.ones(3, 2))
