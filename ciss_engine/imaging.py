"""Reading CTs and label maps (NIfTI, NRRD, DICOM folder) and checking they belong together.

Every image is returned as a nibabel ``Nifti1Image`` whose affine is the exact voxel → RAS mapping,
so outputs can be written back onto the input's own grid. Errors name the file and the fix.
"""
from __future__ import annotations

import gzip
import zlib
from collections.abc import Iterable
from pathlib import Path

import nibabel as nib
import numpy as np

from .errors import InputError

NIFTI_SUFFIXES = (".nii", ".nii.gz")
NRRD_SUFFIXES = (".nrrd", ".nhdr")
# Affines equal to this tolerance (mm) describe the same grid; exporters round positions to ~1e-4 mm.
AFFINE_TOLERANCE_MM = 1e-3


# NRRD world spaces and the sign flips that turn them into RAS.
NRRD_SPACE_TO_RAS = {
    "right-anterior-superior": (1, 1, 1), "ras": (1, 1, 1),
    "left-posterior-superior": (-1, -1, 1), "lps": (-1, -1, 1),
    "left-anterior-superior": (-1, 1, 1), "las": (-1, 1, 1),
}


def _read_nrrd(path: Path) -> nib.Nifti1Image:
    """NRRD with pynrrd (no torch: the front ends read CTs too); space directions and origin → RAS affine."""
    import nrrd

    data, header = nrrd.read(str(path))
    space = str(header.get("space", "left-posterior-superior")).lower()
    if space not in NRRD_SPACE_TO_RAS or "space directions" not in header:
        raise InputError(f"NRRD {path} has no usable world space ({space!r})", "save it from 3D Slicer or another tool that writes 'space directions' (and 'space' unless it is left-posterior-superior, which is assumed)")
    directions = np.asarray(header["space directions"], dtype=np.float64)
    affine = np.eye(4)
    affine[:3, :3] = directions[-3:].T  # rows of 'space directions' are the axis vectors
    affine[:3, 3] = np.asarray(header.get("space origin", np.zeros(3)), dtype=np.float64)
    affine[:3] *= np.asarray(NRRD_SPACE_TO_RAS[space], dtype=np.float64)[:, None]
    return nib.Nifti1Image(np.asarray(data), affine)


def load_volume_or_raise(path: Path | str, *, role: str = "CT", series_uid: str | None = None) -> nib.Nifti1Image:
    """Load a 3D volume; ``role`` ("CT", "label") only words the error messages; ``series_uid`` picks
    one series of a DICOM folder that holds several."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{role} not found: {path}", "check the path; CTs are NIfTI (.nii/.nii.gz), NRRD (.nrrd) or a DICOM series folder")
    if path.is_dir():
        from .dicom.series import read_ct_series

        image = read_ct_series(path, series_uid=series_uid)
    else:
        name = path.name.lower()
        try:
            if name.endswith(NRRD_SUFFIXES):
                image = _read_nrrd(path)
            elif name.endswith(NIFTI_SUFFIXES):
                lazy = nib.load(str(path))
                # Read everything now: a truncated or corrupt gzip must fail here, not mid-training.
                image = nib.Nifti1Image(np.asarray(lazy.dataobj), lazy.affine)
            else:
                raise InputError(f"{role} {path} has an unknown file type", "give a NIfTI (.nii, .nii.gz), NRRD (.nrrd) file or a DICOM series folder")
        except InputError:
            raise
        except (OSError, EOFError, zlib.error, gzip.BadGzipFile, ValueError, nib.filebasedimages.ImageFileError) as error:
            raise InputError(f"cannot read {role} {path}: {error}", "the file is damaged or not what its name says; export it again from the source") from error
    return _as_3d_or_raise(image, path, role)


def _as_3d_or_raise(image: nib.Nifti1Image, path: Path, role: str) -> nib.Nifti1Image:
    shape = image.shape
    if len(shape) == 4 and shape[3] == 1:
        image = nib.Nifti1Image(np.asarray(image.dataobj)[..., 0], image.affine)
    elif len(shape) != 3:
        raise InputError(f"{role} {path} has shape {shape}; a 3D volume is required", "give one 3D CT volume (split 4D series or stack 2D slices first)")
    if min(image.shape) < 1:
        raise InputError(f"{role} {path} is empty (shape {image.shape})", "export the volume again")
    return image


def check_same_grid_or_raise(image: nib.Nifti1Image, label: nib.Nifti1Image, image_path: Path, label_path: Path) -> None:
    """A label map must sit on its CT's voxel grid: same shape and same affine."""
    if image.shape != label.shape:
        raise InputError(
            f"label {label_path} has shape {label.shape} but CT {image_path} has shape {image.shape}",
            "resample the label onto the CT's grid (in 3D Slicer: export the segmentation with the CT as reference volume)",
        )
    if not np.allclose(image.affine, label.affine, atol=AFFINE_TOLERANCE_MM):
        raise InputError(
            f"label {label_path} and CT {image_path} have different geometry (affine differs by "
            f"{np.abs(image.affine - label.affine).max():.4g} mm)",
            "the label was saved for another image or with another orientation/origin; export it with the CT as reference geometry",
        )


def label_values_or_raise(label: nib.Nifti1Image, path: Path, *, allowed: Iterable[int], fix: str) -> np.ndarray:
    """The label array as uint8, after checking it holds only integers in ``allowed`` ∪ {0}."""
    data = np.asarray(label.dataobj)
    if data.dtype.kind == "f":
        if not np.all(np.isfinite(data)) or not np.array_equal(data, np.round(data)):
            raise InputError(f"label {path} holds non-integer values", "a label map holds integer organ ids; export it as a label map, not a probability map")
    values = set(np.unique(data).astype(np.int64).tolist())
    extra = sorted(values - set(allowed) - {0})
    if extra:
        raise InputError(f"label {path} holds values {extra} that are not organs of this run (allowed: {sorted(set(allowed))})", fix)
    return data.astype(np.uint8)
