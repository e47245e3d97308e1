"""PLOP's pseudo-labelling (Douillard et al. CVPR 2021): CE on Ỹ, old organs from confident old predictions."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .base import StepBatch, Strategy


class PseudoLabelling(Strategy):
    """Class-incremental, no old labels. Losses: CE(Ỹ) + Dice(new), where Ỹ keeps the new labels and
    adds the old model's confident old-organ predictions (entropy below the per-class median τ).
    PLOP's Local POD feature distillation is not included (this is the pseudo-label baseline)."""

    name = "plop"

    def supervised_terms(self, batch: StepBatch) -> dict[str, torch.Tensor]:
        return {"pseudo_label_ce": F.cross_entropy(batch.logits_new.float(), batch.pseudo_labels, ignore_index=255)}
