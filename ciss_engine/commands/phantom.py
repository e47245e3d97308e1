"""``ciss phantom``: write a cohort of synthetic abdominal CTs with 8 organ labels (no outside data needed)."""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from ..api.events import PhantomDone
from ..events import EventSink
from .arguments import float_triple, non_negative_int, positive_int


def phantom_shape(text: str) -> tuple[int, int, int]:
    """``X,Y,Z`` voxel counts, each at least 16 (a phantom needs a few voxels per organ)."""
    parts = text.split(",")
    try:
        values = tuple(int(p) for p in parts)
    except ValueError:
        values = ()
    if len(values) != 3 or min(values) < 16:
        raise argparse.ArgumentTypeError(f"expected X,Y,Z voxel counts, each >= 16 (e.g. 112,96,80), got {text!r}")
    return values  # type: ignore[return-value]


def oblique_degrees(text: str) -> float:
    from ..phantom import MAX_OBLIQUE_DEGREES

    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not abs(value) <= MAX_OBLIQUE_DEGREES:
        raise argparse.ArgumentTypeError(f"expected an angle in degrees between -{MAX_OBLIQUE_DEGREES:g} and {MAX_OBLIQUE_DEGREES:g}, got {text!r}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-o", "--output", required=True, type=Path, metavar="DIR", help="folder to write case_000/image.nii.gz and label_seg8.nii.gz into (created if missing)")
    parser.add_argument("--cases", type=positive_int, default=4, metavar="N", help="number of cases (default 4; about 1 s each)")
    parser.add_argument("--seed", type=non_negative_int, default=0, metavar="N", help="cohort seed: the same seed gives the same cases; different seeds share none (default 0)")
    parser.add_argument(
        "--shape", type=phantom_shape, default=None, metavar="X,Y,Z",
        help="grid size in voxels X,Y,Z (default 112,96,80). The field of view is shape x spacing (default 336x288x240 mm); "
        "a smaller one crops the patient, so coarsen --spacing with a smaller --shape",
    )
    parser.add_argument("--spacing", type=float_triple, default=None, metavar="MM", help="voxel size in mm, MM or X,Y,Z (default 3)")
    parser.add_argument(
        "--oblique", type=oblique_degrees, default=0.0, metavar="DEGREES",
        help="rotate the grid by this many degrees about the (1,1,1) axis (default 0 = axes R, A, S); the patient stays put in world coordinates",
    )


def run(args: argparse.Namespace, sink: EventSink) -> None:
    from ..phantom import ORGAN_NAMES, PhantomCase, case_seed, write_cohort

    def on_case_written(index: int, case: PhantomCase) -> None:
        counts = np.bincount(case.label.ravel(), minlength=len(ORGAN_NAMES) + 1)
        missing = [name for name, count in zip(ORGAN_NAMES, counts[1:]) if count == 0]
        if missing:
            sink.log(f"case_{index:03d}: {', '.join(missing)} outside the field of view (enlarge --shape or --spacing)")
        sink.progress("phantom", index + 1, args.cases)

    sink.progress("phantom", 0, args.cases)
    # Unset grid options fall back to generate_case's defaults, the ones the help text states.
    grid = {name: value for name, value in (("shape", args.shape), ("spacing", args.spacing)) if value is not None}
    folders = write_cohort(args.output, args.cases, args.seed, on_case_written=on_case_written, oblique_degrees=args.oblique, **grid)
    sink.done(PhantomDone(
        output=str(args.output), cases=[str(folder) for folder in folders], seeds=[case_seed(args.seed, i) for i in range(args.cases)]
    ))
