"""Build tiny (1, C, 1, 1, V) tensors from per-voxel values, so expected losses can be written by hand."""
from __future__ import annotations

from collections.abc import Sequence

import torch


def logits_from_probabilities(*voxels: Sequence[float]) -> torch.Tensor:
    """Logits (1, C, 1, 1, V) whose softmax at voxel v is ``voxels[v]`` (logits = log p)."""
    probabilities = torch.tensor(voxels, dtype=torch.float64).T
    return probabilities.log().float().reshape(1, probabilities.shape[0], 1, 1, probabilities.shape[1])


def features_from_vectors(*voxels: Sequence[float]) -> torch.Tensor:
    """Features (1, K, 1, 1, V) with ``voxels[v]`` as voxel v's K channels."""
    vectors = torch.tensor(voxels, dtype=torch.float32).T
    return vectors.reshape(1, vectors.shape[0], 1, 1, vectors.shape[1])


def voxel_labels(*values: int) -> torch.Tensor:
    """Labels (1, 1, 1, V) long."""
    return torch.tensor(values, dtype=torch.long).reshape(1, 1, 1, len(values))


def voxel_mask(*flags: bool) -> torch.Tensor:
    """A region (1, 1, 1, V) bool."""
    return torch.tensor(flags, dtype=torch.bool).reshape(1, 1, 1, len(flags))
