"""The panel's workflow with the real engine process on a tiny phantom bundle (``workflow_logic.py``, ``self_test.py``)."""
from __future__ import annotations

import json
import shutil
import sys
import time

import nibabel as nib
import numpy as np
import pydicom
import pytest
from engine.dicom.synthetic_dicom import write_ct_series
from slicer_logic_helpers import REPO_ROOT

from ciss_engine.errors import ExitCode
from CISSegmentationLib.bundle_reader import new_organ_or_raise, read_bundle_or_raise
from CISSegmentationLib.dicom_export import gather_files_or_raise
from CISSegmentationLib.engine_commands import EngineLauncher
from CISSegmentationLib.errors import BundleError, InputError
from CISSegmentationLib.job_runner import JobCallbacks, JobState
from CISSegmentationLib.segmentation_logic import RESULT_ROLE
from CISSegmentationLib.self_test import NEW_ORGAN, NEW_ORGAN_VALUE, PhantomBundle, WorkflowSelfTest, build_phantom_bundle
from CISSegmentationLib.terminology import color_to_rgb
from CISSegmentationLib.volume_io import read_volume_nifti

LAUNCHER = EngineLauncher(python=sys.executable, pythonpath=(str(REPO_ROOT),))
STOMACH_VALUE = 8  # in the phantom's seg8 labels


@pytest.fixture(scope="module")
def phantom(tmp_path_factory) -> PhantomBundle:
    return build_phantom_bundle(LAUNCHER, tmp_path_factory.mktemp("phantom_bundle"))


@pytest.fixture
def self_test(scene, tmp_path) -> WorkflowSelfTest:
    return WorkflowSelfTest(scene, tmp_path, launcher=LAUNCHER, log=lambda _: None)


def test_bundle_lists_organs_versions_and_history(phantom):
    bundle = read_bundle_or_raise(phantom.bundle)
    assert [o.name for o in bundle.organs] == ["spleen", "kidney_right", "kidney_left"]
    assert [(v.version, v.status) for v in bundle.versions] == [("1.0.0", "current")]
    assert bundle.history and bundle.history[-1].version == "1.0.0"


def test_no_bundle_chosen_is_refused(tmp_path):
    with pytest.raises(BundleError, match="no bundle chosen") as caught:
        read_bundle_or_raise("")
    assert "bundle.json" in caught.value.hint
    with pytest.raises(BundleError, match="bundle not found"):
        read_bundle_or_raise(tmp_path / "nowhere")


def test_segment_all_organs_gives_one_named_coloured_segmentation(phantom, self_test):
    bundle = read_bundle_or_raise(phantom.bundle)
    ct, _ = self_test.load_case(phantom.cases[1], "CT")
    outcome = self_test.segment(bundle, ct)
    assert outcome.result.state is JobState.SUCCEEDED and outcome.version == "1.0.0"
    node = outcome.segmentation_node
    segmentation = node.GetSegmentation()
    names = [segmentation.GetNthSegment(i).GetName() for i in range(segmentation.GetNumberOfSegments())]
    assert names == ["spleen", "kidney_right", "kidney_left"]
    spleen = segmentation.GetSegment(segmentation.GetSegmentIdBySegmentName("spleen"))
    assert color_to_rgb(spleen.GetColor()) == bundle.registry.by_name("spleen").rgb
    assert "78961009" in spleen.GetTerminology()  # SNOMED CT Spleen
    engine_labels = np.asarray(nib.load(outcome.result.done.output).dataobj)
    in_scene = self_test.workflow.segmentation_logic.label_array(node, ct, {o.name: o.label for o in bundle.organs})
    assert np.array_equal(in_scene, engine_labels)  # what Slicer shows is exactly what the engine wrote


def test_segment_needs_a_ct(phantom, self_test):
    with pytest.raises(InputError, match="no CT chosen"):
        self_test.workflow.segment_job(bundle=read_bundle_or_raise(phantom.bundle), volume_node=None)


def test_engine_failure_shows_its_message_and_leaves_the_scene_alone(phantom, self_test, tmp_path):
    damaged = tmp_path / "damaged"
    shutil.copytree(phantom.bundle, damaged)
    (damaged / "versions" / "1.0.0" / "models" / "model.pt").write_bytes(b"not a checkpoint")
    bundle = read_bundle_or_raise(damaged)
    ct, _ = self_test.load_case(phantom.cases[1], "CT")
    outcomes, logs = [], []
    job = self_test.workflow.segment_job(bundle=bundle, volume_node=ct, on_done=outcomes.append, callbacks=JobCallbacks(on_log=logs.append))
    result = job.start().wait(timeout_s=600)
    assert result.state is JobState.FAILED and result.exit_code == 4
    assert "model.pt" in result.message and result.hint
    # What the panel's message box and the studio show: the engine's error report, although its stderr was empty.
    error = result.to_error()
    assert (error.message, error.hint) == (result.message, result.hint)
    assert f"error: {result.message}\n  hint: {result.hint}" in error.log_tail
    assert outcomes[0].segmentation_node is None
    assert self_test.scene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode") == 0


