"""Training set collected from segmentation nodes across CTs (tests ``training_set.py``)."""
from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from slicer_logic_helpers import bundle_info, make_tiny_phantom, oblique_lps_affine

from ciss_engine.registry import make_organ, parse_organ_spec
from CISSegmentationLib.bundle_reader import new_organ_or_raise
from CISSegmentationLib.errors import InputError
from CISSegmentationLib.segmentation_logic import RESULT_ROLE, ROLE_ATTRIBUTE, TRAINING_ROLE, SegmentationLogic
from CISSegmentationLib.training_set import TrainingCase, TrainingSetLogic
from CISSegmentationLib.volume_io import add_volume_from_array
from CISSegmentationLib.workflow_logic import WorkflowLogic

NEW = ["gallbladder", "esophagus"]


def _paint(scene, ct, organ_masks: dict[str, np.ndarray], name: str):
    logic = SegmentationLogic(scene)
    node = logic.create_segmentation(ct, name=name)
    for organ_name, mask in organ_masks.items():
        segment_id = logic.add_organ_segment(node, make_organ(organ_name, 9))
        logic.set_segment_mask(node, segment_id, mask, ct)
    return node


@pytest.fixture
def two_cts(scene):
    first, second = make_tiny_phantom(), make_tiny_phantom(oblique_lps_affine())
    ct_a = add_volume_from_array(scene, first.image, first.affine, name="CT A")
    ct_b = add_volume_from_array(scene, second.image, second.affine, name="CT B/2")
    _paint(scene, ct_a, {"gallbladder": first.labels == 1}, "A training")
    _paint(scene, ct_b, {"gallbladder": second.labels == 1, "esophagus": second.labels == 3}, "B training")
    _paint(scene, ct_b, {"liver": second.labels == 3}, "B old organs")  # no new organ: not a case
    return scene, ct_a, ct_b, first


def test_cases_are_found_and_counted_per_ct(two_cts):
    scene, _, _, phantom = two_cts
    logic = TrainingSetLogic(scene)
    cases = logic.find_cases(NEW)
    assert [(c.volume_node.GetName(), c.segmentation_node.GetName()) for c in cases] == [("CT A", "A training"), ("CT B/2", "B training")]
    summary = logic.summarize(cases, NEW)
    assert [s.counts for s in summary] == [
        {"gallbladder": phantom.counts[1], "esophagus": 0},
        {"gallbladder": phantom.counts[1], "esophagus": phantom.counts[3]},
    ]


def test_written_label_files_hold_only_the_new_organs_as_1_to_n(two_cts, tmp_path):
    scene, ct_a, ct_b, phantom = two_cts
    logic = TrainingSetLogic(scene)
    files = logic.write_or_raise(logic.find_cases(NEW), NEW, tmp_path)
    assert [p.name for p in files.images] == ["case00_CT_A_image.nii.gz", "case01_CT_B_2_image.nii.gz"]
    label_b = nib.load(str(files.labels[1]))
    values, counts = np.unique(np.asarray(label_b.dataobj), return_counts=True)
    assert dict(zip(values.tolist(), counts.tolist())) == {0: 20 * 16 * 12 - 225, 1: 120, 2: 105}
    image_b = nib.load(str(files.images[1]))
    assert np.array_equal(image_b.affine, label_b.affine)
    assert np.allclose(image_b.affine, oblique_lps_affine(), atol=1e-5)
    assert np.array_equal(np.asarray(nib.load(str(files.labels[0])).dataobj), (phantom.labels == 1).astype(np.uint8))


