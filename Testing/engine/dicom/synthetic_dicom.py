"""Tiny synthetic CT series written with pydicom, and small helpers for the DICOM tests.

The series are built from stated geometry (rotation, spacings, origin, tilt), so the tests compare
what the reader finds with what was written, not with the reader's own maths.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from ciss_engine.registry import make_organ

SHAPE = (20, 16, 8)  # (columns, rows, slices): small, and columns ≠ rows to catch transposes
ORGANS = [make_organ("spleen", 1), make_organ("kidney_right", 2), make_organ("kidney_left", 3), make_organ("liver", 4)]


def rotation(yaw_deg: float, pitch_deg: float, roll_deg: float) -> np.ndarray:
    """A proper rotation; its columns are the row direction, column direction and slice normal."""
    a, b, c = np.radians([yaw_deg, pitch_deg, roll_deg])
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    ry = np.array([[np.cos(b), 0, np.sin(b)], [0, 1, 0], [-np.sin(b), 0, np.cos(b)]])
    rx = np.array([[1, 0, 0], [0, np.cos(c), -np.sin(c)], [0, np.sin(c), np.cos(c)]])
    return rz @ ry @ rx


@dataclasses.dataclass
class SyntheticSeries:
    folder: Path
    hu: np.ndarray  # (i, j, k) as written
    positions: np.ndarray  # ImagePositionPatient (LPS) of slice k
    row_direction: np.ndarray
    column_direction: np.ndarray
    pixel_spacing: tuple[float, float]  # DICOM order: (between rows, between columns)
    series_uid: str
    frame_of_reference_uid: str

    def expected_affine_ras(self) -> np.ndarray:
        """Voxel (i, j, k) → RAS straight from the written tags: IPP_k + i·Δc·row + j·Δr·col, x and y negated."""
        affine = np.eye(4)
        affine[:3, 0] = self.row_direction * self.pixel_spacing[1]
        affine[:3, 1] = self.column_direction * self.pixel_spacing[0]
        affine[:3, 2] = self.positions[1] - self.positions[0]
        affine[:3, 3] = self.positions[0]
        return np.diag([-1.0, -1.0, 1.0, 1.0]) @ affine


def phantom_hu(shape: tuple[int, int, int] = SHAPE, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(-1000, 1500, size=shape).astype(np.int16)


def phantom_label(shape: tuple[int, int, int] = SHAPE) -> np.ndarray:
    """Spleen: a ring with a one-voxel hole; right kidney: a box; left kidney: a lone voxel and a diagonal pair; liver: empty."""
    label = np.zeros(shape, dtype=np.uint8)
    label[2:9, 2:9, 1:6] = 1
    label[5, 5, 1:6] = 0
    label[11:17, 3:12, 2:7] = 2
    label[3, 13, 4] = 3
    label[14, 13, 1] = label[15, 14, 1] = 3
    return label


def write_ct_series(
    folder: Path,
    hu: np.ndarray,
    *,
    rotation_matrix: np.ndarray | None = None,
    pixel_spacing: tuple[float, float] = (0.8, 0.7),
    slice_step: float = 2.5,
    tilt_mm_per_slice: float = 0.0,
    origin: tuple[float, float, float] = (-120.5, 80.25, 33.0),
    slope: float = 1.0,
    intercept: float = -1024.0,
    modality: str = "CT",
    series_uid: str | None = None,
    frame_of_reference_uid: str | None = None,
    study_uid: str = "1.2.826.0.1.3680043.8.498.1",
    transfer_syntax: str = ExplicitVRLittleEndian,
    skip_slices: tuple[int, ...] = (),
) -> SyntheticSeries:
    """Write ``hu`` (i, j, k) as single-frame CT files in shuffled order with shuffled InstanceNumbers."""
    folder.mkdir(parents=True, exist_ok=True)
    matrix = np.eye(3) if rotation_matrix is None else rotation_matrix
    row_direction, column_direction, normal = matrix[:, 0], matrix[:, 1], matrix[:, 2]
    # A gantry tilt moves each slice along the column direction as well as the normal.
    step = normal * slice_step + column_direction * tilt_mm_per_slice
    positions = np.array(origin) + np.outer(np.arange(hu.shape[2]), step)
    series = SyntheticSeries(
        folder, hu, positions, row_direction, column_direction, pixel_spacing,
        series_uid or generate_uid(), frame_of_reference_uid or generate_uid(),
    )
    order = np.random.default_rng(len(folder.name)).permutation(hu.shape[2])
    for number, k in enumerate(order, start=1):
        if k in skip_slices:
            continue
        stored = np.rint((hu[:, :, k].T.astype(np.float64) - intercept) / slope).astype(np.int16)
        dataset = _ct_dataset(series, int(k), stored, slope, intercept, modality, study_uid, number)
        if transfer_syntax != ExplicitVRLittleEndian:
            dataset.compress(transfer_syntax)
        dataset.save_as(folder / f"IMG{number:04d}", enforce_file_format=True)
    return series


def _ct_dataset(series: SyntheticSeries, k: int, stored: np.ndarray, slope: float, intercept: float, modality: str, study_uid: str, number: int) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.PatientSex = "Phantom^Synthetic", "CISS-0001", "", "O"
    ds.StudyInstanceUID, ds.StudyDate, ds.StudyTime, ds.StudyID = study_uid, "20240102", "101500", "1"
    ds.AccessionNumber, ds.ReferringPhysicianName = "", ""
    ds.Modality, ds.SeriesInstanceUID, ds.SeriesNumber, ds.InstanceNumber = modality, series.series_uid, 2, number
    ds.FrameOfReferenceUID, ds.PositionReferenceIndicator = series.frame_of_reference_uid, ""
    ds.Manufacturer, ds.ImageType = "CISS tests", ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.ImagePositionPatient = [f"{v:.6f}" for v in series.positions[k]]
    ds.ImageOrientationPatient = [f"{v:.8f}" for v in (*series.row_direction, *series.column_direction)]
    ds.PixelSpacing = list(series.pixel_spacing)
    ds.SliceThickness = 2.0
    ds.Rows, ds.Columns = stored.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    ds.RescaleSlope, ds.RescaleIntercept, ds.RescaleType = slope, intercept, "HU"
    ds.PixelData = stored.tobytes()
    return ds


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * float(np.logical_and(a, b).sum()) / float(a.sum() + b.sum())
