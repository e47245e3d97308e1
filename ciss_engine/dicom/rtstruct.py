"""DICOM RT Structure Set export and read-back for a label map on a CT series' own grid.

Written with pydicom rather than rt-utils because rt-utils traces contours through voxel centres
with OpenCV (organs shrink by half a voxel, one- or two-voxel islands give 1–2-point contours that
planning systems drop) and fills holes only with a pin-hole cut. Here (``contours.py``) contours
follow voxel edges, holes are separate contours of opposite winding (read by XOR, the convention
of SlicerRT and planning systems), points are mapped through the series' exact affine (oblique
and tilted series included), and each contour references the CT image of its plane.
"""
from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, PYDICOM_IMPLEMENTATION_UID, generate_uid

from .. import __version__
from ..atomic import write_atomic
from ..errors import InputError
from ..registry import OrganClass
from .contours import mask_to_polygons, polygons_to_mask
from .codes import coded_type, declare_private_schemes
from .labels import check_label_grid_or_raise, present_organs
from .series import CtSeries, as_series

RT_STRUCTURE_SET_STORAGE = "1.2.840.10008.5.1.4.1.1.481.3"
# By long-standing convention the RT Referenced Study item names this (retired) SOP class.
DETACHED_STUDY_MANAGEMENT = "1.2.840.10008.3.1.2.3.1"
# Patient, study and frame of reference modules, copied from the CT (all type 1 or 2).
COPIED_KEYWORDS = (
    "PatientName", "PatientID", "PatientBirthDate", "PatientSex",
    "StudyInstanceUID", "StudyDate", "StudyTime", "ReferringPhysicianName", "StudyID", "AccessionNumber",
    "FrameOfReferenceUID", "PositionReferenceIndicator",
)
OPTIONAL_KEYWORDS = ("SpecificCharacterSet", "StudyDescription", "PatientAge", "PatientWeight")
# Contour points are written with 0.1 µm resolution: far below a voxel, and within DS's 16 characters.
DECIMALS = 4


def _decimal_strings(values: np.ndarray) -> list[str]:
    return [f"{v:.{DECIMALS}f}".rstrip("0").rstrip(".") for v in values.ravel()]


def _image_item(dataset: Dataset) -> Dataset:
    item = Dataset()
    item.ReferencedSOPClassUID = dataset.SOPClassUID
    item.ReferencedSOPInstanceUID = dataset.SOPInstanceUID
    return item


def _header(series: CtSeries, now: datetime.datetime) -> Dataset:
    """Patient, study, series, equipment, structure set and SOP common modules."""
    source = series.datasets[0]
    ds = Dataset()
    for keyword in COPIED_KEYWORDS:
        setattr(ds, keyword, source.get(keyword, ""))
    for keyword in OPTIONAL_KEYWORDS:
        if source.get(keyword):
            setattr(ds, keyword, source.get(keyword))
    ds.SOPClassUID = RT_STRUCTURE_SET_STORAGE
    ds.SOPInstanceUID = generate_uid()
    ds.InstanceCreationDate = ds.StructureSetDate = ds.SeriesDate = now.strftime("%Y%m%d")
    ds.InstanceCreationTime = ds.StructureSetTime = ds.SeriesTime = now.strftime("%H%M%S")
    ds.Modality = "RTSTRUCT"
    ds.SeriesInstanceUID = generate_uid()
    ds.SeriesNumber = 9001
    ds.SeriesDescription = "CISSegmentation organ contours"
    ds.OperatorsName = ""
    ds.Manufacturer = "CISSegmentation"
    ds.ManufacturerModelName = "ciss_engine"
    ds.SoftwareVersions = __version__
    ds.InstanceNumber = 1
    ds.StructureSetLabel = "CISS organs"
    ds.StructureSetName = "CISSegmentation"
    ds.ApprovalStatus = "UNAPPROVED"  # machine contours: a physician approves them in the planning system
    study = Dataset()
    study.ReferencedSOPClassUID = DETACHED_STUDY_MANAGEMENT
    study.ReferencedSOPInstanceUID = ds.StudyInstanceUID
    referenced_series = Dataset()
    referenced_series.SeriesInstanceUID = series.series_uid
    referenced_series.ContourImageSequence = [_image_item(d) for d in series.datasets]
    study.RTReferencedSeriesSequence = [referenced_series]
    frame = Dataset()
    frame.FrameOfReferenceUID = series.frame_of_reference_uid
    frame.RTReferencedStudySequence = [study]
    ds.ReferencedFrameOfReferenceSequence = [frame]
    ds.StructureSetROISequence, ds.ROIContourSequence, ds.RTROIObservationsSequence = [], [], []
    return ds


def _contours(mask: np.ndarray, series: CtSeries) -> list[Dataset]:
    """One CLOSED_PLANAR item per polygon, in LPS millimetres, referencing its plane's image."""
    items = []
    for k in np.flatnonzero(mask.any(axis=(0, 1))):
        image = series.dataset_at(int(k))
        for polygon in mask_to_polygons(mask[:, :, k]):
            voxels = np.column_stack([polygon, np.full(len(polygon), float(k)), np.ones(len(polygon))])
            item = Dataset()
            if image is not None:  # a slice missing from the series has no image to reference
                item.ContourImageSequence = [_image_item(image)]
            item.ContourGeometricType = "CLOSED_PLANAR"
            item.NumberOfContourPoints = len(polygon)
            item.ContourNumber = len(items) + 1
            item.ContourData = _decimal_strings((voxels @ series.affine_lps.T)[:, :3])
            items.append(item)
    return items