def test_rollback_to_an_unknown_version_is_refused_before_any_process(phantom, self_test):
    with pytest.raises(BundleError, match="version 9.9.9 is not in"):
        self_test.workflow.rollback_job(bundle=read_bundle_or_raise(phantom.bundle), version="9.9.9")


def _cancel_after_first_progress(job, timeout_s: float = 600):
    """Start ``job``, cancel it once it reports progress, and return its result."""
    progress = []
    job.callbacks.on_progress = progress.append
    job.start()
    deadline = time.monotonic() + timeout_s
    while job.poll() and not progress:
        assert time.monotonic() < deadline, "the engine reported no progress"
        time.sleep(0.1)
    job.cancel()
    return job.wait(timeout_s=120), progress


def test_cancel_during_real_training_stops_the_engine_and_writes_no_bundle(phantom, tmp_path):
    output = tmp_path / "never"
    job = LAUNCHER.job(
        "train", "-i", phantom.cases[0] / "image.nii.gz", "-l", phantom.cases[0] / "label_seg8.nii.gz", "--organs", "spleen=1",
        "--other-labels", "background", "-o", output, "--iterations", "100000", "--patch-size", "32", "--init-filters", "8", "--batch-size", "1",
        cancel_grace_s=120,  # the engine stops at its next iteration, however slow a loaded machine makes that
    )
    result, progress = _cancel_after_first_progress(job)
    assert progress and result.state is JobState.CANCELLED and result.exit_code == 130
    assert not (output / "bundle.json").exists()


def test_whole_workflow_adds_the_new_organ(phantom, self_test, tmp_path):
    learning_copy = tmp_path / "bundle"
    shutil.copytree(phantom.bundle, learning_copy)
    summary = self_test.run_all(PhantomBundle(phantom.cases, learning_copy))
    assert summary["painted"] > 0
    assert summary["learned"].new_version == "1.1.0" and summary["bundle"].current == "1.1.0"
    after = summary["after"].segmentation_node.GetSegmentation()
    assert after.GetSegmentIdBySegmentName(NEW_ORGAN)
    assert summary["before"].segmentation_node.GetScene() is self_test.scene  # the old result stays for comparison
    assert not summary["before"].segmentation_node.GetSegmentation().GetSegmentIdBySegmentName(NEW_ORGAN)  # ... without the strokes
    # The new version's result holds the new organ too, but only the painted training segmentation is a case.
    assert [case.segmentation_node for case in self_test.workflow.training_set.find_cases([NEW_ORGAN])] == [summary["training"]]
    assert set(summary["learned"].forgetting_guard.agreement) == {"spleen", "kidney_right", "kidney_left"}
    exported = nib.load(str(summary["exported"]))
    assert set(np.unique(np.asarray(exported.dataobj)).tolist()) <= {0, 1, 2, 3, 4}
    # Rejecting the step afterwards is a rollback to the version before it.
    rollback = self_test.workflow.rollback_job(bundle=summary["bundle"], version=summary["learned"].previous_version)
    assert rollback.start().wait(timeout_s=300).state is JobState.SUCCEEDED
    assert read_bundle_or_raise(learning_copy).current == "1.0.0"


