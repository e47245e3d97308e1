"""Label map ⇄ segmentation with names, colours and terminology (tests ``segmentation_logic.py``)."""
from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import slicer
from slicer_logic_helpers import make_tiny_phantom, oblique_lps_affine

from ciss_engine.registry import ClassRegistry
from CISSegmentationLib.errors import InputError
from CISSegmentationLib.segmentation_logic import SegmentationLogic, binary_labelmap_name
from CISSegmentationLib.terminology import color_to_rgb
from CISSegmentationLib.volume_io import add_volume_from_array, write_array_nifti

# Label 1 spleen, 2 kidney_right (absent from the phantom), 3 liver.
REGISTRY = ClassRegistry.from_names([("spleen", None), ("kidney_right", None), ("liver", None)])


def _segment_names(node) -> list[str]:
    segmentation = node.GetSegmentation()
    return [segmentation.GetNthSegment(i).GetName() for i in range(segmentation.GetNumberOfSegments())]


@pytest.fixture
def phantom_scene(scene, tmp_path):
    phantom = make_tiny_phantom(oblique_lps_affine())
    ct = add_volume_from_array(scene, phantom.image, phantom.affine, name="ct")
    label_path = write_array_nifti(phantom.labels, phantom.affine, tmp_path / "labels.nii.gz")
    return scene, ct, phantom, label_path


def test_import_names_colours_and_codes_every_organ(phantom_scene):
    scene, ct, phantom, label_path = phantom_scene
    node = SegmentationLogic(scene).import_label_map(label_path, ct, REGISTRY.organs, name="ct organs")
    assert _segment_names(node) == ["spleen", "kidney_right", "liver"]
    segmentation = node.GetSegmentation()
    kidney = segmentation.GetSegment(segmentation.GetSegmentIdBySegmentName("kidney_right"))
    assert color_to_rgb(kidney.GetColor()) == REGISTRY.by_name("kidney_right").rgb
    entry = slicer.vtkSlicerTerminologyEntry()
    assert slicer.vtkSlicerTerminologiesModuleLogic.DeserializeTerminologyEntry(kidney.GetTerminology(), entry)
    assert (entry.GetTypeObject().GetCodingSchemeDesignator(), entry.GetTypeObject().GetCodeValue()) == ("SCT", "64033007")
    assert entry.GetTypeModifierObject().GetCodeMeaning() == "Right"
    assert entry.GetCategoryObject().GetCodeValue() == "123037004"
    counts = SegmentationLogic(scene).voxel_counts(node, ct, ["spleen", "kidney_right", "liver"])
    assert counts == {"spleen": phantom.counts[1], "kidney_right": 0, "liver": phantom.counts[3]}


def test_import_shows_3d_surfaces(phantom_scene):
    scene, ct, _, label_path = phantom_scene
    node = SegmentationLogic(scene).import_label_map(label_path, ct, REGISTRY.organs, name="ct organs", show_3d=True)
    closed_surface = slicer.vtkSegmentationConverter.GetSegmentationClosedSurfaceRepresentationName()
    assert node.GetSegmentation().ContainsRepresentation(closed_surface)
    spleen_id = node.GetSegmentation().GetSegmentIdBySegmentName("spleen")
    assert node.GetClosedSurfaceInternalRepresentation(spleen_id).GetNumberOfPoints() > 0
    assert node.GetDisplayNode().GetVisibility3D()


def test_export_round_trip_keeps_label_ids_and_the_full_ct_grid(phantom_scene, tmp_path):
    scene, ct, phantom, label_path = phantom_scene
    logic = SegmentationLogic(scene)
    node = logic.import_label_map(label_path, ct, REGISTRY.organs, name="ct organs", show_3d=False)
    written = nib.load(str(logic.export_label_map(node, ct, REGISTRY.organs, tmp_path / "out.nii.gz")))
    # Not cropped to the organs' bounding box (Slicer's default without a reference geometry).
    assert written.shape == phantom.labels.shape
    assert np.array_equal(np.asarray(written.dataobj), phantom.labels)
    assert np.allclose(written.affine, phantom.affine, atol=1e-5)


def test_segment_painted_by_hand_exports_with_the_requested_value(scene):
    phantom = make_tiny_phantom()
    ct = add_volume_from_array(scene, phantom.image, phantom.affine, name="ct")
    logic = SegmentationLogic(scene)
    node = logic.create_segmentation(ct, name="training")
    segment_id = logic.add_organ_segment(node, REGISTRY.by_name("liver"))
    mask = np.zeros(phantom.labels.shape, dtype=bool)
    mask[0:3, 0:2, 0:4] = True  # 3 × 2 × 4 = 24 voxels, touching the grid's corner
    logic.set_segment_mask(node, segment_id, mask, ct)
    labels = logic.label_array(node, ct, {"liver": 5, "not there": 9})
    assert labels.shape == phantom.labels.shape
    assert np.count_nonzero(labels == 5) == 24 and set(np.unique(labels)) == {0, 5}
    assert labels[0, 0, 0] == 5 and labels[3, 0, 0] == 0
    assert logic.add_organ_segment(node, REGISTRY.by_name("liver")) == segment_id  # no duplicate


def test_label_values_outside_the_bundle_are_refused(phantom_scene, tmp_path):
    scene, ct, phantom, _ = phantom_scene
    labels = phantom.labels.copy()
    labels[0, 0, 0] = 7
    path = write_array_nifti(labels, phantom.affine, tmp_path / "foreign.nii.gz")
    with pytest.raises(InputError, match=r"values \[7\]"):
        SegmentationLogic(scene).import_label_map(path, ct, REGISTRY.organs, name="x")


def test_segmentation_painted_on_another_grid_is_detected(scene):
    phantom = make_tiny_phantom()
    ct = add_volume_from_array(scene, phantom.image, phantom.affine, name="ct")
    half_voxel = phantom.affine.copy()
    half_voxel[:3, 3] += [0.75, 1.0, 1.25]
    other = add_volume_from_array(scene, phantom.image, half_voxel, name="other ct")
    whole_voxels = phantom.affine.copy()
    whole_voxels[:3, 3] += [3.0, 0.0, -5.0]  # 2 voxels along i, -2 along k: the same grid
    cropped = add_volume_from_array(scene, phantom.image, whole_voxels, name="cropped ct")
    logic = SegmentationLogic(scene)
    for source, should_pass in ((ct, True), (cropped, True), (other, False)):
        node = logic.create_segmentation(source, name=f"painted on {source.GetName()}")
        segment_id = logic.add_organ_segment(node, REGISTRY.by_name("spleen"))
        logic.set_segment_mask(node, segment_id, phantom.labels == 1, source)
        if should_pass:
            logic.check_on_grid_or_raise(node, ct, ["spleen"])
        else:
            with pytest.raises(InputError, match="not on the voxel grid of CT 'ct'") as caught:
                logic.check_on_grid_or_raise(node, ct, ["spleen"])
            assert "source volume" in caught.value.hint
    assert binary_labelmap_name() == "Binary labelmap"
