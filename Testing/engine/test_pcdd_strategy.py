"""The PCDD strategy wires its recorded settings into its losses (checked end to end from --setting values)."""
from __future__ import annotations

import pytest
import torch

from ciss_engine.prototypes import GlobalPrototypes
from ciss_engine.pseudo_labels import region_masks
from ciss_engine.strategies.base import StepBatch, StepContext, parse_settings_or_raise
from ciss_engine.strategies.pcdd import PcddSettings, PrototypeCalibratedDistillation

NUM_OLD, NUM_NEW, CHANNELS = 2, 2, 4


def _batch() -> StepBatch:
    generator = torch.Generator().manual_seed(3)
    shape = (2, 4, 4, 4)
    pseudo_labels = torch.randint(0, 1 + NUM_OLD + NUM_NEW, shape, generator=generator)
    old_region, current_region = region_masks(pseudo_labels, NUM_OLD)
    return StepBatch(
        labels=torch.where(pseudo_labels > NUM_OLD, pseudo_labels, 0),
        logits_new=torch.randn(shape[0], 1 + NUM_OLD + NUM_NEW, *shape[1:], generator=generator),
        features_new=torch.randn(shape[0], CHANNELS, *shape[1:], generator=generator),
        logits_old=torch.randn(shape[0], 1 + NUM_OLD, *shape[1:], generator=generator),
        features_old=torch.randn(shape[0], CHANNELS, *shape[1:], generator=generator),
        pseudo_labels=pseudo_labels, old_region=old_region, current_region=current_region,
    )


def _loss_parts(overrides: dict[str, str]) -> dict[str, torch.Tensor]:
    settings = parse_settings_or_raise(PcddSettings, "pcdd", overrides)
    context = StepContext(NUM_OLD, NUM_NEW, torch.randn(1 + NUM_OLD, CHANNELS, generator=torch.Generator().manual_seed(5)),
                          GlobalPrototypes(1 + NUM_OLD + NUM_NEW, CHANNELS))
    return PrototypeCalibratedDistillation(context, settings).supervised_loss(_batch())[1]


def test_crcd_mib_scale_is_on_by_default_and_scales_only_crcd():
    assert PcddSettings().crcd_mib_scale is True
    scaled, literal = _loss_parts({}), _loss_parts({"crcd_mib_scale": "false"})
    # (1+|S|)/(1+|O|) = 5/3 on CRCD; every other term is untouched.
    assert scaled["crcd"].item() == pytest.approx(5 / 3 * literal["crcd"].item(), rel=1e-5)
    for name in ("unbiased_ce", "orcd", "dapd"):
        assert scaled[name].item() == pytest.approx(literal[name].item(), rel=1e-6)
