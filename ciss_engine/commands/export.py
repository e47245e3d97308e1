"""``ciss export``: write a label map made on a DICOM CT as RTSTRUCT and/or SEG that reference that CT.

The organs (names, colours, SNOMED CT codes) come from the bundle's class registry. The label map
must lie on the CT's own voxel grid (checked in ``dicom/labels.py``): contours on another grid
would be silently misplaced in a planning system.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..api.events import ExportDone
from ..dicom import EXPORT_FORMATS
from ..errors import InputError
from ..registry import ClassRegistry, OrganClass
from .arguments import add_bundle_argument, comma_separated_choices

if TYPE_CHECKING:
    from ..dicom.series import CtSeries

OUTPUT_NAMES = {"rtstruct": "rtstruct.dcm", "seg": "seg.dcm"}


# ``type=`` validator of ``--format``: a comma-separated subset of EXPORT_FORMATS.
formats = comma_separated_choices(EXPORT_FORMATS, "format")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--labels", type=Path, required=True, help="label map (.nii/.nii.gz) on the CT's own voxel grid, values = the bundle's label ids (e.g. from `ciss segment` on the same DICOM folder)")
    parser.add_argument("--ct", type=Path, required=True, help="DICOM folder of the CT series the labels were made on; the files reference it")
    parser.add_argument("--series-uid", default=None, help="SeriesInstanceUID of the CT when the folder holds several series (default: the only series)")
    add_bundle_argument(parser, required=False)
    parser.add_argument("--classes", type=Path, default=None, help="a classes.json class registry, instead of --bundle (organs, colours and SNOMED CT codes)")
    parser.add_argument("--format", type=formats, default=list(EXPORT_FORMATS), help="what to write, comma-separated: rtstruct (contours, for planning systems), seg (DICOM SEG) (default: rtstruct,seg)")
    parser.add_argument("--seg-type", choices=("binary", "labelmap"), default="binary", help="SEG segmentation type: binary (read by every DICOM SEG viewer, default) or labelmap (smaller; needs a viewer that knows the 2024 Label Map Segmentation IOD); no effect without seg in --format")
    parser.add_argument("--output", type=Path, required=True, help="output folder; rtstruct.dcm and seg.dcm are written (replaced) there")


def load_organs(bundle: Path | None, bundle_version: str | None, classes: Path | None) -> list[OrganClass]:
    """The organs of a bundle version (default: current) or of a classes.json registry file."""
    if (bundle is None) == (classes is None):
        raise InputError("give exactly one class registry", "pass --bundle BUNDLE (organs of its current version) or --classes classes.json")
    if bundle is not None:
        from ..bundle import Bundle

        return list(Bundle.open_or_raise(bundle).load(bundle_version).registry.organs)
    hint = f"give a classes.json written by the engine (a bundle's configs/classes.json), not {classes}"
    try:
        return list(ClassRegistry.from_json(json.loads(classes.read_text(encoding="utf-8"))).organs)
    except OSError as error:
        raise InputError(f"cannot read {classes}: {error.strerror}", hint) from error
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise InputError(f"{classes} is not a class registry: {error!r}", hint) from error


def label_map_for_series(labels: Path, ct: Path, *, series_uid: str | None, sink: Any) -> tuple[CtSeries, np.ndarray]:
    """The DICOM CT series in ``ct`` and the label NIfTI ``labels`` in its (i, j, k) order, refusing another grid."""
    from ..dicom.labels import label_map_on_series_or_raise, load_label_map_or_raise
    from ..dicom.series import scan_series

    image = load_label_map_or_raise(labels)
    series = scan_series(ct, series_uid=series_uid, sink=sink)
    return series, label_map_on_series_or_raise(image, series, labels)


def write_dicom_objects(
    label: np.ndarray, series: CtSeries, organs: list[OrganClass], *, formats: list[str], output: Path, seg_type: str, sink: Any,
    labels: Path | None = None,
) -> dict[str, Path]:
    """Write the requested DICOM objects (format -> path) for a label map in ``series``' (i, j, k) order;
    ``labels`` is the file it was read from, if any (named in errors)."""
    # DICOM libraries load here, not at import: building the parser stays fast for `ciss info`.
    from ..atomic import ensure_writable_dir
    from ..dicom.labels import present_organs
    from ..dicom.rtstruct import write_rtstruct
    from ..dicom.seg import write_seg

    # Checked once here, so each format does not repeat the warnings about empty or unknown labels.
    organs = present_organs(label, organs, folder=series.folder, sink=sink, labels=labels)
    label = np.where(np.isin(label, [o.label for o in organs]), label, 0)
    output = ensure_writable_dir(output)
    written = {}
    if "rtstruct" in formats:
        written["rtstruct"] = write_rtstruct(label, organs, series, output / OUTPUT_NAMES["rtstruct"], sink=sink)
    if "seg" in formats:
        written["seg"] = write_seg(label, organs, series, output / OUTPUT_NAMES["seg"], labelmap=seg_type == "labelmap", sink=sink)
    return written


def run(args: argparse.Namespace, sink: Any) -> None:
    organs = load_organs(Path(args.bundle) if args.bundle else None, args.bundle_version, args.classes)
    series, label = label_map_for_series(args.labels, args.ct, series_uid=args.series_uid, sink=sink)
    written = write_dicom_objects(label, series, organs, formats=args.format, output=args.output, seg_type=args.seg_type, sink=sink, labels=args.labels)
    sink.log(f"wrote {', '.join(map(str, written.values()))}")
    sink.done(ExportDone(outputs={name: str(path) for name, path in written.items()}, series_uid=series.series_uid,
                          frame_of_reference_uid=series.frame_of_reference_uid))
