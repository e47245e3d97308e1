"""Prototypes for a parent version that stores none: an imported model (``ciss import``) at its first step.

PCDD compares features with the old classes' stored prototypes (METHOD.md §3), and a model trained elsewhere
comes without them, nor with the labels they were averaged over. They are bootstrapped from the step's own CTs
instead, where the old model is confident, by the rule the pseudo-labels follow (pseudo_labels.py): a voxel
counts for class c when the old model's argmax is c and its entropy is below τ_c, the median entropy of the
voxels it predicts as c on the step's CTs; the background gets its own median here, since its prototype is
stored too. Both feature spaces are averaged over the same voxels (``pre``: the tap, ``post``: its ReLU).
Two passes of the old model over the step's CTs: one for the medians, one for the features (keeping every
case's features between the two would take gigabytes on a whole-body CT). The step records that its parent's
prototypes were bootstrapped (``prototypes`` in its history entry).
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from ..bundle import BundleVersion
from ..events import EventSink
from ..inference import sliding_window_outputs
from ..network import SegmentationNetwork
from ..prototypes import IGNORE_INDEX, FeaturePrototypes
from ..pseudo_labels import exact_median, old_model_entropy
from .cases import PreparedCase

BOOTSTRAP_NOTE = "prototypes bootstrapped from the step's CTs"


def bootstrap_record(parent: BundleVersion) -> dict[str, str]:
    """The history entry's note when the step bootstrapped its parent's prototypes (the parent stores none)."""
    return {} if parent.prototypes_path.is_file() else {"prototypes": BOOTSTRAP_NOTE}


def confident_labels(prediction: torch.Tensor, entropy: torch.Tensor, thresholds: torch.Tensor) -> torch.Tensor:
    """The argmax where its entropy is at most its class's τ, IGNORE_INDEX elsewhere (same shapes as ``prediction``)."""
    return torch.where(entropy <= thresholds[prediction], prediction, IGNORE_INDEX)


def class_thresholds(predictions: Sequence[torch.Tensor], entropies: Sequence[torch.Tensor], num_classes: int) -> torch.Tensor:
    """τ_c (num_classes,): the median entropy of the voxels predicted as c; −1 (no voxel) for a class never predicted."""
    thresholds = torch.full((num_classes,), -1.0, dtype=torch.float64)
    prediction, entropy = torch.cat([p.reshape(-1) for p in predictions]), torch.cat([e.reshape(-1) for e in entropies])
    for class_id in range(num_classes):
        chosen = entropy[prediction == class_id]
        if chosen.numel():
            thresholds[class_id] = exact_median(chosen)
    return thresholds


def bootstrap_prototypes(
    network: SegmentationNetwork, cases: Sequence[PreparedCase], *, patch_size: tuple[int, int, int], device: torch.device, sink: EventSink,
) -> dict[str, Any]:
    """Prototypes of every class of ``network`` from its confident voxels on ``cases``, as the tensors a version stores."""
    num_classes = network.num_classes
    sink.log(f"the parent version stores no prototypes (an imported model): {BOOTSTRAP_NOTE}, where the old model is confident")
    network.eval()
    predictions, entropies = [], []
    for index, case in enumerate(cases):
        sink.progress("bootstrap_prototypes", index, 2 * len(cases))
        logits, _ = sliding_window_outputs(network, case.image[None], patch_size=patch_size, device=device)
        prediction, entropy = old_model_entropy(logits)
        predictions.append(prediction)
        entropies.append(entropy)
    thresholds = class_thresholds(predictions, entropies, num_classes)
    prototypes = FeaturePrototypes.empty(num_classes, network.feature_channels)
    for index, (case, prediction, entropy) in enumerate(zip(cases, predictions, entropies)):
        sink.progress("bootstrap_prototypes", len(cases) + index, 2 * len(cases))
        _, features = sliding_window_outputs(network, case.image[None], patch_size=patch_size, device=device, with_features=True)
        prototypes.update_from_batch(features, confident_labels(prediction, entropy.double(), thresholds))
    sink.progress("bootstrap_prototypes", 2 * len(cases), 2 * len(cases))
    return prototypes.to_tensors()
