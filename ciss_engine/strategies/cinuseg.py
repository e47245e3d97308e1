"""CiNuSeg (AAAI 2026): anchor consistency (ACL) + MiB's unbiased KD for the old organs, discriminative
representation regularisation (DRR) for the new ones, and an adaptive trade-off (ATT) per patch."""
from __future__ import annotations

import torch

from ..api.settings import CinusegSettings
from ..errors import InputError
from ..losses import UnbiasedCrossEntropy, unbiased_distillation_terms
from ..losses.class_anchors import anchor_consistency
from ..losses.functional import per_patch_mean
from ..losses.representation_regularisation import background_claim, hard_negatives, new_organ_ce
from ..losses.trade_off import trade_off_scales
from .base import StepBatch, Strategy


class ClassIncrementalNucleiSegmentation(Strategy):
    """Class-incremental, no old labels, transferred from 2-D nuclei and sigmoid heads (METHOD.md §6):

    retention = λ_kd·unbiased KD + λ_acl·ACL over the encoder stages, learning = unbiased CE on the new labels
    with hard negatives weighted 1 + ω (NS) + λ_drr·(FGL + BGL); on a patch whose Ỹ is more than σ new organ,
    retention × α_o and learning × α_n. The Dice on the new organs every strategy has is not rebalanced.
    """

    name = "cinuseg"
    needs_encoder_stages = True

    def __init__(self, context, settings: CinusegSettings) -> None:  # type: ignore[no-untyped-def]
        if settings.new_class_ce > 0:  # the same −log p over the new organs' voxels would count twice
            raise InputError("cinuseg's DRR already holds the new organs' own CE (FGL)", "leave new_class_ce at 0 for cinuseg; raise lambda_drr for more")
        super().__init__(context, settings)
        self._ce = UnbiasedCrossEntropy(context.num_old)

    def supervised_terms(self, batch: StepBatch) -> dict[str, torch.Tensor]:
        settings, num_old = self.settings, self.context.num_old
        if batch.stages_new is None or batch.stages_old is None:
            raise ValueError("cinuseg needs both models' encoder stages in the step batch")
        retention, learning = trade_off_scales(
            batch.pseudo_labels, num_old, threshold=settings.trade_off_threshold, old_scale=settings.trade_off_old_scale,
            new_scale=settings.trade_off_new_scale)
        voxel_ce, valid = self._ce.voxel_losses(batch.logits_new, batch.labels)
        hard = hard_negatives(batch.labels, batch.logits_old, num_old, settings.hard_negative_confidence)
        # NS: the hard negatives' extra weight on top of a plain per-patch mean over the labelled voxels.
        ce = per_patch_mean(voxel_ce * (1.0 + settings.hard_negative_weight * hard), valid)
        foreground, background = new_organ_ce(batch.logits_new, batch.labels, num_old), background_claim(batch.logits_new, batch.labels, num_old)
        kd = unbiased_distillation_terms(batch.logits_new, batch.logits_old, num_old).mean(dim=1).flatten(1).mean(1)
        anchors = anchor_consistency(batch.stages_new, batch.stages_old, batch.pseudo_labels, num_old)
        return {
            "unbiased_ce": (learning * ce).mean(),
            "drr": settings.lambda_drr * (learning * (foreground + background)).mean(),
            "unbiased_kd": settings.lambda_kd * (retention * kd).mean(),
            "anchor_consistency": settings.lambda_acl * (retention * anchors).mean(),
        }
