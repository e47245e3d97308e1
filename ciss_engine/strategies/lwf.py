"""LwF (Li & Hoiem 2017): plain CE plus knowledge distillation of the old classes' softmax."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..api.settings import LwfSettings
from ..losses import LwfDistillation
from .base import StepBatch, Strategy


class LearningWithoutForgetting(Strategy):
    """Class-incremental, no old labels. Losses: CE(labels) + lambda_kd·KD_T(old channels) + Dice(new).
    The CE still calls old organs background, which KD alone cannot fully undo (MiB's motivation)."""

    name = "lwf"

    def __init__(self, context, settings: LwfSettings) -> None:  # type: ignore[no-untyped-def]
        super().__init__(context, settings)
        self._kd = LwfDistillation(temperature=settings.temperature)

    def supervised_terms(self, batch: StepBatch) -> dict[str, torch.Tensor]:
        return {"ce": F.cross_entropy(batch.logits_new.float(), batch.labels, ignore_index=255),
                "kd": self.settings.lambda_kd * self._kd(batch.logits_new, batch.logits_old)}
