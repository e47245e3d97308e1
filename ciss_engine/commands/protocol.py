"""``ciss protocol``: the paper's class-incremental protocol on a cohort, with Old/New/All per strategy."""
from __future__ import annotations

import argparse
from pathlib import Path

from ..api.events import ProtocolDone
from ..api.presets import STANDARD_ITERATIONS
from ..api.settings import STRATEGY_SETTINGS, parse_settings_or_raise
from ..events import EventSink
from ..training.loop_config import ADAPT_ORGAN_CONTRAST, OFFLINE_ITERATIONS, PROTOCOL_ORGAN_CONTRAST, STEP_LEARNING_RATE
from .arguments import (
    add_appearance_replay_argument, add_device_argument, add_organ_contrast_argument, add_postprocessing_argument, comma_separated, comma_separated_choices, float_triple, int_triple, multiple_of_8, non_negative_int, positive_float, positive_int,
)


# The strategies the domain protocol compares by default: the baseline, distillation, and the buffer's alignment.
DOMAIN_STRATEGIES_COMPARED = ("finetune", "mib", "dual_alignment")
# The default strategy, its uncalibrated twin beside it (PCDD − uniform is what the calibration buys), MiB and the
# forgetting floor.
CLASS_STRATEGIES_COMPARED = ("pcdd", "uniform", "mib", "finetune")


def strategy_names(text: str) -> list[str]:
    """``type=`` of ``--strategies``. An empty list trains and scores only the base models (benchmarks share them between runs)."""
    return comma_separated_choices(tuple(STRATEGY_SETTINGS), "strategy", allow_empty=True)(text)


def strategy_setting(text: str) -> tuple[str, str, str]:
    """``type=`` of ``--setting``: ``STRATEGY.NAME=VALUE`` → (strategy, name, value); several strategies run, so
    each setting names its own (``ciss learn`` runs one and takes plain ``NAME=VALUE``)."""
    key, sep, value = text.partition("=")
    strategy, dot, name = key.partition(".")
    if not (sep and dot and strategy.strip() and name.strip()):
        raise argparse.ArgumentTypeError(f"expected STRATEGY.NAME=VALUE, e.g. pcdd.lambda_orcd=5, got {text!r}")
    return strategy.strip(), name.strip(), value.strip()


def settings_by_strategy_or_raise(items: list[tuple[str, str, str]]) -> dict[str, dict[str, str]]:
    """``--setting`` values grouped by strategy, each checked against its strategy's settings (an InputError
    before any data is written or trained on)."""
    settings: dict[str, dict[str, str]] = {}
    for strategy, name, value in items:
        settings.setdefault(strategy, {})[name] = value
    for strategy, values in settings.items():
        parse_settings_or_raise(strategy, values)
    return settings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--protocol", default="4-4", choices=["4-4", "4-2", "2-2", "4-1", "7-1", "domain"],
                        help="class split (default 4-4), or domain: organs 1-4 adapted to phantom sites 2 and 3 (other scanners) in sequence")
    parser.add_argument("--strategies", type=strategy_names, default=None, help=f"comma-separated strategies (default {','.join(CLASS_STRATEGIES_COMPARED)}; for domain "
                        f"{','.join(DOMAIN_STRATEGIES_COMPARED)}; \"\" for the base models only); the offline upper bound of class splits runs unless --no-offline")
    parser.add_argument(
        "--data", required=True,
        help="folder of training cases (<case>/image.nii.gz + label_seg8.nii.gz with the paper's ids 1-8), or 'phantom' to generate them",
    )
    parser.add_argument("--test-data", default=None, help="folder of held-out test cases (default: the last --test-cases of --data)")
    parser.add_argument("--test-cases", type=positive_int, default=4, help="held-out cases: taken from the end of --data, or generated for phantom (default 4)")
    parser.add_argument("--train-cases", type=positive_int, default=8, help="phantom only: training cases to generate (default 8)")
    parser.add_argument("--seeds", type=comma_separated(non_negative_int), default="0", help="comma-separated seeds >= 0 (default 0)")
    parser.add_argument("--base-iterations", type=positive_int, default=STANDARD_ITERATIONS, help=f"base step iterations (default {STANDARD_ITERATIONS})")
    add_organ_contrast_argument(parser, "--base-organ-contrast", default=PROTOCOL_ORGAN_CONTRAST)
    add_organ_contrast_argument(parser, "--step-organ-contrast", default=ADAPT_ORGAN_CONTRAST)  # the domain protocol's steps, as ciss adapt
    add_appearance_replay_argument(parser, "--step-appearance-replay")
    parser.add_argument("--step-iterations", type=positive_int, default=STANDARD_ITERATIONS, help=f"iterations of each incremental step (default {STANDARD_ITERATIONS})")
    parser.add_argument("--offline-iterations", type=positive_int, default=OFFLINE_ITERATIONS, help=f"iterations of the offline upper bound (default {OFFLINE_ITERATIONS})")
    parser.add_argument("--step-learning-rate", type=positive_float, default=STEP_LEARNING_RATE, help=f"learning rate of each incremental step, before poly decay (default {STEP_LEARNING_RATE}, as ciss learn)")
    parser.add_argument("--no-amp", action="store_true", help="float32 on CUDA too (default: mixed precision on CUDA, float32 on the CPU)")
    parser.add_argument("--no-offline", action="store_true", help="skip the offline upper bound (all organs at once)")
    parser.add_argument("--patch-size", type=int_triple, default=(64, 64, 64), help="patch size in voxels (default 64)")
    parser.add_argument("--spacing", type=float_triple, default=(3.0, 3.0, 3.0), help="network spacing in mm (default 3)")
    parser.add_argument("--init-filters", type=multiple_of_8, default=16, help="SegResNet width (default 16)")
    parser.add_argument("--setting", type=strategy_setting, action="append", default=[], metavar="STRATEGY.NAME=VALUE", help="strategy setting, e.g. pcdd.lambda_orcd=5 (repeatable)")
    parser.add_argument("-o", "--output", required=True, help="output folder (bundles, protocol.json/.md/.png); re-running resumes finished runs")
    add_postprocessing_argument(parser)
    add_device_argument(parser)