def test_step_rejected_by_the_guard_stays_out_of_use_until_accepted_as_it_is(phantom, self_test, tmp_path):
    """Two organs in one step keep the labels the panel gave them; Accept makes the rejected version current without learning again."""
    learning_copy = tmp_path / "bundle"
    shutil.copytree(phantom.bundle, learning_copy)
    bundle = read_bundle_or_raise(learning_copy)
    ct, labels = self_test.load_case(phantom.cases[1], "CT")
    liver = new_organ_or_raise(bundle, NEW_ORGAN, None)
    stomach = new_organ_or_raise(bundle, "stomach", None, pending=[liver])
    training = self_test.workflow.training_set.training_segmentation(ct)
    for organ, value in ((liver, NEW_ORGAN_VALUE), (stomach, STOMACH_VALUE)):
        segment_id = self_test.workflow.segmentation_logic.add_organ_segment(training, organ)
        self_test.workflow.segmentation_logic.set_segment_mask(training, segment_id, labels == value, ct)
    outcomes = []
    job = self_test.workflow.learn_job(
        bundle=bundle, new_organs=[stomach, liver], iterations=2, device="cpu",
        engine_options=["--guard-threshold", "1.0"], on_done=outcomes.append,  # agreement 1.0 = unchanged: any learning fails it
    )
    result = job.start().wait(timeout_s=600)
    assert result.state is JobState.REJECTED and result.exit_code == ExitCode.FORGETTING_REJECTED and outcomes[0].is_rejected
    assert outcomes[0].forgetting_guard.passed is False and result.message
    assert outcomes[0].new_version == "1.1.0"
    after = read_bundle_or_raise(learning_copy)
    assert after.current == "1.0.0" and after.version_info("1.1.0").status == "rejected"

    refused = self_test.workflow.rollback_job(bundle=after, version="1.1.0").start().wait(timeout_s=300)
    assert refused.state is JobState.FAILED and "rejected by the forgetting guard" in refused.message and "--accept-forgetting" in refused.hint
    accepted = self_test.workflow.rollback_job(bundle=after, version="1.1.0", accept_forgetting=True).start().wait(timeout_s=300)
    assert accepted.state is JobState.SUCCEEDED and accepted.done.previous == "1.0.0"
    now = read_bundle_or_raise(learning_copy)
    assert now.current == "1.1.0" and json.loads((learning_copy / "bundle.json").read_text())["accepted_versions"] == ["1.1.0"]
    assert [v.version for v in now.versions] == ["1.0.0", "1.1.0"]  # accepted as saved: no second learning run
    assert [(o.name, o.label) for o in now.organs] == [("spleen", 1), ("kidney_right", 2), ("kidney_left", 3), ("liver", liver.label), ("stomach", stomach.label)]
    assert (liver.label, stomach.label) == (4, 5)


def _dicom_ct_in_scene(self_test: WorkflowSelfTest, case, folder):
    """The phantom CT written as a DICOM series, and in the scene on that series' own grid (as read from it)."""
    image = nib.load(str(case / "image.nii.gz"))
    spacing = float(image.header.get_zooms()[0])
    series = write_ct_series(folder / "dicom", np.asarray(image.dataobj).astype(np.int16), pixel_spacing=(spacing, spacing), slice_step=spacing)
    nib.save(nib.Nifti1Image(np.asarray(image.dataobj).astype(np.int16), series.expected_affine_ras()), str(folder / "ct.nii.gz"))
    return series, read_volume_nifti(self_test.scene, folder / "ct.nii.gz", name="CT")


def test_dicom_export_writes_the_shown_result_through_the_engine_from_a_gathered_series(phantom, self_test, tmp_path):
    series, ct = _dicom_ct_in_scene(self_test, phantom.cases[1], tmp_path)
    truth = np.asarray(nib.load(str(phantom.cases[1] / "label_seg8.nii.gz")).dataobj)
    labels = tmp_path / "organs.nii.gz"  # the phantom's spleen and left kidney (bundle labels 1 and 3), a result in the scene
    nib.save(nib.Nifti1Image(np.where(np.isin(truth, (1, 3)), truth, 0).astype(np.uint8), series.expected_affine_ras()), str(labels))
    bundle = read_bundle_or_raise(phantom.bundle, "1.0.0")
    result_node = self_test.workflow.segmentation_logic.import_label_map(labels, ct, bundle.organs, name="result", show_3d=False)
    # The desktop panel gathers the series' files from Slicer's DICOM database folders into a folder of its own.
    gathered = gather_files_or_raise(sorted(series.folder.iterdir()), tmp_path / "gathered")
    assert sorted(path.resolve() for path in gathered.iterdir()) == sorted(path.resolve() for path in series.folder.iterdir())
    outcomes = []
    output = tmp_path / "out"
    job = self_test.workflow.dicom_export_job(bundle=bundle, segmentation_node=result_node, volume_node=ct, dicom_series=gathered, output=output,
                                              on_done=outcomes.append)
    result = job.start().wait(timeout_s=300)
    assert result.state is JobState.SUCCEEDED, result.log_tail
    assert outcomes[0].outputs == {"rtstruct": output / "rtstruct.dcm", "seg": output / "seg.dcm"}
    rtstruct, seg = pydicom.dcmread(output / "rtstruct.dcm"), pydicom.dcmread(output / "seg.dcm")
    referenced = rtstruct.ReferencedFrameOfReferenceSequence[0].RTReferencedStudySequence[0].RTReferencedSeriesSequence[0]
    assert referenced.SeriesInstanceUID == series.series_uid == seg.ReferencedSeriesSequence[0].SeriesInstanceUID
    # The organs of the segmentation node, not of the bundle: the right kidney is empty and gets no contour.
    assert [roi.ROIName for roi in rtstruct.StructureSetROISequence] == ["spleen", "kidney_left"]
    assert [segment.SegmentLabel for segment in seg.SegmentSequence] == ["spleen", "kidney_left"]


