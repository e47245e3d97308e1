"""What every incremental-step strategy receives and returns; its settings are declared in api/settings.py."""
from __future__ import annotations

import abc
import dataclasses
from typing import Any, ClassVar, Literal

import torch

from ..api.settings import CrcdBackground, StrategySettings, settings_record
from ..errors import BundleError
from ..losses.organ_dice import organ_dice
from ..losses.representation_regularisation import new_organ_ce
from ..prototypes import FeaturePrototypes, GlobalPrototypes


@dataclasses.dataclass
class StepContext:
    """What a step knows besides the batch: class counts, stored and running prototypes (both feature spaces)."""

    num_old: int
    num_new: int
    stored_prototypes: FeaturePrototypes  # (1+|O|) rows: last step's background and the old classes
    # (1+|S|) rows running over this step: background (Ỹ = 0) and the new organs; old rows unused.
    running_prototypes: FeaturePrototypes

    def orcd_prototypes(self, space: Literal["pre", "post"]) -> torch.Tensor:
        """[0, O] as stored: ORCD compares the old model's features with what the old model knew."""
        return _space(self.stored_prototypes, space).as_tensor()

    def crcd_prototypes(self, space: Literal["pre", "post"], background: CrcdBackground = "running") -> torch.Tensor:
        """[0, O, N]: O stored, N running; background running (this step's, without today's new organs) or
        the stored one, which still contains them (METHOD.md §3, CRCD)."""
        stored = _space(self.stored_prototypes, space)
        running = _space(self.running_prototypes, space)
        first = running if background == "running" and running.counts[0] > 0 else stored
        return torch.cat([first.as_tensor()[:1], stored.as_tensor()[1:], running.as_tensor()[1 + self.num_old :]])


def _space(prototypes: FeaturePrototypes, space: Literal["pre", "post"]) -> GlobalPrototypes:
    chosen = prototypes.pre if space == "pre" else prototypes.post
    if chosen is None:
        raise BundleError("the stored prototypes have no pre-activation means (the bundle predates them)",
                          "learn with --setting affinity_features=post_activation, or retrain the base model")
    return chosen


@dataclasses.dataclass
class StepBatch:
    """One batch of an incremental step, with the frozen old model's outputs on it.

    ``labels`` hold only the new organs (ids |O|+1..|O|+|N|), 0 elsewhere; ``pseudo_labels`` is Ỹ.
    """

    labels: torch.Tensor
    logits_new: torch.Tensor
    features_new: torch.Tensor
    logits_old: torch.Tensor
    features_old: torch.Tensor
    pseudo_labels: torch.Tensor
    old_region: torch.Tensor
    current_region: torch.Tensor
    # Each model's encoder stages (finest first), for strategies with needs_encoder_stages only.
    stages_new: list[torch.Tensor] | None = None
    stages_old: list[torch.Tensor] | None = None


class Strategy(abc.ABC):
    """A way of learning new organs from new-organ labels only; subclasses combine the losses."""

    name: ClassVar[str]  # its settings: api/settings.py, STRATEGY_SETTINGS[name]
    needs_old_model: ClassVar[bool] = True
    # Whether the loss reads the step's running new-organ prototypes (the loop only updates them then).
    uses_running_prototypes: ClassVar[bool] = False
    # Whether the loss reads both models' encoder stages: the old model then runs on every patch (the cached
    # teacher holds only its logits and features).
    needs_encoder_stages: ClassVar[bool] = False

    def __init__(self, context: StepContext, settings: StrategySettings) -> None:
        self.context = context
        self.settings = settings
        self._dice = organ_dice(settings.new_class_dice_reduction)

    def describe(self) -> dict[str, Any]:
        return settings_record(self.name, self.settings)

    def new_class_dice(self, batch: StepBatch) -> torch.Tensor:
        """Soft Dice of the new organs' probabilities against their labels (complete for new organs)."""
        first_new = 1 + self.context.num_old
        probabilities = batch.logits_new.float().softmax(1)[:, first_new:]
        targets = torch.stack([batch.labels == first_new + i for i in range(self.context.num_new)], 1).float()
        return self._dice(probabilities, targets)

    @abc.abstractmethod
    def supervised_terms(self, batch: StepBatch) -> dict[str, torch.Tensor]:
        """The learning and retention terms of this strategy by name, each already weighted (they sum to the loss)."""

    def weighted_terms(self, batch: StepBatch) -> dict[str, torch.Tensor]:
        """Every term of the loss, weighted, Dice (and CE, when weighted) on the new organs included: what gradient shares are taken of."""
        terms = self.supervised_terms(batch)
        if self.settings.new_class_dice > 0:
            terms["dice_new"] = self.settings.new_class_dice * self.new_class_dice(batch)
        if self.settings.new_class_ce > 0:
            terms["ce_new"] = self.settings.new_class_ce * new_organ_ce(batch.logits_new, batch.labels, self.context.num_old).mean()
        return terms

    def loss(self, batch: StepBatch) -> tuple[torch.Tensor, dict[str, float]]:
        return total_loss(self.weighted_terms(batch))


def total_loss(terms: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
    """The sum of weighted terms, and each term's value for the log."""
    return sum(terms.values()), {name: float(value.detach()) for name, value in terms.items()}  # type: ignore[return-value]
