"""Bottleneck vectors of whole cases, class by class: what a domain step's replay buffer is drawn from."""
from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from ..events import EventSink
from ..inference import WINDOW_BATCH, padded_to_window_batch, pads_lone_patches
from ..network import SegmentationNetwork
from ..prototypes import IGNORE_INDEX, region_rows, resize_labels


def _padded(volume: torch.Tensor, patch_size: Sequence[int], value: float) -> torch.Tensor:
    """(C, X, Y, Z) padded at the far end to whole patches."""
    pad = [amount for size, patch in zip(reversed(volume.shape[1:]), reversed(patch_size)) for amount in (0, -size % patch)]
    return F.pad(volume, pad, value=value)


def bottleneck_rows(
    network: SegmentationNetwork,
    pairs: Sequence[tuple[torch.Tensor, torch.Tensor]],
    *,
    patch_size: tuple[int, int, int],
    device: torch.device,
    sink: EventSink,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Every bottleneck cell of ``pairs`` (image (1, X, Y, Z), Ỹ (1, X, Y, Z) with 255 ignored) as rows (n, C)
    float32 with its class (n,): the case is cut into whole, non-overlapping patches (zero-padded at the far
    end, padding ignored), so a cell is computed once and in the context training gave it. The patches run
    ``WINDOW_BATCH`` at a time, as sliding-window inference runs them (a lone last one beside a copy where that is cheaper)."""
    vectors, classes = [], []
    network.eval()
    pad = pads_lone_patches(network, patch_size, device)
    for index, (image, labels) in enumerate(pairs):
        sink.progress("replay_buffer", index, len(pairs))
        image = _padded(torch.as_tensor(image).float(), patch_size, 0.0)
        labels = _padded(torch.as_tensor(labels).long(), patch_size, IGNORE_INDEX)
        corners = itertools.product(*(range(0, size, patch) for size, patch in zip(image.shape[1:], patch_size)))
        windows = [tuple(slice(start, start + patch) for start, patch in zip(corner, patch_size)) for corner in corners]
        for start in range(0, len(windows), WINDOW_BATCH):
            chosen = windows[start:start + WINDOW_BATCH]
            patches, real = padded_to_window_batch(torch.stack([image[(slice(None), *w)] for w in chosen]), pad)
            with torch.no_grad():
                bottleneck = network.bottleneck(patches.to(device)).float().cpu()[:real]
            cells = resize_labels(torch.stack([labels[(0, *w)] for w in chosen]), bottleneck.shape[2:])
            kept = cells != IGNORE_INDEX
            vectors.append(region_rows(bottleneck, kept))
            classes.append(cells[kept])
    sink.progress("replay_buffer", len(pairs), len(pairs))
    return torch.cat(vectors), torch.cat(classes).long()
