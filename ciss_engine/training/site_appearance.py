"""A site's appearance: each labelled organ's median intensity on the CTs a version trained on, in the model's units.

Base training and domain steps record it in their history entry (``site_appearance``), so the lineage carries how
every earlier site showed its organs. A later domain step can then show some of its patches' organs as an earlier
site did (appearance replay, ``RandOrganContrastd``'s recorded offsets) instead of random offsets alone: the phase a
model knew is replayed exactly, and fewer patches are spent on phases no site has. A median per organ and site is
all that is stored, no image and no voxel: what a privacy review would read is the table in the history.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from ..registry import ClassRegistry
from .cases import PreparedCase

APPEARANCE_KEY = "site_appearance"


def organ_medians(cases: Sequence[PreparedCase], registry: ClassRegistry) -> dict[str, float]:
    """Median model-unit intensity of each organ's labelled voxels over all ``cases`` (organs without a voxel left out).

    The target labels (``label``), not ``sampling_label``: pseudo-labelled voxels say what the old model believed, not
    where the organ is."""
    medians = {}
    for organ in registry.organs:
        values = [case.image.as_tensor()[0][case.label.as_tensor()[0] == organ.label] for case in cases]
        voxels = torch.cat([v.float().flatten() for v in values])
        if voxels.numel():
            medians[organ.name] = round(float(voxels.median()), 6)
    return medians


def recorded_appearances(history: Sequence[Mapping[str, Any]]) -> list[dict[str, float]]:
    """Every earlier site's organ medians recorded in a version's lineage, oldest first (empty for bundles trained
    before this was recorded, and for imported models)."""
    return [dict(entry[APPEARANCE_KEY]) for entry in history if entry.get(APPEARANCE_KEY)]


def replay_offsets(recorded: Sequence[Mapping[str, float]], current: Mapping[str, float]) -> tuple[dict[str, float], ...]:
    """For each earlier site, the offset (organ → model units) that moves an organ from this step's median to the
    one that site recorded; organs either side lacks are left out (they keep this site's intensity), and so is a site
    that recorded none of this step's organs (replaying it would show the patch unchanged)."""
    offsets = ({name: round(site[name] - median, 6) for name, median in current.items() if name in site} for site in recorded)
    return tuple(site for site in offsets if site)
