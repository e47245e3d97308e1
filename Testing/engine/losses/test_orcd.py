"""Tests of ciss_engine/losses/orcd.py against hand-computed values."""
from __future__ import annotations

import math

import pytest
import torch

from ciss_engine.losses import OldRegionDistillation
from ciss_engine.losses.summands import DistillationTerms

from .voxel_tensors import features_from_vectors, logits_from_probabilities, voxel_mask

# |O| = 1, |N| = 1: new channels [0, o1, n1], old [0, o1].
NEW = logits_from_probabilities([0.3, 0.5, 0.2], [0.6, 0.3, 0.1])
OLD = logits_from_probabilities([0.2, 0.8], [0.4, 0.6])
D_0 = [-0.2 * math.log(0.3 + 0.2), -0.8 * math.log(0.5)]  # d_{i,c} = −p_old·log q, q0 = p0 + p_new
D_1 = [-0.4 * math.log(0.6 + 0.1), -0.6 * math.log(0.3)]
PROTOTYPES = torch.tensor([[1.0, 0.0], [0.0, 1.0]])  # background, o1
# Voxel 0 lies on o1's prototype (cosines 0, 1); voxel 1 is half-way (cosines 1/√2, 1/√2).
FEATURES_OLD = features_from_vectors([0.0, 2.0], [1.0, 1.0])
E = math.e
A_0 = [1 / (1 + E), E / (1 + E)]
A_1 = [0.5, 0.5]


def _weighted(weights: list[float], terms: list[float]) -> float:
    return sum(w * d for w, d in zip(weights, terms))


def test_affinity_weighted_mean_over_old_region():
    orcd = OldRegionDistillation(summand="mib")
    expected = (_weighted(A_0, D_0) + _weighted(A_1, D_1)) / 2
    assert orcd(NEW, OLD, FEATURES_OLD, PROTOTYPES, voxel_mask(True, True)).item() == pytest.approx(expected, rel=1e-6)
    only_0 = orcd(NEW, OLD, FEATURES_OLD, PROTOTYPES, voxel_mask(True, False)).item()
    assert only_0 == pytest.approx(_weighted(A_0, D_0), rel=1e-6)


def test_empty_region_contributes_zero():
    new = NEW.clone().requires_grad_(True)
    loss = OldRegionDistillation(summand="mib")(new, OLD, FEATURES_OLD, PROTOTYPES, voxel_mask(False, False))
    loss.backward()  # still part of the graph
    assert loss.item() == 0.0


def test_temperature_sharpens_towards_the_nearest_prototype():
    orcd = OldRegionDistillation(summand="mib", temperature=0.1)
    weights = [1 / (1 + math.exp(10)), math.exp(10) / (1 + math.exp(10))]
    value = orcd(NEW, OLD, FEATURES_OLD, PROTOTYPES, voxel_mask(True, False)).item()
    assert value == pytest.approx(_weighted(weights, D_0), rel=1e-6)


def test_literal_reading_without_background():
    # Softmax over O alone: the single old class gets weight 1 and the background term is dropped.
    orcd = OldRegionDistillation(summand="mib", include_background=False)
    value = orcd(NEW, OLD, FEATURES_OLD, PROTOTYPES, voxel_mask(True, True)).item()
    assert value == pytest.approx((D_0[1] + D_1[1]) / 2, rel=1e-6)


def test_calibration_off_gives_uniform_weights():
    orcd = OldRegionDistillation(summand="mib", calibrated=False)
    value = orcd(NEW, OLD, FEATURES_OLD, PROTOTYPES, voxel_mask(True, True)).item()
    assert value == pytest.approx((sum(D_0) / 2 + sum(D_1) / 2) / 2, rel=1e-6)


def test_patch_normalisation_divides_the_regions_sum_by_every_voxel():
    """A region of one voxel in a patch of two: the region mean, and half of it when every voxel counts (MiB's weight)."""
    region = voxel_mask(True, False)
    assert OldRegionDistillation(summand="mib", normalisation="patch")(NEW, OLD, FEATURES_OLD, PROTOTYPES, region).item() == pytest.approx(
        _weighted(A_0, D_0) / 2, rel=1e-6)
    both = OldRegionDistillation(summand="mib", normalisation="patch")(NEW, OLD, FEATURES_OLD, PROTOTYPES, voxel_mask(True, True)).item()
    assert both == pytest.approx((_weighted(A_0, D_0) + _weighted(A_1, D_1)) / 2, rel=1e-6)  # the whole patch: as the mean


def test_unknown_normalisation_names_the_setting():
    with pytest.raises(ValueError, match="orcd_normalisation must be one of region, patch"):
        OldRegionDistillation(normalisation="voxels")  # type: ignore[arg-type]


def test_no_gradient_into_old_features_or_prototypes():
    features = FEATURES_OLD.clone().requires_grad_(True)
    prototypes = PROTOTYPES.clone().requires_grad_(True)
    new = NEW.clone().requires_grad_(True)
    OldRegionDistillation(summand="mib")(new, OLD, features, prototypes, voxel_mask(True, True)).backward()
    assert features.grad is None and prototypes.grad is None and new.grad is not None


def test_prototype_count_must_match_old_classes():
    with pytest.raises(ValueError, match="1\\+\\|O\\|"):
        OldRegionDistillation(summand="mib")(NEW, OLD, FEATURES_OLD, torch.ones(3, 2), voxel_mask(True, True))


def test_precomputed_terms_are_the_ones_weighted():
    orcd = OldRegionDistillation(summand="mib")
    terms = orcd.terms(NEW, OLD)
    region = voxel_mask(True, True)
    fresh = orcd(NEW, OLD, FEATURES_OLD, PROTOTYPES, region).item()
    assert orcd(NEW, OLD, FEATURES_OLD, PROTOTYPES, region, terms).item() == pytest.approx(fresh, rel=1e-6)
    # The loss is linear in the terms it is given: doubled terms, doubled loss (so they are not recomputed).
    assert orcd(NEW, OLD, FEATURES_OLD, PROTOTYPES, region, DistillationTerms(2 * terms.summands, terms.teacher)).item() == pytest.approx(2 * fresh, rel=1e-6)
