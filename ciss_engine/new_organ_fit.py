"""How well a step learned its new organs, on the step's own CTs, against the labels the user drew.

The forgetting guard judges the old organs; nothing told the user how the new ones came out. A short step can paint a
new organ far from where it was drawn (on the real CTs the `standard` step painted small bowel down into the pelvis as
pancreas in two seeds of three, DSC 0.35: benchmarks/RESULTS.md (av), (aw)) and still be published. The new labels are
complete on each CT (every voxel not drawn as a new organ is not that organ), so every voxel the new version paints as
a new organ outside its label is wrong, and one more than ``FAR_MM`` from any of its labelled voxels is a false piece
(or the organ where its label misses it) rather than a boundary. Scored as ``ciss segment`` shows the masks (one-piece organs kept as their large pieces).
"""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import torch
from monai.transforms.utils import distance_transform_edt

from .events import EventSink
from .forgetting_guard import as_shown, pooled_dsc

# A voxel this far from every voxel of its organ's label is a false piece, not a boundary error (the real-CT
# benchmarks count "stray" voxels the same way).
FAR_MM = 30.0
# Below this DSC on its own training CTs a new organ is flagged (issue 14's bar for the thin organs after a step).
POOR_DSC = 0.5
# Flagged too when more than this share of what the version paints as the organ lies far from its label.
FAR_SHARE = 0.1


@dataclasses.dataclass(frozen=True)
class OrganFit:
    """One new organ on the step's CTs: DSC against its labels (pooled over the CTs; None where it is labelled on none),
    each CT's own DSC in the order the CTs were given (None on a CT without its label: pooled, a CT where it is large
    hides one where it failed), the voxels painted as it, and those of them more than ``FAR_MM`` from its label."""

    dsc: float | None
    case_dsc: tuple[float | None, ...]
    painted_voxels: int
    far_voxels: int

    def problems(self, ct_names: Sequence[str]) -> list[str]:
        """What deserves the user's look, in words: a low DSC on any CT (``ct_names``: the CTs in the order given), or
        much of the organ painted far from its label (a false piece, or the organ where its label misses it: on a CT
        whose labels lack it, every voxel painted is far)."""
        found = []
        poor = [f"{ct} ({dsc:.2f})" for ct, dsc in zip(ct_names, self.case_dsc) if dsc is not None and dsc < POOR_DSC]
        if poor:
            found.append(f"it matches its label poorly (DSC under {POOR_DSC:g}) on {', '.join(poor)}")
        if self.far_voxels > FAR_SHARE * self.painted_voxels:
            found.append(f"over {FAR_SHARE:.0%} of it is painted more than {FAR_MM:g} mm from its label")
        return found

    def describe(self, name: str) -> str:
        dsc = "no label" if self.dsc is None else f"DSC {self.dsc:.2f}"
        by_ct = f"{' / '.join('–' if d is None else f'{d:.2f}' for d in self.case_dsc)} by CT; " if len(self.case_dsc) > 1 else ""
        return f"{name} {dsc} ({by_ct}{self.painted_voxels} voxels painted, {self.far_voxels} more than {FAR_MM:g} mm from its label)"

    def to_json(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "case_dsc": list(self.case_dsc)}


def new_organ_fit(
    labels: Sequence[torch.Tensor], predictions: Sequence[torch.Tensor], organs: Sequence[tuple[int, str]], *,
    spacing_mm: Sequence[float], one_piece: Sequence[int],
) -> dict[str, OrganFit]:
    """Each of ``organs`` (label, name) as the new version shows it (``predictions``, one (X, Y, Z) label map per CT,
    postprocessed with ``one_piece``) against the user's ``labels`` on the same grid of ``spacing_mm``."""
    shown = as_shown(predictions, one_piece)
    dsc = pooled_dsc(labels, shown, organs)
    per_case = [pooled_dsc([reference], [prediction], organs) for reference, prediction in zip(labels, shown)]
    fit = {}
    for label, name in organs:
        painted = far = 0
        for reference, prediction in zip(labels, shown):
            painted_mask = prediction == label
            painted += int(painted_mask.sum())
            far += int((painted_mask & _far_from(reference == label, spacing_mm)).sum())
        fit[name] = OrganFit(dsc=dsc[name], case_dsc=tuple(scores[name] for scores in per_case), painted_voxels=painted, far_voxels=far)
    return fit


def _far_from(organ: torch.Tensor, spacing_mm: Sequence[float]) -> torch.Tensor:
    """The voxels more than ``FAR_MM`` from every voxel of ``organ`` (bool, X, Y, Z); all of them where it has none."""
    if not bool(organ.any()):
        return torch.ones_like(organ)
    distance = distance_transform_edt((~organ)[None].numpy(), sampling=[float(s) for s in spacing_mm])[0]
    return torch.from_numpy(distance > FAR_MM)


def report_fit(fit: dict[str, OrganFit], sink: EventSink, *, ct_names: Sequence[str], short_step: bool) -> None:
    """One log line for every new organ, and a warning for each with a problem (``ct_names``: the step's CTs in the
    order given, as the user knows them), with what to do about it."""
    sink.log("the new organs on the step's CTs, as `ciss segment` shows them: " + "; ".join(f.describe(name) for name, f in fit.items()))
    for name, organ in fit.items():
        problems = organ.problems(ct_names)
        if problems:
            hint = ("look at it in the preview before using this version: where it lies outside its label, either the label misses "
                    "the organ there (label it and run the step again) or the version paints a false piece; "
                    + ("a `thorough` step (1000 iterations, the default preset) learned such organs better on real CT" if short_step
                       else "more labelled CTs help most"))
            sink.warning(f"{name} on the step's own CTs: {' and '.join(problems)}: {organ.describe(name)}", hint)
