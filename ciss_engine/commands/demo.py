"""``ciss demo``: the clinical workflow end to end: base model, new organs, forgetting guard, before/after table and pictures."""
from __future__ import annotations

import argparse
from pathlib import Path

from ..api.events import DemoDone
from ..api.presets import STANDARD_ITERATIONS
from ..events import EventSink
from ..training.loop_config import BASE_ITERATIONS
from .arguments import add_device_argument, add_network_arguments, non_negative_int, positive_int

# The base trains as ``ciss train`` does: with 400 iterations the demo's base found the spleen and no kidney on a
# CPU with native bf16 (kidneys 0.00; benchmarks/RESULTS.md (p)), as 700 found only the spleen in table (i).
DEMO_BASE_ITERATIONS = BASE_ITERATIONS
# The `standard` preset: from bases on both CTs, 400-iteration steps passed the forgetting guard in 2 runs of 2 and
# learned chest_4x's liver (0.92-0.93), where 250 iterations passed in 2 of 3 and reached 0.61-0.92 (RESULTS.md (z)).
DEMO_STEP_ITERATIONS = STANDARD_ITERATIONS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-o", "--output", default="demo_output", help="folder for the bundle, label maps, previews and report (default demo_output)")
    parser.add_argument("--data", default=None, help="data folder with ct/<case>/image.nii.gz (default: $CISS_DATA or ../shared/data; phantom if absent)")
    parser.add_argument("--iterations", type=positive_int, default=DEMO_BASE_ITERATIONS, help=f"base training iterations (default {DEMO_BASE_ITERATIONS}; timings in the README's Measured results)")
    parser.add_argument("--step-iterations", type=positive_int, default=DEMO_STEP_ITERATIONS, help=f"iterations of the step that adds the new organs (default {DEMO_STEP_ITERATIONS})")
    parser.add_argument("--seed", type=non_negative_int, default=0, help="random seed >= 0 (default 0)")
    add_network_arguments(parser)
    add_device_argument(parser)


def run(args: argparse.Namespace, sink: EventSink) -> None:
    from ..cancellation import CancelToken, cancel_on_signals
    from ..demo import DemoSettings, run_demo
    from ..demo_data import default_data_dir
    from ..preprocessing import PreprocessingConfig

    settings = DemoSettings(
        output=Path(args.output), data_dir=Path(args.data) if args.data else default_data_dir(), iterations=args.iterations,
        step_iterations=args.step_iterations, seed=args.seed, device_name=args.device,
        preprocessing=PreprocessingConfig(spacing_mm=args.spacing, patch_size=args.patch_size), init_filters=args.init_filters,
    )
    with cancel_on_signals(CancelToken()) as cancel:
        report = run_demo(settings, sink=sink, cancel=cancel)
    sink.done(DemoDone(output=str(args.output), versions=report["versions"], forgetting_guard=report["forgetting_guard"]))
