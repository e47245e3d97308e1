"""Dual-Alignment's feature-mapping and pairing blocks (METHOD.md §6), transferred to 3D feature maps.

The mapping is a small trainable projection of feature vectors (CNA: the decoder's output by default, or the
bottleneck; CRA: the bottleneck) into an embedding where HSIC compares them.
It is trained with the step (the step hands it to the optimizer beside the network, training/adapt.py) and
lives in the strategy object only: it is checkpointed for ``--resume`` but never written to ``models/model.pt``,
so segmentation never runs it. Pairing decides which rows HSIC compares: the same voxel of the current and the
previous model (CNA), or a current vector and a buffered one of the same class (CRA).
"""
from __future__ import annotations

import torch
from torch import nn

from ..prototypes import IGNORE_INDEX, region_rows, resize_labels
from ..replay_buffer import ReplayBuffer


class FeatureMapping(nn.Module):
    """Linear projection C -> E and LayerNorm of feature rows: (n, C) -> (n, E).

    Only the current model's side is mapped; the previous model's and the buffer's vectors enter HSIC as they
    are. A trainable map on both sides could rotate both onto one shared direction and make the dependence
    high without keeping anything; one-sided, the current features may drift by what a linear map absorbs
    (the new scanner's contrast) while their relations between voxels must stay.
    """

    def __init__(self, channels: int, embedding_size: int) -> None:
        super().__init__()
        self.projection = nn.Linear(channels, embedding_size)
        self.norm = nn.LayerNorm(embedding_size)

    def forward(self, rows: torch.Tensor) -> torch.Tensor:
        return self.norm(self.projection(rows))


def voxel_rows(features: torch.Tensor) -> torch.Tensor:
    """(B, C, D, H, W) -> (B·D·H·W, C): one row a voxel, its channels in order."""
    return features.movedim(1, -1).reshape(-1, features.shape[1])


def pair_positions(
    current: torch.Tensor, previous: torch.Tensor, max_rows: int, where: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """CNA's pairs: the rows of the same voxels (at most ``max_rows``, drawn with torch's generator, which the
    loop seeds per iteration) from the current and the previous bottleneck, both (B, C, D, H, W); only voxels
    where ``where`` (B, D, H, W, resampled by nearest neighbour to their grid) holds, when given."""
    if current.shape[0] != previous.shape[0] or current.shape[2:] != previous.shape[2:]:
        raise ValueError(f"bottlenecks {tuple(current.shape)} and {tuple(previous.shape)} cover different voxels")
    rows_current, rows_previous = voxel_rows(current), voxel_rows(previous)
    candidates = torch.arange(rows_current.shape[0], device=current.device)
    if where is not None:
        candidates = resize_labels(where.to(torch.uint8), current.shape[2:]).reshape(-1).nonzero().flatten()
    chosen = candidates[torch.randperm(candidates.shape[0], device=current.device)[:max_rows]]
    return rows_current[chosen], rows_previous[chosen]


def bottleneck_classes(labels: torch.Tensor, bottleneck: torch.Tensor) -> torch.Tensor:
    """The class of each bottleneck cell: Ỹ (B, D, H, W) resampled by nearest neighbour to the bottleneck grid."""
    return resize_labels(labels, bottleneck.shape[2:])


def pair_by_class(
    current: torch.Tensor, classes: torch.Tensor, buffer: ReplayBuffer, max_rows: int
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """CRA's pairs: for each class with rows both in the current bottleneck (B, C, D, H, W, classes (B, D, H, W))
    and in the buffer, as many current rows as buffered ones, drawn at random; row i of both has the same
    class, so HSIC sees whether the current features group the classes as the buffered ones do. None when
    fewer than two classes pair (one class alone has no structure to align)."""
    shared = [c for c in torch.unique(classes).tolist() if c != IGNORE_INDEX and (buffer.classes == c).any()]
    if len(shared) < 2:
        return None
    per_class = max(max_rows // len(shared), 1)
    pairs_current, pairs_buffer = [], []
    for class_id in shared:
        mine, theirs = region_rows(current, classes == class_id), buffer.rows_of(class_id).to(current.device)
        count = min(mine.shape[0], theirs.shape[0], per_class)
        pairs_current.append(mine[torch.randperm(mine.shape[0], device=current.device)[:count]])
        pairs_buffer.append(theirs[torch.randperm(theirs.shape[0], device=current.device)[:count]])
    return torch.cat(pairs_current), torch.cat(pairs_buffer)
