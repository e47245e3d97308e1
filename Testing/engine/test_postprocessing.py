"""Postprocessing (postprocessing.py): air cleared from the organs that never hold any, then each one-piece organ kept as
its large connected pieces; nothing else touched."""
import json

import nibabel as nib
import numpy as np
from ciss_test_helpers import run_cli
from scipy import ndimage

from ciss_engine.bundle import Bundle
from ciss_engine.postprocessing import AIR_HU, KEPT_SHARE_OF_LARGEST, keep_largest_pieces, never_air_labels, one_piece_labels, without_air
from ciss_engine.registry import ClassRegistry

EVERY_NEIGHBOUR = np.ones((3, 3, 3), bool)  # face, edge and corner neighbours: the postprocessing's connectivity


def _pieces(label: np.ndarray, value: int) -> int:
    return int(ndimage.label(label == value, structure=EVERY_NEIGHBOUR)[1])


def _smallest_share(label: np.ndarray, value: int) -> float:
    """The smallest piece of ``value`` over its largest (1 for one piece or none)."""
    pieces, count = ndimage.label(label == value, structure=EVERY_NEIGHBOUR)
    sizes = np.bincount(pieces.ravel())[1:]
    return float(sizes.min() / sizes.max()) if count else 1.0


def test_only_the_listed_organs_lose_their_smaller_pieces():
    label = np.zeros((12, 12, 12), np.uint8)
    label[1:4, 1:4, 1:4] = 1  # organ 1: 27 voxels here …
    label[9, 9, 9] = 1  # … and a stray voxel far away
    label[5, 5, 5] = label[6, 6, 6] = 1  # two voxels touching only by a corner: one piece of 2
    label[1:3, 8:10, 1:3] = 2  # organ 2, not listed: both its pieces stay
    label[10, 1, 10] = 2
    given = label.copy()
    kept = keep_largest_pieces(label, [1])
    np.testing.assert_array_equal(label, given)  # the caller's array is left as it was
    assert kept.dtype == np.uint8
    assert (kept == 1).sum() == 27 and kept[9, 9, 9] == 0 and kept[5, 5, 5] == 0  # the removed pieces become background
    np.testing.assert_array_equal(kept == 2, label == 2)
    np.testing.assert_array_equal(keep_largest_pieces(label, []), label)
    # Diagonal contact joins pieces: the corner-touching trio is one piece of three, the lone voxel goes.
    trio = np.zeros((8, 8, 8), np.uint8)
    trio[1, 1, 1] = trio[2, 2, 2] = trio[3, 3, 3] = 3
    trio[6, 6, 6] = 3
    assert (keep_largest_pieces(trio, [3]) == 3).sum() == 3


def test_two_pieces_of_similar_size_both_stay():
    """The network cannot tell which is the organ: keeping the larger alone deleted the true liver in the demo."""
    label = np.zeros((12, 12, 12), np.uint8)
    label[1:4, 1:4, 1:4] = 7  # 27 voxels
    label[7:10, 7:10, 7:9] = 7  # 18 voxels, two thirds of the largest
    label[11, 0, 11] = 7  # one voxel: an island
    kept = keep_largest_pieces(label, [7])
    assert (kept == 7).sum() == 27 + 18 and kept[11, 0, 11] == 0


def test_the_catalog_says_which_organs_are_one_piece():
    registry = ClassRegistry.from_names([("spleen", None), ("colon", None), ("tumour_bed", (255, 128, 0)), ("kidney_left", None)])
    assert one_piece_labels(registry) == [registry.by_name("spleen").label, registry.by_name("kidney_left").label]


def test_segment_keeps_one_piece_per_organ_unless_told_not_to(painting_bundle, phantom_cohort, tmp_path):
    image_path = phantom_cohort[3] / "image.nii.gz"
    version = Bundle.open_or_raise(painting_bundle).load()
    names = version.registry.names
    output, unprocessed = tmp_path / "organs.nii.gz", tmp_path / "raw.nii.gz"
    assert run_cli("segment", "-b", painting_bundle, "-i", image_path, "-o", output, "--no-preview", "--device", "cpu", "--quiet") == 0
    assert run_cli("segment", "-b", painting_bundle, "-i", image_path, "-o", unprocessed, "--no-preview", "--device", "cpu",
                   "--no-postprocessing", "--quiet") == 0
    kept, raw = (np.asarray(nib.load(str(path)).dataobj) for path in (output, unprocessed))
    labels = [version.registry.by_name(name).label for name in names]
    # The painting bundle paints islands; the postprocessing removes the small ones, a subset of the raw map stays.
    assert any(_pieces(raw, value) > _pieces(kept, value) for value in labels)
    assert all(_smallest_share(kept, value) >= KEPT_SHARE_OF_LARGEST for value in labels)
    assert np.all((kept == raw) | (kept == 0))
    assert json.loads(output.with_suffix("").with_suffix(".json").read_text())["largest_piece_only"] == names
    assert json.loads(unprocessed.with_suffix("").with_suffix(".json").read_text())["largest_piece_only"] == []


