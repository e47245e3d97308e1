"""PCDD with calibration off is exactly MiB (METHOD.md §3): ORCD + CRCD with uniform weights equal MiB's
unbiased KD on the union of their regions."""
from __future__ import annotations

import pytest
import torch

from ciss_engine.losses import CurrentRegionDistillation, OldRegionDistillation, UnbiasedKnowledgeDistillation
from ciss_engine.pseudo_labels import region_masks

NUM_OLD, NUM_NEW, CHANNELS = 3, 2, 4


@pytest.fixture(name="batch")
def fixture_batch():
    generator = torch.Generator().manual_seed(7)
    shape = (2, 3, 4, 5)
    logits_new = torch.randn(shape[0], 1 + NUM_OLD + NUM_NEW, *shape[1:], generator=generator) * 3
    logits_old = torch.randn(shape[0], 1 + NUM_OLD, *shape[1:], generator=generator) * 3
    pseudo_labels = torch.randint(0, 1 + NUM_OLD + NUM_NEW, shape, generator=generator)
    pseudo_labels[0, 0] = 255
    features = torch.randn(shape[0], CHANNELS, *shape[1:], generator=generator)
    return logits_new, logits_old, pseudo_labels, features


def test_each_region_equals_mib_on_that_region(batch):
    logits_new, logits_old, pseudo_labels, features = batch
    old_region, current_region = region_masks(pseudo_labels, NUM_OLD)
    mib = UnbiasedKnowledgeDistillation()
    orcd = OldRegionDistillation(summand="mib", calibrated=False)(
        logits_new, logits_old, features, torch.randn(1 + NUM_OLD, CHANNELS), old_region)
    crcd = CurrentRegionDistillation(summand="mib", calibrated=False)(
        logits_new, logits_old, features, torch.randn(1 + NUM_OLD + NUM_NEW, CHANNELS), current_region)
    torch.testing.assert_close(orcd, mib(logits_new, logits_old, old_region), rtol=1e-6, atol=0)
    torch.testing.assert_close(crcd, mib(logits_new, logits_old, current_region), rtol=1e-6, atol=0)


def _voxel_weighted_orcd_plus_crcd(logits_new, logits_old, features, pseudo_labels):
    """(|M^{t−1}|·L_orcd + |Mᵗ|·L_crcd) / |M^{t−1} ∪ Mᵗ|, both without calibration, and the union."""
    old_region, current_region = region_masks(pseudo_labels, NUM_OLD)
    orcd = OldRegionDistillation(summand="mib", calibrated=False)(
        logits_new, logits_old, features, torch.zeros(1 + NUM_OLD, CHANNELS), old_region)
    crcd = CurrentRegionDistillation(summand="mib", calibrated=False)(
        logits_new, logits_old, features, torch.zeros(1 + NUM_OLD + NUM_NEW, CHANNELS), current_region)
    union = old_region | current_region
    return (old_region.sum() * orcd + current_region.sum() * crcd) / union.sum(), union


def test_voxel_weighted_sum_equals_mib_on_the_union(batch):
    logits_new, logits_old, pseudo_labels, features = batch
    combined, union = _voxel_weighted_orcd_plus_crcd(logits_new, logits_old, features, pseudo_labels)
    mib = UnbiasedKnowledgeDistillation()(logits_new, logits_old, union)
    torch.testing.assert_close(combined, mib, rtol=1e-6, atol=0)


def test_without_ignored_voxels_it_is_mib_unmasked(batch):
    logits_new, logits_old, pseudo_labels, features = batch
    labelled = pseudo_labels.clamp(max=NUM_OLD + NUM_NEW)  # the regions now cover every voxel
    combined, union = _voxel_weighted_orcd_plus_crcd(logits_new, logits_old, features, labelled)
    assert bool(union.all())
    torch.testing.assert_close(combined, UnbiasedKnowledgeDistillation()(logits_new, logits_old), rtol=1e-6, atol=0)
