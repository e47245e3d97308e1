"""Tests of ciss_engine/prototypes.py: per-class gathering with B > 1, running means, storage."""
from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file, save_file

from ciss_engine.errors import BundleError
from ciss_engine.prototypes import GlobalPrototypes, class_feature_sums, local_prototypes, region_rows, resize_labels

NUM_CLASSES, CHANNELS = 3, 3


@pytest.fixture(name="batch")
def fixture_batch():
    # Channel k of voxel v in batch item b holds 100·b + 10·k + v: every value says where it came from.
    b, k, v = torch.meshgrid(torch.arange(2), torch.arange(CHANNELS), torch.arange(4), indexing="ij")
    features = (100 * b + 10 * k + v).float().reshape(2, CHANNELS, 1, 2, 2)
    labels = torch.tensor([[1, 0, 1, 255], [1, 2, 0, 1]]).reshape(2, 1, 2, 2)
    return features, labels


def _expected_sums(features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-class sums by a plain loop over voxels."""
    sums = torch.zeros(NUM_CLASSES, CHANNELS, dtype=torch.float64)
    flat_features, flat_labels = features.reshape(2, CHANNELS, -1), labels.reshape(2, -1)
    for batch_item in range(2):
        for voxel in range(flat_labels.shape[1]):
            label = int(flat_labels[batch_item, voxel])
            if label < NUM_CLASSES:
                sums[label] += flat_features[batch_item, :, voxel].double()
    return sums


def test_batch_of_two_keeps_channels_of_each_voxel(batch):
    features, labels = batch
    sums, counts = class_feature_sums(features, labels, NUM_CLASSES)
    assert sums.dtype == torch.float64 and counts.dtype == torch.int64
    torch.testing.assert_close(sums, _expected_sums(features, labels))
    assert counts.tolist() == [2, 4, 1]
    # Selecting the voxels with a boolean mask and then view(K, -1) mixes voxels and channels when B > 1;
    # on this batch it gives another class-1 prototype, so the test above would catch that bug.
    mask = (labels == 1).unsqueeze(1).expand_as(features)
    scrambled = features[mask].view(CHANNELS, -1).mean(dim=1).double()
    assert not torch.allclose(scrambled, _expected_sums(features, labels)[1] / 4)


def test_local_prototypes_are_means_with_gradient(batch):
    features, labels = batch
    features.requires_grad_(True)
    prototypes, present = local_prototypes(features, labels, NUM_CLASSES + 1)
    expected = torch.cat([_expected_sums(features.detach(), labels) / torch.tensor([[2.0], [4.0], [1.0]]),
                          torch.zeros(1, CHANNELS, dtype=torch.float64)])
    torch.testing.assert_close(prototypes.double(), expected)
    assert present.tolist() == [True, True, True, False]
    prototypes[1].sum().backward()
    assert features.grad.sum().item() == pytest.approx(CHANNELS)  # 4 voxels of class 1, weight 1/4 each channel


def test_coarse_features_take_nearest_labels():
    labels = torch.tensor([1, 0, 2, 0]).reshape(1, 1, 1, 4)
    assert resize_labels(labels, (1, 1, 2)).flatten().tolist() == [1, 2]
    features = torch.tensor([[5.0, 7.0]]).reshape(1, 1, 1, 1, 2)
    sums, counts = class_feature_sums(features, labels, 3)
    assert sums.flatten().tolist() == [0.0, 5.0, 7.0] and counts.tolist() == [0, 1, 1]


def test_running_mean_over_batches_equals_mean_over_all_voxels(batch):
    features, labels = batch
    store = GlobalPrototypes(NUM_CLASSES, CHANNELS)
    store.update_from_batch(features[:1], labels[:1])
    store.update_from_batch(features[1:], labels[1:])
    expected = _expected_sums(features, labels) / torch.tensor([[2.0], [4.0], [1.0]], dtype=torch.float64)
    torch.testing.assert_close(store.means, expected)
    assert store.counts.tolist() == [2, 4, 1]
    store.update(torch.zeros(NUM_CLASSES, CHANNELS, dtype=torch.float64), torch.zeros(NUM_CLASSES, dtype=torch.int64))
    torch.testing.assert_close(store.means, expected)  # no new voxels: unchanged


def test_safetensors_round_trip(tmp_path, batch):
    store = GlobalPrototypes(NUM_CLASSES, CHANNELS)
    store.update_from_batch(*batch)
    path = tmp_path / "prototypes.safetensors"
    save_file(store.to_tensors(), str(path))
    loaded = GlobalPrototypes.from_tensors(load_file(str(path)))
    torch.testing.assert_close(loaded.means, store.means)
    assert loaded.counts.tolist() == store.counts.tolist()
    assert loaded.as_tensor().dtype == torch.float32


def test_damaged_tensors_raise_bundle_error_with_hint():
    with pytest.raises(BundleError, match="counts") as caught:
        GlobalPrototypes.from_tensors({"prototypes": torch.zeros(2, 3)})
    assert "roll back" in caught.value.hint
    with pytest.raises(BundleError, match="do not fit"):
        GlobalPrototypes.from_tensors({"prototypes": torch.zeros(2, 3), "counts": torch.zeros(3, dtype=torch.int64)})


def test_region_rows_keep_each_voxels_channels_for_batches():
    # Channel c of voxel v in batch item b holds 100·b + 10·c + v, so a scrambled row is visible.
    tensor = torch.tensor([[[100.0 * b + 10 * c + v for v in range(4)] for c in range(3)] for b in range(2)]).reshape(2, 3, 1, 1, 4)
    region = torch.tensor([[True, False, False, True], [False, True, False, False]]).reshape(2, 1, 1, 4)
    expected = torch.tensor([[0.0, 10, 20], [3, 13, 23], [101, 111, 121]])
    torch.testing.assert_close(region_rows(tensor, region), expected)
