"""A CT read from a DICOM folder: segmented in the page, exported as RTSTRUCT and SEG that reference it."""
from __future__ import annotations

import nibabel as nib
import numpy as np
import pydicom
from engine.dicom.synthetic_dicom import write_ct_series
from studio_pages import open_studio

DICOM_EXPORT = "DICOM RTSTRUCT + SEG"


def test_dicom_ct_is_segmented_and_exported_as_rtstruct_and_seg(start_studio, browser, bundle_copy, phantom_cohort, tmp_path, shots):
    hu = np.asarray(nib.load(phantom_cohort[2] / "image.nii.gz").dataobj).astype(np.int16)
    series = write_ct_series(tmp_path / "dicom", hu, pixel_spacing=(6.0, 6.0), slice_step=6.0)
    studio = start_studio("--bundle", bundle_copy, "--ct", series.folder)
    page = open_studio(browser, studio)
    assert "56×48×40 voxels" in page.text("#ciss-ct")

    page.click("#ciss-segment")
    assert studio.wait_event("job_finished", 90, command="segment")["state"] == "succeeded"
    page.choose("#ciss-export-format", DICOM_EXPORT)
    page.type_into("#ciss-export-folder", str(tmp_path / "out"))
    page.click("#ciss-export")
    assert studio.wait_event("job_finished", 90, command="export")["state"] == "succeeded"
    page.wait_for("(document.querySelector('#ciss-exported') || {textContent: ''}).textContent.includes('seg.dcm')", 20, "the files written")
    page.screenshot(shots / "exported.png")

    rtstruct, seg = pydicom.dcmread(tmp_path / "out" / "rtstruct.dcm"), pydicom.dcmread(tmp_path / "out" / "seg.dcm")
    assert (rtstruct.Modality, seg.Modality) == ("RTSTRUCT", "SEG")
    referenced = rtstruct.ReferencedFrameOfReferenceSequence[0].RTReferencedStudySequence[0].RTReferencedSeriesSequence[0]
    assert referenced.SeriesInstanceUID == series.series_uid
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == series.series_uid
    names = {roi.ROIName for roi in rtstruct.StructureSetROISequence}
    assert names and names <= {"spleen", "kidney_right", "kidney_left", "gallbladder"}
