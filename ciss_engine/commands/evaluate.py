"""``ciss evaluate``: segment CTs with a bundle and score them against reference labels."""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from ..api.events import EvaluateDone, EvaluateMetric
from ..events import EventSink
from .arguments import add_bundle_argument, add_device_argument, add_postprocessing_argument


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_bundle_argument(parser)
    parser.add_argument("-i", "--images", nargs="+", required=True, help="CT volumes to segment")
    parser.add_argument("-l", "--labels", nargs="+", required=True, help="reference label maps, one per CT, on the CT's grid")
    parser.add_argument(
        "--organs", default=None,
        help="which value in the reference files is which organ, as NAME=VALUE,… (default: the bundle's own label ids); "
        "other values are ignored",
    )
    parser.add_argument("-o", "--output", required=True, help="output folder for scores.json and scores.md")
    add_postprocessing_argument(parser)
    add_device_argument(parser)


def run(args: argparse.Namespace, sink: EventSink) -> None:
    from ..atomic import ensure_writable_dir, write_json_atomic, write_text_atomic
    from ..bundle import Bundle
    from ..device import resolve_device
    from ..errors import InputError
    from ..evaluation import markdown_table, score_case, summarise
    from ..imaging import check_same_grid_or_raise, load_volume_or_raise
    from ..inference import Segmenter
    from ..registry import parse_organ_spec

    if len(args.images) != len(args.labels):
        raise InputError(f"{len(args.images)} CTs but {len(args.labels)} label maps", "give one --labels file per --images file, in the same order")
    output = ensure_writable_dir(Path(args.output))
    version = Bundle.open_or_raise(Path(args.bundle)).load(args.bundle_version)
    registry = version.registry
    value_of = {o.name: o.label for o in registry.organs}
    if args.organs:
        value_of = {}
        for item in filter(None, args.organs.split(",")):
            name, value, _ = parse_organ_spec(item)
            registry.by_name(name)
            value_of[name] = value if value is not None else registry.by_name(name).label
    segmenter = Segmenter(version, resolve_device(args.device), postprocess=not args.no_postprocessing)
    cases = {}
    for index, (image_path, label_path) in enumerate(zip(args.images, args.labels)):
        sink.progress("evaluate", index, len(args.images))
        image = load_volume_or_raise(Path(image_path), sink=sink)
        reference = load_volume_or_raise(Path(label_path), role="label")
        check_same_grid_or_raise(image, reference, Path(image_path), Path(label_path))
        predicted = segmenter.segment(image).label
        reference_data = np.asarray(reference.dataobj).astype(np.int64)
        # Score on the bundle's ids: translate the reference's values to them first.
        remapped = np.zeros_like(predicted)
        for name, value in value_of.items():
            remapped[reference_data == value] = registry.by_name(name).label
        organs = [(registry.by_name(n).label, n) for n in value_of]
        case_name = f"{index:02d} {Path(image_path).parent.name}/{Path(image_path).name}"
        cases[case_name] = score_case(predicted, remapped, organs, image.header.get_zooms()[:3])
        sink.emit(EvaluateMetric(case=case_name, scores=cases[case_name]))
    sink.progress("evaluate", len(args.images), len(args.images))
    summary = summarise(cases)
    report = {"bundle": str(args.bundle), "version": version.version, "cases": cases, **summary}
    write_json_atomic(output / "scores.json", report)
    table = markdown_table(cases, summary)
    write_text_atomic(output / "scores.md", table)
    sink.log(table)
    sink.done(EvaluateDone(output=str(output), mean_dsc=summary["mean_dsc"], per_organ=summary["per_organ"]))

