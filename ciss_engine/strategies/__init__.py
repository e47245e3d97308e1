"""Incremental-step strategies by name; all run in one training loop (``training/incremental.py``).
Their settings are declared, torch-free, in ``api/settings.py`` under the same names."""
from __future__ import annotations

from .base import StepBatch, StepContext, Strategy
from .cinuseg import ClassIncrementalNucleiSegmentation
from .domain import DomainDistillation, DomainStrategy
from .dual_alignment import DualAlignment
from .finetune import FineTuning
from .lwf import LearningWithoutForgetting
from .mib import ModelingTheBackground
from .pcdd import PrototypeCalibratedDistillation, UniformDistillation
from .plop import PseudoLabelling

STRATEGIES: dict[str, type[Strategy] | type[DomainStrategy]] = {
    cls.name: cls for cls in (PrototypeCalibratedDistillation, UniformDistillation, ModelingTheBackground, ClassIncrementalNucleiSegmentation,
                              PseudoLabelling, LearningWithoutForgetting, FineTuning)
}
# Domain steps (`ciss adapt`: the same organs, a new site's CTs); `ciss learn` refuses them. Their finetune is
# the domain baseline, CE and Dice on the step's partial labels, and mib adds the previous model's KD (strategies/domain.py).
DOMAIN_STRATEGIES: dict[str, type[DomainStrategy]] = {"dual_alignment": DualAlignment, "mib": DomainDistillation, "finetune": DomainStrategy}
STRATEGIES["dual_alignment"] = DualAlignment

__all__ = ["DOMAIN_STRATEGIES", "STRATEGIES", "StepBatch", "StepContext", "Strategy"]
