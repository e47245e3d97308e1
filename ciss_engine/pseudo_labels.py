"""Pseudo-labels of the old organs (METHOD.md §3, PCDD Eq. 4 after PLOP) and the regions they define.

A step's labels mark only the new organs. Where the frozen old model is confident about an old organ,
its prediction is kept as a label (Ỹ); confidence is the old model's entropy below a per-class threshold
τ_c, the median entropy of the voxels it predicts as c on the step's own data (PLOP, Douillard et al.
CVPR 2021). Ỹ then splits the voxels into the old region M^{t−1} (ORCD) and the current region Mᵗ (CRCD).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .prototypes import IGNORE_INDEX

THRESHOLD_FLOOR = 1e-3


def old_model_entropy(logits_old: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The old model's argmax over {0} ∪ O and its entropy u = −Σ_c p·log p in nats, both (B, D, H, W)."""
    with torch.no_grad(), torch.autocast(device_type=logits_old.device.type, enabled=False):
        log_p = F.log_softmax(logits_old.float(), dim=1)
        entropy = -(log_p.exp() * log_p).sum(dim=1)
        return log_p.argmax(dim=1), entropy


def exact_median(values: torch.Tensor) -> float:
    """The median of a non-empty 1-D tensor; the mean of the two middle values when the count is even."""
    ordered = values.double().sort().values
    middle = ordered.numel() // 2
    if ordered.numel() % 2:
        return float(ordered[middle])
    return float((ordered[middle - 1] + ordered[middle]) / 2)


class EntropyThresholds:
    """Per-class entropy thresholds τ_c (PLOP): accumulate over the step's data, then take exact medians.

    Before training, run the old model over every training volume of the step and pass its logits to
    :meth:`update`; :meth:`thresholds` gives τ_c = max(median entropy of the voxels predicted as c, floor)
    for c = 1..|O|. Entropies are kept per class (float32 on the CPU) because the median is exact, not a
    histogram estimate: ~4 bytes a predicted-foreground voxel. A fixed τ is :func:`fixed_thresholds`.

    Args:
        num_old: |O|, the old model's foreground classes.
        floor: lower bound of τ, 1e-3 [default]; also τ of a class that was never predicted, so that class
            gets pseudo-labels only where the old model is all but certain.
    """

    def __init__(self, num_old: int, floor: float = THRESHOLD_FLOOR) -> None:
        if num_old < 1:
            raise ValueError(f"thresholds need at least one old class, got num_old={num_old}")
        self.num_old = num_old
        self.floor = floor
        self._entropies: list[list[torch.Tensor]] = [[] for _ in range(num_old)]

    def update(self, logits_old: torch.Tensor, mask: torch.Tensor | None = None) -> None:
        """Add the old model's logits (B, 1+|O|, D, H, W); ``mask`` (B, D, H, W) bool limits the voxels."""
        if logits_old.shape[1] != self.num_old + 1:
            raise ValueError(f"logits_old has {logits_old.shape[1]} channels, expected 1+|O| = {self.num_old + 1}")
        prediction, entropy = old_model_entropy(logits_old)
        if mask is not None:
            prediction = torch.where(mask, prediction, 0)
        for class_id in range(1, self.num_old + 1):
            selected = entropy[prediction == class_id]
            if selected.numel():
                self._entropies[class_id - 1].append(selected.float().cpu())

    def thresholds(self) -> torch.Tensor:
        """τ (|O|,) float32, entry c−1 for old class c."""
        medians = [exact_median(torch.cat(chunks)) if chunks else self.floor for chunks in self._entropies]
        return torch.tensor(medians, dtype=torch.float32).clamp(min=self.floor)


def fixed_thresholds(num_old: int, value: float) -> torch.Tensor:
    """The same τ for every old class (``ciss learn --fixed-threshold``); the per-class median
    of :class:`EntropyThresholds` is the default."""
    if not value > 0:
        raise ValueError(f"a fixed entropy threshold must be > 0, got {value}")
    return torch.full((num_old,), float(value), dtype=torch.float32)


def make_pseudo_labels(
    labels: torch.Tensor, logits_old: torch.Tensor, thresholds: torch.Tensor, num_old: int
) -> torch.Tensor:
    """Ỹ (PCDD Eq. 4): the step's label where it is not 0 (new organs and ignore win), else the old model's
    class where its argmax is an old organ with entropy u < τ_c, else 0.

    Shapes: labels (B, D, H, W) long ordered [0, O, N] (255 ignored), logits_old (B, 1+|O|, D, H, W) on the
        same voxels, thresholds (|O|,) -> Ỹ (B, D, H, W), labels' dtype.
    """
    if logits_old.shape[1] != num_old + 1 or tuple(thresholds.shape) != (num_old,):
        raise ValueError(f"logits_old {tuple(logits_old.shape)} and thresholds {tuple(thresholds.shape)} must have "
                         f"1+|O| = {num_old + 1} channels and |O| = {num_old} entries")
    if logits_old.shape[:1] + logits_old.shape[2:] != labels.shape:
        raise ValueError(f"labels {tuple(labels.shape)} and logits_old {tuple(logits_old.shape)} "
                         "cover different voxels")
    prediction, entropy = old_model_entropy(logits_old)
    # τ of the background is −∞: a background prediction never becomes a pseudo-label.
    per_class = torch.cat([thresholds.new_full((1,), float("-inf")), thresholds]).to(entropy.device, torch.float32)
    confident = entropy < per_class[prediction]
    old_class = torch.where(confident, prediction, 0).to(labels.dtype)
    return torch.where(labels != 0, labels, old_class)


def region_masks(
    pseudo_labels: torch.Tensor, num_old: int, ignore_index: int = IGNORE_INDEX
) -> tuple[torch.Tensor, torch.Tensor]:
    """The old region M^{t−1} = [Ỹ ∈ O] and the current region Mᵗ = [Ỹ ∈ N ∪ {0}], both (B, D, H, W) bool.

    Ignored voxels belong to neither, so the two regions partition the labelled voxels.
    """
    old_region = (pseudo_labels >= 1) & (pseudo_labels <= num_old)
    current_region = ~old_region & (pseudo_labels != ignore_index)
    return old_region, current_region


def partial_label_targets(
    labels: torch.Tensor, logits_old: torch.Tensor, thresholds: torch.Tensor, unlabelled: torch.Tensor, ignore_index: int = IGNORE_INDEX
) -> torch.Tensor:
    """Ỹ of a domain step, whose labels cover only some organs (``ciss adapt``): the label where it is not 0;
    elsewhere, where the old model's argmax is an organ this step has no labels for, that organ if the old model
    is confident (u < τ_c) and ignored if not (it may be that organ or background); else background, since the
    labelled organs' labels are complete.

    Shapes: labels (B, D, H, W) long (class ids of the bundle), logits_old (B, C, D, H, W) over every class,
        thresholds (C−1,), unlabelled (C,) bool, True for organs without labels in this step -> Ỹ (B, D, H, W).
    """
    prediction, entropy = old_model_entropy(logits_old)
    per_class = torch.cat([thresholds.new_full((1,), float("-inf")), thresholds]).to(entropy.device, torch.float32)
    without_labels = unlabelled.to(prediction.device)[prediction]
    confident = entropy < per_class[prediction]
    guess = torch.where(without_labels, torch.where(confident, prediction, ignore_index), 0).to(labels.dtype)
    return torch.where(labels != 0, labels, guess)
