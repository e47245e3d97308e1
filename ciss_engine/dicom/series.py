"""Read a CT DICOM series folder into a NIfTI image whose affine is the exact voxel→RAS mapping.

Slices are sorted by their position along the slice normal (not by file name or InstanceNumber,
which scanners do not keep consistent), rescale slope/intercept are applied per slice, an oblique
orientation and a gantry tilt are kept in the affine, and missing slices are detected: the gap is
filled by linear interpolation and reported, because a partial transfer is a common PACS accident
that a physicist must see. Geometry is checked once here (``scan_series``) and reused by the
RTSTRUCT and SEG writers, so contours and segments reference exactly the slices the volume holds.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import warnings
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from ..errors import InputError

DICOMDIR_STORAGE = "1.2.840.10008.1.3.10"
# LPS (DICOM) → RAS (NIfTI): negate x and y.
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
# Scanner headers carry ~6 decimals; 1 % of a slice step tells noise from a real gap or tilt.
RELATIVE_TOLERANCE = 0.01
DECODER_HINT = "install the decoders into the engine's Python: pip install pylibjpeg pylibjpeg-openjpeg pylibjpeg-libjpeg"
NIFTI_EXTENSION_KEY = "ciss_dicom"


class DicomWarning(UserWarning):
    """A DICOM input that can be used but deserves a look (missing slices, empty organ)."""


def warn(message: str, hint: str, sink: Any = None) -> None:
    """Report a warning as an event and a log line when a sink is given, else as a Python warning."""
    if sink is None:
        warnings.warn(f"{message} ({hint})", DicomWarning, stacklevel=3)
        return
    sink.warning(message, hint)


@dataclasses.dataclass(frozen=True)
class CtSeries:
    """The checked geometry of one CT series: headers in volume order and the voxel→LPS affine.

    ``slots[n]`` is the slice index k of ``datasets[n]``; slices missing from the series are the
    k values that no dataset has. Volumes are indexed (i = column, j = row, k = slice).
    """

    folder: Path
    datasets: tuple[Dataset, ...]
    paths: tuple[Path, ...]
    slots: tuple[int, ...]
    shape: tuple[int, int, int]
    affine_lps: np.ndarray

    @property
    def affine_ras(self) -> np.ndarray:
        return LPS_TO_RAS @ self.affine_lps

    @property
    def series_uid(self) -> str:
        return str(self.datasets[0].SeriesInstanceUID)

    @property
    def frame_of_reference_uid(self) -> str:
        return str(self.datasets[0].FrameOfReferenceUID)

    @functools.cached_property
    def _dataset_by_slot(self) -> dict[int, Dataset]:
        return dict(zip(self.slots, self.datasets))

    def dataset_at(self, k: int) -> Dataset | None:
        """The image at slice ``k``, or None where the series misses that slice."""
        return self._dataset_by_slot.get(k)


def _has_dicom_preamble(path: Path) -> bool:
    try:
        with path.open("rb") as handle:
            handle.seek(128)
            return handle.read(4) == b"DICM"
    except OSError:
        return False


def _dicom_files(folder: Path) -> Iterator[Path]:
    """DICOM Part 10 files directly in ``folder``, in name order (hidden files skipped)."""
    return (p for p in sorted(folder.iterdir()) if p.is_file() and not p.name.startswith(".") and _has_dicom_preamble(p))


def is_dicom_folder(path: Path) -> bool:
    """True when ``path`` is a directory holding at least one DICOM Part 10 file (not recursive)."""
    path = Path(path)
    return path.is_dir() and any(_dicom_files(path))


def _read_headers(folder: Path) -> dict[str, list[tuple[Path, Dataset]]]:
    """Headers of every image in ``folder``, grouped by SeriesInstanceUID."""
    groups: dict[str, list[tuple[Path, Dataset]]] = defaultdict(list)
    for path in _dicom_files(folder):
        try:
            header = pydicom.dcmread(path, stop_before_pixels=True)
        except (InvalidDicomError, OSError, ValueError):
            continue
        if header.get("SOPClassUID") == DICOMDIR_STORAGE or "SeriesInstanceUID" not in header:
            continue
        groups[str(header.SeriesInstanceUID)].append((path, header))
    return groups


def _describe(uid: str, members: list[tuple[Path, Dataset]]) -> str:
    header = members[0][1]
    return f"{uid} ({header.get('Modality', '?')}, {len(members)} files, {header.get('SeriesDescription', 'no description')!s})"


def _select_series(folder: Path, groups: dict[str, list[tuple[Path, Dataset]]], series_uid: str | None) -> list[tuple[Path, Dataset]]:
    if not groups:
        raise InputError(f"no DICOM images in {folder}", f"give the folder that holds the CT slices (.dcm files) of one series, not {folder}")
    listing = "; ".join(_describe(uid, members) for uid, members in groups.items())
    if series_uid is not None:
        if series_uid not in groups:
            raise InputError(f"series {series_uid} is not in {folder}; it holds: {listing}", "pass one of the SeriesInstanceUIDs listed with --series-uid")
        return groups[series_uid]
    if len(groups) > 1:
        raise InputError(
            f"{folder} holds {len(groups)} series: {listing}",
            "pass the SeriesInstanceUID of the CT with --series-uid, or copy that series into a folder of its own",
        )
    return next(iter(groups.values()))


def _check_ct_or_raise(folder: Path, members: list[tuple[Path, Dataset]]) -> None:
    header = members[0][1]
    modality = header.get("Modality", "unknown")
    if modality != "CT":
        raise InputError(
            f"series {header.SeriesInstanceUID} in {folder} is {modality}, not CT",
            f"give a CT series: the engine segments CT only (Hounsfield units); {folder} holds a {modality} series",
        )
    if int(header.get("NumberOfFrames", 1) or 1) > 1:
        raise InputError(
            f"{members[0][0]} is a multi-frame (enhanced) CT image",
            "export the series as classic single-frame CT images (CT Image Storage), e.g. from the PACS or with dcmtk",
        )
    for key in ("ImageOrientationPatient", "ImagePositionPatient", "PixelSpacing", "FrameOfReferenceUID"):
        missing = [p.name for p, h in members if key not in h]
        if missing:
            raise InputError(f"{key} is missing in {folder / missing[0]} ({len(missing)} files)", f"the images in {folder} are not a volume; export the CT series again from the scanner or PACS")


def _drop_localizers(folder: Path, members: list[tuple[Path, Dataset]], sink: Any) -> list[tuple[Path, Dataset]]:
    """Scout images share a series with the axial slices on some scanners; they are not part of the volume."""
    kept = [(p, h) for p, h in members if "LOCALIZER" not in [str(v).upper() for v in h.get("ImageType", [])]]
    if kept and len(kept) < len(members):
        warn(f"{len(members) - len(kept)} localizer image(s) in {folder} were left out of the volume", "nothing to do unless the CT itself is missing", sink)
    return kept or members


def _same_or_raise(folder: Path, members: list[tuple[Path, Dataset]], key: str, tolerance: float) -> np.ndarray:
    values = np.array([[float(v) for v in np.atleast_1d(h.get(key))] for _, h in members])
    bad = np.flatnonzero(np.abs(values - values[0]).max(axis=1) > tolerance)
    if bad.size:
        raise InputError(
            f"{key} differs between {members[0][0].name} and {members[bad[0]][0].name} in {folder}",
            "the folder mixes images of different acquisitions; keep the slices of one CT volume in the folder",
        )
    return values[0]


def _slots_or_raise(folder: Path, names: list[str], offsets: np.ndarray, sink: Any) -> tuple[list[int], float]:
    """Slice index of each sorted image; equal steps except whole missing slices, which are reported."""
    steps = np.diff(offsets)
    if steps.size == 0:
        return [0], 0.0
    duplicate = np.flatnonzero(steps < 1e-3)
    if duplicate.size:
        a, b = names[duplicate[0]], names[duplicate[0] + 1]
        raise InputError(f"{a} and {b} in {folder} lie at the same position ({offsets[duplicate[0]]:.3f} mm)", "the folder holds two acquisitions of the same series (or a copy); keep one of them")
    step = float(steps.min())  # the true step when slices are missing: every other step is a whole multiple of it
    multiples = np.rint(steps / step)
    irregular = np.flatnonzero(np.abs(steps - multiples * step) > RELATIVE_TOLERANCE * step)
    if irregular.size:
        raise InputError(
            f"slice spacing in {folder} varies from {steps.min():.3f} to {steps.max():.3f} mm: it is not a regular grid",
            "resample the series to a regular spacing (e.g. 3D Slicer's DICOM module with acquisition geometry regularization) or choose another series",
        )
    gaps = np.flatnonzero(multiples > 1)
    if gaps.size:
        missing = int((multiples[gaps] - 1).sum())
        where = ", ".join(f"between {names[g]} and {names[g + 1]}" for g in gaps[:3])
        warn(
            f"{missing} slice(s) missing in {folder} ({where}); the CT volume fills them by linear interpolation",
            f"check that the transfer of {folder} is complete, or send the series again",
            sink,
        )
    return [0, *np.cumsum(multiples).astype(int).tolist()], step


def scan_series(folder: Path, *, series_uid: str | None = None, sink: Any = None) -> CtSeries:
    """Read the headers of one CT series in ``folder`` and check that they form one volume.

    Raises:
        InputError: no DICOM, several series without ``series_uid``, not CT, mixed orientations
            or sizes, duplicate or irregularly spaced slices.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder} is not a folder", "give the folder that holds the DICOM files of the CT series")
    members = _select_series(folder, _read_headers(folder), series_uid)
    _check_ct_or_raise(folder, members)
    members = _drop_localizers(folder, members, sink)
    orientation = _same_or_raise(folder, members, "ImageOrientationPatient", 1e-4)
    spacing = _same_or_raise(folder, members, "PixelSpacing", 1e-4)
    rows, columns = _same_or_raise(folder, members, "Rows", 0), _same_or_raise(folder, members, "Columns", 0)
    row_direction, column_direction = orientation[:3], orientation[3:]
    normal = np.cross(row_direction, column_direction)
    positions = np.array([[float(v) for v in h.ImagePositionPatient] for _, h in members])
    order = np.argsort(positions @ normal, kind="stable")
    members, positions = [members[n] for n in order], positions[order]
    slots, step = _slots_or_raise(folder, [p.name for p, _ in members], positions @ normal, sink)
    if slots[-1] > 0:
        # The measured step (not normal × spacing) keeps a gantry tilt as a shear in the affine.
        slice_vector = (positions[-1] - positions[0]) / slots[-1]
        expected = positions[0] + np.outer(slots, slice_vector)
        off_line = np.linalg.norm(positions - expected, axis=1).max()
        if off_line > RELATIVE_TOLERANCE * step:
            raise InputError(f"the slice positions in {folder} do not lie on one line (off by {off_line:.3f} mm)", "the folder mixes images of different acquisitions; keep the slices of one CT volume")
    else:
        header = members[0][1]
        slice_vector = normal * float(header.get("SpacingBetweenSlices") or header.get("SliceThickness") or 1.0)
    affine = np.eye(4)
    affine[:3, 0] = row_direction * spacing[1]  # i runs along a row: the column index, PixelSpacing[1]
    affine[:3, 1] = column_direction * spacing[0]
    affine[:3, 2] = slice_vector
    affine[:3, 3] = positions[0]
    return CtSeries(
        folder=folder,
        datasets=tuple(h for _, h in members),
        paths=tuple(p for p, _ in members),
        slots=tuple(slots),
        shape=(int(columns[0]), int(rows[0]), slots[-1] + 1),
        affine_lps=affine,
    )


