"""ORCD: old-region calibrated distillation (PCDD Eqs. 6-7)."""
from __future__ import annotations

import torch

from .affinity import RegionCalibratedDistillation
from .summands import DistillationTerms


class OldRegionDistillation(RegionCalibratedDistillation):
    """ORCD (PCDD Eqs. 6-7): per-class distillation on the old region, weighted by prototype affinity.

    On voxels the pseudo-labels assign to an old organ, each class's summand d_{i,c} (``summand``: the
    per-channel KL by default, see RegionCalibratedDistillation) is weighted by
    a^{t−1}_{i,c} = softmax_c cos(F^{t−1}_i, p_c)/T_a, computed from the old model's features and the
    stored global prototypes (in the same feature space), so the classes the voxel resembles are held hardest:
    L = (1/|M^{t−1}|)·Σ_{i∈M^{t−1}} Σ_c a_{i,c}·d_{i,c}.

    Args:
        temperature: T_a of the affinity softmax; the paper gives none, 1.0 [default] (PCDD setting
            ``orcd_temperature``; 0.1 sharpens).
        include_background: softmax and sum over {0} ∪ O, background distilled too [default True]
            (PCDD setting ``include_background``, shared with CRCD); False is the literal c ∈ O, which leaves
            nothing to stop old organs bleeding into background.
        calibrated: affinity weights [default True]; False gives each distilled class the weight
            1/(number of classes): the uniform baseline of the same summand, exactly MiB's unbiased KD on the
            region for ``summand="mib"`` (the ablation baseline "ORCD off").
        summand, kl_direction: which d (RegionCalibratedDistillation).
        normalisation: divide by the old region's voxels ("region" [this class's default], Eq. 7) or by every voxel
            of the patches ("patch", MiB's per-voxel weight; PCDD's default, setting ``orcd_normalisation``).
        (``terms``: the summands of these logits when already computed; PCDD shares them between ORCD
        and CRCD.)
    Shapes: logits_new (B, 1+|S|, D, H, W), logits_old (B, 1+|O|, D, H, W), features_old (B, K, D', H', W'),
        prototypes (1+|O|, K) with background in row 0 (unused without background), old_region
        (B, D, H, W) bool -> scalar: mean over old-region voxels (or the region's sum over every voxel), 0 if the region is empty.
    """

    flag_prefix = "orcd"

    def forward(
        self,
        logits_new: torch.Tensor,
        logits_old: torch.Tensor,
        features_old: torch.Tensor,
        prototypes: torch.Tensor,
        old_region: torch.Tensor,
        terms: DistillationTerms | None = None,
    ) -> torch.Tensor:
        if prototypes.shape[0] != logits_old.shape[1]:
            raise ValueError(f"ORCD needs 1+|O| = {logits_old.shape[1]} prototypes (background first), "
                             f"got {prototypes.shape[0]}")
        return self.distil(logits_new, logits_old, features_old, prototypes, old_region, terms)
