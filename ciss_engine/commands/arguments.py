"""Argument types and shared flags for the ``ciss`` commands: validators fail by saying what is allowed."""
from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from typing import Any

from ..device import DEVICE_CHOICES
from ..training.loop_config import ADAPT_APPEARANCE_REPLAY, ORGAN_CONTRAST, LoopConfig


def _number(text: str, cast: type, is_valid: Callable[[float], bool], expected: str) -> Any:
    try:
        value = cast(text)
    except ValueError:
        value = None
    if value is None or not is_valid(value):
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
    return value


def positive_int(text: str) -> int:
    return _number(text, int, lambda v: v >= 1, "a positive integer")


def non_negative_int(text: str) -> int:
    return _number(text, int, lambda v: v >= 0, "an integer >= 0")


def _is_multiple_of_8(value: float) -> bool:
    return value >= 8 and value % 8 == 0


def multiple_of_8(text: str) -> int:
    return _number(text, int, _is_multiple_of_8, "a multiple of 8 (8, 16, 32…)")


def unit_fraction(text: str) -> float:
    return _number(text, float, lambda v: 0.0 <= v <= 1.0, "a number between 0 and 1")


def share_below_one(text: str) -> float:
    return _number(text, float, lambda v: 0.0 <= v < 1.0, "a number from 0 up to, not including, 1")


def positive_float(text: str) -> float:
    return _number(text, float, lambda v: v > 0, "a positive number")


def _triple(text: str, cast: type, is_valid: Callable[[float], bool], expected: str) -> tuple[Any, Any, Any]:
    """``N`` (the same for the three axes) or ``X,Y,Z``."""
    parts = text.split(",")
    values = tuple(_number(p, cast, is_valid, expected) for p in (parts * 3 if len(parts) == 1 else parts))
    if len(values) != 3:
        raise argparse.ArgumentTypeError(f"expected N or X,Y,Z ({expected}), got {text!r}")
    return values  # type: ignore[return-value]


def int_triple(text: str) -> tuple[int, int, int]:
    return _triple(text, int, _is_multiple_of_8, "multiples of 8")


def float_triple(text: str) -> tuple[float, float, float]:
    return _triple(text, float, lambda v: v > 0, "positive mm")


def comma_separated_choices(allowed: Sequence[str], what: str, allow_empty: bool = False) -> Callable[[str], list[str]]:
    """A ``type=`` validator: a comma-separated subset of ``allowed`` (non-empty unless ``allow_empty``),
    lower-cased, repeats dropped."""

    def parse(text: str) -> list[str]:
        chosen = [item.strip().lower() for item in text.split(",") if item.strip()]
        unknown = [item for item in chosen if item not in allowed]
        if unknown or not (chosen or allow_empty):
            raise argparse.ArgumentTypeError(f"unknown {what} {', '.join(unknown) or text!r}; choose from {', '.join(allowed)} (comma-separated)")
        return list(dict.fromkeys(chosen))

    return parse


def comma_separated(item: Callable[[str], Any]) -> Callable[[str], list[Any]]:
    """A ``type=`` validator: a non-empty comma-separated list, each item checked by ``item`` at parse time
    (a bad item fails before any work, not as a traceback after it)."""

    def parse(text: str) -> list[Any]:
        values = [item(part.strip()) for part in text.split(",") if part.strip()]
        if not values:
            raise argparse.ArgumentTypeError(f"expected a comma-separated list, got {text!r}")
        return values

    return parse


def add_bundle_argument(parser: argparse.ArgumentParser, *, required: bool = True) -> None:
    parser.add_argument("-b", "--bundle", required=required, help="bundle folder written by `ciss train` (holds bundle.json and versions/)")
    parser.add_argument("--bundle-version", default=None, help="version to use (default: the bundle's current version)")


def add_postprocessing_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--no-postprocessing", action="store_true",
        help="keep every predicted piece of every organ (default: an organ that is one connected structure, a liver or a kidney, "
        "is kept as its largest piece; the others are errors)",
    )


def add_device_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--device", choices=DEVICE_CHOICES, default="auto",
        help="where the network runs: auto = CUDA if available, else CPU (default auto); CUDA uses mixed precision",
    )


# The base model's width and patch: on a 2-core CPU a 16-filter 64³ iteration costs 4.2 s, an 8-filter 48³ one
# 0.47 s, and the 8-filter network trained for 1000 iterations on 48³ patches segments every organ of both real
# CTs with DSC >= 0.91 (benchmarks/RESULTS.md (d), (i)). GPU sites can afford --init-filters 16 --patch-size 64.
DEFAULT_PATCH_SIZE = 48
DEFAULT_INIT_FILTERS = 8


