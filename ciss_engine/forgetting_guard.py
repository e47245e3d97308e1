"""The forgetting guard: does the new version still find the old organs where the parent did?

No old labels are needed: on the step's own CTs, the parent's mask of each old organ is compared with
the new version's (agreement DSC pooled over the CTs). Voxels the user labelled as a new organ are left
out: where the parent called today's liver "spleen", the new version saying "liver" corrects a mistake
the parent could not avoid (it had never seen a liver); it does not forget anything. Both masks are postprocessed
as ``ciss segment`` postprocesses its output (each one-piece organ kept as its large pieces): the guard judges what
the user will see, not the stray islands that never reach them (on the real-CT step, raw masks put the gallbladder's
agreement at 0.64 where the postprocessed outputs agree 0.90, benchmarks/RESULTS.md (s)). A drop below the
threshold keeps the new version from becoming current unless the user accepts it knowingly.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import torch

from .postprocessing import keep_largest_pieces


@dataclasses.dataclass(frozen=True)
class GuardResult:
    threshold: float
    agreement: dict[str, float | None]  # None: the parent found the organ on none of the CTs
    postprocessed: tuple[str, ...] = ()  # the organs compared as kept in large pieces (postprocessing.py)

    @property
    def passed(self) -> bool:
        return all(value is None or value >= self.threshold for value in self.agreement.values())

    @property
    def failing_organs(self) -> list[str]:
        return [name for name, value in self.agreement.items() if value is not None and value < self.threshold]

    def to_json(self) -> dict[str, Any]:
        return {"passed": self.passed, "threshold": self.threshold, "agreement": self.agreement, "failing_organs": self.failing_organs,
                "postprocessed": list(self.postprocessed)}


def pooled_dsc(
    references: Sequence[torch.Tensor],
    predictions: Sequence[torch.Tensor],
    organs: Sequence[tuple[int, str]],
    *,
    left_out: Sequence[torch.Tensor] | None = None,
) -> dict[str, float | None]:
    """DSC per organ pooled over the cases (intersections and sizes summed first), outside ``left_out`` (bool,
    one per case); None for an organ the references never hold."""
    if left_out is None:
        left_out = [torch.zeros_like(reference, dtype=torch.bool) for reference in references]
    scores: dict[str, float | None] = {}
    for label, name in organs:
        intersection = reference_voxels = predicted_voxels = 0
        for reference, prediction, outside in zip(references, predictions, left_out):
            reference_mask, predicted_mask = (reference == label) & ~outside, (prediction == label) & ~outside
            intersection += int((reference_mask & predicted_mask).sum())
            reference_voxels += int(reference_mask.sum())
            predicted_voxels += int(predicted_mask.sum())
        scores[name] = round(2.0 * intersection / (reference_voxels + predicted_voxels), 4) if reference_voxels else None
    return scores


def as_shown(predictions: Sequence[torch.Tensor], one_piece: Sequence[int]) -> list[torch.Tensor]:
    """The masks as ``ciss segment`` shows them: each of the ``one_piece`` labels kept as its large pieces."""
    return [torch.from_numpy(keep_largest_pieces(p.cpu().numpy(), one_piece)) for p in predictions] if one_piece else list(predictions)


def check_forgetting(
    old_predictions: Sequence[torch.Tensor],
    new_predictions: Sequence[torch.Tensor],
    old_organs: Sequence[tuple[int, str]],
    *,
    threshold: float,
    new_organ_masks: Sequence[torch.Tensor] | None = None,
    one_piece: Sequence[int] = (),
) -> GuardResult:
    """Agreement DSC per old organ between the parent's and the new model's masks, outside the voxels labelled as
    new organs (``new_organ_masks``, bool, one per CT; None compares every voxel), after each of the ``one_piece``
    labels is kept as its large pieces in both (``postprocessing.postprocessed_labels`` of the parent)."""
    agreement = pooled_dsc(as_shown(old_predictions, one_piece), as_shown(new_predictions, one_piece), old_organs, left_out=new_organ_masks)
    return GuardResult(threshold=threshold, agreement=agreement, postprocessed=tuple(name for label, name in old_organs if label in one_piece))
