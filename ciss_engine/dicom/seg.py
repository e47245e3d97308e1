"""DICOM Segmentation (SEG) export with highdicom, and read-back onto a CT series' grid.

A complete series gets one frame per source CT image (also for a gantry tilt, whose slices
highdicom cannot describe as a volume). A series with missing slices goes to highdicom as a
``Volume`` carrying the series' affine, so frames on the missing slices keep their position.
Reading maps frames by geometry (``get_volume``), or by the CT image each frame was derived from
where the frames do not form a regular volume (tilt).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import highdicom as hd
import numpy as np
from pydicom.sr.codedict import codes
from pydicom.uid import generate_uid

from .. import __version__
from ..atomic import write_atomic
from ..errors import InputError
from ..registry import OrganClass
from .codes import coded, coded_type, declare_private_schemes
from .labels import check_label_grid_or_raise, present_organs
from .series import CtSeries, as_series

# (i, j, k) voxel order of the engine ⇄ highdicom's (slice, row, column) volume order.
IJK_TO_KJI = [2, 1, 0]


def _segment_description(organ: OrganClass, number: int) -> hd.seg.SegmentDescription:
    return hd.seg.SegmentDescription(
        segment_number=number,
        segment_label=organ.name,
        segmented_property_category=coded(organ.category),
        segmented_property_type=coded_type(organ),
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=hd.AlgorithmIdentificationSequence(
            name="CISSegmentation", family=codes.cid7162.ArtificialIntelligence, version=__version__
        ),
        display_color=hd.color.CIELabColor.from_rgb(*organ.rgb),
    )


def _frames_or_volume(segments: np.ndarray, series: CtSeries) -> np.ndarray | hd.Volume:
    frames = segments.transpose(IJK_TO_KJI)
    if len(series.slots) == series.shape[2]:  # frame k ⇄ series.datasets[k]
        return frames
    linear = series.affine_lps[:3, :3]
    gram = linear.T @ linear
    if not np.allclose(gram, np.diag(np.diag(gram)), atol=1e-6 * gram.max()):
        raise InputError(
            f"the CT in {series.folder} is tilted (gantry tilt) and misses slices: its SEG frames cannot be placed",
            f"send the complete series to {series.folder}, or export --format rtstruct, which handles both",
        )
    return hd.Volume(
        array=frames,
        affine=series.affine_lps[:, IJK_TO_KJI + [3]],
        coordinate_system="PATIENT",
        frame_of_reference_uid=series.frame_of_reference_uid,
    )


def write_seg(
    label: np.ndarray,
    organs: list[OrganClass],
    series_folder: Path | CtSeries,
    output: Path,
    *,
    labelmap: bool = False,
    series_uid: str | None = None,
    frame_of_reference_uid: str | None = None,
    sink: Any = None,
) -> Path:
    """Write the organs of ``label`` (i, j, k on the series grid, values = ``organ.label``) as a DICOM SEG.

    Args:
        labelmap: LABELMAP segmentation type (one frame per slice, compact; needs a recent
            viewer) instead of BINARY (one bit-packed frame per organ and slice, read everywhere).
    Empty organs are skipped with a warning; segment numbers are 1..S over the organs written.

    Raises:
        InputError: the label map is not on the series' grid, another Frame of Reference, or holds no organ.
    """
    series = as_series(series_folder, series_uid=series_uid, sink=sink)
    check_label_grid_or_raise(label, series, frame_of_reference_uid=frame_of_reference_uid)
    organs = present_organs(label, organs, folder=series.folder, sink=sink)
    segments = np.zeros(label.shape, dtype=np.uint8 if len(organs) < 256 else np.uint16)
    for number, organ in enumerate(organs, start=1):
        segments[label == organ.label] = number
    seg = hd.seg.Segmentation(
        source_images=list(series.datasets),
        pixel_array=_frames_or_volume(segments, series),
        segmentation_type=hd.seg.SegmentationTypeValues.LABELMAP if labelmap else hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=[_segment_description(o, n) for n, o in enumerate(organs, start=1)],
        series_instance_uid=generate_uid(),
        series_number=9002,
        sop_instance_uid=generate_uid(),
        instance_number=1,
        manufacturer="CISSegmentation",
        manufacturer_model_name="ciss_engine",
        software_versions=__version__,
        device_serial_number="0",
        content_label="CISS_ORGANS",
        content_description="CISSegmentation organ segmentation",
        series_description="CISSegmentation organs",
        # An empty value in the CT means the default repertoire; highdicom accepts only None for that.
        specific_character_set=series.datasets[0].get("SpecificCharacterSet") or None,
    )
    declare_private_schemes(seg, organs)
    if sink is not None:
        sink.progress("seg", 1, 1)
    return write_atomic(Path(output), lambda tmp: seg.save_as(tmp, enforce_file_format=True))


def _on_series_grid_or_raise(volume: hd.Volume, series: CtSeries, path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One segment's SEG volume as (i, j, k) frames in series order, and the series index of its first voxel.

    highdicom may stack frames in either direction along the normal, so axes may be flipped;
    anything else (another spacing, rotation or a sub-voxel shift) is another grid and refused.
    """
    frames = volume.array[..., 0].transpose(IJK_TO_KJI)
    to_series = (np.linalg.inv(series.affine_lps) @ volume.affine)[:, IJK_TO_KJI + [3]]
    linear, offset = to_series[:3, :3], to_series[:3, 3]
    signs = np.sign(np.diag(linear))
    if frames.shape[2] == 1:  # a single frame has no slice step of its own: check the plane only
        linear[:, 2], signs[2] = (0.0, 0.0, 1.0), 1.0
    if not (np.allclose(linear, np.diag(signs), atol=1e-3) and np.allclose(offset, np.rint(offset), atol=1e-2)):
        raise InputError(f"the frames of {path} are not on the voxel grid of the CT in {series.folder}", f"read {path.name} with the CT series it was made on")
    start = np.rint(offset).astype(int)
    for axis in np.flatnonzero(signs < 0):
        frames = np.flip(frames, axis=axis)
        start[axis] -= frames.shape[axis] - 1
    return frames, start


