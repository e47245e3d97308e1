"""Every loss runs under bf16 autocast, computes in float32 and backpropagates, on the CPU and on CUDA."""
from __future__ import annotations

import pytest
import torch

from ciss_engine.losses import (
    CurrentRegionDistillation,
    DualAlignedPrototypeDistillation,
    LwfDistillation,
    OldRegionDistillation,
    UnbiasedCrossEntropy,
    UnbiasedKnowledgeDistillation,
)
from ciss_engine.prototypes import GlobalPrototypes
from ciss_engine.pseudo_labels import EntropyThresholds, make_pseudo_labels, region_masks

NUM_OLD, NUM_NEW, CHANNELS = 2, 1, 4
NO_CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
DEVICES = ["cpu", pytest.param("cuda", marks=NO_CUDA)]


def _all_losses(logits_new, logits_old, features_new, features_old, labels):
    """Each loss of an incremental step on one batch, in the order a PCDD step computes them."""
    estimator = EntropyThresholds(NUM_OLD)
    estimator.update(logits_old)
    pseudo = make_pseudo_labels(labels, logits_old, estimator.thresholds(), NUM_OLD)
    old_region, current_region = region_masks(pseudo, NUM_OLD)
    store = GlobalPrototypes(1 + NUM_OLD + NUM_NEW, CHANNELS)
    store.update_from_batch(features_new, pseudo)
    prototypes = store.as_tensor(logits_new.device)
    return {
        "unbiased_ce": UnbiasedCrossEntropy(NUM_OLD)(logits_new, pseudo),
        "unbiased_kd": UnbiasedKnowledgeDistillation()(logits_new, logits_old),
        "lwf": LwfDistillation()(logits_new, logits_old),
        "orcd": OldRegionDistillation()(logits_new, logits_old, features_old, prototypes[: 1 + NUM_OLD], old_region),
        "crcd": CurrentRegionDistillation()(logits_new, logits_old, features_new, prototypes, current_region),
        "dapd": DualAlignedPrototypeDistillation(NUM_OLD, NUM_NEW, 1.0, 1.0)(
            features_new, features_old, pseudo, prototypes[: 1 + NUM_OLD]),
    }


@pytest.mark.parametrize("device", DEVICES)
def test_bf16_autocast_matches_float32_on_the_same_values(device):
    generator = torch.Generator().manual_seed(3)
    shape = (2, 4, 4, 4)
    head = torch.nn.Conv3d(CHANNELS, 1 + NUM_OLD + NUM_NEW, 1).to(device)
    features_new = torch.randn(shape[0], CHANNELS, *shape[1:], generator=generator).to(device)
    features_old = torch.randn(shape[0], CHANNELS, *shape[1:], generator=generator).to(device, torch.bfloat16)
    logits_old = (torch.randn(shape[0], 1 + NUM_OLD, *shape[1:], generator=generator) * 4).to(device, torch.bfloat16)
    labels = torch.zeros(shape, dtype=torch.long)
    labels[:, :2, :2] = 1 + NUM_OLD
    labels[0, 3] = 255
    labels = labels.to(device)
    with torch.autocast(device_type=device, dtype=torch.bfloat16):
        logits_new = head(features_new)
        assert logits_new.dtype == torch.bfloat16
        losses = _all_losses(logits_new, logits_old, features_new.bfloat16(), features_old, labels)
    for name, loss in losses.items():
        assert loss.dtype == torch.float32, name
    sum(losses.values()).backward()
    assert torch.isfinite(head.weight.grad).all() and torch.count_nonzero(head.weight.grad) > 0
    # The same bf16 values given as float32 without autocast: the losses compute in float32 either way.
    reference = _all_losses(logits_new.detach().float(), logits_old.float(), features_new.bfloat16().float(),
                            features_old.float(), labels)
    for name, loss in losses.items():
        torch.testing.assert_close(loss.detach(), reference[name], rtol=1e-5, atol=1e-6, msg=name)