def run(args: argparse.Namespace, sink: EventSink) -> None:
    from ..atomic import ensure_writable_dir
    from ..cancellation import CancelToken, cancel_on_signals
    from ..device import resolve_device
    from ..errors import InputError
    from ..phantom import write_cohort
    from ..preprocessing import PreprocessingConfig
    from ..protocol import Case, ProtocolRequest, cases_in, run_protocol
    from ..protocol_report import markdown, write_reports

    settings = settings_by_strategy_or_raise(args.setting)
    output = ensure_writable_dir(Path(args.output))
    if args.protocol == "domain":
        _run_domain(args, settings, output, sink)
        return
    if args.data == "phantom":
        train = [Case(p / "image.nii.gz", p / "label_seg8.nii.gz") for p in write_cohort(output / "data" / "train", args.train_cases, 0)]
        test = [Case(p / "image.nii.gz", p / "label_seg8.nii.gz") for p in write_cohort(output / "data" / "test", args.test_cases, 1)]
    else:
        cases = cases_in(Path(args.data))
        if args.test_data:
            train, test = cases, cases_in(Path(args.test_data))
        else:
            if len(cases) <= args.test_cases:
                raise InputError(f"{args.data} has {len(cases)} cases, too few to hold out {args.test_cases}", "pass --test-data or a smaller --test-cases")
            train, test = cases[: -args.test_cases], cases[-args.test_cases :]
    request = ProtocolRequest(
        protocol=args.protocol, strategies=args.strategies if args.strategies is not None else list(CLASS_STRATEGIES_COMPARED), train=train, test=test, output=output,
        seeds=args.seeds, base_iterations=args.base_iterations, step_iterations=args.step_iterations,
        offline_iterations=args.offline_iterations, preprocessing=PreprocessingConfig(spacing_mm=args.spacing, patch_size=args.patch_size),
        init_filters=args.init_filters, step_learning_rate=args.step_learning_rate, strategy_settings=settings, run_offline=not args.no_offline,
        amp=not args.no_amp, postprocess=not args.no_postprocessing, organ_contrast=args.base_organ_contrast,
    )
    with cancel_on_signals(CancelToken()) as cancel:
        results = run_protocol(request, device=resolve_device(args.device), sink=sink, cancel=cancel)
    files = write_reports(results, output)
    sink.log(markdown(results))
    sink.done(ProtocolDone(output=str(output), files=[str(f) for f in files]))


def _run_domain(args: argparse.Namespace, settings: dict[str, dict[str, str]], output: Path, sink: EventSink) -> None:
    """The domain-incremental protocol on phantom sites (scanner_sites.py): --data phantom, or a folder of cases as site 1 shows them."""
    from ..cancellation import CancelToken, cancel_on_signals
    from ..device import resolve_device
    from ..domain_protocol import DomainProtocolRequest, run_domain_protocol
    from ..errors import InputError
    from ..phantom import write_cohort
    from ..preprocessing import PreprocessingConfig
    from ..protocol import cases_in
    from ..scanner_sites import SITES

    if args.data == "phantom":
        train, test = write_cohort(output / "data" / "cohort" / "train", args.train_cases, 0), write_cohort(output / "data" / "cohort" / "test", args.test_cases, 1)
    elif args.test_data:
        train, test = [c.image.parent for c in cases_in(Path(args.data))], [c.image.parent for c in cases_in(Path(args.test_data))]
    else:
        raise InputError("the domain protocol needs held-out cases of its own", "pass --test-data DIR, or --data phantom")
    strategies = args.strategies if args.strategies is not None else list(DOMAIN_STRATEGIES_COMPARED)
    request = DomainProtocolRequest(
        strategies=strategies, sites=SITES, train=train, test=test, output=output, seeds=args.seeds, base_iterations=args.base_iterations,
        step_iterations=args.step_iterations, preprocessing=PreprocessingConfig(spacing_mm=args.spacing, patch_size=args.patch_size),
        init_filters=args.init_filters, step_learning_rate=args.step_learning_rate, strategy_settings=settings,
        postprocess=not args.no_postprocessing, organ_contrast=args.base_organ_contrast, step_organ_contrast=args.step_organ_contrast,
        step_appearance_replay=args.step_appearance_replay,
    )
    with cancel_on_signals(CancelToken()) as cancel:
        run_domain_protocol(request, device=resolve_device(args.device), sink=sink, cancel=cancel)
    sink.log((output / "protocol.md").read_text(encoding="utf-8"))
    sink.done(ProtocolDone(output=str(output), files=[str(output / "protocol.json"), str(output / "protocol.md")]))
