"""``ciss info``: a bundle's organs, versions and history; answers without importing torch."""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from ..events import EventSink
from .arguments import add_bundle_argument


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_bundle_argument(parser)
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON on stdout")


def describe_bundle(root: Path, version: str | None = None) -> dict[str, Any]:
    """What the Slicer module and the studio show about a bundle (JSON-ready)."""
    from ..bundle import Bundle

    bundle = Bundle.open_or_raise(root)
    current = bundle.current_version
    shown = bundle.load(version)
    versions = []
    accepted = bundle.accepted_versions
    for name in bundle.versions():
        loaded = bundle.load(name)
        versions.append(
            {
                "version": name,
                "status": "current" if name == current else "accepted" if name in accepted else loaded.status,
                "organs": loaded.registry.names,
                "created": loaded.metadata.get("created"),
                "parent_version": loaded.settings.get("parent_version"),
            }
        )
    return {
        "bundle": str(root),
        "current": current,
        "version": shown.version,
        "versions": versions,
        "classes": shown.registry.to_json()["classes"],
        "preprocessing": shown.settings["preprocessing"],
        "history": shown.history,
    }


def run(args: argparse.Namespace, sink: EventSink) -> None:
    description = describe_bundle(Path(args.bundle), args.bundle_version)
    if args.json:
        print(json.dumps(description, indent=2))
        return
    print(f"bundle {description['bundle']}: version {description['version']} (current {description['current']})")
    for organ in description["classes"]:
        print(f"  {organ['label']:3d} {organ['name']:24s} rgb{tuple(organ['rgb'])}  added in {organ['version_introduced']}")
    print("versions: " + ", ".join(f"{v['version']} ({v['status']})" for v in description["versions"]))