def test_a_model_imported_from_another_tool_keeps_its_own_outputs(painted_bundle, phantom_cohort, tmp_path):
    """Parity with the source tool a site validated: an imported version (``ciss.source``) is not postprocessed."""
    metadata_path = Bundle.open_or_raise(painted_bundle).load().path / "configs" / "metadata.json"
    metadata = json.loads(metadata_path.read_text())
    metadata["ciss"]["source"] = {"format": "monai-bundle", "name": "a site's model", "version": "1.0"}
    metadata_path.write_text(json.dumps(metadata))
    output = tmp_path / "organs.nii.gz"
    assert run_cli("segment", "-b", painted_bundle, "-i", phantom_cohort[3] / "image.nii.gz", "-o", output, "--no-preview", "--device", "cpu", "--quiet") == 0
    assert json.loads(output.with_suffix("").with_suffix(".json").read_text())["largest_piece_only"] == []
    assert json.loads(output.with_suffix("").with_suffix(".json").read_text())["air_cleared"] == []


def test_air_leaves_only_the_organs_that_never_hold_it():
    label = np.zeros((4, 4, 4), np.uint8)
    label[:2] = 1  # spleen: never air
    label[2:] = 2  # stomach: its lumen holds gas
    hounsfield = np.full(label.shape, 40.0)
    hounsfield[:, :2] = -900.0  # air over half of each organ
    hounsfield[:, 2, 0] = AIR_HU  # at the bound: not below it
    given = label.copy()
    cleared = without_air(label, hounsfield, [1])
    np.testing.assert_array_equal(label, given)
    assert cleared.dtype == np.uint8
    assert (cleared[:2, :2] == 0).all() and (cleared[:2, 2:] == 1).all()
    np.testing.assert_array_equal(cleared[2:], label[2:])


def test_the_catalog_says_which_organs_never_hold_air():
    registry = ClassRegistry.from_names([("spleen", None), ("stomach", None), ("urinary_bladder", None), ("tumour_bed", (255, 128, 0)),
                                         ("lung_left", None), ("gallbladder", None)])
    assert never_air_labels(registry) == [registry.by_name("spleen").label, registry.by_name("gallbladder").label]


def test_segment_clears_air_from_organs_before_keeping_their_pieces(painting_bundle, phantom_cohort, tmp_path):
    image_path = phantom_cohort[3] / "image.nii.gz"
    version = Bundle.open_or_raise(painting_bundle).load()
    output, unprocessed = tmp_path / "organs.nii.gz", tmp_path / "raw.nii.gz"
    assert run_cli("segment", "-b", painting_bundle, "-i", image_path, "-o", output, "--no-preview", "--device", "cpu", "--quiet") == 0
    assert run_cli("segment", "-b", painting_bundle, "-i", image_path, "-o", unprocessed, "--no-preview", "--device", "cpu",
                   "--no-postprocessing", "--quiet") == 0
    kept, raw = (np.asarray(nib.load(str(path)).dataobj) for path in (output, unprocessed))
    hounsfield = np.asarray(nib.load(str(image_path)).dataobj)
    never_air = never_air_labels(version.registry)
    in_air = np.isin(raw, never_air) & (hounsfield < AIR_HU)
    assert in_air.sum() > 0  # the painting paints organs in the air around the phantom
    assert not (np.isin(kept, never_air) & (hounsfield < AIR_HU)).any()
    np.testing.assert_array_equal(kept, keep_largest_pieces(without_air(raw, hounsfield, never_air), one_piece_labels(version.registry)))
    summaries = [json.loads(path.with_suffix("").with_suffix(".json").read_text()) for path in (output, unprocessed)]
    assert summaries[0]["air_cleared"] == [o.name for o in version.registry.organs if o.label in never_air] and summaries[1]["air_cleared"] == []
