"""``ciss rollback``: make another version current (an earlier one, or a rejected one accepted knowingly); nothing is deleted."""
from __future__ import annotations

import argparse
from pathlib import Path

from ..api.events import RollbackDone
from ..events import EventSink


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-b", "--bundle", required=True, help="bundle folder")
    parser.add_argument("--to", required=True, dest="target", metavar="VERSION", help="version to make current, e.g. 1.0.0")
    parser.add_argument("--accept-forgetting", action="store_true", help="also allow a version the forgetting guard rejected (recorded in bundle.json)")


def run(args: argparse.Namespace, sink: EventSink) -> None:
    from ..bundle import Bundle
    from ..bundle_lock import bundle_lock

    bundle = Bundle.open_or_raise(Path(args.bundle))
    with bundle_lock(bundle.root, "rollback", sink=sink):
        previous = bundle.current_version
        bundle.set_current(args.target, accept_rejected=args.accept_forgetting)
    sink.log(f"current version of {args.bundle}: {previous} -> {args.target}")
    sink.done(RollbackDone(bundle=str(args.bundle), version=args.target, previous=previous))
