"""Writes the shown result as a NIfTI label map, and as DICOM RTSTRUCT + SEG through the workflow both front ends share
(``ciss export``, in the engine)."""
from __future__ import annotations

from pathlib import Path

from trame_server import Server

from CISSegmentationLib.bundle_reader import BundleInfo, read_bundle_or_raise
from CISSegmentationLib.errors import InputError, OutputError
from CISSegmentationLib.job_runner import JobState
from CISSegmentationLib.workflow_logic import DicomExportOutcome

from ..ui.export_ui import DICOM, NIFTI, ExportState, ExportUI
from .context import StudioContext
from .panel_logic import PanelLogic
from .status_logic import StatusLogic


class ExportLogic(PanelLogic[ExportState]):
    def __init__(self, server: Server, context: StudioContext, status: StatusLogic) -> None:
        super().__init__(server, context, ExportState)
        self._status = status
        self.session.ct_changed.connect(self._on_ct_changed)
        self.session.result_added.connect(self._on_result_added)

    def set_ui(self, ui: ExportUI) -> None:
        ui.export_clicked.connect(self._status.guarded(self._on_export_clicked))

    def export(self, folder: Path, dicom: bool) -> Path:
        """The label map of the shown result on the CT's grid; with ``dicom``, also RTSTRUCT and SEG made from it."""
        session = self.session
        volume = session.volume_or_raise()
        version = session.shown_version
        if version is None or version not in session.results:
            raise InputError("nothing to export", "segment the CT first (Segment all organs), then export")
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise OutputError(f"cannot create the output folder {folder}: {error.strerror}", "choose a folder you may write to") from error
        bundle = read_bundle_or_raise(session.bundle_or_raise().path, version)  # the organs of the version that made the result
        labels = self.context.workflow.export_label_map(bundle=bundle, segmentation_node=session.results[version], volume_node=volume,
                                                        path=folder / f"{volume.GetName()}_organs_{version}.nii.gz")
        self.data.exported = f"Wrote {labels}"
        if dicom:
            self._export_dicom(bundle, folder)
        return labels

    def _export_dicom(self, bundle: BundleInfo, folder: Path) -> None:
        session = self.session
        if not session.is_dicom_ct:
            raise InputError("the CT was not read from a DICOM folder, so DICOM files cannot reference it", "export a NIfTI label map instead")
        job = self.context.workflow.dicom_export_job(bundle=bundle, segmentation_node=session.results[bundle.version], volume_node=session.volume_or_raise(),
                                                     dicom_series=session.ct_source, output=folder, on_done=self._on_dicom_exported)
        self._status.start(job, title="Writing DICOM RTSTRUCT and SEG", command="export")

    def _on_dicom_exported(self, outcome: DicomExportOutcome) -> None:
        if outcome.result.state is JobState.SUCCEEDED:
            self.data.exported += "; " + ", ".join(str(path) for path in outcome.outputs.values())
            self._status.show_message("DICOM RTSTRUCT and SEG written")

    def _on_export_clicked(self) -> None:
        self.export(Path(self.data.folder.strip()).expanduser(), self.data.format == DICOM)
        self._status.show_message(self.data.exported)

    def _on_ct_changed(self) -> None:
        self.data.formats = [NIFTI, DICOM] if self.session.is_dicom_ct else [NIFTI]
        self.data.format = NIFTI
        self.data.has_result, self.data.exported = False, ""

    def _on_result_added(self, _version: str) -> None:
        self.data.has_result = True
