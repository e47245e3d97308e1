"""CiNuSeg's anchor consistency (ACL, METHOD.md §6): per patch and encoder stage, each old organ's mean feature
under Ỹ in the current model should point where the frozen old model's does.

Transferred to 3-D and to our encoders: the stages are the encoder's blocks (finest first, the bottleneck last;
``forward_with_stages`` of each network), and Ỹ reaches a coarser stage as the share of each voxel block that
the organ covers (average pooling of its one-hot mask), so an organ smaller than a block still has an anchor.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from .functional import full_precision

# An organ needs at least this much (pooled) mask in a patch for its anchor to count.
MIN_MASS = 1e-3


def class_anchors(features: torch.Tensor, pseudo_labels: torch.Tensor, classes: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Masked means A_c of ``features`` over the voxels where Ỹ = c, per patch.

    Shapes: features (B, K, d, h, w) on a grid that divides Ỹ's (B, D, H, W) -> anchors (B, |classes|, K) float32
        and present (B, |classes|) bool (the organ covers at least MIN_MASS voxels of that stage).
    """
    masks = torch.stack([pseudo_labels == c for c in classes], 1).float()
    if masks.shape[2:] != features.shape[2:]:
        masks = F.adaptive_avg_pool3d(masks, features.shape[2:])
    mass = masks.flatten(2).sum(2)
    anchors = torch.einsum("bcv,bkv->bck", masks.flatten(2), features.float().flatten(2)) / mass.clamp(min=MIN_MASS)[..., None]
    return anchors, mass >= MIN_MASS


def anchor_consistency(
    stages_new: Sequence[torch.Tensor], stages_old: Sequence[torch.Tensor], pseudo_labels: torch.Tensor, num_old: int,
) -> torch.Tensor:
    """L_CAC per patch: (1/L) Σ_l Σ_{c∈O present} (1 − cos(A^l_c, Â^l_c)), current anchors A against the old model's Â
    (detached). Shapes: L stages (B, K_l, …) each, Ỹ (B, D, H, W) -> (B,) float32, 0 for a patch without old organs."""
    if len(stages_new) != len(stages_old) or not stages_new:
        raise ValueError(f"need the same non-zero number of stages from both models, got {len(stages_new)} and {len(stages_old)}")
    classes = range(1, num_old + 1)
    with full_precision(pseudo_labels):
        per_stage = []
        for new, old in zip(stages_new, stages_old):
            if new.shape != old.shape:
                raise ValueError(f"stage shapes differ between the models: {tuple(new.shape)} and {tuple(old.shape)}")
            anchors, present = class_anchors(new, pseudo_labels, classes)
            with torch.no_grad():
                old_anchors, _ = class_anchors(old, pseudo_labels, classes)
            distance = 1.0 - F.cosine_similarity(anchors, old_anchors, dim=2, eps=1e-8)
            per_stage.append((distance * present).sum(1))
        return torch.stack(per_stage).mean(0)