def add_network_arguments(parser: argparse.ArgumentParser, *, patch_size: int = DEFAULT_PATCH_SIZE, init_filters: int = DEFAULT_INIT_FILTERS) -> None:
    """The base model's grid, patch and width: shared by ``train`` and ``demo``."""
    parser.add_argument("--patch-size", type=int_triple, default=(patch_size,) * 3, help=f"patch size in voxels, N or X,Y,Z, multiples of 8 (default {patch_size})")
    parser.add_argument("--spacing", type=float_triple, default=(3.0, 3.0, 3.0), help="network voxel spacing in mm (default 3)")
    parser.add_argument("--init-filters", type=multiple_of_8, default=init_filters, help=f"SegResNet width; also the prototype feature size K (default {init_filters})")


def add_schedule_arguments(parser: argparse.ArgumentParser, *, learning_rate: float) -> None:
    """Optimiser, precision, checkpoints, seed and resume: shared by ``train`` and ``learn``."""
    parser.add_argument("--optimizer", choices=["sgd", "adamw"], default=LoopConfig.optimizer, help=f"optimizer (default {LoopConfig.optimizer})")
    parser.add_argument("--learning-rate", type=positive_float, default=learning_rate, help=f"learning rate before poly decay (default {learning_rate})")
    parser.add_argument(
        "--momentum", type=unit_fraction, default=LoopConfig.momentum,
        help=f"SGD Nesterov momentum (default {LoopConfig.momentum}; METHOD.md's 0.99 suits long GPU runs, see benchmarks/RESULTS.md)",
    )
    parser.add_argument("--batch-size", type=positive_int, default=2, help="patches per iteration (default 2)")
    parser.add_argument("--checkpoint-every", type=positive_int, default=LoopConfig.checkpoint_every, help=f"iterations between resumable checkpoints (default {LoopConfig.checkpoint_every})")
    parser.add_argument("--seed", type=non_negative_int, default=0, help="random seed >= 0; the same seed and data give the same model (default 0)")
    parser.add_argument("--resume", action="store_true", help="continue an interrupted run from its last checkpoint (same arguments)")
    parser.add_argument("--no-amp", action="store_true", help="float32 on CUDA too (default: mixed precision on CUDA, float32 on the CPU)")
    parser.add_argument(
        "--cpu-bf16", action="store_true",
        help="bf16 autocast on a CPU with native bf16: about 1.2 x faster, but float32 trained better models (benchmarks/RESULTS.md (p))",
    )
    parser.add_argument(
        "--no-augmentation", action="store_true",
        help="train on the cropped patches as they are (default: random rotation, scaling, shear, intensity, contrast, blur, noise; never left-right mirroring)",
    )
    add_device_argument(parser)


def add_organ_contrast_argument(parser: argparse.ArgumentParser, flag: str, default: float = ORGAN_CONTRAST) -> None:
    """Shared by ``train``, ``adapt`` and ``protocol`` (its models trained from scratch, its domain steps)."""
    parser.add_argument(
        flag, type=unit_fraction, default=default,
        help=f"share of patches whose labelled enhancing organs (liver, spleen, kidneys, vessels…) each get their own random intensity offset, "
             f"so a model trained on one contrast phase finds the organs in another; 0 or --no-augmentation turns it off (default {default}; "
             f"benchmarks/RESULTS.md (aa), (ab))",
    )


def add_appearance_replay_argument(parser: argparse.ArgumentParser, flag: str) -> None:
    """Shared by ``adapt`` and ``protocol`` (its domain steps)."""
    parser.add_argument(
        flag, type=unit_fraction, default=ADAPT_APPEARANCE_REPLAY,
        help="of the organ-contrast patches, the share whose organs show the intensities an earlier site of the bundle's lineage recorded "
             f"(each organ's median, kept in the history) instead of random offsets (default {ADAPT_APPEARANCE_REPLAY}; benchmarks/RESULTS.md (aj))",
    )


def loop_config_from(args: argparse.Namespace, iterations: int) -> LoopConfig:
    return LoopConfig(
        iterations=iterations, optimizer=args.optimizer, learning_rate=args.learning_rate, momentum=args.momentum,
        checkpoint_every=args.checkpoint_every, amp=not args.no_amp, cpu_bf16=args.cpu_bf16, augmentation=not args.no_augmentation,
    )
