"""``ciss demo``: base bundle on 4 organs, segmentation, a per-organ table and preview PNGs."""
from __future__ import annotations

import argparse
from pathlib import Path

from ..events import EventSink
from .arguments import add_device_argument, positive_int


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-o", "--output", default="demo_output", help="folder for the bundle, label maps, previews and report (default demo_output)")
    parser.add_argument("--data", default=None, help="data folder with ct/<case>/image.nii.gz (default: $CISS_DATA or ../shared/data; phantom if absent)")
    parser.add_argument("--iterations", type=positive_int, default=400, help="base training iterations (default 400; timings in the README's Measured results)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    add_device_argument(parser)


def run(args: argparse.Namespace, sink: EventSink) -> None:
    from ..cancellation import CancelToken, cancel_on_signals
    from ..demo import default_data_dir, run_demo

    with cancel_on_signals(CancelToken()) as cancel:
        report = run_demo(
            output=Path(args.output), data_dir=Path(args.data) if args.data else default_data_dir(), iterations=args.iterations,
            seed=args.seed, device_name=args.device, sink=sink, cancel=cancel,
        )
    sink.done(output=str(args.output), mean_dsc=report["mean_dsc"])
