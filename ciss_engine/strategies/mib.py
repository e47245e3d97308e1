"""MiB (Cermelli et al. CVPR 2020): unbiased CE + unbiased KD."""
from __future__ import annotations

import torch

from ..api.settings import MibSettings
from ..losses import UnbiasedCrossEntropy, UnbiasedKnowledgeDistillation
from .base import StepBatch, Strategy


class ModelingTheBackground(Strategy):
    """Class-incremental, no old labels. Losses: UnbiasedCE(labels) + lambda_kd·UnbiasedKD + Dice(new).
    A background voxel may be an old organ, so its target is p₀ + Σ_O p; the old model's background
    is matched by p₀ + Σ_N p (METHOD.md §3)."""

    name = "mib"

    def __init__(self, context, settings: MibSettings) -> None:  # type: ignore[no-untyped-def]
        super().__init__(context, settings)
        self._ce = UnbiasedCrossEntropy(context.num_old)
        self._kd = UnbiasedKnowledgeDistillation()

    def supervised_terms(self, batch: StepBatch) -> dict[str, torch.Tensor]:
        return {"unbiased_ce": self._ce(batch.logits_new, batch.labels),
                "unbiased_kd": self.settings.lambda_kd * self._kd(batch.logits_new, batch.logits_old)}
