"""The forgetting guard: does the new version still find the old organs where the parent did?

No old labels are needed: on the step's own CTs, the parent's mask of each old organ is compared with
the new version's (agreement DSC pooled over the CTs). Voxels the user labelled as a new organ are left
out: where the parent called today's liver "spleen", the new version saying "liver" corrects a mistake
the parent could not avoid (it had never seen a liver); it does not forget anything. Both masks are postprocessed
as ``ciss segment`` postprocesses its output (each one-piece organ kept as its large pieces): the guard judges what
the user will see, not the stray islands that never reach them (on the real-CT step, raw masks put the gallbladder's
agreement at 0.64 where the postprocessed outputs agree 0.90, benchmarks/RESULTS.md (s)). An old organ is not
compared on a CT whose labels in an earlier run of the lineage said it is absent there: the parent's mask of it on that
CT is a mistake its own training named, and a new version that paints less of it forgets nothing (a base trained on a CT
whose labels hold no gallbladder still paints a few false gallbladder voxels there, RESULTS (ax)). A drop below the
threshold keeps the new version from becoming current unless the user accepts it knowingly.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Collection, Mapping, Sequence
from typing import Any

import torch

from .postprocessing import keep_largest_pieces


@dataclasses.dataclass(frozen=True)
class GuardResult:
    threshold: float
    agreement: dict[str, float | None]  # None: the parent found the organ on none of the CTs
    postprocessed: tuple[str, ...] = ()  # the organs compared as kept in large pieces (postprocessing.py)
    known_absent: Mapping[str, tuple[int, ...]] = dataclasses.field(default_factory=dict)  # organ: the step's CTs (indices) left out

    @property
    def passed(self) -> bool:
        return all(value is None or value >= self.threshold for value in self.agreement.values())

    @property
    def failing_organs(self) -> list[str]:
        return [name for name, value in self.agreement.items() if value is not None and value < self.threshold]

    def to_json(self) -> dict[str, Any]:
        return {"passed": self.passed, "threshold": self.threshold, "agreement": self.agreement, "failing_organs": self.failing_organs,
                "postprocessed": list(self.postprocessed), "known_absent": {name: list(cts) for name, cts in self.known_absent.items()}}

    @classmethod
    def from_json(cls, recorded: Mapping[str, Any]) -> GuardResult:
        return cls(threshold=recorded["threshold"], agreement=recorded["agreement"], postprocessed=tuple(recorded.get("postprocessed", ())),
                   known_absent={name: tuple(cts) for name, cts in recorded.get("known_absent", {}).items()})


def pooled_dsc(
    references: Sequence[torch.Tensor],
    predictions: Sequence[torch.Tensor],
    organs: Sequence[tuple[int, str]],
    *,
    left_out: Sequence[torch.Tensor] | None = None,
    not_scored: Sequence[Collection[int]] | None = None,
) -> dict[str, float | None]:
    """DSC per organ pooled over the cases (intersections and sizes summed first), outside ``left_out`` (bool,
    one per case) and leaving out each case for the labels ``not_scored`` names for it; None for an organ the
    references never hold."""
    if left_out is None:
        left_out = [torch.zeros_like(reference, dtype=torch.bool) for reference in references]
    if not_scored is None:
        not_scored = [()] * len(references)
    scores: dict[str, float | None] = {}
    for label, name in organs:
        intersection = reference_voxels = predicted_voxels = 0
        for reference, prediction, outside, skipped in zip(references, predictions, left_out, not_scored):
            if label in skipped:
                continue
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
    known_absent: Sequence[Collection[int]] | None = None,
) -> GuardResult:
    """Agreement DSC per old organ between the parent's and the new model's masks, outside the voxels labelled as
    new organs (``new_organ_masks``, bool, one per CT; None compares every voxel) and the CTs where the organ is
    ``known_absent`` (labels, one collection per CT, ``organs_known_absent``), after each of the ``one_piece``
    labels is kept as its large pieces in both (``postprocessing.postprocessed_labels`` of the parent)."""
    agreement = pooled_dsc(as_shown(old_predictions, one_piece), as_shown(new_predictions, one_piece), old_organs, left_out=new_organ_masks,
                           not_scored=known_absent)
    left_out_cts = {name: tuple(i for i, absent in enumerate(known_absent or ()) if label in absent) for label, name in old_organs}
    return GuardResult(threshold=threshold, agreement=agreement, postprocessed=tuple(name for label, name in old_organs if label in one_piece),
                       known_absent={name: cts for name, cts in left_out_cts.items() if cts})


def organs_known_absent(history: Sequence[Mapping[str, Any]], case_sha256s: Sequence[str], organs: Sequence[tuple[int, str]]) -> list[frozenset[int]]:
    """For each of a step's cases, the ``organs`` (label, name) that an earlier training run of the lineage (a base
    or an organ-adding step, each history entry with its ``organs_per_case``) learned as absent from the same CT: the
    organ was one the run trained, that CT's label map held none of it, and no run labelled it there. CTs match by
    content (the image part of the case hash, cases.case_sha256), whatever label map comes with them now."""
    absent_by_ct: dict[str, set[str]] = {}
    labelled_by_ct: dict[str, set[str]] = {}
    for entry in history:
        trained = set(entry.get("organs", ()))  # a domain step trains no organ of its own: it names none absent
        for case, labelled in zip(entry.get("data_sha256", ()), entry.get("organs_per_case", ())):
            ct = case.split(":")[0]
            absent_by_ct.setdefault(ct, set()).update(trained - set(labelled))
            labelled_by_ct.setdefault(ct, set()).update(labelled)
    absent = {ct: names - labelled_by_ct[ct] for ct, names in absent_by_ct.items()}
    return [frozenset(label for label, name in organs if name in absent.get(case.split(":")[0], ())) for case in case_sha256s]
