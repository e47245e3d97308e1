"""Argument types and shared flags for the ``ciss`` commands: validators fail by saying what is allowed."""
from __future__ import annotations

import argparse

from ..device import DEVICE_CHOICES


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return value


def multiple_of_8(text: str) -> int:
    value = positive_int(text)
    if value % 8:
        raise argparse.ArgumentTypeError(f"expected a multiple of 8 (8, 16, 32…), got {text!r}")
    return value


def unit_fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a number between 0 and 1, got {text!r}")
    return value


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def int_triple(text: str) -> tuple[int, int, int]:
    parts = text.split(",")
    if len(parts) == 1:
        parts = parts * 3
    try:
        values = tuple(int(p) for p in parts)
    except ValueError:
        values = ()
    if len(values) != 3 or min(values) < 8 or any(v % 8 for v in values):
        raise argparse.ArgumentTypeError(f"expected N or X,Y,Z with multiples of 8 (>= 8), got {text!r}")
    return values  # type: ignore[return-value]


def float_triple(text: str) -> tuple[float, float, float]:
    parts = text.split(",")
    if len(parts) == 1:
        parts = parts * 3
    try:
        values = tuple(float(p) for p in parts)
    except ValueError:
        values = ()
    if len(values) != 3 or min(values) <= 0:
        raise argparse.ArgumentTypeError(f"expected MM or X,Y,Z in mm (positive), got {text!r}")
    return values  # type: ignore[return-value]


def add_bundle_argument(parser: argparse.ArgumentParser, *, required: bool = True) -> None:
    parser.add_argument("-b", "--bundle", required=required, help="bundle folder written by `ciss train` (holds bundle.json and versions/)")
    parser.add_argument("--bundle-version", default=None, help="version to use (default: the bundle's current version)")


def add_device_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--device", choices=DEVICE_CHOICES, default="auto",
        help="where the network runs: auto = CUDA if available, else CPU (default auto); CUDA uses mixed precision",
    )
