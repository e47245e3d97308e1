"""Writing a segmentation's files: label map, per-organ masks, JSON summary, PNG preview (all atomic)."""
from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np

from .atomic import write_atomic, write_json_atomic
from .bundle import BundleVersion
from .inference import SegmentationResult
from .preview import write_preview_png


def write_label_nifti(path: Path, label: np.ndarray, affine: np.ndarray, source: nib.Nifti1Image | None = None) -> Path:
    """A uint8 label map whose affine is exactly the CT's (sform and qform both set).

    The source's header extensions travel along: for a DICOM CT they hold its series and Frame of
    Reference UIDs, which ``ciss export`` checks before writing RTSTRUCT/SEG.
    """
    image = nib.Nifti1Image(label.astype(np.uint8), affine)
    if source is not None:
        for extension in source.header.extensions:
            image.header.extensions.append(extension)
    image.set_sform(affine, code=1)
    image.set_qform(affine, code=1)
    return write_atomic(Path(path), lambda tmp: nib.save(image, str(tmp)))


def write_segmentation_outputs(
    result: SegmentationResult,
    image: nib.Nifti1Image,
    version: BundleVersion,
    *,
    label_path: Path,
    summary_path: Path | None,
    preview_path: Path | None,
    per_organ_dir: Path | None,
    source: str,
) -> list[Path]:
    written = [write_label_nifti(label_path, result.label, result.affine, image)]
    if per_organ_dir is not None:
        for organ in version.registry.organs:
            written.append(write_label_nifti(per_organ_dir / f"{organ.name}.nii.gz", (result.label == organ.label).astype(np.uint8), result.affine, image))
    if summary_path is not None:
        summary = {
            "input": source,
            "bundle_version": version.version,
            "label_map": str(label_path),
            # Organs kept as their largest connected piece (postprocessing.py); empty with --no-postprocessing.
            "largest_piece_only": list(result.largest_piece_only),
            # Organs whose voxels below −500 HU (air) became background (postprocessing.py); empty with --no-postprocessing.
            "air_cleared": list(result.air_cleared),
            "organs": [
                {"label": o.label, "name": o.name, "rgb": list(o.rgb), "volume_ml": result.volumes_ml[o.name], "found": result.volumes_ml[o.name] > 0}
                for o in version.registry.organs
            ],
        }
        written.append(write_json_atomic(summary_path, summary))
    if preview_path is not None:
        written.append(write_preview_png(preview_path, image, result.label, version.registry, volumes_ml=result.volumes_ml, title=f"{Path(source).name} — model {version.version}"))
    return written
