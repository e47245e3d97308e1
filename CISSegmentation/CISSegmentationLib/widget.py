"""The module panel: connects ``Resources/UI/CISSegmentation.ui`` to the logic. The only file that imports Qt.

Engine runs are polled by a QTimer (``EngineJob.poll``), so the panel stays responsive while the engine
learns; all results arrive in the GUI thread. Errors are shown with their hint and, for engine
failures, the engine's last log lines.
"""
from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import qt
import slicer

from ciss_engine.api.events import Done, ErrorEvent, Event, ForgettingGuard, Progress
from ciss_engine.registry import OrganClass

from .bundle_reader import BundleInfo, catalog_rgb, known_organ_names, new_organ_or_raise, read_bundle_or_raise
from .can_apply import Action, PanelState, missing_for
from .dicom_export import add_to_dicom_database, gather_files_or_raise, series_files_or_raise
from .engine_commands import EngineLauncher
from .errors import CissError, InputError
from .install_logic import SlicerInstaller, missing_requirements_or_raise
from .job_runner import EngineJob, JobCallbacks, JobResult, JobState, describe_event, describe_guard, describe_progress
from .segmentation_logic import TRAINING_ROLE
from .terminology import organ_name_or_raise
from .workflow_logic import DicomExportOutcome, LearnOutcome, SegmentOutcome, WorkflowLogic

if TYPE_CHECKING:
    from slicer import vtkMRMLScalarVolumeNode, vtkMRMLScene, vtkMRMLSegmentationNode

POLL_MS = 100
NIFTI_FORMAT = "NIfTI label map"
# The export choices that write DICOM, and the engine's formats each writes (``ciss export --format``).
DICOM_CHOICES = {"DICOM RTSTRUCT + SEG": ("rtstruct", "seg"), "DICOM RTSTRUCT": ("rtstruct",), "DICOM SEG": ("seg",)}


def show_error(error: CissError) -> None:
    """A message box with the error, its hint and (for engine failures) the engine's log."""
    details = getattr(error, "log_tail", "")
    slicer.util.errorDisplay(f"{error.message}\n\n{error.hint}", windowTitle="CISSegmentation", detailedText=details)


