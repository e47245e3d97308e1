"""PCDD (Zhu et al. AAAI 2026): MiB's unbiased losses with prototype-calibrated distillation."""
from __future__ import annotations

import torch

from ..api.settings import PcddSettings
from ..losses import CurrentRegionDistillation, DualAlignedPrototypeDistillation, OldRegionDistillation, UnbiasedCrossEntropy
from ..losses.affinity_space import prototype_space, to_affinity_space
from ..network import post_activation
from .base import StepBatch, Strategy


class PrototypeCalibratedDistillation(Strategy):
    """Class-incremental, no old labels. L = L_unce + λ_orcd·ORCD + λ_crcd·CRCD + DAPD (+ Dice on new organs).

    ORCD distils old organs on the old region M^{t−1} = [Ỹ ∈ O], weighting each class's unbiased KD
    term by the affinity of the old model's features to the stored prototypes; CRCD does the same on
    the current region with the current features and running new-organ prototypes; DAPD aligns the
    current local prototypes of {0} ∪ O with the old model's and the stored ones.
    """

    name = "pcdd"
    uses_running_prototypes = True

    def __init__(self, context, settings: PcddSettings) -> None:  # type: ignore[no-untyped-def]
        super().__init__(context, settings)
        shared = {"include_background": settings.include_background, "calibrated": settings.calibrated, "summand": settings.summand,
                  "kl_direction": settings.kl_direction}
        self._ce = UnbiasedCrossEntropy(context.num_old)
        self._orcd = OldRegionDistillation(temperature=settings.orcd_temperature, normalisation=settings.orcd_normalisation, **shared)
        self._crcd = CurrentRegionDistillation(temperature=settings.crcd_temperature, **shared, mib_scale=settings.crcd_mib_scale)
        self._dapd = DualAlignedPrototypeDistillation(
            context.num_old, context.num_new, lambda_ll=settings.lambda_ll, lambda_lg=settings.lambda_lg, background=settings.dapd_background
        )

    def supervised_terms(self, batch: StepBatch) -> dict[str, torch.Tensor]:
        settings, context = self.settings, self.context
        device = batch.logits_new.device
        targets = batch.pseudo_labels if settings.supervise_pseudo_labels else batch.labels
        space = prototype_space(settings.affinity_features)
        # The summands d are the same for both regions: computed once, weighted twice.
        terms = self._orcd.terms(batch.logits_new, batch.logits_old)
        # ORCD: the OLD model's features against the stored prototypes; CRCD: the current (detached) features
        # against [background, O stored, N running].
        old_features, orcd_prototypes = to_affinity_space(batch.features_old, context.orcd_prototypes(space).to(device), settings.affinity_features)
        current_features, crcd_prototypes = to_affinity_space(
            batch.features_new.detach(), context.crcd_prototypes(space, settings.crcd_background).to(device), settings.affinity_features)
        orcd = self._orcd(batch.logits_new, batch.logits_old, old_features, orcd_prototypes, batch.old_region, terms)
        crcd = self._crcd(batch.logits_new, batch.logits_old, current_features, crcd_prototypes, batch.current_region, terms)
        # DAPD aligns what the classifier reads: post-activation features and prototypes, on Ỹ.
        dapd = self._dapd(post_activation(batch.features_new), post_activation(batch.features_old), batch.pseudo_labels,
                          context.stored_prototypes.post.as_tensor(device))
        return {"unbiased_ce": self._ce(batch.logits_new, targets), "orcd": settings.lambda_orcd * orcd,
                "crcd": settings.lambda_crcd * crcd, "dapd": dapd}


class UniformDistillation(PrototypeCalibratedDistillation):
    """PCDD's losses with calibration off (uniform weights over the classes with a teacher), same summand,
    same DAPD: PCDD − uniform is what the prototype calibration buys (METHOD.md §3)."""

    name = "uniform"
