"""Incremental-step strategies by name; all run in one training loop (``training/incremental.py``).
Their settings are declared, torch-free, in ``api/settings.py`` under the same names."""
from __future__ import annotations

from .base import StepBatch, StepContext, Strategy
from .cinuseg import ClassIncrementalNucleiSegmentation
from .finetune import FineTuning
from .lwf import LearningWithoutForgetting
from .mib import ModelingTheBackground
from .pcdd import PrototypeCalibratedDistillation, UniformDistillation
from .plop import PseudoLabelling

STRATEGIES: dict[str, type[Strategy]] = {
    cls.name: cls for cls in (PrototypeCalibratedDistillation, UniformDistillation, ModelingTheBackground, ClassIncrementalNucleiSegmentation,
                              PseudoLabelling, LearningWithoutForgetting, FineTuning)
}

__all__ = ["STRATEGIES", "StepBatch", "StepContext", "Strategy"]
