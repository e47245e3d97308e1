"""Postprocessing (postprocessing.py): each one-piece organ kept as its largest connected piece, nothing else touched."""
import json

import nibabel as nib
import numpy as np
from ciss_test_helpers import run_cli
from scipy import ndimage

from ciss_engine.bundle import Bundle
from ciss_engine.postprocessing import keep_largest_pieces, one_piece_labels
from ciss_engine.registry import ClassRegistry

EVERY_NEIGHBOUR = np.ones((3, 3, 3), bool)  # face, edge and corner neighbours: the postprocessing's connectivity


def _pieces(label: np.ndarray, value: int) -> int:
    return int(ndimage.label(label == value, structure=EVERY_NEIGHBOUR)[1])


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
    # Diagonal contact joins pieces: with the corner-touching pair as the largest, both its voxels stay.
    pair = np.zeros((6, 6, 6), np.uint8)
    pair[1, 1, 1] = pair[2, 2, 2] = 3
    pair[4, 4, 4] = 3
    assert (keep_largest_pieces(pair, [3]) == 3).sum() == 2


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
    # The painting bundle paints islands; the postprocessing leaves one piece of every organ, a subset of the raw one.
    assert any(_pieces(raw, value) > 1 for value in labels)
    assert all(_pieces(kept, value) == 1 for value in labels)
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
