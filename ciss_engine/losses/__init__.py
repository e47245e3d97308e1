"""Losses of class-incremental steps (METHOD.md §3): MiB's unbiased CE and KD, LwF, and PCDD's ORCD,
CRCD and DAPD. All take logits ordered [background, old classes O, new classes N] and compute in float32
under autocast."""
from __future__ import annotations

from .affinity import prototype_affinity
from .crcd import CurrentRegionDistillation
from .dapd import DualAlignedPrototypeDistillation
from .lwf_kd import LwfDistillation
from .orcd import OldRegionDistillation
from .unbiased_ce import UnbiasedCrossEntropy
from .summands import distillation_terms
from .unbiased_kd import UnbiasedKnowledgeDistillation, unbiased_distillation_terms

__all__ = [
    "CurrentRegionDistillation",
    "DualAlignedPrototypeDistillation",
    "LwfDistillation",
    "OldRegionDistillation",
    "UnbiasedCrossEntropy",
    "UnbiasedKnowledgeDistillation",
    "distillation_terms",
    "prototype_affinity",
    "unbiased_distillation_terms",
]
