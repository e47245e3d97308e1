"""``ciss segment``: all organs of a bundle on one CT, as a label map on the CT's own grid."""
from __future__ import annotations

import argparse
from pathlib import Path

from ..api.events import SegmentDone
from ..events import EventSink
from .arguments import add_bundle_argument, add_device_argument, add_postprocessing_argument, comma_separated_choices


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_bundle_argument(parser)
    parser.add_argument("-i", "--input", required=True, help="CT volume (NIfTI, NRRD or a DICOM series folder)")
    parser.add_argument("-o", "--output", required=True, help="output label map (.nii.gz); values are the bundle's label ids")
    parser.add_argument("--per-organ", metavar="DIR", default=None, help="also write one binary mask per organ into DIR (<organ>.nii.gz)")
    parser.add_argument("--summary", default=None, help="JSON summary with volumes in mL (default: OUTPUT with .json)")
    parser.add_argument("--preview", default=None, help="PNG montage of axial and coronal overlays (default: OUTPUT with _preview.png)")
    parser.add_argument("--no-preview", action="store_true", help="do not write the PNG preview")
    parser.add_argument(
        "--output-type", type=comma_separated_choices(("nifti", "rtstruct", "seg"), "output type"), default=["nifti"],
        help="comma-separated: nifti (always written), rtstruct, seg; DICOM outputs need a DICOM series as --input and go to "
        "OUTPUT's folder as <name>_dicom/rtstruct.dcm and seg.dcm (default nifti)",
    )
    parser.add_argument("--series-uid", default=None, help="SeriesInstanceUID when the DICOM folder holds several series")
    add_postprocessing_argument(parser)
    add_device_argument(parser)


def output_stem(path: Path) -> Path:
    name = path.name
    for suffix in (".nii.gz", ".nii", ".nrrd"):
        if name.endswith(suffix):
            return path.with_name(name[: -len(suffix)])
    return path.with_name(path.stem)


def run(args: argparse.Namespace, sink: EventSink) -> None:
    from ..atomic import ensure_writable_dir
    from ..bundle import Bundle
    from ..device import resolve_device
    from ..imaging import check_ct_or_raise, load_volume_or_raise
    from ..inference import Segmenter
    from ..errors import InputError
    from ..segmentation_outputs import write_segmentation_outputs
    from .export import write_dicom_objects

    output = Path(args.output)
    ensure_writable_dir(output.parent)
    version = Bundle.open_or_raise(Path(args.bundle)).load(args.bundle_version)
    dicom_formats = [t for t in args.output_type if t != "nifti"]
    if dicom_formats and not Path(args.input).is_dir():
        raise InputError(f"--output-type {','.join(dicom_formats)} needs a DICOM series as input, got {args.input}", "segment the DICOM folder itself, or drop rtstruct/seg")
    if dicom_formats:  # one scan of the series serves the image and the DICOM objects that reference it
        from ..dicom.series import read_ct_series, scan_series

        series = scan_series(Path(args.input), series_uid=args.series_uid, sink=sink)
        image = read_ct_series(series, sink=sink)
        check_ct_or_raise(image, Path(args.input), sink)
    else:
        image = load_volume_or_raise(Path(args.input), series_uid=args.series_uid, sink=sink)
    sink.progress("segment", 0, 1)
    result = Segmenter(version, resolve_device(args.device), postprocess=not args.no_postprocessing).segment(image)
    sink.progress("segment", 1, 1)
    stem = output_stem(output)
    written = write_segmentation_outputs(
        result,
        image,
        version,
        label_path=output,
        summary_path=Path(args.summary) if args.summary else stem.with_suffix(".json"),
        preview_path=None if args.no_preview else Path(args.preview) if args.preview else stem.with_name(stem.name + "_preview.png"),
        per_organ_dir=Path(args.per_organ) if args.per_organ else None,
        source=str(args.input),
    )
    if dicom_formats:
        exported = write_dicom_objects(result.label, series, list(version.registry.organs), formats=dicom_formats,
                                       output=stem.with_name(stem.name + "_dicom"), seg_type="binary", sink=sink)
        written += exported.values()
    for organ, volume in result.volumes_ml.items():
        sink.log(f"  {organ:24s} {volume:10.1f} mL")
    sink.done(SegmentDone(output=str(output), version=version.version, volumes_ml=result.volumes_ml, files=[str(p) for p in written]))
