"""``ciss train``: a base bundle from fully labelled CTs."""
from __future__ import annotations

import argparse
from pathlib import Path

from ..api.events import TrainDone
from ..cancellation import CancelToken, cancel_on_signals
from ..errors import InputError
from ..events import EventSink
from ..registry import parse_organ_spec
from ..training.loop_config import BASE_ITERATIONS, SYNTHETIC_CASES, SYNTHETIC_SHARE, LoopConfig
from .arguments import add_network_arguments, add_organ_contrast_argument, add_schedule_arguments, loop_config_from, positive_int, share_below_one, unit_fraction


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-i", "--images", nargs="+", required=True, help="CT volumes (NIfTI, NRRD or DICOM folders)")
    parser.add_argument("-l", "--labels", nargs="+", required=True, help="label maps, one per CT, on the CT's grid")
    parser.add_argument(
        "--organs", required=True,
        help="organs to learn, as NAME[=VALUE][:R,G,B] separated by commas; VALUE is the organ's value in the label "
        "files (default: its position, 1-based); a colour (#rrggbb) makes an organ unknown to the catalog a custom organ. "
        "Example: spleen=1,kidney_right=2,kidney_left=3,gallbladder=4",
    )
    parser.add_argument("-o", "--output", required=True, help="new bundle folder to create")
    parser.add_argument(
        "--other-labels", choices=["error", "background"], default="error",
        help="label values not listed in --organs: error (default) or background (keep only the listed organs)",
    )
    parser.add_argument("--iterations", type=positive_int, default=BASE_ITERATIONS, help=f"training iterations (default {BASE_ITERATIONS}; timings in the README's Measured results)")
    add_organ_contrast_argument(parser, "--organ-contrast")
    parser.add_argument(
        "--synthetic-share", type=share_below_one, default=SYNTHETIC_SHARE,
        help="share of patches drawn from synthetic phantom patients beside your CTs, so a model trained on one or two patients finds "
             "more of other patients' organs; only when every organ learned is one the phantom draws (spleen, kidneys, gallbladder, "
             f"esophagus, pancreas, liver, stomach); 0 turns them off (default {SYNTHETIC_SHARE}, measured with {BASE_ITERATIONS} iterations: "
             "with fewer, the smallest organ may not be learned yet; benchmarks/RESULTS.md (ap))",
    )
    parser.add_argument(
        "--synthetic-patients", type=positive_int, default=SYNTHETIC_CASES,
        help=f"how many synthetic patients that share is drawn from, shown in turn in the phantom's three contrast phases (default {SYNTHETIC_CASES}; "
             "the run's seed draws them; benchmarks/RESULTS.md (aq))",
    )
    parser.add_argument(
        "--synthetic-organ-contrast", type=unit_fraction, default=None,
        help="organ contrast (as --organ-contrast) in the synthetic patients' patches; your CTs' patches keep --organ-contrast "
             "(default: --organ-contrast's share; 0.75 transferred better and learned a single CT's gallbladder more surely, "
             "but on several CTs it left the gallbladder below 0.85 in 2 of 6 runs: benchmarks/RESULTS.md (ar), (as))",
    )
    add_network_arguments(parser)
    add_schedule_arguments(parser, learning_rate=LoopConfig.learning_rate)


def parse_organs_or_raise(text: str) -> list[tuple[str, int, tuple[int, int, int] | None]]:
    organs = []
    for position, item in enumerate(filter(None, text.split(",")), start=1):
        name, value, rgb = parse_organ_spec(item)
        organs.append((name, value if value is not None else position, rgb))
    if not organs:
        raise InputError("no organs given", "pass --organs, e.g. --organs spleen=1,liver=2")
    values = [v for _, v, _ in organs]
    if len(set(values)) != len(values):
        raise InputError(f"two organs share a label value in --organs {text}", "give each organ its own value")
    return organs


def run(args: argparse.Namespace, sink: EventSink) -> None:
    from ..device import resolve_device
    from ..preprocessing import PreprocessingConfig
    from ..training.base import BaseTrainingRequest, train_base_bundle
    from ..training.distributed import DistributedContext, process_group

    request = BaseTrainingRequest(
        images=[Path(p) for p in args.images],
        labels=[Path(p) for p in args.labels],
        organs=parse_organs_or_raise(args.organs),
        output=Path(args.output),
        loop=loop_config_from(args, args.iterations),
        preprocessing=PreprocessingConfig(spacing_mm=args.spacing, patch_size=args.patch_size),
        init_filters=args.init_filters,
        batch_size=args.batch_size,
        seed=args.seed,
        other_labels=args.other_labels,
        resume=args.resume,
        organ_contrast=args.organ_contrast,
        synthetic_share=args.synthetic_share,
        synthetic_cases=args.synthetic_patients,
        synthetic_organ_contrast=args.synthetic_organ_contrast,
    )
    distributed = DistributedContext.from_environment()
    # The group is joined before the signal handlers go in: a SIGTERM while ranks still gather ends the process.
    with process_group(distributed, resolve_device(args.device)) as device, cancel_on_signals(CancelToken()) as cancel:
        version = train_base_bundle(request, device=device, sink=sink, cancel=cancel, distributed=distributed)
    sink.log(f"bundle written: {request.output} (version {version.version})")
    sink.done(TrainDone(bundle=str(request.output), version=version.version, organs=version.registry.names))
