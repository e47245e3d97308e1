"""``ciss verify``: check every version's model files against the SHA-256 recorded when it was written.

A read-only command (no lock, no torch): it says which version, and which file of it, changed since it
was written, so a site can restore that file or roll back before anyone segments with it.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..api.events import VerifyDone
from ..events import EventSink

# A version's verdict is ok, changed or missing (bundle.FILE_*, the worst of its files), or one of these:
DAMAGED = "damaged"  # its metadata or class registry cannot be read
UNVERIFIED = "unverified"  # written before versions recorded checksums: it loads, it cannot be checked
INTACT_STATES = ("ok", UNVERIFIED)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-b", "--bundle", required=True, help="bundle folder written by `ciss train`")


def verify_bundle(root: Path) -> list[dict[str, Any]]:
    """One result a version: ``{"version", "status", "files": {path: ok|changed|missing}, "message"}``."""
    from ..bundle import FILE_CHANGED, FILE_MISSING, FILE_OK, Bundle
    from ..errors import BundleError

    bundle = Bundle.open_or_raise(root)
    results = []
    for name in bundle.versions():
        try:
            version = bundle.load(name)
        except BundleError as error:
            results.append({"version": name, "status": DAMAGED, "files": {}, "message": error.message})
            continue
        files = version.check_files()
        states = set(files.values())
        status = (
            UNVERIFIED if version.recorded_sha256 is None
            else FILE_CHANGED if FILE_CHANGED in states else FILE_MISSING if FILE_MISSING in states else FILE_OK
        )
        message = ", ".join(f"{path} {state}" for path, state in files.items() if state != FILE_OK)
        results.append({"version": name, "status": status, "files": files, "message": message or None})
    return results


def run(args: argparse.Namespace, sink: EventSink) -> None:
    from ..bundle import TAMPER_HINT
    from ..errors import BundleError

    results = verify_bundle(Path(args.bundle))
    for result in results:
        detail = "written before checksums: cannot be checked" if result["status"] == UNVERIFIED else result["message"] or ""
        sink.log(f"{result['version']:8s} {result['status']:10s} {detail}".rstrip())
    failed = [r for r in results if r["status"] not in INTACT_STATES]
    sink.done(VerifyDone(bundle=str(args.bundle), intact=not failed, versions=results))
    if failed:
        raise BundleError(
            f"{len(failed)} of {len(results)} versions of {args.bundle} are not intact: "
            + "; ".join(f"{r['version']} {r['status']} ({r['message']})" for r in failed),
            TAMPER_HINT,
        )
