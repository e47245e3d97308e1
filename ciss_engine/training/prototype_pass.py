"""A clean pass of a trained network over whole cases to compute the global prototypes it stores."""
from __future__ import annotations

from collections.abc import Sequence

import torch

from ..events import EventSink
from ..inference import sliding_window_outputs
from ..network import SegmentationNetwork
from ..prototypes import FeaturePrototypes


def compute_global_prototypes(
    network: SegmentationNetwork,
    pairs: Sequence[tuple[torch.Tensor, torch.Tensor]],
    *,
    num_classes: int,
    patch_size: tuple[int, int, int],
    device: torch.device,
    sink: EventSink,
) -> FeaturePrototypes:
    """Mean feature per class, pre- and post-activation, over all labelled voxels of ``pairs`` (image
    (1, X, Y, Z), label (1, X, Y, Z))."""
    prototypes = FeaturePrototypes.empty(num_classes, network.feature_channels)
    network.eval()
    for index, (image, label) in enumerate(pairs):
        sink.progress("prototypes", index, len(pairs))
        _, features = sliding_window_outputs(network, image[None], patch_size=patch_size, device=device, with_features=True)
        prototypes.update_from_batch(features, torch.as_tensor(label).long())
    sink.progress("prototypes", len(pairs), len(pairs))
    return prototypes
