"""Tests of ciss_engine/losses/affinity.py against hand-computed values."""
from __future__ import annotations

import math

import pytest
import torch

from ciss_engine.losses import OldRegionDistillation, prototype_affinity
from ciss_engine.losses.affinity import affinity_columns
from ciss_engine.losses.summands import DistillationTerms
from ciss_engine.prototypes import region_rows

from .voxel_tensors import features_from_vectors, voxel_mask

PROTOTYPES = torch.tensor([[2.0, 0.0], [0.0, 3.0], [1.0, 1.0]])


def _softmax(values: list[float]) -> list[float]:
    exps = [math.exp(v) for v in values]
    return [e / sum(exps) for e in exps]


@pytest.mark.parametrize("temperature", [1.0, 0.1])
def test_softmax_of_cosines_over_temperature(temperature):
    features = features_from_vectors([5.0, 0.0], [0.0, 0.0])
    affinity = prototype_affinity(features, PROTOTYPES, temperature)
    # Voxel 0 has cosines 1, 0, 1/√2 (lengths do not matter); voxel 1 is a zero vector: cosines 0, uniform.
    expected_0 = _softmax([1.0 / temperature, 0.0, (1.0 / math.sqrt(2.0)) / temperature])
    torch.testing.assert_close(affinity[0, :, 0, 0, 0], torch.tensor(expected_0))
    torch.testing.assert_close(affinity[0, :, 0, 0, 1], torch.full((3,), 1.0 / 3.0))


def test_shape_and_argument_checks():
    features = torch.randn(2, 2, 3, 4, 5)
    assert prototype_affinity(features, PROTOTYPES, 1.0).shape == (2, 3, 3, 4, 5)
    with pytest.raises(ValueError, match="feature channels"):
        prototype_affinity(features, torch.ones(3, 4), 1.0)
    with pytest.raises(ValueError, match="temperature"):
        prototype_affinity(features, PROTOTYPES, 0.0)


def test_coarse_affinities_are_upsampled_and_stay_normalised():
    # With d = 1 everywhere the loss is the mean of Σ_c a_c, which must stay 1 after trilinear upsampling.
    terms = DistillationTerms(torch.ones(1, 3, 4, 4, 4), torch.ones(1, 3, 4, 4, 4) / 3)
    features = torch.randn(1, 2, 2, 2, 2)
    region = torch.ones(1, 4, 4, 4, dtype=torch.bool)
    assert OldRegionDistillation().weigh(terms, features, PROTOTYPES, region).item() == pytest.approx(1.0, rel=1e-6)


def test_uniform_weight_and_empty_region():
    summands = torch.tensor([1.0, 3.0, 5.0, 7.0]).reshape(1, 2, 1, 1, 2)  # voxel 0: d = (1, 5); voxel 1: (3, 7)
    terms = DistillationTerms(summands, torch.full_like(summands, 0.5))
    uniform = OldRegionDistillation(calibrated=False)
    features = torch.zeros(1, 2, 1, 1, 2)
    assert uniform.weigh(terms, features, PROTOTYPES[:2], voxel_mask(True, False)).item() == pytest.approx(3.0)
    assert uniform.weigh(terms, features, PROTOTYPES[:2], voxel_mask(False, False)).item() == 0.0


def test_region_affinities_equal_the_full_grid_ones():
    features = torch.randn(2, 2, 3, 4, 5)
    region = torch.rand(2, 3, 4, 5) > 0.5
    full = prototype_affinity(features, PROTOTYPES, 0.5)
    torch.testing.assert_close(affinity_columns(region_rows(features, region), PROTOTYPES, 0.5), region_rows(full, region).T)
