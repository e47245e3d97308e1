"""A clean pass of a trained network over whole cases to compute the global prototypes it stores."""
from __future__ import annotations

from collections.abc import Sequence

import torch

from ..events import EventSink
from ..inference import sliding_window_outputs
from ..network import SegmentationNetwork
from ..prototypes import FeaturePrototypes


def prototypes_and_predictions(
    network: SegmentationNetwork,
    pairs: Sequence[tuple[torch.Tensor, torch.Tensor]],
    *,
    num_classes: int,
    patch_size: tuple[int, int, int],
    device: torch.device,
    sink: EventSink,
) -> tuple[FeaturePrototypes, list[torch.Tensor]]:
    """Mean feature per class, pre- and post-activation, over all labelled voxels of ``pairs`` (image
    (1, X, Y, Z), label (1, X, Y, Z)), and from the same pass the network's label of every voxel of each image (what
    a step's forgetting guard compares, as ``step_common.whole_ct_labels``): a step ends with one whole-CT pass of its
    network instead of two."""
    prototypes = FeaturePrototypes.empty(num_classes, network.feature_channels)
    predictions = []
    network.eval()
    for index, (image, label) in enumerate(pairs):
        sink.progress("prototypes", index, len(pairs))
        logits, features = sliding_window_outputs(network, image[None], patch_size=patch_size, device=device, with_features=True)
        prototypes.update_from_batch(features, torch.as_tensor(label).long())
        predictions.append(logits[0].argmax(0).to(torch.uint8))
    sink.progress("prototypes", len(pairs), len(pairs))
    return prototypes, predictions
