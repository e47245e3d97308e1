"""A CT read from a DICOM folder: segmented in the page, exported as RTSTRUCT and SEG that reference it.

The organs they hold are those of the label map written by the same export (the tiny bundle's result
varies with the CPU's arithmetic), never a list fixed in advance.
"""
from __future__ import annotations

import nibabel as nib
import numpy as np
import pydicom
from engine.dicom.synthetic_dicom import write_ct_series
from studio_pages import bundle_organs, exported_label_map, open_studio
from studio_process import JOB_DEADLINE_S

DICOM_EXPORT = "DICOM RTSTRUCT + SEG"


def test_dicom_ct_is_segmented_and_exported_as_rtstruct_and_seg(start_studio, browser, bundle_copy, phantom_cohort, tmp_path, shots):
    hu = np.asarray(nib.load(phantom_cohort[2] / "image.nii.gz").dataobj).astype(np.int16)
    series = write_ct_series(tmp_path / "dicom", hu, pixel_spacing=(6.0, 6.0), slice_step=6.0)
    studio = start_studio("--bundle", bundle_copy, "--ct", series.folder)
    page = open_studio(browser, studio)
    assert "56×48×40 voxels" in page.text("#ciss-ct")

    page.click("#ciss-segment")
    assert studio.wait_event("job_finished", JOB_DEADLINE_S, command="segment")["state"] == "succeeded"
    page.choose("#ciss-export-format", DICOM_EXPORT)
    page.type_into("#ciss-export-folder", str(tmp_path / "out"))
    page.click("#ciss-export")
    assert studio.wait_event("job_finished", JOB_DEADLINE_S, command="export")["state"] == "succeeded"
    page.wait_for("(document.querySelector('#ciss-exported') || {textContent: ''}).textContent.includes('seg.dcm')", 20, "the files written")
    page.screenshot(shots / "exported.png")

    rtstruct, seg = pydicom.dcmread(tmp_path / "out" / "rtstruct.dcm"), pydicom.dcmread(tmp_path / "out" / "seg.dcm")
    assert (rtstruct.Modality, seg.Modality) == ("RTSTRUCT", "SEG")
    referenced = rtstruct.ReferencedFrameOfReferenceSequence[0].RTReferencedStudySequence[0].RTReferencedSeriesSequence[0]
    assert referenced.SeriesInstanceUID == series.series_uid
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == series.series_uid
    labels, _ = exported_label_map(page)
    present = {name for name, (label, _) in bundle_organs(page).items() if (labels == label).any()}
    assert present, "the tiny bundle found no organ on this CT, so there is nothing to export"
    assert {roi.ROIName for roi in rtstruct.StructureSetROISequence} == present
    assert {segment.SegmentLabel for segment in seg.SegmentSequence} == present
