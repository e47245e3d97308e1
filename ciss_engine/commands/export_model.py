"""``ciss export-model``: write a bundle version as the source tool's own model, for sites that keep their pipeline."""
from __future__ import annotations

import argparse
from pathlib import Path

from ..api.events import ExportModelDone
from ..events import EventSink


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--format", choices=("nnunet",), default="nnunet",
                        help="nnunet: an nnU-Net v2 model folder that nnUNetv2_predict_from_modelfolder runs (bundles imported from nnU-Net only)")
    parser.add_argument("-b", "--bundle", required=True, type=Path, help="bundle folder")
    parser.add_argument("--version", dest="bundle_version", metavar="VERSION", help="version to export (default: the current one)")
    parser.add_argument("-o", "--output", required=True, type=Path, metavar="FOLDER",
                        help="new model folder to create; to use it under $nnUNet_results, name it <Dataset>/<Trainer>__<Plans>__<configuration>")


def run(args: argparse.Namespace, sink: EventSink) -> None:
    from ..bundle import Bundle
    from ..nnunet_export import export_nnunet_model

    version = Bundle.open_or_raise(args.bundle).load(args.bundle_version)
    export_nnunet_model(version, args.output)
    sink.log(f"nnU-Net model written: {args.output} (version {version.version}, {len(version.registry)} organs); "
             f"run it with nnUNetv2_predict_from_modelfolder -m {args.output} -f {version.settings.source['nnunet']['fold']} -i IN -o OUT")
    sink.done(ExportModelDone(output=str(args.output), version=version.version, organs=version.registry.names))
