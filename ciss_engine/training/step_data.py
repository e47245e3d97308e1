"""What the frozen old model says about a step's CTs before training starts.

One pass of the old model over each whole case gives (1) the per-class entropy thresholds τ, (2)
the pseudo-labels Ỹ that steer patch sampling (so patches are not all new organ), (3) the features
that initialise the new organs' prototypes, and (4) the old model's own masks, which the forgetting
guard later compares with the new model's; and (5), when asked, the old model's logits and features
themselves in bf16: the cached teacher, cropped with each patch instead of running the old model again.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import torch

from ..events import EventSink
from ..inference import sliding_window_outputs
from ..network import SegmentationNetwork
from ..prototypes import IGNORE_INDEX, FeaturePrototypes
from ..pseudo_labels import EntropyThresholds, fixed_thresholds, make_pseudo_labels
from .cases import PreparedCase


@dataclasses.dataclass
class StepData:
    thresholds: torch.Tensor  # τ (|O|,)
    old_predictions: list[torch.Tensor]  # argmax of the old model per case, (X, Y, Z) uint8
    # (1+|S|) rows, running during the step: background (Ỹ = 0) and the new organs filled, old organs empty.
    running_prototypes: FeaturePrototypes
    teacher_maps: list[torch.Tensor] | None = None  # per case (1+|O| logits then K features, X, Y, Z) bf16


def running_prototype_labels(pseudo_labels: torch.Tensor, num_old: int) -> torch.Tensor:
    """Ỹ with the old organs ignored: the rows a step's running prototypes average (background, new organs)."""
    is_old = (pseudo_labels >= 1) & (pseudo_labels <= num_old)
    return torch.where(is_old, IGNORE_INDEX, pseudo_labels)


def teacher_map_bytes(cases: Sequence[PreparedCase], num_old: int, feature_channels: int) -> int:
    """Memory the cached teacher needs: bf16 logits and features over every case's network grid."""
    return sum(2 * (1 + num_old + feature_channels) * case.image[0].numel() for case in cases)


def analyse_step_cases(
    old_network: SegmentationNetwork,
    cases: Sequence[PreparedCase],
    *,
    num_old: int,
    num_new: int,
    patch_size: tuple[int, int, int],
    device: torch.device,
    fixed_threshold: float | None,
    sink: EventSink,
    keep_teacher: bool = False,
    targets: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
) -> StepData:
    """Run the old model once over every case; sets each case's ``sampling_label`` to Ỹ; with
    ``keep_teacher`` the returned data holds the old model's outputs for the cached teacher. ``targets``
    (labels, logits, τ) -> Ỹ: a domain step's partial-label Ỹ instead of the class-incremental one."""
    outputs = []
    estimator = EntropyThresholds(num_old)
    for index, case in enumerate(cases):
        sink.progress("old_model_pass", index, len(cases))
        logits, features = sliding_window_outputs(old_network, case.image[None], patch_size=patch_size, device=device, with_features=True)
        estimator.update(logits)
        outputs.append((logits, features))
    sink.progress("old_model_pass", len(cases), len(cases))
    thresholds = fixed_thresholds(num_old, fixed_threshold) if fixed_threshold is not None else estimator.thresholds()
    # The grown network starts with the old backbone, so the old features are the current ones: they
    # initialise this step's running prototypes of the new organs and of the background (Ỹ = 0, without
    # today's new organs, unlike the stored one) before CRCD needs them.
    prototypes = FeaturePrototypes.empty(1 + num_old + num_new, old_network.feature_channels)
    predictions, teacher_maps = [], []
    for case, (logits, features) in zip(cases, outputs):
        labels = case.label.as_tensor().long()
        case.sampling_label = case.label.clone()
        pseudo = targets(labels, logits, thresholds) if targets else make_pseudo_labels(labels, logits, thresholds, num_old)
        case.sampling_label.set_array(pseudo.to(torch.uint8))
        prototypes.update_from_batch(features, running_prototype_labels(pseudo, num_old))
        predictions.append(logits[0].argmax(0).to(torch.uint8))
        if keep_teacher:
            teacher_maps.append(torch.cat([logits[0], features[0]]).to(torch.bfloat16))
    return StepData(thresholds=thresholds, old_predictions=predictions, running_prototypes=prototypes, teacher_maps=teacher_maps if keep_teacher else None)
