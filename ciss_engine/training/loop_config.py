"""The schedule of a training run; torch-free so the CLI can show its defaults before torch loads."""
from __future__ import annotations

import dataclasses

from ..api.presets import STANDARD_ITERATIONS


@dataclasses.dataclass(frozen=True)
class LoopConfig:
    """Schedule of one training run (METHOD.md §4)."""

    iterations: int = STANDARD_ITERATIONS
    optimizer: str = "sgd"  # "sgd" (Nesterov, METHOD.md §4) or "adamw"
    # METHOD.md §4 says momentum 0.99 and lr 1e-2 (nnU-Net's, for 10⁵+ iterations). Within a CPU budget of
    # a few hundred iterations momentum 0.99 is still building up: on ts_abdpelvis, 300 iterations gave
    # spleen/right-kidney DSC 0.57/0.33 with 0.99/1e-2 and 0.86/0.59 after 250 with 0.9/0.1
    # (benchmarks/RESULTS.md). Both are settings (--momentum, --learning-rate).
    learning_rate: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 3e-5
    poly_power: float = 0.9
    # nnU-Net's clip value: with momentum 0.99 an unlucky batch can otherwise blow the weights up.
    grad_clip: float = 12.0
    checkpoint_every: int = 50
    amp: bool = True  # mixed precision on CUDA
    # bf16 autocast on CPUs with native bf16: 1.23 x faster an iteration, but float32 bases scored higher
    # (benchmarks/RESULTS.md (p), (q)), so it is asked for with --cpu-bf16.
    cpu_bf16: bool = False
    # Random spatial and intensity transforms of each patch (training/augmentation.py); the default
    # follows the measurement in benchmarks/RESULTS.md.
    augmentation: bool = True


# Incremental steps: the papers' tenth of the base rate (1e-3 with momentum 0.99) learned no new organ
# within a CPU budget on 2 cores. On the phantom 4-4 validation split (benchmarks/RESULTS.md) a fifth of
# the base rate, 0.02, learned the liver and stomach and kept the old organs in every configuration
# tried, while 0.05 collapsed in one of five (λ_crcd = 3: every organ but the liver lost) and 0.1 collapsed.
STEP_LEARNING_RATE = 0.02

# Iterations of `ciss train` (with the 8-filter network on 48³ patches, commands/arguments.py): on both real
# CTs, 1000 found every organ (DSC 0.91-0.97, gallbladder 0.94) where 700 found only the spleen (0.60) and 400
# missed the gallbladder (benchmarks/RESULTS.md (i)). With synthetic patients (SYNTHETIC_SHARE) the gallbladder is
# learned later: 0.00 at 1000 iterations, 0.91-0.92 in three seeds of three at 1500 (RESULTS.md (ao), (ap)).
BASE_ITERATIONS = 1500
# Base training: the share of patches whose enhancing organs get their own intensity offsets (augmentation.py), so
# a model trained on one contrast phase finds the organs in another. 0.15 had the best mean over three contrast
# phases on the phantom validation split; larger shares lost more of the base's own phase (benchmarks/RESULTS.md (aa)).
ORGAN_CONTRAST = 0.15
# Domain steps (`ciss adapt`): on the domain validation split (two seeds) 0.75 is the share at which dual_alignment
# kept >= 0.95 x of the first site and reached >= 0.95 x of fine-tuning's newest site in both seeds, with the best
# mean over the three sites of those that did (0.843; 1.0 0.842; 0.5 kept 0.93 x in seed 1; none 0.803). On the
# test split two steps to phantom sites in other contrast phases kept 0.92-0.97 x of the first site at 0.75, 0.72-0.85 x
# without (benchmarks/RESULTS.md (ab), (ac)).
ADAPT_ORGAN_CONTRAST = 0.75
# Share of a base model's patches drawn from synthetic phantom patients (training/synthetic_cases.py), which give
# one or two site CTs the variety of anatomy they lack. At 0.5 and 1500 iterations the base on both real CTs met the
# base goal in three seeds of three (every organ >= 0.89, gallbladder 0.91-0.92), and single-CT models found more of
# the other patient's spleen and kidneys (mean DSC 0.53 over three seeds, 0.16 without at 1500; RESULTS.md (ao), (ap)).
SYNTHETIC_SHARE = 0.5
# How many synthetic patients that share comes from (shown in turn as the phantom's three scanner sites show them).
# Twelve left the gallbladder of the base on both real CTs below 0.85 in two seeds of three (0.02, 0.84) at 1500
# iterations, six in none (0.91-0.92), though twelve transferred a little better (mean 0.56 against 0.53; RESULTS.md (aq)).
SYNTHETIC_CASES = 6
# The protocols train on phantom patients already; more of them would change every result recorded before.
PROTOCOL_SYNTHETIC_SHARE = 0.0
# Of those patches, the share that shows an earlier site's recorded organ intensities instead of random offsets
# (appearance replay, training/site_appearance.py). None: on the domain validation split replaying every such patch
# (at organ contrast 0.75 or 0.5) kept the first site no better in the seed closest to the bar and learned the newest
# site less (0.963 / 0.970 x of fine-tuning's against 0.978 x; benchmarks/RESULTS.md (aj)).
ADAPT_APPEARANCE_REPLAY = 0.0
# The protocols' bases keep none, so their results stay comparable with every one recorded before it.
PROTOCOL_ORGAN_CONTRAST = 0.0
# The offline upper bound of `ciss protocol`: on the phantom an offline model at twice base + step still
# missed organs the incremental models found, so it was no upper bound; at four times one step it learned
# every organ in two of three seeds.
OFFLINE_ITERATIONS = 4 * STANDARD_ITERATIONS