def as_series(source: Path | CtSeries, *, series_uid: str | None = None, sink: Any = None) -> CtSeries:
    """A scanned series from a folder, or ``source`` itself when already scanned (saves a header pass)."""
    return source if isinstance(source, CtSeries) else scan_series(source, series_uid=series_uid, sink=sink)


def _slice_hu(path: Path) -> np.ndarray:
    """One slice in HU, as (column, row); rescale is applied per slice because scanners vary it."""
    dataset = pydicom.dcmread(path)
    try:
        pixels = dataset.pixel_array
    except Exception as error:  # pydicom raises RuntimeError/NotImplementedError/ValueError per codec
        syntax = dataset.file_meta.get("TransferSyntaxUID", "unknown")
        name = getattr(syntax, "name", syntax)
        raise InputError(f"cannot decode the pixel data of {path} ({name}): {error}", DECODER_HINT) from error
    slope = float(dataset.get("RescaleSlope", 1) or 1)
    intercept = float(dataset.get("RescaleIntercept", 0) or 0)
    return (pixels.astype(np.float64) * slope + intercept).T


def _fill_gaps(volume: np.ndarray, slots: tuple[int, ...]) -> None:
    """Linear interpolation between the two images around each missing slice, in place."""
    for a, b in zip(slots[:-1], slots[1:]):
        for k in range(a + 1, b):
            weight = (k - a) / (b - a)
            volume[:, :, k] = (1 - weight) * volume[:, :, a] + weight * volume[:, :, b]