def test_learn_without_annotation_is_refused(scene, tmp_path):
    phantom = make_tiny_phantom()
    ct = add_volume_from_array(scene, phantom.image, phantom.affine, name="CT")
    _paint(scene, ct, {"gallbladder": np.zeros(phantom.labels.shape, dtype=bool)}, "empty")
    logic = TrainingSetLogic(scene)
    with pytest.raises(InputError, match="'gallbladder' is not painted on any CT") as caught:
        logic.write_or_raise(logic.find_cases(["gallbladder"]), ["gallbladder"], tmp_path)
    assert "Segment Editor" in caught.value.hint
    with pytest.raises(InputError, match="no new organ"):
        logic.write_or_raise([], [], tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_annotation_on_a_different_grid_than_its_ct_is_refused(two_cts, tmp_path):
    scene, ct_a, ct_b, _ = two_cts
    logic = TrainingSetLogic(scene)
    painted_on_b = logic.find_cases(NEW)[1].segmentation_node
    with pytest.raises(InputError, match="not on the voxel grid of CT 'CT A'"):
        logic.write_or_raise([TrainingCase(ct_a, painted_on_b)], NEW, tmp_path)


def test_segmentation_without_ct_is_refused(scene, tmp_path):
    node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "orphan")
    node.GetSegmentation().AddEmptySegment("gallbladder", "gallbladder")
    logic = TrainingSetLogic(scene)
    cases = logic.find_cases(["gallbladder"])
    assert logic.summarize(cases, ["gallbladder"])[0].volume_name == "(no CT)"
    with pytest.raises(InputError, match="'orphan' has no CT"):
        logic.write_or_raise(cases, ["gallbladder"], tmp_path)


def test_new_organs_are_painted_in_one_training_segmentation_per_ct_apart_from_the_results(two_cts):
    scene, ct_a, ct_b, phantom = two_cts
    logic = TrainingSetLogic(scene)
    result = logic.segmentation_logic.create_segmentation(ct_b, name="CT B organs 1.1.0", role=RESULT_ROLE)
    predicted = logic.segmentation_logic.add_organ_segment(result, make_organ("esophagus", 5))  # a version that already knew it
    logic.segmentation_logic.set_segment_mask(result, predicted, np.ones(phantom.labels.shape, dtype=bool), ct_b)
    training_b = logic.training_segmentation(ct_b)
    assert training_b not in (result, *(case.segmentation_node for case in logic.find_cases(NEW)))  # neither a result nor a user's node
    assert training_b.GetName() == "CT B/2 annotations" and training_b.GetAttribute(ROLE_ATTRIBUTE) == TRAINING_ROLE
    assert training_b.GetNodeReference(training_b.GetReferenceImageGeometryReferenceRole()) is ct_b
    assert logic.training_segmentation(ct_b) is training_b and logic.training_segmentation(ct_a) is not training_b
    # The result's predicted esophagus is no training case: only the painted nodes are.
    assert [c.segmentation_node.GetName() for c in logic.find_cases(NEW)] == ["A training", "B training"]
    painted = logic.segmentation_logic.add_organ_segment(training_b, make_organ("esophagus", 5))
    logic.segmentation_logic.set_segment_mask(training_b, painted, phantom.labels == 3, ct_b)
    assert [(c.segmentation_name, c.counts) for c in logic.summarize(logic.find_cases(["esophagus"]), ["esophagus"])] == [
        ("B training", {"esophagus": phantom.counts[3]}), ("CT B/2 annotations", {"esophagus": phantom.counts[3]}),
    ]


def test_a_step_sends_its_organs_in_label_order(two_cts, tmp_path):
    """The engine numbers a step's organs in ``--organ`` order, so that order must follow the labels the panel gave."""
    scene, _, _, _ = two_cts
    bundle = bundle_info(tmp_path / "bundle", ["spleen", "kidney_right", "kidney_left"])
    gallbladder = new_organ_or_raise(bundle, "gallbladder", None)
    esophagus = new_organ_or_raise(bundle, "esophagus", None, pending=[gallbladder])
    job = WorkflowLogic(scene, work_dir=tmp_path / "runs").learn_job(bundle=bundle, new_organs=[esophagus, gallbladder])
    assert [parse_organ_spec(spec)[0] for spec in job.command[job.command.index("--organ") + 1].split(",")] == ["gallbladder", "esophagus"]
    label_b = np.asarray(nib.load(job.command[job.command.index("-l") + 2]).dataobj)  # CT B holds both organs
    assert dict(zip(*(v.tolist() for v in np.unique(label_b, return_counts=True)))) == {0: 20 * 16 * 12 - 225, 1: 120, 2: 105}


