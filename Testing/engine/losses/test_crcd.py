"""Tests of ciss_engine/losses/crcd.py against hand-computed values."""
from __future__ import annotations

import math

import pytest
import torch

from ciss_engine.losses import CurrentRegionDistillation

from .voxel_tensors import features_from_vectors, logits_from_probabilities, voxel_mask

# |O| = 1, |N| = 1: new channels [0, o1, n1], old [0, o1].
NEW = logits_from_probabilities([0.3, 0.5, 0.2], [0.6, 0.3, 0.1])
OLD = logits_from_probabilities([0.2, 0.8], [0.4, 0.6])
D_0 = [-0.2 * math.log(0.3 + 0.2), -0.8 * math.log(0.5)]
D_1 = [-0.4 * math.log(0.6 + 0.1), -0.6 * math.log(0.3)]
PROTOTYPES = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])  # background, o1, n1
# Voxel 0 looks like the new organ (cosines −1, 0, 1); voxel 1 like background (cosines 1, 0, −1).
FEATURES = features_from_vectors([-3.0, 0.0], [1.0, 0.0])


def _softmax(values: list[float], temperature: float = 1.0) -> list[float]:
    exps = [math.exp(v / temperature) for v in values]
    return [e / sum(exps) for e in exps]


def test_new_class_takes_weight_but_adds_no_term():
    a_0 = _softmax([-1.0, 0.0, 1.0])  # a_{0,n1} is the largest, but d_{0,n1} = 0
    a_1 = _softmax([1.0, 0.0, -1.0])
    expected = (a_0[0] * D_0[0] + a_0[1] * D_0[1] + a_1[0] * D_1[0] + a_1[1] * D_1[1]) / 2
    value = CurrentRegionDistillation(summand="mib")(NEW, OLD, FEATURES, PROTOTYPES, voxel_mask(True, True)).item()
    assert value == pytest.approx(expected, rel=1e-6)


def test_literal_reading_without_background():
    # Softmax over S = {o1, n1}, sum over O = {o1}: cosines (0, 1) and (0, −1), at T_a = 0.5.
    crcd = CurrentRegionDistillation(summand="mib", include_background=False, temperature=0.5)
    a_0, a_1 = _softmax([0.0, 1.0], 0.5)[0], _softmax([0.0, -1.0], 0.5)[0]
    value = crcd(NEW, OLD, FEATURES, PROTOTYPES, voxel_mask(True, True)).item()
    assert value == pytest.approx((a_0 * D_0[1] + a_1 * D_1[1]) / 2, rel=1e-6)


def test_calibration_off_weights_only_classes_with_a_teacher():
    crcd = CurrentRegionDistillation(summand="mib", calibrated=False)
    value = crcd(NEW, OLD, FEATURES, PROTOTYPES, voxel_mask(False, True)).item()
    assert value == pytest.approx(sum(D_1) / 2, rel=1e-6)  # 1/(|O|+1), not 1/(|S|+1)


def test_agreement_weights_each_voxels_mib_term_by_teacher_prototype_agreement():
    a_0, a_1 = _softmax([-1.0, 0.0, 1.0], 0.5), _softmax([1.0, 0.0, -1.0], 0.5)
    # w_i = (1+|O|)·Σ_{c with a teacher} a_{i,c}·p^{t−1}_{i,c}, with the teachers (0.2, 0.8) and (0.4, 0.6).
    w_0, w_1 = 2 * (a_0[0] * 0.2 + a_0[1] * 0.8), 2 * (a_1[0] * 0.4 + a_1[1] * 0.6)
    expected = (w_0 * sum(D_0) / 2 + w_1 * sum(D_1) / 2) / 2
    crcd = CurrentRegionDistillation(summand="agreement", temperature=0.5)
    assert crcd(NEW, OLD, FEATURES, PROTOTYPES, voxel_mask(True, True)).item() == pytest.approx(expected, rel=1e-6)


def test_unknown_summand_and_direction_are_refused():
    with pytest.raises(ValueError, match="summand must be one of"):
        CurrentRegionDistillation(summand="per_organ")
    with pytest.raises(ValueError, match="kl_direction must be one of"):
        CurrentRegionDistillation(kl_direction="both")


def test_current_features_are_detached_and_empty_region_is_zero():
    features = FEATURES.clone().requires_grad_(True)
    new = NEW.clone().requires_grad_(True)
    CurrentRegionDistillation(summand="mib")(new, OLD, features, PROTOTYPES, voxel_mask(True, True)).backward()
    assert features.grad is None and new.grad is not None
    assert CurrentRegionDistillation(summand="mib")(NEW, OLD, FEATURES, PROTOTYPES, voxel_mask(False, False)).item() == 0.0


def test_prototypes_must_cover_all_classes():
    with pytest.raises(ValueError, match="1\\+\\|S\\|"):
        CurrentRegionDistillation(summand="mib")(NEW, OLD, FEATURES, PROTOTYPES[:2], voxel_mask(True, True))


@pytest.mark.parametrize("summand", ["mib", "agreement"])
def test_mib_scale_makes_flat_affinities_exactly_mib(summand):
    # Zero prototypes: every cosine is 0, so the softmax over the 1+|S| = 3 classes is flat.
    flat = torch.zeros_like(PROTOTYPES)
    mib = CurrentRegionDistillation(summand="mib", calibrated=False)(NEW, OLD, FEATURES, flat, voxel_mask(True, True)).item()
    literal = CurrentRegionDistillation(summand=summand)(NEW, OLD, FEATURES, flat, voxel_mask(True, True)).item()
    scaled = CurrentRegionDistillation(summand=summand, mib_scale=True)(NEW, OLD, FEATURES, flat, voxel_mask(True, True)).item()
    assert literal == pytest.approx(2 / 3 * mib, rel=1e-6)  # (1+|O|)/(1+|S|) of MiB's KD
    assert scaled == pytest.approx(mib, rel=1e-6)


def test_mib_scale_keeps_the_calibration():
    a_0, a_1 = _softmax([-1.0, 0.0, 1.0]), _softmax([1.0, 0.0, -1.0])
    expected = 3 / 2 * (a_0[0] * D_0[0] + a_0[1] * D_0[1] + a_1[0] * D_1[0] + a_1[1] * D_1[1]) / 2
    value = CurrentRegionDistillation(summand="mib", mib_scale=True)(NEW, OLD, FEATURES, PROTOTYPES, voxel_mask(True, True)).item()
    assert value == pytest.approx(expected, rel=1e-6)
