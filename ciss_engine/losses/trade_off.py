"""CiNuSeg's adaptive trade-off (ATT, METHOD.md §6): a patch dominated by new organs is where old ones are
overwritten, so there the retention losses weigh more and the learning losses less."""
from __future__ import annotations

import torch

from ..prototypes import IGNORE_INDEX


def trade_off_scales(
    pseudo_labels: torch.Tensor, num_old: int, *, threshold: float, old_scale: float, new_scale: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per patch, with r = #new / (#old + #new) voxels under Ỹ: (retention, learning) scales (B,) each,
    (α_o, α_n) where r > σ (``threshold``) and (1, 1) elsewhere, including patches with neither."""
    flat = pseudo_labels.flatten(1)
    old = ((flat >= 1) & (flat <= num_old)).sum(1)
    new = ((flat > num_old) & (flat != IGNORE_INDEX)).sum(1)
    ratio = new / (old + new).clamp(min=1)
    dominated = ratio > threshold
    ones = torch.ones_like(ratio, dtype=torch.float32)
    return torch.where(dominated, old_scale, ones), torch.where(dominated, new_scale, ones)
