"""``ciss adapt``: a domain step, the bundle's own organs adapted to a new site's CTs."""
from __future__ import annotations

import argparse

from ..api.events import AdaptDone
from ..api.presets import DEFAULT_ADAPT_PRESET, PRESETS
from ..api.settings import DEFAULT_DOMAIN_STRATEGY
from ..errors import InputError
from ..events import EventSink
from ..training.loop_config import ADAPT_ORGAN_CONTRAST
from .arguments import add_appearance_replay_argument, add_organ_contrast_argument
from .learn import add_step_arguments, step_request_fields


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-b", "--bundle", required=True, help="bundle folder; its current version is the parent of the new one")
    parser.add_argument("-i", "--images", nargs="+", required=True, help="CTs of the new site (scanner)")
    parser.add_argument("-l", "--labels", nargs="+", required=True, help="label maps, one per CT: all organs of the bundle or only some (0 elsewhere)")
    parser.add_argument(
        "--organ", "--organs", dest="organs", default=None,
        help="the organs the label maps hold, as NAME=VALUE separated by commas (VALUE: the organ's value in the label files); "
        "only the bundle's own organs; default: every organ of the bundle at its label id. Organs not listed are pseudo-labelled "
        "by the parent where it is confident and kept by the forgetting guard",
    )
    parser.add_argument("--strategy", default=DEFAULT_DOMAIN_STRATEGY,
                        help=f"dual_alignment (HSIC alignment to the previous model and a stored feature buffer), mib (the previous model's KD) or finetune "
                        f"(the labels alone); default {DEFAULT_DOMAIN_STRATEGY}: best on validation data")
    parser.add_argument("--setting", action="append", default=[], metavar="NAME=VALUE",
                        help="a setting of the strategy, repeatable, e.g. --setting lambda_cna=2 (`ciss learn --list-settings dual_alignment`, docs/settings.md)")
    add_step_arguments(parser, kept="organ without labels", default_preset=DEFAULT_ADAPT_PRESET)
    add_organ_contrast_argument(parser, "--organ-contrast", default=ADAPT_ORGAN_CONTRAST)
    add_appearance_replay_argument(parser, "--appearance-replay")


def parse_labelled_organs_or_raise(text: str | None) -> list[tuple[str, int]] | None:
    """``NAME=VALUE,…`` as (name, value) pairs; None (every organ at its id) when not given."""
    if text is None:
        return None
    organs = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, value = item.partition("=")
        if not sep or not value.strip().isdigit() or not 1 <= int(value) <= 255:
            raise InputError(f"invalid organ {item!r} in --organs", "write NAME=VALUE with VALUE 1-255, the organ's value in the label files, e.g. --organs liver=1,spleen=2")
        organs.append((name.strip(), int(value)))
    values = [value for _, value in organs]
    if not organs or len(set(values)) != len(values):
        raise InputError(f"--organs {text!r} names no organ or gives two organs one value", "give each labelled organ its own value, e.g. --organs liver=1,spleen=2")
    return organs


def run(args: argparse.Namespace, sink: EventSink) -> None:
    from ..cancellation import CancelToken, cancel_on_signals
    from ..device import resolve_device
    from ..training.adapt import AdaptRequest, adapt_step

    request = AdaptRequest(organs=parse_labelled_organs_or_raise(args.organs), organ_contrast=args.organ_contrast, appearance_replay=args.appearance_replay,
                           **step_request_fields(args, args.iterations or PRESETS[args.preset]))
    with cancel_on_signals(CancelToken()) as cancel:
        result = adapt_step(request, device=resolve_device(args.device), sink=sink, cancel=cancel)
    sink.log(f"version {result.version.version} is current: {', '.join(result.version.registry.names)} adapted")
    sink.done(AdaptDone(bundle=str(args.bundle), version=result.version.version, organs=result.version.registry.names, forgetting_guard=result.guard.to_json(),
                        labelled_dsc=result.labelled_dsc, replay_buffer=result.replay_buffer))
