"""``ciss learn``: add organs to a bundle from CTs labelled only for the new organs."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..api.events import LearnDone
from ..api.presets import DEFAULT_PRESET, PRESETS
from ..api.settings import DEFAULT_STRATEGY, STRATEGY_SETTINGS, settings_table
from ..events import EventSink
from ..training.loop_config import STEP_LEARNING_RATE
from .arguments import add_schedule_arguments, loop_config_from, positive_float, positive_int, unit_fraction


class ListSettings(argparse.Action):
    """``--list-settings [STRATEGY]``: print a strategy's settings and exit, before the required arguments are asked for."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: object, option_string: str | None = None) -> None:
        strategy = values or namespace.strategy
        if strategy not in STRATEGY_SETTINGS:
            parser.error(f"unknown strategy {strategy!r}: choose one of {', '.join(STRATEGY_SETTINGS)}")
        print(settings_table(str(strategy)))
        parser.exit()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-b", "--bundle", required=True, help="bundle folder; its current version is the parent of the new one")
    parser.add_argument(
        "--organ", "--organs", dest="organs", required=True,
        help="new organ(s) as NAME[=VALUE][:R,G,B] separated by commas; VALUE is the organ's value in the label files "
        "(default: position, 1-based); a colour makes a name unknown to the catalog a custom organ (e.g. pancreas,tumour_bed:#ff8000)",
    )
    parser.add_argument("-i", "--images", nargs="+", required=True, help="CTs on which the new organs were annotated")
    parser.add_argument("-l", "--labels", nargs="+", required=True, help="label maps with ONLY the new organs (0 elsewhere, old organs unlabelled)")
    parser.add_argument("--strategy", default=DEFAULT_STRATEGY, help=f"one of {', '.join(STRATEGY_SETTINGS)} (default {DEFAULT_STRATEGY}: best on validation data)")
    parser.add_argument(
        "--setting", action="append", default=[], metavar="NAME=VALUE",
        help="a setting of the strategy, repeatable, e.g. --setting lambda_orcd=5 --setting orcd_temperature=0.1 (--list-settings, docs/settings.md)",
    )
    parser.add_argument(
        "--list-settings", action=ListSettings, nargs="?", choices=list(STRATEGY_SETTINGS), metavar="STRATEGY",
        help=f"print the settings of STRATEGY (default: the --strategy given before it, else {DEFAULT_STRATEGY}): values, default and why, then exit",
    )
    add_step_arguments(parser, kept="old organ", default_preset=DEFAULT_PRESET)


def add_step_arguments(parser: argparse.ArgumentParser, *, kept: str, default_preset: str) -> None:
    """The budget, pseudo-label, guard and schedule options of a step on a bundle (``learn`` and ``adapt``);
    ``kept``: what the pseudo-labels and the guard hold (an old organ, an organ without labels)."""
    parser.add_argument("--preset", choices=sorted(PRESETS), default=default_preset, help=f"iteration budget: {PRESETS} (default {default_preset})")
    parser.add_argument("--iterations", type=positive_int, default=None, help="iterations (overrides --preset)")
    parser.add_argument("--fixed-threshold", type=positive_float, default=None, help=f"one entropy threshold τ for every {kept} instead of the per-class median")
    parser.add_argument("--guard-threshold", type=unit_fraction, default=0.9, help=f"forgetting guard: minimum agreement DSC per {kept} (default 0.90)")
    parser.add_argument("--accept-forgetting", action="store_true", help="make the new version current even if the forgetting guard fails")
    parser.add_argument("--from-version", default=None, help="parent version (must be the current one; default current)")
    add_schedule_arguments(parser, learning_rate=STEP_LEARNING_RATE)


def step_request_fields(args: argparse.Namespace, iterations: int) -> dict[str, Any]:
    """The fields of a step request (training/step_common.StepRequest) that ``ciss learn`` and ``ciss adapt`` read alike."""
    return {
        "bundle": Path(args.bundle), "images": [Path(p) for p in args.images], "labels": [Path(p) for p in args.labels],
        "loop": loop_config_from(args, iterations), "strategy": args.strategy, "strategy_settings": setting_texts_or_raise(args.setting),
        "batch_size": args.batch_size, "seed": args.seed, "fixed_threshold": args.fixed_threshold, "guard_threshold": args.guard_threshold,
        "accept_forgetting": args.accept_forgetting, "resume": args.resume, "parent_version": args.from_version,
    }


def setting_texts_or_raise(items: list[str]) -> dict[str, str]:
    """NAME → VALUE of each ``--setting NAME=VALUE``, names as given: the step checks them against the strategy's."""
    from ..errors import InputError

    settings = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise InputError(f"invalid --setting {item!r}", "write settings as NAME=VALUE, e.g. --setting lambda_orcd=5")
        settings[name.strip()] = value.strip()
    return settings


def run(args: argparse.Namespace, sink: EventSink) -> None:
    from ..cancellation import CancelToken, cancel_on_signals
    from ..device import resolve_device
    from ..training.incremental import LearnRequest, learn_step
    from .train import parse_organs_or_raise

    iterations = args.iterations or PRESETS[args.preset]
    request = LearnRequest(organs=parse_organs_or_raise(args.organs), **step_request_fields(args, iterations))
    with cancel_on_signals(CancelToken()) as cancel:
        version, guard = learn_step(request, device=resolve_device(args.device), sink=sink, cancel=cancel)
    sink.log(f"version {version.version} is current: {', '.join(version.registry.names)}")
    sink.done(LearnDone(bundle=str(args.bundle), version=version.version, organs=version.registry.names, forgetting_guard=guard.to_json()))