def test_dicom_export_refuses_a_missing_series_folder_before_any_run(phantom, self_test, tmp_path):
    _series, ct = _dicom_ct_in_scene(self_test, phantom.cases[1], tmp_path)
    bundle = read_bundle_or_raise(phantom.bundle)
    node = self_test.workflow.segmentation_logic.create_segmentation(ct, name="result")
    with pytest.raises(InputError, match="gone") as raised:
        self_test.workflow.dicom_export_job(bundle=bundle, segmentation_node=node, volume_node=ct, dicom_series=tmp_path / "gone", output=tmp_path / "out")
    assert "read the CT from its DICOM folder" in raised.value.hint
    with pytest.raises(InputError, match="no DICOM files"):
        gather_files_or_raise([], tmp_path / "empty")


def test_adapt_learns_the_site_from_the_organs_drawn_and_never_from_results(phantom, self_test, tmp_path):
    adapting = tmp_path / "bundle"
    shutil.copytree(phantom.bundle, adapting)
    bundle = read_bundle_or_raise(adapting)
    ct, labels = self_test.load_case(phantom.cases[1], "site CT")
    logic = self_test.workflow.segmentation_logic
    # The site's contours: the spleen drawn, the left kidney a segment left empty.
    contours = logic.create_segmentation(ct, name="site contours")
    for name, mask in (("spleen", labels == 1), ("kidney_left", np.zeros(labels.shape, bool))):
        logic.set_segment_mask(contours, logic.add_organ_segment(contours, bundle.registry.by_name(name)), mask, ct)
    # A result of the model holds every organ; it must not become a label of the step.
    result_labels = tmp_path / "result.nii.gz"
    nib.save(nib.Nifti1Image(np.where(labels <= 3, labels, 0).astype(np.uint8), nib.load(str(phantom.cases[1] / "image.nii.gz")).affine), str(result_labels))
    logic.import_label_map(result_labels, ct, bundle.organs, name="result", show_3d=False, role=RESULT_ROLE)
    outcomes = []
    job = self_test.workflow.adapt_job(bundle=bundle, preset="quick", iterations=2, device="cpu", accept_forgetting=True, on_done=outcomes.append)
    assert job.command[job.command.index("--organs") + 1] == "spleen=1"
    result = job.start().wait(timeout_s=600)
    assert result.state is JobState.SUCCEEDED, result.log_tail
    assert outcomes[0].new_version == "1.1.0" and outcomes[0].previous_version == "1.0.0"
    step = read_bundle_or_raise(adapting).history[-1]
    assert step.kind == "domain" and step.details["labelled_organs"] == ["spleen"]


def test_adapt_needs_an_organ_drawn_somewhere(phantom, self_test):
    ct, _ = self_test.load_case(phantom.cases[1], "site CT")
    self_test.workflow.segmentation_logic.create_segmentation(ct, name="empty contours")
    with pytest.raises(InputError, match="no organ of the bundle is drawn"):
        self_test.workflow.adapt_job(bundle=read_bundle_or_raise(phantom.bundle), preset="quick", iterations=2)


def test_cancel_during_learning_leaves_the_bundle_unchanged(phantom, self_test, tmp_path):
    learning_copy = tmp_path / "bundle"
    shutil.copytree(phantom.bundle, learning_copy)
    bundle = read_bundle_or_raise(learning_copy)
    ct, labels = self_test.load_case(phantom.cases[1], "CT")
    training = self_test.workflow.segmentation_logic.create_segmentation(ct, name="training")
    self_test.paint_new_organ(bundle, training, ct, labels)
    organ = new_organ_or_raise(bundle, NEW_ORGAN, None)
    result, _ = _cancel_after_first_progress(self_test.workflow.learn_job(bundle=bundle, new_organs=[organ], iterations=10_000, device="cpu"))
    assert result.state is JobState.CANCELLED
    assert [v.version for v in read_bundle_or_raise(learning_copy).versions] == ["1.0.0"]
