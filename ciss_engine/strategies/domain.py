"""What a domain-step strategy (``ciss adapt``: the same organs, a new site's CTs) receives and returns."""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from ..api.settings import StrategySettings, settings_record
from ..errors import InputError
from ..losses import UnbiasedKnowledgeDistillation
from ..losses.organ_dice import organ_dice
from ..prototypes import IGNORE_INDEX
from ..replay_buffer import ReplayBuffer


@dataclasses.dataclass
class DomainBatch:
    """One batch of a domain step: Ỹ (partial labels plus the old model's confident organs, 255 ignored), the
    current model's logits, bottleneck and decoder features, and the FROZEN previous model's on the same patch."""

    targets: torch.Tensor
    logits_new: torch.Tensor
    bottleneck_new: torch.Tensor
    bottleneck_old: torch.Tensor
    logits_old: torch.Tensor  # the frozen previous model's, over the same classes
    features_new: torch.Tensor  # the decoder's output F (pre-activation), which the classifier reads
    features_old: torch.Tensor


@dataclasses.dataclass(frozen=True)
class DomainContext:
    """What a domain step knows besides the batch."""

    num_classes: int
    labelled: Sequence[int]  # class ids with labels in this step
    bottleneck_channels: int
    feature_channels: int  # of the decoder's output F
    buffer: ReplayBuffer | None  # the parent version's (or drawn from the parent model at the start)


class DomainStrategy:
    """Domain-incremental baseline: CE on Ỹ + new_class_dice·Dice of the labelled organs, no retention term.
    Organs without labels learn only where the old model was confident (Ỹ); ``finetune`` of ``ciss adapt``."""

    name: ClassVar[str] = "finetune"
    # Whether the step keeps a replay buffer for the loss (and stores one in the version).
    uses_replay_buffer: ClassVar[bool] = False

    def __init__(self, context: DomainContext, settings: StrategySettings) -> None:
        if settings.new_class_ce > 0:
            raise InputError("new_class_ce weighs new organs, and a domain step adds none", "leave new_class_ce at 0 for ciss adapt")
        if settings.new_class_lr_scale != 1:
            raise InputError("new_class_lr_scale speeds up new organs' channels, and a domain step adds none", "leave new_class_lr_scale at 1 for ciss adapt")
        if settings.new_organ_weight != 1:
            raise InputError("new_organ_weight draws new organs more often, and a domain step adds none", "leave new_organ_weight at 1 for ciss adapt")
        self.context = context
        self.settings = settings
        self._dice = organ_dice(settings.new_class_dice_reduction)
        # The trainable blocks besides the network (none here); trained with it, never exported.
        self.blocks = nn.ModuleDict()
        self._kd = UnbiasedKnowledgeDistillation()

    def describe(self) -> dict[str, Any]:
        return settings_record(self.name, self.settings)

    def labelled_dice(self, batch: DomainBatch) -> torch.Tensor:
        """Soft Dice of the labelled organs' probabilities against Ỹ, ignored voxels left out of both."""
        labelled = list(self.context.labelled)
        valid = (batch.targets != IGNORE_INDEX)[:, None].float()
        probabilities = batch.logits_new.float().softmax(1)[:, labelled] * valid
        targets = torch.stack([batch.targets == c for c in labelled], 1).float()
        return self._dice(probabilities, targets)

    def previous_model_kd(self, batch: DomainBatch, voxels: torch.Tensor | None = None) -> torch.Tensor:
        """KD of the frozen previous model's softmax on every voxel (or the mean over ``voxels``), weighted by ``lambda_kd``."""
        return self.settings.lambda_kd * self._kd(batch.logits_new, batch.logits_old, voxels)  # type: ignore[attr-defined]

    def supervised_terms(self, batch: DomainBatch) -> dict[str, torch.Tensor]:
        return {"ce": F.cross_entropy(batch.logits_new.float(), batch.targets, ignore_index=IGNORE_INDEX),
                "dice": self.settings.new_class_dice * self.labelled_dice(batch)}

    def weighted_terms(self, batch: DomainBatch) -> dict[str, torch.Tensor]:
        """Every weighted term of the loss (they sum to it)."""
        return self.supervised_terms(batch)


class DomainDistillation(DomainStrategy):
    """The domain step's distillation baseline (``mib`` of ``ciss adapt``): CE on Ỹ + Dice + λ_kd·KD of the
    frozen previous model on every voxel. With the same classes before and after, MiB's unbiased KD is the
    plain KD of the softmax (nothing is merged into the background), so this is MiB's retention term."""

    name = "mib"

    def weighted_terms(self, batch: DomainBatch) -> dict[str, torch.Tensor]:
        return {**self.supervised_terms(batch), "kd": self.previous_model_kd(batch)}
