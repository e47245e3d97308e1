"""The labelled organs' soft Dice per patch or pooled over the batch (``new_class_dice_batch``), in an organ-adding
step and in a domain step: pooled, false voxels in a patch without the organ get a gradient; per patch, none."""
from __future__ import annotations

import pytest
import torch

from ciss_engine.api.settings import DualAlignmentSettings, parse_settings_or_raise
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


def _gradient_by_patch(dice: torch.Tensor, logits: torch.Tensor) -> tuple[float, float]:
    (gradient,) = torch.autograd.grad(dice, logits)
    return float(gradient[0].abs().sum()), float(gradient[1].abs().sum())


def _step_dice(strategy: str, pooled: bool) -> tuple[float, float]:
    settings = parse_settings_or_raise(strategy, {"new_class_dice_batch": str(pooled).lower()})
    context = StepContext(NUM_OLD, NUM_NEW, FeaturePrototypes.empty(1 + NUM_OLD, FEATURES), FeaturePrototypes.empty(1 + NUM_OLD + NUM_NEW, FEATURES))
    logits = _logits()
    zeros = torch.zeros(SHAPE, dtype=torch.bool)
    batch = StepBatch(labels=_labels(), logits_new=logits, features_new=torch.zeros(SHAPE[0], FEATURES, *SHAPE[1:]),
                      logits_old=logits.detach()[:, :1 + NUM_OLD], features_old=torch.zeros(SHAPE[0], FEATURES, *SHAPE[1:]),
                      pseudo_labels=_labels(), old_region=zeros, current_region=zeros)
    return _gradient_by_patch(STRATEGIES[strategy](context, settings).new_class_dice(batch), logits)


def _domain_dice(pooled: bool) -> tuple[float, float]:
    context = DomainContext(num_classes=1 + NUM_OLD + NUM_NEW, labelled=[ORGAN], bottleneck_channels=FEATURES, feature_channels=FEATURES, buffer=None)
    logits = _logits()
    features = torch.zeros(SHAPE[0], FEATURES, *SHAPE[1:])
    batch = DomainBatch(targets=_labels(), logits_new=logits, bottleneck_new=features, bottleneck_old=features, logits_old=logits.detach(),
                        features_new=features, features_old=features)
    return _gradient_by_patch(DualAlignment(context, DualAlignmentSettings(new_class_dice_batch=pooled)).labelled_dice(batch), logits)


@pytest.mark.parametrize("dice_by_patch", [
    pytest.param(lambda pooled: _step_dice("pcdd", pooled), id="pcdd"),
    pytest.param(lambda pooled: _step_dice("mib", pooled), id="mib"),
    pytest.param(_domain_dice, id="dual_alignment"),
])
def test_pooled_dice_teaches_the_patch_without_the_organ(dice_by_patch):
    with_organ, without = dice_by_patch(False)
    # Per patch the empty patch's Dice is 1 − ε/(Σp + ε) whatever it paints: a gradient of the order of ε.
    assert without < 1e-4 * with_organ
    with_organ, without = dice_by_patch(True)
    assert without > 0.1 * with_organ

