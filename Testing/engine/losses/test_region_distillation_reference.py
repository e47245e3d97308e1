"""ORCD and CRCD against a voxel-by-voxel reference, with |O| = 2, |N| = 2 and a batch of two (a batch
mix-up or a class-order slip shows here, not in one-voxel hand computations), for every summand."""
from __future__ import annotations

import math

import pytest
import torch

from ciss_engine.losses import CurrentRegionDistillation, OldRegionDistillation

NUM_OLD, NUM_NEW, CHANNELS, TEMPERATURE = 2, 2, 3, 0.5


def _reference(logits_new, logits_old, features, prototypes, region, summand, mib_scale=False) -> float:
    """(1/|M|)·Σ_{i∈M} Σ_{c∈{0}∪O} a_{i,c}·d_{i,c}, written out one voxel at a time."""
    total, count = 0.0, 0
    teachers = NUM_OLD + 1
    for b, x, y, z in region.nonzero().tolist():
        p_new = logits_new[b, :, x, y, z].double().softmax(0)
        p = logits_old[b, :, x, y, z].double().softmax(0)
        q = torch.cat([(p_new[0] + p_new[teachers:].sum()).reshape(1), p_new[1:teachers]])
        f = features[b, :, x, y, z].double()
        cosines = torch.stack([torch.dot(f, c.double()) / (f.norm() * c.double().norm()) for c in prototypes])
        a = (cosines / TEMPERATURE).softmax(0) * (len(prototypes) / teachers if mib_scale else 1.0)
        mib = -p * q.log()
        if summand == "channel_kl":
            total += float(sum(a[c] * (p[c] * math.log(p[c] / q[c]) + (1 - p[c]) * math.log((1 - p[c]) / (1 - q[c]))) for c in range(teachers)))
        elif summand == "mib":
            total += float((a[:teachers] * mib).sum())
        else:
            total += float(teachers * (a[:teachers] * p).sum() * mib.mean())
        count += 1
    return total / count


@pytest.fixture(name="step")
def fixture_step():
    generator = torch.Generator().manual_seed(11)
    shape = (2, 3, 2, 2)
    return {
        "logits_new": torch.randn(shape[0], 1 + NUM_OLD + NUM_NEW, *shape[1:], generator=generator) * 2,
        "logits_old": torch.randn(shape[0], 1 + NUM_OLD, *shape[1:], generator=generator) * 2,
        "features": torch.randn(shape[0], CHANNELS, *shape[1:], generator=generator),
        "prototypes": torch.randn(1 + NUM_OLD + NUM_NEW, CHANNELS, generator=generator),
        "region": torch.rand(shape, generator=generator) > 0.4,
    }


@pytest.mark.parametrize("summand", ["channel_kl", "mib", "agreement"])
def test_orcd_equals_the_voxel_reference(step, summand):
    prototypes = step["prototypes"][: 1 + NUM_OLD]
    value = OldRegionDistillation(temperature=TEMPERATURE, summand=summand)(
        step["logits_new"], step["logits_old"], step["features"], prototypes, step["region"])
    expected = _reference(step["logits_new"], step["logits_old"], step["features"], prototypes, step["region"], summand)
    assert value.item() == pytest.approx(expected, rel=1e-4)


@pytest.mark.parametrize("summand", ["channel_kl", "mib", "agreement"])
@pytest.mark.parametrize("mib_scale", [False, True])
def test_crcd_equals_the_voxel_reference(step, summand, mib_scale):
    value = CurrentRegionDistillation(temperature=TEMPERATURE, summand=summand, mib_scale=mib_scale)(
        step["logits_new"], step["logits_old"], step["features"], step["prototypes"], step["region"])
    expected = _reference(step["logits_new"], step["logits_old"], step["features"], step["prototypes"], step["region"], summand, mib_scale)
    assert value.item() == pytest.approx(expected, rel=1e-4)


def test_swapping_the_two_batch_items_features_changes_the_loss(step):
    # The affinities must be read voxel by voxel from the right batch item.
    orcd = OldRegionDistillation(temperature=TEMPERATURE)
    args = (step["logits_new"], step["logits_old"])
    right = orcd(*args, step["features"], step["prototypes"][:3], step["region"])
    swapped = orcd(*args, step["features"].flip(0), step["prototypes"][:3], step["region"])
    assert not torch.isclose(right, swapped, rtol=1e-4)
