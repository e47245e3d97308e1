"""``ciss info``: a bundle's organs, versions and history; answers without importing torch."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..bundle import describe_bundle
from ..events import EventSink
from .arguments import add_bundle_argument


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_bundle_argument(parser)
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON on stdout")


def run(args: argparse.Namespace, sink: EventSink) -> None:
    description = describe_bundle(Path(args.bundle), args.bundle_version)
    if args.json:
        print(json.dumps(description.to_json(), indent=2))
        return
    print(f"bundle {description.bundle}: version {description.version} (current {description.current})")
    for organ in description.classes:
        print(f"  {organ['label']:3d} {organ['name']:24s} rgb{tuple(organ['rgb'])}  added in {organ['version_introduced']}")
    print("versions: " + ", ".join(f"{v.version} ({v.status})" for v in description.versions))
