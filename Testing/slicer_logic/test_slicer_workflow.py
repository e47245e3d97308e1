"""The panel's workflow with the real engine process on a tiny phantom bundle (``workflow_logic.py``, ``self_test.py``)."""
from __future__ import annotations

import shutil
import sys
import time

import nibabel as nib
import numpy as np
import pytest
from slicer_logic_helpers import REPO_ROOT

from CISSegmentationLib.bundle_reader import new_organ_or_raise, read_bundle_or_raise
from CISSegmentationLib.engine_commands import EngineLauncher
from CISSegmentationLib.errors import BundleError, InputError
from CISSegmentationLib.job_runner import JobCallbacks, JobState
from CISSegmentationLib.self_test import NEW_ORGAN, PhantomBundle, WorkflowSelfTest, build_phantom_bundle
from CISSegmentationLib.terminology import color_to_rgb

LAUNCHER = EngineLauncher(python=sys.executable, pythonpath=(str(REPO_ROOT),))


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
    assert bundle.history and bundle.history[-1]["version"] == "1.0.0"


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
    engine_labels = np.asarray(nib.load(str(outcome.result.done["output"])).dataobj)
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
    assert set(summary["learned"].forgetting_guard["agreement"]) == {"spleen", "kidney_right", "kidney_left"}
    exported = nib.load(str(summary["exported"]))
    assert set(np.unique(np.asarray(exported.dataobj)).tolist()) <= {0, 1, 2, 3, 4}
    # Rejecting the step afterwards is a rollback to the version before it.
    rollback = self_test.workflow.rollback_job(bundle=summary["bundle"], version=summary["learned"].previous_version)
    assert rollback.start().wait(timeout_s=300).state is JobState.SUCCEEDED
    assert read_bundle_or_raise(learning_copy).current == "1.0.0"


def test_step_rejected_by_the_forgetting_guard_stays_out_of_use(phantom, self_test, tmp_path):
    learning_copy = tmp_path / "bundle"
    shutil.copytree(phantom.bundle, learning_copy)
    bundle = read_bundle_or_raise(learning_copy)
    ct, labels = self_test.load_case(phantom.cases[1], "CT")
    self_test.paint_new_organ(bundle, self_test.workflow.segmentation_logic.create_segmentation(ct, name="training"), ct, labels)
    outcomes = []
    job = self_test.workflow.learn_job(
        bundle=bundle, new_organs=[new_organ_or_raise(bundle, NEW_ORGAN, None)], iterations=2, device="cpu",
        engine_options=["--guard-threshold", "1.0"], on_done=outcomes.append,  # agreement 1.0 = unchanged: any learning fails it
    )
    result = job.start().wait(timeout_s=600)
    assert result.state is JobState.REJECTED and result.exit_code == 6 and outcomes[0].is_rejected
    assert outcomes[0].forgetting_guard["passed"] is False and result.message
    after = read_bundle_or_raise(learning_copy)
    assert after.current == "1.0.0" and after.version_info("1.1.0").status == "rejected"


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