def series_reference(series: CtSeries) -> nib.nifti1.Nifti1Extension:
    """A NIfTI comment extension naming the series and Frame of Reference the image came from."""
    payload = {NIFTI_EXTENSION_KEY: {"SeriesInstanceUID": series.series_uid, "FrameOfReferenceUID": series.frame_of_reference_uid, "StudyInstanceUID": str(series.datasets[0].get("StudyInstanceUID", ""))}}
    return nib.nifti1.Nifti1Extension("comment", json.dumps(payload).encode("utf-8"))


def dicom_reference(image: nib.Nifti1Image) -> dict[str, str] | None:
    """The DICOM UIDs ``read_ct_series`` stored in a NIfTI image (kept by tools that copy the header), if any."""
    for extension in getattr(image.header, "extensions", []):
        try:
            payload = json.loads(extension.get_content())
        except (ValueError, TypeError, UnicodeDecodeError):
            continue
        if isinstance(payload, dict) and NIFTI_EXTENSION_KEY in payload:
            return payload[NIFTI_EXTENSION_KEY]
    return None


def read_ct_series(source: Path | CtSeries, *, series_uid: str | None = None, sink: Any = None) -> nib.Nifti1Image:
    """The CT series in a folder (or already scanned) as a NIfTI image in HU (int16 when exact, else float32).

    The affine is the exact voxel→RAS mapping of the series (DICOM LPS with x and y negated),
    and a header extension names the SeriesInstanceUID and FrameOfReferenceUID so exports can
    check that labels belong to this CT.

    Raises:
        InputError: see ``scan_series``; also pixel data that cannot be decoded (names the plugin to install).
    """
    series = as_series(source, series_uid=series_uid, sink=sink)
    volume = np.zeros(series.shape, dtype=np.float32)
    for done, (slot, path) in enumerate(zip(series.slots, series.paths), start=1):
        volume[:, :, slot] = _slice_hu(path)  # Rows and Columns were checked equal in scan_series
        if sink is not None:
            sink.progress("read_dicom", done, len(series.slots))
    _fill_gaps(volume, series.slots)
    rounded = np.rint(volume)
    if np.array_equal(rounded, volume) and volume.min() >= -32768 and volume.max() <= 32767:
        volume = rounded.astype(np.int16)
    image = nib.Nifti1Image(volume, series.affine_ras)
    image.header.set_xyzt_units("mm")
    image.set_sform(series.affine_ras, code="scanner")
    image.set_qform(series.affine_ras, code="scanner")
    image.header.extensions.append(series_reference(series))
    return image
