"""The labelled organs' soft Dice (``new_class_dice_reduction``), in an organ-adding step and in a domain step: per patch,
false voxels in a patch without the organ get no gradient; pooled over the batch they do; against the organ's volume
they do, while the patch holding the organ keeps exactly its per-patch gradient."""
from __future__ import annotations

import pytest
import torch

from ciss_engine.api.settings import DualAlignmentSettings, parse_settings_or_raise
from ciss_engine.losses.organ_dice import organ_volume_dice
from ciss_engine.prototypes import FeaturePrototypes
from ciss_engine.strategies import STRATEGIES
from ciss_engine.strategies.base import StepBatch, StepContext
from ciss_engine.strategies.domain import DomainBatch, DomainContext
from ciss_engine.strategies.dual_alignment import DualAlignment

NUM_OLD, NUM_NEW, FEATURES = 2, 1, 4
SHAPE = (2, 6, 6, 6)
ORGAN = 1 + NUM_OLD  # the new organ's class id; the domain step labels the same class


def _labels() -> torch.Tensor:
    """The organ in the first patch only; the second patch holds none of it."""
    labels = torch.zeros(SHAPE, dtype=torch.long)
    labels[0, 1:4, 1:4, 1:4] = ORGAN
    return labels


def _logits() -> torch.Tensor:
    """Logits that paint the organ in both patches: false voxels everywhere in the second one."""
    logits = torch.randn(SHAPE[0], 1 + NUM_OLD + NUM_NEW, *SHAPE[1:], generator=torch.Generator().manual_seed(4))
    logits[:, ORGAN] += 2.0
    return logits.requires_grad_()


def _gradient_by_patch(dice: torch.Tensor, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The loss's gradient on the logits of the patch holding the organ and of the one without it."""
    (gradient,) = torch.autograd.grad(dice, logits)
    return gradient[0], gradient[1]


def _step_dice(strategy: str, reduction: str) -> tuple[torch.Tensor, torch.Tensor]:
    settings = parse_settings_or_raise(strategy, {"new_class_dice_reduction": reduction})
    context = StepContext(NUM_OLD, NUM_NEW, FeaturePrototypes.empty(1 + NUM_OLD, FEATURES), FeaturePrototypes.empty(1 + NUM_OLD + NUM_NEW, FEATURES))
    logits = _logits()
    zeros = torch.zeros(SHAPE, dtype=torch.bool)
    batch = StepBatch(labels=_labels(), logits_new=logits, features_new=torch.zeros(SHAPE[0], FEATURES, *SHAPE[1:]),
                      logits_old=logits.detach()[:, :1 + NUM_OLD], features_old=torch.zeros(SHAPE[0], FEATURES, *SHAPE[1:]),
                      pseudo_labels=_labels(), old_region=zeros, current_region=zeros)
    return _gradient_by_patch(STRATEGIES[strategy](context, settings).new_class_dice(batch), logits)


def _domain_dice(reduction: str) -> tuple[torch.Tensor, torch.Tensor]:
    context = DomainContext(num_classes=1 + NUM_OLD + NUM_NEW, labelled=[ORGAN], bottleneck_channels=FEATURES, feature_channels=FEATURES, buffer=None)
    logits = _logits()
    features = torch.zeros(SHAPE[0], FEATURES, *SHAPE[1:])
    batch = DomainBatch(targets=_labels(), logits_new=logits, bottleneck_new=features, bottleneck_old=features, logits_old=logits.detach(),
                        features_new=features, features_old=features)
    return _gradient_by_patch(DualAlignment(context, DualAlignmentSettings(new_class_dice_reduction=reduction)).labelled_dice(batch), logits)


@pytest.mark.parametrize("dice_by_patch", [
    pytest.param(lambda reduction: _step_dice("pcdd", reduction), id="pcdd"),
    pytest.param(lambda reduction: _step_dice("mib", reduction), id="mib"),
    pytest.param(_domain_dice, id="dual_alignment"),
])
def test_each_reduction_teaches_the_patch_without_the_organ_as_it_says(dice_by_patch):
    own_patch, other_patch = dice_by_patch("per_patch")
    # Per patch the empty patch's Dice is 1 − ε/(Σp + ε) whatever it paints: a gradient of the order of ε.
    assert other_patch.abs().sum() < 1e-4 * own_patch.abs().sum()
    pooled_own, pooled_other = dice_by_patch("batch")
    assert pooled_other.abs().sum() > 0.1 * pooled_own.abs().sum()
    volume_own, volume_other = dice_by_patch("organ_volume")
    assert volume_other.abs().sum() > 0.1 * volume_own.abs().sum()
    # Against the organ's volume the patch holding it learns as per patch; pooled, its Dice shares a denominator.
    assert torch.allclose(volume_own, own_patch, rtol=1e-4, atol=1e-9)
    assert not torch.allclose(pooled_own, own_patch, rtol=0.05)


def test_organ_free_patches_weigh_their_false_voxels_against_the_organs_mean_volume():
    """Three patches: the organ over 8 voxels in one, 27 in another, none in the third; a second organ in none of them."""
    targets = torch.zeros(3, 2, 4, 4, 4)
    targets[0, 0, :2, :2, :2] = 1
    targets[1, 0, 1:, 1:, 1:] = 1
    probabilities = torch.rand(3, 2, 4, 4, 4, generator=torch.Generator().manual_seed(1)).requires_grad_()
    loss = organ_volume_dice(probabilities, targets)

    def own(patch: int) -> torch.Tensor:
        p, t = probabilities[patch, 0], targets[patch, 0]
        return 1 - (2 * (p * t).sum() + 1e-5) / (p.sum() + t.sum() + 1e-5)

    painted = probabilities[2, 0].sum()
    expected = (own(0) + own(1) + painted / (painted + (8 + 27) / 2 + 1e-5)) / 6  # the absent organ's three cells are 0
    assert torch.allclose(loss, expected)
    (gradient,) = torch.autograd.grad(loss, probabilities)
    assert gradient[:, 1].abs().sum() == 0  # an organ no patch holds has nothing to be weighed against
    assert gradient[2, 0].abs().sum() > 0
