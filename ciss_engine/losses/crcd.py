"""CRCD: current-region calibrated distillation (PCDD Eqs. 8-9)."""
from __future__ import annotations

import torch

from .affinity import RegionCalibratedDistillation
from .summands import DistillationTerms


class CurrentRegionDistillation(RegionCalibratedDistillation):
    """CRCD (PCDD Eqs. 8-9): per-class distillation on the current region, weighted by affinity to all classes.

    On voxels the pseudo-labels leave to background or a new organ, aᵗ_{i,c} = softmax over c ∈ {0} ∪ S
    of cos(Fᵗ_i, p_c)/T_a uses the current model's features (detached: no gradient reaches the weights
    through a) and the prototypes of the background, the old classes and this step's new classes (which
    ones: the strategy decides, StepContext.crcd_prototypes). New classes have
    no teacher (d = 0), so they only take weight away from old classes where a voxel looks like a new
    organ: L = (1/|Mᵗ|)·Σ_{i∈Mᵗ} Σ_{c∈{0}∪O} aᵗ_{i,c}·d_{i,c}.

    Args:
        temperature: T_a of the affinity softmax; the paper gives none, 1.0 [default] (PCDD setting
            ``crcd_temperature``; 0.1 sharpens).
        include_background: softmax over {0} ∪ S and sum over {0} ∪ O, background distilled too
            [default True] (PCDD setting ``include_background``, shared with ORCD); False is the literal
            softmax over S and sum over O.
        calibrated: affinity weights [default True]; False gives each class with a teacher the weight
            1/(number of such classes) and new classes none: the uniform baseline of the same summand,
            exactly MiB's unbiased KD on the region for ``summand="mib"`` (the ablation baseline "CRCD off").
        summand, kl_direction: which d (RegionCalibratedDistillation). With ``mib``, a background voxel that
            looks like an old organ moves weight from d_{i,0} (which holds q₀) to −p_organ·log q_organ (which
            pulls q_organ up): sharp affinities let old organs spread into background (benchmarks/RESULTS.md,
            T_a = 0.1); the per-channel KL does not.
        mib_scale: multiply the weights by (1+|S|)/(1+|O|) (PCDD setting ``crcd_mib_scale``, default True;
            False here is Eq. 9 as written). The softmax spreads a voxel's weight
            over the new classes too, so at flat affinities Eq. 9 is (1+|O|)/(1+|S|) of MiB's unbiased KD (5/9
            in a 4-4 step) and λ_crcd is not on MiB's scale; rescaled, flat affinities give exactly MiB's KD
            and the calibration only moves weight relative to it.
        (``terms``: the summands of these logits when already computed; PCDD shares them between ORCD
        and CRCD.)
    Shapes: logits_new (B, 1+|S|, D, H, W), logits_old (B, 1+|O|, D, H, W), features_new (B, K, D', H', W'),
        prototypes (1+|S|, K) ordered [0, O, N] (row 0 unused without background), current_region
        (B, D, H, W) bool -> scalar: mean over current-region voxels, 0 if the region is empty [default].
    """

    flag_prefix = "crcd"

    def forward(
        self,
        logits_new: torch.Tensor,
        logits_old: torch.Tensor,
        features_new: torch.Tensor,
        prototypes: torch.Tensor,
        current_region: torch.Tensor,
        terms: DistillationTerms | None = None,
    ) -> torch.Tensor:
        if prototypes.shape[0] != logits_new.shape[1]:
            raise ValueError(f"CRCD needs 1+|S| = {logits_new.shape[1]} prototypes ordered [0, O, N], "
                             f"got {prototypes.shape[0]}")
        return self.distil(logits_new, logits_old, features_new, prototypes, current_region, terms)
