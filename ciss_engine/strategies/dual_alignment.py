"""Dual-Alignment Knowledge Retention (continual learning across sites, 2025), for 3D SegResNet domain steps."""
from __future__ import annotations

import torch

from ..api.settings import DualAlignmentSettings
from ..errors import InputError
from ..losses.hsic import HsicAlignment
from ..prototypes import IGNORE_INDEX
from .alignment_blocks import FeatureMapping, bottleneck_classes, pair_by_class, pair_positions, voxel_rows
from .domain import DomainBatch, DomainContext, DomainStrategy


# Fewest voxel pairs CNA aligns: HSIC centres its Gram matrices, so a handful of rows carries no structure.
MIN_ALIGNED_ROWS = 4


def teacher_correct(batch: DomainBatch) -> torch.Tensor:
    """(B, D, H, W) voxels whose label Ỹ the previous model predicts, and those without a label (Ỹ ignored), where
    the previous model is all there is."""
    return (batch.logits_old.argmax(1) == batch.targets) | (batch.targets == IGNORE_INDEX)


class DualAlignment(DomainStrategy):
    """Domain-incremental with a feature buffer: one site adapts the bundle's organs to its own scanner.

    L = CE(Ỹ) + new_class_dice·Dice(labelled organs) + λ_cna·CNA + λ_cra·CRA [+ λ_kd·KD], with Ỹ the step's
    labels plus the old model's confident predictions of the organs without labels (the rest of those ignored).
    CNA = 1 − nHSIC(φ(features of the current model), the same features of the frozen previous model), same voxels
    of the same patch: the decoder's output by default, the bottleneck as published (``cna_features``); CRA = 1 − nHSIC(ψ(current
    bottleneck vectors), replay-buffer vectors), paired by class. φ and ψ are the trainable feature mappings
    (alignment_blocks.py), not part of the exported network. KD (``lambda_kd`` > 0) is the domain mib's term, on every
    voxel or (``kd_voxels``) only where the previous model predicts Ỹ; CNA likewise with ``cna_voxels``.
    """

    name = "dual_alignment"
    uses_replay_buffer = True

    def __init__(self, context: DomainContext, settings: DualAlignmentSettings) -> None:  # type: ignore[override]
        super().__init__(context, settings)
        for name in ("embedding_size", "buffer_per_class"):
            if getattr(settings, name) < 1:
                raise InputError(f"setting {name} of dual_alignment must be >= 1, got {getattr(settings, name)}", f"pass --setting {name}=64 or more")
        if settings.aligned_rows < MIN_ALIGNED_ROWS:
            raise InputError(f"setting aligned_rows of dual_alignment must be >= {MIN_ALIGNED_ROWS}, got {settings.aligned_rows}", "pass --setting aligned_rows=256")
        cna_channels = context.feature_channels if settings.cna_features == "decoder" else context.bottleneck_channels
        self.blocks["cna"] = FeatureMapping(cna_channels, settings.embedding_size)
        self.blocks["cra"] = FeatureMapping(context.bottleneck_channels, settings.embedding_size)
        self._alignment = HsicAlignment(settings.kernel)

    def cna(self, batch: DomainBatch) -> torch.Tensor:
        """Current-to-previous alignment on the patch's bottleneck cells (or decoder voxels): every one, or with
        ``cna_voxels=teacher_correct`` those where the previous model is right or all there is; 0 when fewer
        than ``MIN_ALIGNED_ROWS`` are."""
        if self.settings.cna_features == "decoder":
            mine, theirs = batch.features_new, batch.features_old
        else:
            mine, theirs = batch.bottleneck_new, batch.bottleneck_old
        where = teacher_correct(batch) if self.settings.cna_voxels == "teacher_correct" else None
        current, previous = pair_positions(mine.float(), theirs.float(), self.settings.aligned_rows, where)
        if current.shape[0] < MIN_ALIGNED_ROWS:
            return mine.float().sum() * 0.0  # keeps the term (and its gradient share) in every iteration's log
        return self._alignment(self.blocks["cna"](current), previous)

    def cra(self, batch: DomainBatch) -> torch.Tensor:
        """Current-to-replay alignment; 0 when the patch and the buffer share fewer than two classes."""
        buffer = self.context.buffer
        bottleneck = batch.bottleneck_new.float()
        pairs = None if buffer is None else pair_by_class(bottleneck, bottleneck_classes(batch.targets, bottleneck), buffer, self.settings.aligned_rows)
        if pairs is None:
            return voxel_rows(bottleneck).sum() * 0.0  # keeps the term (and its gradient share) in every iteration's log
        current, buffered = pairs
        return self._alignment(self.blocks["cra"](current), buffered)

    def kd_voxels(self, batch: DomainBatch) -> torch.Tensor | None:
        """Where the previous model is distilled: every voxel (None), or with ``kd_voxels=teacher_correct`` those
        of ``teacher_correct``, so the site's labels alone teach where it errs."""
        return None if self.settings.kd_voxels == "all" else teacher_correct(batch)

    def weighted_terms(self, batch: DomainBatch) -> dict[str, torch.Tensor]:
        terms = {**self.supervised_terms(batch), "cna": self.settings.lambda_cna * self.cna(batch), "cra": self.settings.lambda_cra * self.cra(batch)}
        if self.settings.lambda_kd > 0:
            terms["kd"] = self.previous_model_kd(batch, self.kd_voxels(batch))
        return terms
