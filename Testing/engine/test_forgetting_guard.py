import torch

from ciss_engine.forgetting_guard import GuardResult, check_forgetting, organs_known_absent


def test_agreement_is_pooled_dsc_per_old_organ():
    old = [torch.tensor([1, 1, 1, 1, 2, 0]), torch.tensor([1, 1, 0, 0, 0, 0])]
    new = [torch.tensor([1, 1, 1, 0, 0, 0]), torch.tensor([1, 1, 0, 0, 0, 3])]
    result = check_forgetting(old, new, [(1, "spleen"), (2, "liver"), (4, "gallbladder")], threshold=0.9)
    # spleen: intersection 3 + 2 = 5, sizes (4 + 2) + (3 + 2) = 11 → 10/11
    assert result.agreement["spleen"] == round(10 / 11, 4)
    assert result.agreement["liver"] == 0.0  # found by the parent, lost by the new model
    assert result.agreement["gallbladder"] is None  # never found by the parent: nothing to forget
    assert not result.passed and result.failing_organs == ["liver"]
    assert check_forgetting(old, old, [(1, "spleen"), (2, "liver")], threshold=0.9).passed


def test_voxels_labelled_as_a_new_organ_do_not_count_as_forgetting():
    # The parent called part of today's liver "spleen"; the new model calls it liver (id 3) there.
    old = [torch.tensor([1, 1, 1, 1, 0, 0])]
    new = [torch.tensor([1, 1, 3, 3, 0, 0])]
    liver_label = [torch.tensor([False, False, True, True, False, False])]
    organs = [(1, "spleen")]
    assert check_forgetting(old, new, organs, threshold=0.9).agreement["spleen"] == round(4 / 6, 4)
    corrected = check_forgetting(old, new, organs, threshold=0.9, new_organ_masks=liver_label)
    assert corrected.agreement["spleen"] == 1.0 and corrected.passed
    # A parent whose only spleen lies inside the new organ's label found nothing there to keep.
    assert check_forgetting(old, [torch.zeros(6, dtype=torch.long)], organs, threshold=0.9,
                            new_organ_masks=[torch.ones(6, dtype=torch.bool)]).agreement["spleen"] is None


def test_the_guard_judges_one_piece_organs_as_segment_outputs_them():
    """A stray island of spleen far from the spleen (dropped by ``ciss segment``'s postprocessing) costs no agreement
    when the spleen is a one-piece label; a spleen that moved still fails. Organs not named one-piece are compared raw."""
    old = torch.zeros(12, 6, 6, dtype=torch.uint8)
    old[1:5, 1:5, 1:5] = 1  # the spleen, 64 voxels
    old[8:10, 1:3, 1:3] = 2  # a liver, 8 voxels
    new = old.clone()
    new[10:12, 4:6, 4:6] = 1  # an 8-voxel island of spleen, far from it: 1/8 of the largest piece
    new[11, 0, 0] = 2  # a 1-voxel island of liver
    organs = [(1, "spleen"), (2, "liver")]
    raw = check_forgetting([old], [new], organs, threshold=0.9)
    assert raw.agreement == {"spleen": round(128 / 136, 4), "liver": round(16 / 17, 4)} and raw.postprocessed == ()
    kept = check_forgetting([old], [new], organs, threshold=0.9, one_piece=[1])
    assert kept.agreement == {"spleen": 1.0, "liver": round(16 / 17, 4)} and kept.postprocessed == ("spleen",)
    assert kept.to_json()["postprocessed"] == ["spleen"]
    # The parent's own island, which its users never saw, is not something the new version must keep.
    assert check_forgetting([new], [old], organs[:1], threshold=0.9, one_piece=[1]).agreement["spleen"] == 1.0
    moved = torch.zeros_like(old)
    moved[6:10, 2:6, 2:6] = 1
    assert check_forgetting([old], [moved], organs[:1], threshold=0.9, one_piece=[1]).agreement["spleen"] == 0.0


def test_an_old_organ_is_not_compared_on_a_ct_its_own_training_labels_said_it_lacks():
    """The parent's gallbladder on CT 1 is a mistake its training named (that CT's labels held none): the new version
    painting less of it forgets nothing. Left out there, the gallbladder is judged on CT 0 alone; the spleen on both."""
    old = [torch.tensor([1, 1, 4, 4, 0, 0]), torch.tensor([1, 1, 4, 4, 0, 0])]
    new = [torch.tensor([1, 1, 4, 4, 0, 0]), torch.tensor([1, 0, 0, 0, 0, 0])]
    organs = [(1, "spleen"), (4, "gallbladder")]
    everywhere = check_forgetting(old, new, organs, threshold=0.9)
    assert everywhere.agreement == {"spleen": round(6 / 7, 4), "gallbladder": round(4 / 6, 4)} and everywhere.known_absent == {}
    judged = check_forgetting(old, new, organs, threshold=0.9, known_absent=[frozenset(), frozenset({4})])
    assert judged.agreement == {"spleen": round(6 / 7, 4), "gallbladder": 1.0} and judged.known_absent == {"gallbladder": (1,)}
    assert judged.to_json()["known_absent"] == {"gallbladder": [1]} and GuardResult.from_json(judged.to_json()) == judged
    # Left out on every CT, the organ has nothing to be compared on.
    assert check_forgetting(old, new, organs, threshold=0.9, known_absent=[frozenset({4})] * 2).agreement["gallbladder"] is None


def test_an_organ_is_known_absent_where_a_base_or_organ_step_trained_it_and_that_cts_labels_held_none():
    history = [
        {"kind": "base", "organs": ["spleen", "gallbladder"], "data_sha256": ["ctA:labelA", "ctB:labelB"],
         "organs_per_case": [["spleen", "gallbladder"], ["spleen"]]},
        {"kind": "incremental", "organs": ["liver", "pancreas"], "data_sha256": ["ctB:new", "ctC:new"],
         "organs_per_case": [["liver", "pancreas"], ["liver"]]},
        # A domain step adds no organ: it teaches nothing absent about the organs it has no labels for.
        {"kind": "domain", "organs": [], "data_sha256": ["ctC:site"], "organs_per_case": [["spleen"]]},
        {"kind": "import", "organs": ["stomach"]},  # no per-case record (older bundles neither): nothing known
    ]
    organs = [(1, "spleen"), (2, "gallbladder"), (3, "liver"), (4, "pancreas"), (5, "stomach")]
    # CTs match by the image's hash, whatever label map the step brings with them.
    assert organs_known_absent(history, ["ctB:today", "ctC:today", "ctA:today", "ctD:today"], organs) == [
        frozenset({2}), frozenset({4}), frozenset(), frozenset()]


def test_an_organ_labelled_on_a_ct_in_one_run_is_not_absent_there_by_another():
    history = [
        {"kind": "base", "organs": ["spleen"], "data_sha256": ["ctA:l1"], "organs_per_case": [[]]},
        {"kind": "base", "organs": ["spleen"], "data_sha256": ["ctA:l2"], "organs_per_case": [["spleen"]]},
    ]
    assert organs_known_absent(history, ["ctA:x"], [(1, "spleen")]) == [frozenset()]
