"""``ciss versions``: list a bundle's versions and their status."""
from __future__ import annotations

import argparse
from pathlib import Path

from ..bundle import describe_bundle
from ..events import EventSink


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-b", "--bundle", required=True, help="bundle folder")


def run(args: argparse.Namespace, sink: EventSink) -> None:
    for entry in describe_bundle(Path(args.bundle)).versions:
        marker = "*" if entry.status == "current" else " "
        print(f"{marker} {entry.version:8s} {entry.status:10s} {', '.join(entry.organs)}")
