"""Checks that a label map belongs to a CT series, shared by the RTSTRUCT and SEG writers and ``ciss export``.

A label NIfTI may store the same voxels in another axis order or direction: that is undone exactly.
Anything else (resampled labels, another CT, another Frame of Reference) is refused, naming both
inputs, because contours on the wrong grid would be silently misplaced in a planning system.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from ..errors import InputError
from ..registry import OrganClass
from .series import CtSeries, dicom_reference, warn


def check_label_grid_or_raise(label: np.ndarray, series: CtSeries, *, frame_of_reference_uid: str | None = None) -> None:
    """Refuse a label map that is not on the series' voxel grid or names another Frame of Reference."""
    if tuple(label.shape) != series.shape:
        raise InputError(
            f"the label map has shape {tuple(label.shape)} but the CT series in {series.folder} has {series.shape} (columns, rows, slices)",
            f"segment the DICOM folder {series.folder} itself, or resample the labels onto that CT, so both share one voxel grid",
        )
    if frame_of_reference_uid and frame_of_reference_uid != series.frame_of_reference_uid:
        raise InputError(
            f"the labels belong to Frame of Reference {frame_of_reference_uid}, the CT series in {series.folder} to {series.frame_of_reference_uid}",
            f"export against the CT the labels were made on, or segment {series.folder} again",
        )


def load_label_map_or_raise(path: Path) -> nib.Nifti1Image:
    """The label map, read and checked as every input volume is (header, size, geometry, damage); its
    header extensions stay, so the Frame of Reference it was made on can still be compared."""
    from ..imaging import load_volume_or_raise

    if Path(path).is_dir():
        raise InputError(f"the label map {path} is a folder", "give a NIfTI label map (.nii or .nii.gz), e.g. the output of `ciss segment`")
    return load_volume_or_raise(path, role="label map")


def label_map_on_series_or_raise(image: nib.Nifti1Image, series: CtSeries, labels_path: Path) -> np.ndarray:
    """The label array in the series' (i, j, k) order, refusing another grid or Frame of Reference."""
    labels_frame = (dicom_reference(image) or {}).get("FrameOfReferenceUID")
    if labels_frame and labels_frame != series.frame_of_reference_uid:
        raise InputError(
            f"{labels_path} was made on a CT in Frame of Reference {labels_frame}, but the CT in {series.folder} is in {series.frame_of_reference_uid}",
            f"export against the DICOM folder the labels were made on, or segment {series.folder} and export that result",
        )
    orientation = nib.orientations.ornt_transform(nib.orientations.io_orientation(image.affine), nib.orientations.io_orientation(series.affine_ras))
    image = image.as_reoriented(orientation)
    corners = np.array([[0, 0, 0, 1], [*(np.array(series.shape) - 1), 1]], dtype=float).T
    offset = float(np.abs(image.affine @ corners - series.affine_ras @ corners).max())
    # NIfTI stores the affine in float32 (about 1e-5 mm at 500 mm); 1 % of a voxel is far above that.
    if tuple(image.shape) != series.shape or offset > 0.01 * float(np.linalg.norm(series.affine_ras[:3, :3], axis=0).min()):
        raise InputError(
            f"{labels_path} is not on the voxel grid of the CT in {series.folder}: shape {tuple(image.shape)} vs {series.shape}, corners up to {offset:.2f} mm apart",
            f"export labels made on this CT (e.g. `ciss segment` on {series.folder}); resampled labels or labels of another CT cannot reference it",
        )
    data = np.asanyarray(image.dataobj)
    label = np.rint(data).astype(np.int32)
    if not np.array_equal(label, data):
        raise InputError(f"{labels_path} holds non-integer values", "give a label map with integer label ids (0 = background, 1..C = organs)")
    return label


def present_organs(label: np.ndarray, organs: list[OrganClass], *, folder: Any, sink: Any = None, labels: Path | None = None) -> list[OrganClass]:
    """The organs with at least one voxel; empty ones are reported and skipped, never written empty.
    ``labels``: the label file the array came from, named in the error."""
    values = set(np.unique(label).astype(int).tolist()) - {0}
    unknown = sorted(values - {o.label for o in organs})
    if unknown:
        warn(f"label values {unknown} are not in the class registry and were not exported", "check that the labels come from the bundle whose classes were given", sink)
    present = [o for o in organs if o.label in values]
    for organ in organs:
        if organ.label not in values:
            warn(f"organ {organ.name} (label {organ.label}) is empty: nothing was exported for it", "nothing to do if the organ lies outside the scan; otherwise check the segmentation", sink)
    if not present:
        subject = f"the label map {labels}" if labels else "the label map"
        raise InputError(
            f"{subject} holds none of the organs {[o.name for o in organs]} for the CT in {folder}",
            "check that the label values match the class registry (classes.json: label 1..C)",
        )
    return present