def _add_roi(ds: Dataset, organ: OrganClass, number: int, contours: list[Dataset], series: CtSeries) -> None:
    roi = Dataset()
    roi.ROINumber = number
    roi.ReferencedFrameOfReferenceUID = series.frame_of_reference_uid
    roi.ROIName = organ.name
    roi.ROIGenerationAlgorithm = "AUTOMATIC"
    roi.ROIGenerationDescription = f"CISSegmentation {__version__}"
    ds.StructureSetROISequence.append(roi)
    roi_contour = Dataset()
    roi_contour.ReferencedROINumber = number
    roi_contour.ROIDisplayColor = list(organ.rgb)
    roi_contour.ContourSequence = contours
    ds.ROIContourSequence.append(roi_contour)
    observation = Dataset()
    observation.ObservationNumber = number
    observation.ReferencedROINumber = number
    observation.RTROIInterpretedType = "ORGAN"
    observation.ROIInterpreter = ""
    observation.RTROIIdentificationCodeSequence = [coded_type(organ)]
    ds.RTROIObservationsSequence.append(observation)


def write_rtstruct(
    label: np.ndarray,
    organs: list[OrganClass],
    series_folder: Path | CtSeries,
    output: Path,
    *,
    series_uid: str | None = None,
    frame_of_reference_uid: str | None = None,
    sink: Any = None,
) -> Path:
    """Write the organs of ``label`` (i, j, k on the series grid, values = ``organ.label``) as an RTSTRUCT.

    Empty organs are skipped with a warning. ``frame_of_reference_uid``, when known (see
    ``series.dicom_reference``), must match the series.

    Raises:
        InputError: the label map is not on the series' grid, another Frame of Reference, or holds no organ.
    """
    series = as_series(series_folder, series_uid=series_uid, sink=sink)
    check_label_grid_or_raise(label, series, frame_of_reference_uid=frame_of_reference_uid)
    organs = present_organs(label, organs, folder=series.folder, sink=sink)
    ds = _header(series, datetime.datetime.now())
    declare_private_schemes(ds, organs)
    for number, organ in enumerate(organs, start=1):
        _add_roi(ds, organ, number, _contours(label == organ.label, series), series)
        if sink is not None:
            sink.progress("rtstruct", number, len(organs))
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    return write_atomic(Path(output), lambda tmp: ds.save_as(tmp, enforce_file_format=True))


def _roi_names_or_raise(ds: Dataset, path: Path, series: CtSeries) -> dict[int, str]:
    names = {}
    for roi in ds.get("StructureSetROISequence", []):
        frame = roi.get("ReferencedFrameOfReferenceUID", series.frame_of_reference_uid)
        if frame != series.frame_of_reference_uid:
            raise InputError(
                f"ROI {roi.ROIName!r} of {path} lies in Frame of Reference {frame}, the CT series in {series.folder} in {series.frame_of_reference_uid}",
                f"read {path.name} with the CT series it was drawn on",
            )
        names[int(roi.ROINumber)] = str(roi.ROIName)
    return names


def read_rtstruct(path: Path, series_folder: Path | CtSeries, *, series_uid: str | None = None) -> dict[str, np.ndarray]:
    """ROI name → boolean mask (i, j, k) on the series grid; contours of one plane combine by XOR.

    Raises:
        InputError: not an RTSTRUCT, another Frame of Reference, or contours off the series' planes.
    """
    path = Path(path)
    ds = pydicom.dcmread(path)
    if ds.get("SOPClassUID") != RT_STRUCTURE_SET_STORAGE:
        raise InputError(f"{path} is not a DICOM RT Structure Set", "give the RTSTRUCT file (Modality RTSTRUCT)")
    series = as_series(series_folder, series_uid=series_uid)
    names = _roi_names_or_raise(ds, path, series)
    to_voxels = np.linalg.inv(series.affine_lps)
    masks = {}
    for roi_contour in ds.get("ROIContourSequence", []):
        planes: dict[int, list[np.ndarray]] = {}
        for contour in roi_contour.get("ContourSequence", []):
            if contour.ContourGeometricType != "CLOSED_PLANAR":
                continue
            points = np.asarray(contour.ContourData, dtype=float).reshape(-1, 3)
            voxels = (np.column_stack([points, np.ones(len(points))]) @ to_voxels.T)[:, :3]
            k = int(np.rint(voxels[:, 2].mean()))
            if np.abs(voxels[:, 2] - k).max() > 0.1:
                raise InputError(f"contours of {path} do not lie on the slices of the CT in {series.folder}", f"read {path.name} with the CT series it was drawn on")
            planes.setdefault(k, []).append(voxels[:, :2])
        mask = np.zeros(series.shape, dtype=bool)
        for k, polygons in planes.items():
            if 0 <= k < series.shape[2]:
                mask[:, :, k] = polygons_to_mask(polygons, series.shape[:2])
        masks[names.get(int(roi_contour.ReferencedROINumber), str(roi_contour.ReferencedROINumber))] = mask
    return masks