class CISSegmentationPanel:
    """The panel's behaviour; ``parameters`` is the module's parameter node wrapper (typed values).

    The engine launcher and the workflow are injected where a test or a script brings its own (another
    engine's Python, a workflow on a work folder it inspects); by default the panel makes both."""

    def __init__(self, ui: Any, parameters: Any, scene: vtkMRMLScene, *, launcher: EngineLauncher | None = None, workflow: WorkflowLogic | None = None) -> None:
        self.ui = ui
        self.parameters = parameters
        self.scene = scene
        self.launcher = launcher or EngineLauncher.default()
        self.workflow = workflow or WorkflowLogic(scene, launcher=self.launcher)
        self.bundle: BundleInfo | None = None
        self.job: EngineJob | None = None
        self.latest: dict[str, SegmentOutcome] = {}  # CT node ID → latest result on it
        self.new_organs: list[OrganClass] = []  # added with "Add new organ", not learned yet
        self.last_learn: LearnOutcome | None = None
        self.engine_ready = False
        # Each action's button, and its tooltip as the UI file words it (a disabled one adds what is missing).
        self.action_buttons = {
            Action.INSTALL: ui.installButton, Action.SEGMENT: ui.segmentButton, Action.ADD_ORGAN: ui.addOrganButton, Action.CORRECT: ui.correctResultButton,
            Action.LEARN: ui.learnButton, Action.ADAPT: ui.adaptButton, Action.ROLLBACK: ui.rollbackButton, Action.EXPORT: ui.exportButton,
        }
        self.tooltips = {action: button.toolTip for action, button in self.action_buttons.items()}
        self.timer = qt.QTimer()
        self.timer.setInterval(POLL_MS)
        self.timer.timeout.connect(self._on_timer)
        self._setup_widgets()
        self._connect_signals()
        self._load_bundle()
        self._check_engine()

    # --- set-up -----------------------------------------------------------------------------
    def _setup_widgets(self) -> None:
        self.ui.newOrganNameComboBox.addItems(known_organ_names())
        self.ui.exportFormatComboBox.addItems([NIFTI_FORMAT, *DICOM_CHOICES])
        self.ui.exportDirectoryButton.directory = str(Path.home())
        self.ui.bundlePathLineEdit.currentPath = self.parameters.bundle_path
        self.ui.progressBar.setRange(0, 1000)
        self._show_guard_buttons(False)
        self._update_buttons()

    def _connect_signals(self) -> None:
        for button, handler in (
            (self.ui.installButton, self._on_install_clicked), (self.ui.rollbackButton, self._on_rollback_clicked),
            (self.ui.segmentButton, self._on_segment_clicked), (self.ui.addOrganButton, self._on_add_organ_clicked),
            (self.ui.correctResultButton, self._on_correct_result_clicked),
            (self.ui.refreshTrainingSetButton, self._refresh_training_set), (self.ui.learnButton, self._on_learn_clicked), (self.ui.adaptButton, self._on_adapt_clicked),
            (self.ui.cancelButton, self._on_cancel_clicked), (self.ui.acceptButton, self._on_accept_clicked),
            (self.ui.rejectButton, self._on_reject_clicked), (self.ui.exportButton, self._on_export_clicked),
        ):
            button.clicked.connect(self._guarded(handler))
        self.ui.bundlePathLineEdit.currentPathChanged.connect(self._on_bundle_path_changed)
        self.ui.inputVolumeSelector.currentNodeChanged.connect(lambda _node: self._update_buttons())
        self.ui.newOrganNameComboBox.currentTextChanged.connect(self._on_new_organ_name_changed)

    def _guarded(self, action: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                action()
            except CissError as error:
                show_error(error)
        return run

    def cleanup(self) -> None:
        """Module unloaded or Slicer closing: stop the engine, remove temporary files."""
        if self.job is not None:
            self.job.cancel(grace_s=2)
            self.job.wait(timeout_s=10)
        self.timer.stop()
        self.workflow.cleanup()

    # --- engine and bundle ------------------------------------------------------------------
    def _check_engine(self) -> None:
        """Say in the Engine section whether the engine runs and which packages it still lacks."""
        self.engine_ready = False
        try:
            version = self.launcher.check_or_raise()
            missing = missing_requirements_or_raise(self.launcher, SlicerInstaller(self.launcher).requirements)
        except CissError as error:
            self.ui.engineStatusLabel.text = f"{error.message}\n{error.hint}"
            self.ui.engineCollapsibleButton.collapsed = False
            self._update_buttons()
            return
        self.engine_ready = not missing
        self._update_buttons()
        if missing:
            self.ui.engineStatusLabel.text = f"{version}: needs {', '.join(missing)}. Click Install engine (once, needs internet)."
            self.ui.engineCollapsibleButton.collapsed = False
        else:
            self.ui.engineStatusLabel.text = f"Engine ready: {version} ({self.launcher.python})"

    def _on_install_clicked(self) -> None:
        with slicer.util.WaitCursor():
            installed = SlicerInstaller(self.launcher).install_or_raise(lambda text: slicer.util.confirmOkCancelDisplay(text, "CISSegmentation"))
        if installed:
            self._check_engine()

    def _on_bundle_path_changed(self, path: str) -> None:
        self.parameters.bundle_path = path
        self._load_bundle()

    def _load_bundle(self, version: str | None = None) -> None:
        """Read the chosen bundle into the tables; a bad folder is shown in the organs table, not as a popup."""
        self.bundle = None
        self.ui.bundleStatusLabel.text = ""
        self.ui.organsTableWidget.setRowCount(0)
        self.ui.versionsTableWidget.setRowCount(0)
        self.ui.bundleVersionComboBox.clear()
        if not self.parameters.bundle_path:
            self._update_buttons()
            return
        try:
            self.bundle = read_bundle_or_raise(self.parameters.bundle_path, version)
        except CissError as error:
            self.ui.bundleStatusLabel.text = f"{error.message}\n{error.hint}"
            self._update_buttons()
            return
        self.ui.bundleVersionComboBox.addItems([f"current ({self.bundle.current})", *[v.version for v in self.bundle.versions]])
        self._fill_table(self.ui.organsTableWidget, [
            [str(o.label), o.name, "", f"{o.type.meaning}" + (f" ({o.modifier.meaning})" if o.modifier else ""), o.version_introduced]
            for o in self.bundle.organs
        ])
        for row, organ in enumerate(self.bundle.organs):
            self.ui.organsTableWidget.item(row, 2).setBackground(qt.QBrush(qt.QColor(*organ.rgb)))
        self._fill_table(self.ui.versionsTableWidget, [
            [v.version, v.status, ", ".join(v.organs), v.created or ""] for v in self.bundle.versions
        ])
        self._update_buttons()

    @staticmethod
    def _fill_table(table: Any, rows: list[list[str]]) -> None:
        table.setRowCount(len(rows))
        for row, values in enumerate(rows):
            for column, value in enumerate(values):
                table.setItem(row, column, qt.QTableWidgetItem(value))

    def _bundle_or_raise(self) -> BundleInfo:
        if self.bundle is None:
            self.bundle = read_bundle_or_raise(self.parameters.bundle_path)  # raises with the reason (none chosen, damaged…)
        return self.bundle

    def _chosen_version(self) -> str | None:
        index = self.ui.bundleVersionComboBox.currentIndex
        return None if index <= 0 else self.ui.bundleVersionComboBox.currentText

    def _on_rollback_clicked(self) -> None:
        rows = self.ui.versionsTableWidget.selectionModel().selectedRows()
        if not rows:
            raise InputError("no version selected", "select the version to return to in the versions table")
        version = self.ui.versionsTableWidget.item(rows[0].row(), 0).text()
        self._start(self.workflow.rollback_job(bundle=self._bundle_or_raise(), version=version, callbacks=self._callbacks(self._on_bundle_job_finished)), f"Rolling back to {version}")

    def _on_bundle_job_finished(self, result: JobResult) -> None:
        if result.state is not JobState.SUCCEEDED:
            show_error(result.to_error())
        self._load_bundle()

    # --- running jobs -----------------------------------------------------------------------
    def _callbacks(self, on_finished: Callable | None = None) -> JobCallbacks:
        return JobCallbacks(on_progress=self._on_progress, on_event=self._on_event, on_log=self.ui.logTextEdit.appendPlainText, on_finished=on_finished)

    def _start(self, job: EngineJob, what: str) -> None:
        self.ui.logTextEdit.appendPlainText(f"--- {what}")
        self.ui.progressLabel.text = what
        self.ui.progressBar.value = 0
        self.job = job.start()
        self.timer.start()
        self._update_buttons()

    def _on_timer(self) -> None:
        job = self.job
        try:
            running = job.poll()
        except CissError as error:  # bringing a result into the scene failed
            running = False
            show_error(error)
        if not running and self.job is job:  # a result handler may have started the next job (segment after learn)
            self.timer.stop()
            self.job = None
        self._update_buttons()

    def _on_progress(self, progress: Progress) -> None:
        self.ui.progressBar.value = int(progress.fraction * 1000)
        self.ui.progressLabel.text = describe_progress(progress)

    def _on_event(self, event: Event) -> None:
        if not isinstance(event, (Progress, Done, ErrorEvent)):  # metrics, checkpoints, the guard: worth a log line
            self.ui.logTextEdit.appendPlainText(describe_event(event))
        if isinstance(event, ForgettingGuard):
            self.ui.guardLabel.text = describe_guard(event, published=False)

    def _on_cancel_clicked(self) -> None:
        if self.job is not None:
            self.job.cancel()
            self.ui.progressLabel.text = "Cancelling: the engine saves a checkpoint and stops"

    def _update_buttons(self) -> None:
        """Each action's button enabled when it can run; a disabled one's tooltip says what is missing (can_apply.py)."""
        busy = self.job is not None and self.job.is_running
        volume = self.ui.inputVolumeSelector.currentNode()
        state = PanelState(
            busy=busy, engine_ready=self.engine_ready, bundle_loaded=self.bundle is not None, ct_chosen=volume is not None,
            new_organs=len(self.new_organs), result_on_ct=volume is not None and volume.GetID() in self.latest,
            versions=len(self.bundle.versions) if self.bundle is not None else 0,
        )
        for action, button in self.action_buttons.items():
            missing = missing_for(action, state)
            button.enabled = missing is None
            button.toolTip = self.tooltips[action] if missing is None else f"{self.tooltips[action]}\n\nNot now: {missing}."
        self.ui.cancelButton.enabled = busy

    # --- segment ----------------------------------------------------------------------------
    def _on_segment_clicked(self, version: str | None = None) -> None:
        self.parameters.check_or_raise()
        job = self.workflow.segment_job(
            bundle=self._bundle_or_raise(), volume_node=self.parameters.input_volume, version=version or self._chosen_version(),
            device=self.parameters.device, show_3d=self.parameters.show_3d, callbacks=self._callbacks(), on_done=self._on_segmented,
        )
        self._start(job, "Segmenting all organs")

    def _on_segmented(self, outcome: SegmentOutcome) -> None:
        if outcome.segmentation_node is None:
            if outcome.result.state is not JobState.CANCELLED:
                show_error(outcome.result.to_error())
            return
        volume = outcome.volume_node
        previous = self.latest.get(volume.GetID())
        self.latest[volume.GetID()] = outcome
        self._update_buttons()
        self.ui.segmentsTableView.setSegmentationNode(outcome.segmentation_node)
        slicer.util.setSliceViewerLayers(background=volume, fit=True)
        if previous is not None and self.last_learn is not None and outcome.version == self.last_learn.new_version:
            self._show_side_by_side(volume, previous.segmentation_node, outcome.segmentation_node)

    def _show_side_by_side(self, volume: vtkMRMLScalarVolumeNode, old: vtkMRMLSegmentationNode, new: vtkMRMLSegmentationNode) -> None:
        """Old version's result in the left view, new version's in the right one, same CT and slice."""
        layout_manager = slicer.app.layoutManager()
        layout_manager.setLayout(slicer.vtkMRMLLayoutNode.SlicerLayoutSideBySideView)
        for view_name, node in (("Red", old), ("Yellow", new)):
            slice_widget = layout_manager.sliceWidget(view_name)
            slice_widget.sliceLogic().GetSliceCompositeNode().SetBackgroundVolumeID(volume.GetID())
            slice_widget.mrmlSliceNode().SetOrientationToAxial()
            node.GetDisplayNode().SetDisplayableOnlyInView(slice_widget.mrmlSliceNode().GetID())
        for training in self.workflow.segmentation_logic.segmentations_on(volume, TRAINING_ROLE):  # strokes would cover both results
            training.GetDisplayNode().SetVisibility(False)

    # --- add new organ ----------------------------------------------------------------------
    def _on_new_organ_name_changed(self, text: str) -> None:
        rgb = catalog_rgb(text.strip().lower().replace(" ", "_"))
        if rgb is not None:
            self.ui.newOrganColorPickerButton.color = qt.QColor(*rgb)

    def _on_add_organ_clicked(self) -> None:
        volume = self.parameters.input_volume
        if volume is None:
            raise InputError("no CT chosen", "choose the CT to paint the new organ on under Input CT")
        color = self.ui.newOrganColorPickerButton.color
        organ = new_organ_or_raise(self._bundle_or_raise(), organ_name_or_raise(self.ui.newOrganNameComboBox.currentText),
                                   (color.red(), color.green(), color.blue()), pending=self.new_organs)
        segmentation = self.workflow.training_set.training_segmentation(volume)  # apart from the results, so comparisons show no strokes
        segmentation.GetDisplayNode().SetVisibility(True)
        segment_id = self.workflow.segmentation_logic.add_organ_segment(segmentation, organ)
        self.new_organs = [o for o in self.new_organs if o.name != organ.name] + [organ]
        self._refresh_training_set()
        self._edit_in_segment_editor(segmentation, volume, segment_id)

    def _on_correct_result_clicked(self) -> None:
        """The latest result's organs copied into the CT's annotations, Segment Editor open on them (Adapt's labels)."""
        volume = self.parameters.input_volume
        latest = self.latest.get(volume.GetID()) if volume is not None else None
        if latest is None or latest.segmentation_node is None:
            raise InputError("no result on the chosen CT", "segment the CT under Input CT first, then Correct this result")
        copied = self.workflow.training_set.copy_result_for_correction(latest.segmentation_node, volume)
        if not copied:
            raise InputError("the result holds no organ", "segment the CT again, then correct the new result")
        segmentation = self.workflow.training_set.training_segmentation(volume)
        segmentation.GetDisplayNode().SetVisibility(True)
        latest.segmentation_node.GetDisplayNode().SetVisibility(False)  # drawn over the copies, it would hide the corrections
        self._edit_in_segment_editor(segmentation, volume, copied[0])

    @staticmethod
    def _edit_in_segment_editor(segmentation: vtkMRMLSegmentationNode, volume: vtkMRMLScalarVolumeNode, segment_id: str) -> None:
        slicer.util.selectModule("SegmentEditor")
        editor = slicer.util.getModuleWidget("SegmentEditor").editor
        editor.setSegmentationNode(segmentation)
        editor.setSourceVolumeNode(volume)
        editor.setCurrentSegmentID(segment_id)
        editor.setActiveEffectByName("Paint")

    def _refresh_training_set(self) -> None:
        names = [organ.name for organ in self.new_organs]
        summary = self.workflow.training_set.summarize(self.workflow.training_set.find_cases(names), names)
        self._fill_table(self.ui.trainingSetTableWidget, [
            [case.volume_name, case.segmentation_name, ", ".join(f"{name} {count}" for name, count in case.counts.items())] for case in summary
        ])
        self._update_buttons()

    # --- learn, accept, reject --------------------------------------------------------------
    def _on_learn_clicked(self) -> None:
        self.parameters.check_or_raise()
        self._show_guard_buttons(False)
        self.ui.guardLabel.text = ""
        job = self.workflow.learn_job(
            bundle=self._bundle_or_raise(), new_organs=self.new_organs, preset=self.parameters.preset, device=self.parameters.device,
            accept_forgetting=self.parameters.accept_forgetting, callbacks=self._callbacks(), on_done=self._on_learned,
        )
        self._start(job, f"Learning {', '.join(o.name for o in self.new_organs)}")

    def _on_adapt_clicked(self) -> None:
        self.parameters.check_or_raise()
        self._show_guard_buttons(False)
        self.ui.guardLabel.text = ""
        job = self.workflow.adapt_job(
            bundle=self._bundle_or_raise(), preset=self.parameters.preset, device=self.parameters.device,
            accept_forgetting=self.parameters.accept_forgetting, callbacks=self._callbacks(), on_done=self._on_adapted,
        )
        self._start(job, "Adapting the bundle's organs to this site")

    def _on_adapted(self, outcome: LearnOutcome) -> None:
        self._on_learned(outcome, organs_learned=False)  # the new organs still to learn stay listed

    def _on_learned(self, outcome: LearnOutcome, organs_learned: bool = True) -> None:
        self.last_learn = outcome
        if outcome.result.state is JobState.SUCCEEDED:
            self._load_bundle()
            self._show_guard_buttons(True)
            if organs_learned:
                self.new_organs = []
            self._on_segment_clicked(outcome.new_version)  # the new version on the same CT, beside the old result
        elif outcome.is_rejected:
            self._load_bundle()  # lists the rejected version
            self._show_guard_buttons(True)
            self.ui.acceptButton.text = f"Accept {outcome.new_version} anyway (the old organs changed)"
            self.ui.rejectButton.text = f"Keep {outcome.previous_version}"
        elif outcome.result.state is JobState.FAILED:
            show_error(outcome.result.to_error())

    def _show_guard_buttons(self, visible: bool) -> None:
        self.ui.acceptButton.visible = visible
        self.ui.rejectButton.visible = visible
        self.ui.acceptButton.text = "Accept new version"
        self.ui.rejectButton.text = "Reject new version (roll back)"

    def _on_accept_clicked(self) -> None:
        """A rejected step is made current as it was saved (recorded in bundle.json), without learning again."""
        self._show_guard_buttons(False)
        outcome = self.last_learn
        if outcome is not None and outcome.is_rejected and outcome.new_version:
            job = self.workflow.rollback_job(bundle=self._bundle_or_raise(), version=outcome.new_version,
                                             accept_forgetting=True, callbacks=self._callbacks(self._on_rejected_step_accepted))
            self._start(job, f"Accepting {outcome.new_version} despite the forgetting guard")

    def _on_rejected_step_accepted(self, result: JobResult) -> None:
        self._on_bundle_job_finished(result)
        if result.state is JobState.SUCCEEDED:
            self.new_organs = []
            self._on_segment_clicked(self.last_learn.new_version)  # the accepted version on the same CT, beside the old result

    def _on_reject_clicked(self) -> None:
        self._show_guard_buttons(False)
        if self.last_learn is not None and not self.last_learn.is_rejected:
            job = self.workflow.rollback_job(bundle=self._bundle_or_raise(), version=self.last_learn.previous_version,
                                             callbacks=self._callbacks(self._on_bundle_job_finished))
            self._start(job, f"Rejecting: back to {self.last_learn.previous_version}")

    # --- export -----------------------------------------------------------------------------
    def _on_export_clicked(self) -> None:
        """The latest result on the input CT, with the organs of the version that made it: a NIfTI label map
        here, or DICOM written by the engine (as in the studio), then offered to Slicer's DICOM database."""
        volume = self.parameters.input_volume
        latest = self.latest.get(volume.GetID()) if volume is not None else None
        if latest is None:
            raise InputError("nothing to export", "segment the input CT first")
        bundle = read_bundle_or_raise(self._bundle_or_raise().path, latest.version)
        folder = Path(self.ui.exportDirectoryButton.directory)
        chosen = self.ui.exportFormatComboBox.currentText
        if chosen == NIFTI_FORMAT:
            path = self.workflow.export_label_map(bundle=bundle, segmentation_node=latest.segmentation_node, volume_node=volume,
                                                  path=folder / f"{volume.GetName()}_organs_{latest.version}.nii.gz")
            slicer.util.infoDisplay(f"Exported to {path}", "CISSegmentation")
            return
        series = gather_files_or_raise(series_files_or_raise(self.scene, volume), self._new_folder("series"))
        job = self.workflow.dicom_export_job(bundle=bundle, segmentation_node=latest.segmentation_node, volume_node=volume, dicom_series=series,
                                             output=folder, formats=DICOM_CHOICES[chosen], callbacks=self._callbacks(), on_done=self._on_dicom_exported)
        self._start(job, f"Writing {chosen}")

    def _on_dicom_exported(self, outcome: DicomExportOutcome) -> None:
        if outcome.result.state is JobState.FAILED:
            show_error(outcome.result.to_error())
            return
        if outcome.result.state is not JobState.SUCCEEDED:
            return
        written = "\n".join(str(path) for path in outcome.outputs.values())
        if slicer.util.confirmYesNoDisplay(f"Wrote\n{written}\n\nAdd them to Slicer's DICOM database, beside the CT?", "CISSegmentation"):
            add_to_dicom_database(list(outcome.outputs.values()), self._new_folder("import"))

    def _new_folder(self, prefix: str) -> Path:
        return Path(tempfile.mkdtemp(prefix=f"{prefix}-", dir=self.workflow.work_dir))
