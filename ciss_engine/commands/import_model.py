"""``ciss import``: start from the model a site already runs; a MONAI bundle or an nnU-Net v2 model becomes a
CISSegmentation bundle."""
from __future__ import annotations

import argparse
from pathlib import Path

from ..api.events import ImportDone
from ..events import EventSink


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ..importers import FORMATS

    parser.add_argument(
        "--format", choices=FORMATS, default="auto",
        help="what the input folder holds: monai-bundle (a MONAI Model Zoo bundle whose network is SegResNet), nnunet (an nnU-Net v2 "
        "trained model: PlainConvUNet or ResidualEncoderUNet, 3d_fullres or 3d_lowres) or auto (default: told apart by their files). "
        "docs/import.md says what is read and what is refused",
    )
    parser.add_argument(
        "-i", "--input", required=True, type=Path, metavar="FOLDER",
        help="the model's folder: for a MONAI bundle the one holding configs/ and models/; for nnU-Net <Trainer>__<Plans>__<configuration>/",
    )
    parser.add_argument("--fold", default="0", help="nnU-Net only: the fold to import, a number or 'all' (default 0)")
    parser.add_argument(
        "-o", "--output", required=True, type=Path, metavar="BUNDLE",
        help="new bundle folder to create (must not exist or be empty); it becomes version 1.0.0, ready for `ciss segment` and `ciss learn`",
    )


def run(args: argparse.Namespace, sink: EventSink) -> None:
    from ..importers import detect_format_or_raise

    if detect_format_or_raise(args.input, args.format) == "nnunet":
        from ..importers.nnunet_model import import_nnunet_model

        version = import_nnunet_model(args.input, args.output, fold=args.fold, sink=sink)
    else:
        from ..importers.monai_bundle import import_monai_bundle

        version = import_monai_bundle(args.input, args.output, sink=sink)
    sink.log(f"bundle written: {args.output} (version {version.version}, {len(version.registry)} organs)")
    sink.done(ImportDone(bundle=str(args.output), version=version.version, organs=version.registry.names, source=version.settings.source["name"]))
