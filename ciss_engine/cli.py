"""The ``ciss`` command line: parses arguments and calls one command module; nothing else.

Command modules are imported lazily (``ciss_engine.commands.<name>``) so ``ciss info --json`` and
``--list-classes`` answer without importing torch.
"""
from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable

from . import __version__
from .commands import COMMANDS, module_name
from .crash import report_unexpected_error
from .errors import CissError, ExitCode
from .events import EventSink, ProgressMode
from .training.distributed import DistributedContext

# Commands that torchrun may start as several processes (docs/distributed.md); the others run as one.
DISTRIBUTED_COMMANDS = ("train",)


def add_progress_arguments(parser: argparse.ArgumentParser) -> None:
    """``--progress`` and ``--quiet``, which every command takes (the studio's own command too)."""
    parser.add_argument(
        "--progress",
        choices=[m.value for m in ProgressMode],
        default=None,
        help="how to report progress: jsonl = one JSON event a line on stdout (for GUIs); bar = progress bars on a "
        "terminal (default); quiet = nothing but errors",
    )
    parser.add_argument("--quiet", action="store_true", help="same as --progress quiet")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ciss", description="CISSegmentation engine: segment organs on CT and add new organs without old labels.")
    parser.add_argument("--version", action="version", version=f"ciss {__version__}")
    parser.add_argument("--list-classes", action="store_true", help="list the organs the catalog knows (name, SNOMED CT code) and exit")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, summary in COMMANDS.items():
        module = importlib.import_module(f".commands.{module_name(name)}", __package__)
        sub = subparsers.add_parser(name, help=summary, description=summary)
        module.add_arguments(sub)
        add_progress_arguments(sub)
    return parser


def _list_classes() -> None:
    from .registry import known_organ_names, make_organ

    for index, name in enumerate(known_organ_names(), start=1):
        organ = make_organ(name, index)
        modifier = f" ({organ.modifier.meaning})" if organ.modifier else ""
        print(f"{name:24s} SCT {organ.type.code:>10s} {organ.type.meaning}{modifier}")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv == ["--version"]:
        # Answered before any command module is imported: the Slicer module uses it as a health check.
        print(f"ciss {__version__}")
        return ExitCode.OK
    parser = build_parser()
    if argv[:1] == ["studio"]:
        parser.error("the studio has its own command: run `ciss-studio` (or `python -m ciss_studio`) with the same options")
    args = parser.parse_args(argv)
    if args.list_classes:
        _list_classes()
        return ExitCode.OK
    if not args.command:
        parser.print_help()
        return ExitCode.USAGE_ERROR
    launch = DistributedContext.from_environment()
    if launch.is_distributed and args.command not in DISTRIBUTED_COMMANDS:
        parser.error(f"torchrun started {launch.world_size} processes, but only `ciss train` runs distributed; run `ciss {args.command}` as one process")
    module = importlib.import_module(f".commands.{module_name(args.command)}", __package__)
    # Under torchrun only rank 0 reports: one stream of events, one `done`; other ranks still print errors on stderr.
    return run_command(module.run, args, argv, quiet=not launch.is_main)


def run_command(run: Callable[[argparse.Namespace, EventSink], None], args: argparse.Namespace, argv: list[str], *,
                program: str = "ciss", quiet: bool = False) -> int:
    """Run a parsed command under the contract front ends rely on: errors become one ``error`` event and the
    exit code of their kind, an unexpected one also a log file (crash.py)."""
    sink = EventSink(ProgressMode.QUIET if args.quiet or quiet else ProgressMode(args.progress or ProgressMode.BAR))
    try:
        run(args, sink)
    except CissError as error:
        sink.error(error.message, error.hint, exit_code=int(error.exit_code))
        return error.exit_code
    except KeyboardInterrupt:
        sink.error("cancelled", "run again with --resume to continue from the last checkpoint", exit_code=int(ExitCode.CANCELLED))
        return ExitCode.CANCELLED
    except Exception as error:  # anything else is a bug or memory running out: one error event, the traceback in a log file
        return report_unexpected_error(error, argv, sink, program=program)
    return ExitCode.OK


if __name__ == "__main__":
    sys.exit(main())
