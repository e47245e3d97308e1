"""Reading CTs and label maps (NIfTI, NRRD, DICOM folder) and checking they belong together.

Every image is returned as a nibabel ``Nifti1Image`` whose affine is the exact voxel → RAS mapping,
so outputs can be written back onto the input's own grid. Errors name the file and the fix.

Hostile or broken files are refused before their voxels are read where the header allows it (shape,
voxel count against ``MAX_VOXELS`` and the free memory, geometry), and a CT's values are checked once
read: NaN/Inf and CTs too small for the network's grid are errors, values that do not look like
Hounsfield units are a warning (docs/reliability.md).
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from .errors import InputError
from .events import EventSink

NIFTI_SUFFIXES = (".nii", ".nii.gz")
NRRD_SUFFIXES = (".nrrd", ".nhdr")
# Affines equal to this tolerance (mm) describe the same grid; exporters round positions to ~1e-4 mm.
AFFINE_TOLERANCE_MM = 1e-3
# Input limits. 1024³ voxels is four times a 512×512×1024 whole-body CT; a larger header is damaged or
# not a CT. Spacing outside 0.1-20 mm is no clinical CT (a broken header, or metres for millimetres).
MAX_VOXELS = 1024**3
SPACING_RANGE_MM = (0.1, 20.0)
# A scanner's world coordinates lie within metres of its isocentre; a first voxel 100 m away is a damaged
# header (and beyond float32 range an output on the CT's grid could not even be written as NIfTI).
MAX_ORIGIN_MM = 1e5
# Memory a voxel takes while loading: its stored value plus the float32 copy the network grid is made
# from. A NRRD's stored type is not parsed before reading: the widest (8 bytes) is assumed.
WORKING_BYTES_PER_VOXEL = 4
NRRD_ASSUMED_ITEMSIZE = 8
# The network halves its grid three times: an axis needs 8 voxels to reach the deepest level at all.
MIN_CT_VOXELS_PER_AXIS = 8
# A CT's 1st-99th percentile lies within these Hounsfield units (air -1000, dense bone and contrast < 3000);
# a spread below NEARLY_CONSTANT_HU means the volume holds no anatomy (blank, or a mask).
PLAUSIBLE_HU = (-1100.0, 4000.0)
NEARLY_CONSTANT_HU = 20.0


# NRRD world spaces and the sign flips that turn them into RAS.
NRRD_SPACE_TO_RAS = {
    "right-anterior-superior": (1, 1, 1), "ras": (1, 1, 1),
    "left-posterior-superior": (-1, -1, 1), "lps": (-1, -1, 1),
    "left-anterior-superior": (-1, 1, 1), "las": (-1, 1, 1),
}


@contextlib.contextmanager
def _reading_or_raise(path: Path, role: str) -> Iterator[None]:
    """Around the third-party readers only (nibabel, pynrrd): a damaged file makes them fail in any of
    their code paths (HeaderDataError, NRRDError, KeyError, struct.error, zlib.error…), and each means
    "this file cannot be read", never an engine bug. Running out of memory stays what it is (exit 7)."""
    try:
        yield
    except (InputError, MemoryError):
        raise
    except Exception as error:
        raise InputError(f"cannot read {role} {path}: {error}", "the file is damaged or not what its name says; export it again from the source") from error


def _read_nifti(path: Path, role: str) -> nib.Nifti1Image:
    """NIfTI after the header checks; the voxels are read at once, so a truncated or corrupt gzip fails
    here, not mid-training. Header extensions are kept (a DICOM CT's UIDs, checked by ``ciss export``)."""
    with _reading_or_raise(path, role):
        lazy = nib.load(str(path))
        shape, dtype, affine = lazy.shape, lazy.get_data_dtype(), lazy.affine
    _check_dtype_or_raise(dtype, path, role)
    _check_header_or_raise(shape, dtype.itemsize, affine, path, role)
    with _reading_or_raise(path, role):
        data = np.asarray(lazy.dataobj)
    return _in_memory(data, affine, lazy.header.extensions)


def _read_nrrd(path: Path, role: str) -> nib.Nifti1Image:
    """NRRD with pynrrd (no torch: the front ends read CTs too); space directions and origin → RAS affine."""
    import nrrd

    with _reading_or_raise(path, role):
        header = nrrd.read_header(str(path))
    space = str(header.get("space", "left-posterior-superior")).lower()
    if space not in NRRD_SPACE_TO_RAS or "space directions" not in header or "sizes" not in header:
        raise InputError(f"NRRD {path} has no usable world space ({space!r}) or no sizes", "save it from 3D Slicer or another tool that writes 'sizes' and 'space directions' (and 'space' unless it is left-posterior-superior, which is assumed)")
    with _reading_or_raise(path, role):
        directions = np.asarray(header["space directions"], dtype=np.float64)
        affine = np.eye(4)
        affine[:3, :3] = directions[-3:].T  # rows of 'space directions' are the axis vectors
        affine[:3, 3] = np.asarray(header.get("space origin", np.zeros(3)), dtype=np.float64)
        affine[:3] *= np.asarray(NRRD_SPACE_TO_RAS[space], dtype=np.float64)[:, None]
        shape = tuple(int(n) for n in header["sizes"])
    _check_header_or_raise(shape, NRRD_ASSUMED_ITEMSIZE, affine, path, role)
    with _reading_or_raise(path, role):
        data, _ = nrrd.read(str(path))
    _check_dtype_or_raise(data.dtype, path, role)
    return _in_memory(np.asarray(data), affine)


def _in_memory(data: np.ndarray, affine: np.ndarray, extensions: Iterable[Any] = ()) -> nib.Nifti1Image:
    """An image of voxels already read, in native byte order (torch refuses big-endian arrays, which
    NIfTI and NRRD files may hold). nibabel refuses 64-bit integers unless told the type, and exporters
    (SimpleITK, numpy) do write them."""
    if not data.dtype.isnative:
        data = data.astype(data.dtype.newbyteorder("="))
    image = nib.Nifti1Image(data, affine, dtype=data.dtype if data.dtype in (np.int64, np.uint64) else None)
    image.header.extensions.extend(extensions)
    return image


def _check_dtype_or_raise(dtype: np.dtype, path: Path, role: str) -> None:
    """One real number a voxel: RGB and complex volumes would lose information silently on the way to HU."""
    if dtype.kind not in "biuf":
        stored = "RGB" if dtype.fields else dtype.newbyteorder("=").name
        raise InputError(f"{role} {path} stores {stored} voxels, not one real number a voxel", "export it as a scalar volume: HU (e.g. int16) for a CT, integer organ ids for a label map; not RGB or complex")


def load_volume_or_raise(path: Path | str, *, role: str = "CT", series_uid: str | None = None, sink: EventSink | None = None) -> nib.Nifti1Image:
    """Load a 3D volume after the header checks; ``role`` ("CT", "label") words the error messages, and a
    CT's values are checked too (warnings go to ``sink``); ``series_uid`` picks one series of a DICOM
    folder that holds several."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{role} not found: {path}", "check the path; CTs are NIfTI (.nii/.nii.gz), NRRD (.nrrd) or a DICOM series folder")
    if path.is_dir():
        from .dicom.series import read_ct_series

        image = read_ct_series(path, series_uid=series_uid)
        _check_geometry_or_raise(image.affine, path, role)
    else:
        name = path.name.lower()
        if name.endswith(NRRD_SUFFIXES):
            image = _read_nrrd(path, role)
        elif name.endswith(NIFTI_SUFFIXES):
            image = _read_nifti(path, role)
        else:
            raise InputError(f"{role} {path} has an unknown file type", "give a NIfTI (.nii, .nii.gz), NRRD (.nrrd) file or a DICOM series folder")
    image = _as_3d_or_raise(image, path, role)
    if role == "CT":
        _check_ct_values_or_raise(image, path, sink or EventSink())
    return image


def available_memory() -> int:
    """Bytes this process can still allocate: the free main memory, or less under an address-space limit
    (``ulimit -v``, as batch schedulers set)."""
    import resource

    import psutil

    free = psutil.virtual_memory().available
    limit, _ = resource.getrlimit(resource.RLIMIT_AS)
    return free if limit == resource.RLIM_INFINITY else min(free, limit - psutil.Process().memory_info().vms)


def _check_header_or_raise(shape: tuple[int, ...], itemsize: int, affine: np.ndarray, path: Path, role: str) -> None:
    """What a header claims, checked before any voxel is read: a hostile 1 KB file claiming 30000³ voxels
    is refused here instead of failing on allocation."""
    _check_shape_or_raise(shape, path, role)
    voxels = int(np.prod(shape, dtype=np.int64))
    if voxels > MAX_VOXELS:
        raise InputError(
            f"{role} {path} claims {' x '.join(map(str, shape))} = {voxels:.3g} voxels, more than the {MAX_VOXELS:.3g} (1024³) this engine reads",
            "the header is damaged or this is not a CT; export it again, or crop/resample it to a coarser grid (e.g. 1-3 mm)",
        )
    needed, available = voxels * (itemsize + WORKING_BYTES_PER_VOXEL), available_memory()
    if needed > available:
        raise InputError(
            f"{role} {path} needs about {needed / 2**30:.1f} GiB to load ({' x '.join(map(str, shape))} voxels), but {available / 2**30:.1f} GiB are free",
            "free memory (close other programs), or crop/resample the volume to a coarser grid (e.g. 1-3 mm)",
        )
    _check_geometry_or_raise(affine, path, role)


def _check_geometry_or_raise(affine: np.ndarray, path: Path, role: str) -> None:
    """A finite, non-singular voxel → world mapping with plausible voxel sizes."""
    affine = np.asarray(affine, dtype=np.float64)
    fix = "the header's geometry is damaged; export the volume again from the scanner's DICOM or from 3D Slicer"
    if not np.all(np.isfinite(affine)):
        raise InputError(f"{role} {path} has a non-finite voxel-to-world matrix (NaN or Inf)", fix)
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    low, high = SPACING_RANGE_MM
    if spacing.min() < low or spacing.max() > high:
        raise InputError(f"{role} {path} has voxel spacing {np.round(spacing, 4).tolist()} mm, outside the {low}-{high} mm of a CT", fix + " (spacing is in millimetres)")
    if abs(np.linalg.det(affine[:3, :3])) < 1e-3 * float(np.prod(spacing)):
        raise InputError(f"{role} {path} has a singular voxel-to-world matrix: its axes are (nearly) parallel", fix)
    if np.abs(affine[:3, 3]).max() > MAX_ORIGIN_MM:
        raise InputError(f"{role} {path} places its first voxel at {np.round(affine[:3, 3], 1).tolist()} mm, more than {MAX_ORIGIN_MM / 1000:.0f} m from the origin", fix)


def check_ct_or_raise(image: nib.Nifti1Image, path: Path, sink: EventSink) -> None:
    """The checks of a CT read elsewhere (a DICOM series read with its own scan): geometry and values."""
    _check_geometry_or_raise(image.affine, path, "CT")
    _check_ct_values_or_raise(image, path, sink)


def _check_ct_values_or_raise(image: nib.Nifti1Image, path: Path, sink: EventSink) -> None:
    """NaN/Inf and a grid too small for the network are errors; values that do not look like HU a warning."""
    if min(image.shape) < MIN_CT_VOXELS_PER_AXIS:
        raise InputError(
            f"CT {path} has shape {image.shape}: too small for the network, which needs at least {MIN_CT_VOXELS_PER_AXIS} voxels along each axis",
            "give the whole CT volume, not a few slices or a thumbnail",
        )
    data = np.asarray(image.dataobj)
    # min/max propagate NaN and reach Inf without a temporary array the size of the CT.
    if data.dtype.kind == "f" and not (np.isfinite(data.min()) and np.isfinite(data.max())):
        bad = int(np.count_nonzero(~np.isfinite(data)))
        raise InputError(
            f"CT {path} holds {bad} NaN or infinite voxels of {data.size}",
            "the export failed or the file is damaged; export the CT again, or replace the missing values with -1024 (air)",
        )
    sample = np.ravel(data, order="K")[:: max(1, data.size // 1_000_000)].astype(np.float64)
    p1, p99 = np.percentile(sample, [1, 99])
    low, high = PLAUSIBLE_HU
    if p1 < low or p99 > high or p99 - p1 < NEARLY_CONSTANT_HU:
        sink.warning(
            f"CT {path} does not look like a CT in Hounsfield units (1st-99th percentile {p1:.0f} to {p99:.0f} HU; a CT spans more, "
            f"within {low:.0f} to {high:.0f}): its segmentation will be unreliable",
            "check that it is a CT (not MR, PET or a mask) stored in HU, with the DICOM rescale slope/intercept applied",
            file=str(path),
        )


def _check_shape_or_raise(shape: tuple[int, ...], path: Path, role: str) -> None:
    if not (len(shape) == 3 or (len(shape) == 4 and shape[3] == 1)):
        raise InputError(f"{role} {path} has shape {shape}; a 3D volume is required", "give one 3D CT volume (split 4D series or stack 2D slices first)")
    if min(shape) < 1:
        raise InputError(f"{role} {path} is empty (shape {shape})", "export the volume again")


def _as_3d_or_raise(image: nib.Nifti1Image, path: Path, role: str) -> nib.Nifti1Image:
    _check_shape_or_raise(image.shape, path, role)
    return _in_memory(np.asarray(image.dataobj)[..., 0], image.affine, image.header.extensions) if len(image.shape) == 4 else image


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