def _result_on(scene, ct, masks: dict[str, np.ndarray], name: str):
    """A result of the engine on ``ct``: one segment per organ."""
    logic = SegmentationLogic(scene)
    node = logic.create_segmentation(ct, name=name, role=RESULT_ROLE)
    for label, (organ_name, mask) in enumerate(masks.items(), start=1):
        logic.set_segment_mask(node, logic.add_organ_segment(node, make_organ(organ_name, label)), mask, ct)
    return node


def test_a_result_copied_for_correction_becomes_the_adapt_labels_and_the_result_stays(two_cts, tmp_path):
    scene, ct_a, ct_b, phantom = two_cts
    logic = TrainingSetLogic(scene)
    spleen, liver = phantom.labels == 1, phantom.labels == 3
    result = _result_on(scene, ct_a, {"spleen": spleen, "liver": liver}, "CT A organs 1.0.0")
    stale = logic.segmentation_logic.add_organ_segment(logic.training_segmentation(ct_a), make_organ("spleen", 1))  # an earlier copy
    logic.segmentation_logic.set_segment_mask(logic.training_segmentation(ct_a), stale, np.ones(phantom.labels.shape, dtype=bool), ct_a)

    copied = logic.copy_result_for_correction(result, ct_a)
    training = logic.training_segmentation(ct_a)
    names = [training.GetSegmentation().GetSegment(segment_id).GetName() for segment_id in copied]
    assert names == ["spleen", "liver"]
    assert training.GetSegmentation().GetNumberOfSegments() == 2  # the stale spleen replaced, not kept beside its copy
    assert logic.segmentation_logic.voxel_counts(training, ct_a, ["spleen", "liver"]) == {"spleen": 120, "liver": 105}  # the stale copy replaced
    # The correction: half of the spleen erased. The labels follow the correction; the result keeps the model's prediction.
    corrected = spleen.copy()
    corrected[4:] = False
    logic.segmentation_logic.set_segment_mask(training, copied[0], corrected, ct_a)
    assert logic.segmentation_logic.voxel_counts(result, ct_a, ["spleen"]) == {"spleen": 120}
    bundle = bundle_info(tmp_path / "bundle", ["spleen", "kidney_right", "liver"])
    job = WorkflowLogic(scene, work_dir=tmp_path / "runs").adapt_job(bundle=bundle)
    assert job.command[job.command.index("--organs") + 1] == "spleen=1,liver=3"  # kidney_right is drawn nowhere: not a label
    written = [path for path in job.command[job.command.index("-l") + 1:] if path.endswith("_label.nii.gz")]
    by_ct = {Path(path).name.split("_", 1)[1]: path for path in written}
    assert sorted(by_ct) == ["CT_A_label.nii.gz", "CT_B_2_label.nii.gz"]  # CT B: the user's own liver
    labels_a = np.asarray(nib.load(by_ct["CT_A_label.nii.gz"]).dataobj)
    assert np.array_equal(labels_a == 1, corrected) and np.array_equal(labels_a == 3, liver)


def test_only_a_result_on_the_same_ct_is_copied_for_correction(two_cts):
    scene, ct_a, ct_b, phantom = two_cts
    logic = TrainingSetLogic(scene)
    painted = logic.find_cases(NEW)[0].segmentation_node  # the user's own segmentation, not a result
    with pytest.raises(InputError, match="not a result of the engine"):
        logic.copy_result_for_correction(painted, ct_a)
    result_b = _result_on(scene, ct_b, {"spleen": phantom.labels == 1}, "CT B organs 1.0.0")
    with pytest.raises(InputError, match="not a result on CT 'CT A'"):
        logic.copy_result_for_correction(result_b, ct_a)
