"""Plain fine-tuning: CE on the new labels as they are. The lower bound: it forgets old organs."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .base import StepBatch, Strategy


class FineTuning(Strategy):
    """Class-incremental baseline with no retention term: voxels of old organs are labelled 0 at this
    step, so plain CE teaches the network that old organs are background (catastrophic forgetting).
    Losses: CE(logits_new, labels) + new_class_dice·Dice(new organs)."""

    name = "finetune"
    needs_old_model = False

    def supervised_terms(self, batch: StepBatch) -> dict[str, torch.Tensor]:
        return {"ce": F.cross_entropy(batch.logits_new.float(), batch.labels, ignore_index=255)}