def read_seg(path: Path, series_folder: Path | CtSeries, *, series_uid: str | None = None) -> dict[str, np.ndarray]:
    """Segment label → boolean mask (i, j, k) on the series grid, for BINARY and LABELMAP SEGs.

    Raises:
        InputError: not a SEG, another Frame of Reference, or frames off the series' grid.
    """
    path = Path(path)
    try:
        seg = hd.seg.segread(path)
    except (ValueError, AttributeError) as error:
        raise InputError(f"{path} is not a DICOM Segmentation: {error}", "give a DICOM SEG file (Modality SEG)") from error
    series = as_series(series_folder, series_uid=series_uid)
    if seg.FrameOfReferenceUID != series.frame_of_reference_uid:
        raise InputError(
            f"{path} lies in Frame of Reference {seg.FrameOfReferenceUID}, the CT series in {series.folder} in {series.frame_of_reference_uid}",
            f"read {path.name} with the CT series it was made on",
        )
    referenced = {str(item.SeriesInstanceUID) for item in seg.get("ReferencedSeriesSequence", [])}
    masks = {}
    for number in seg.get_segment_numbers():
        try:
            mask = _mask_by_geometry(seg, number, series, path)
        except RuntimeError:  # frames that are no regular volume: a tilted series
            if series.series_uid not in referenced:
                raise InputError(f"the frames of {path} do not form a volume on the CT in {series.folder}", f"read {path.name} with the CT series it was made on") from None
            mask = _mask_by_source_images(seg, number, series)
        masks[seg.get_segment_description(number).segment_label] = mask
    return masks


def _mask_by_geometry(seg: hd.seg.Segmentation, number: int, series: CtSeries, path: Path) -> np.ndarray:
    # combine_segments=True ignores segment_numbers for LABELMAP SEGs in highdicom 0.28: take the channel.
    volume = seg.get_volume(segment_numbers=[number], combine_segments=False, dtype=np.uint8)
    frames, start = _on_series_grid_or_raise(volume, series, path)
    stop = start + frames.shape
    if (start < 0).any() or (stop > np.array(series.shape)).any():
        raise InputError(f"{path} reaches outside the CT in {series.folder}", f"read {path.name} with the CT series it was made on")
    mask = np.zeros(series.shape, dtype=bool)
    mask[start[0] : stop[0], start[1] : stop[1], start[2] : stop[2]] = frames > 0
    return mask


def _mask_by_source_images(seg: hd.seg.Segmentation, number: int, series: CtSeries) -> np.ndarray:
    uids = [str(d.SOPInstanceUID) for d in series.datasets]
    # Frames left out of the SEG because they were empty are empty, not an error.
    frames = seg.get_pixels_by_source_instance(uids, segment_numbers=[number], assert_missing_frames_are_empty=True, dtype=np.uint8)
    mask = np.zeros(series.shape, dtype=bool)
    mask[:, :, list(series.slots)] = frames[..., 0].transpose(IJK_TO_KJI) > 0
    return mask
