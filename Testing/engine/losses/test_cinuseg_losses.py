"""CiNuSeg's losses (METHOD.md §6) against hand-computed tensors: class anchors and their consistency (ACL),
FGL/BGL and hard negatives (DRR), the per-patch trade-off (ATT)."""
import math

import pytest
import torch

from ciss_engine.losses import UnbiasedCrossEntropy
from ciss_engine.losses.class_anchors import anchor_consistency, class_anchors
from ciss_engine.losses.representation_regularisation import background_claim, hard_negatives, new_organ_ce
from ciss_engine.losses.trade_off import trade_off_scales

from .voxel_tensors import features_from_vectors, logits_from_probabilities, voxel_labels

IGNORE = 255


def test_anchors_are_masked_means_per_patch_and_absent_classes_are_flagged():
    features = features_from_vectors([1.0, 0.0], [3.0, 2.0], [0.0, 5.0], [7.0, 7.0])
    pseudo = voxel_labels(1, 1, 2, IGNORE)
    anchors, present = class_anchors(features, pseudo, [1, 2, 3])
    torch.testing.assert_close(anchors[0, 0], torch.tensor([2.0, 1.0]))
    torch.testing.assert_close(anchors[0, 1], torch.tensor([0.0, 5.0]))
    assert present.tolist() == [[True, True, False]]


def test_a_coarser_stage_sees_each_organ_as_its_share_of_every_voxel_block():
    pseudo = torch.zeros(1, 2, 2, 2, dtype=torch.long)
    pseudo[0, 0, 0, 0] = 1  # an eighth of the single coarse voxel
    features = torch.tensor([2.0, -4.0]).reshape(1, 2, 1, 1, 1)
    anchors, present = class_anchors(features, pseudo, [1])
    torch.testing.assert_close(anchors[0, 0], torch.tensor([2.0, -4.0]))  # the only block's features
    assert bool(present[0, 0])


def test_anchor_consistency_is_one_minus_cosine_summed_over_old_organs_and_averaged_over_stages():
    pseudo = voxel_labels(1, 2, 0)
    old = features_from_vectors([1.0, 0.0], [0.0, 1.0], [9.0, 9.0])
    new = features_from_vectors([1.0, 1.0], [0.0, 1.0], [-9.0, 3.0])  # organ 1 turned by 45°, organ 2 kept, background free
    first = 1 - math.cos(math.pi / 4)
    torch.testing.assert_close(anchor_consistency([new], [old], pseudo, num_old=2), torch.tensor([first]))
    # Two stages, the second identical in both models: the mean over stages halves the term.
    torch.testing.assert_close(anchor_consistency([new, old], [old, old], pseudo, num_old=2), torch.tensor([first / 2]))
    # Only old organs count: calling voxel 0 a new organ (3) leaves nothing to hold.
    torch.testing.assert_close(anchor_consistency([new], [old], voxel_labels(3, 2, 0), num_old=2), torch.tensor([0.0]))


def test_only_the_current_model_receives_the_anchor_gradient():
    pseudo = voxel_labels(1, 1, 0)
    new = features_from_vectors([1.0, 0.0], [0.5, 0.5], [0.0, 1.0]).requires_grad_(True)
    old = features_from_vectors([0.0, 1.0], [0.2, 0.9], [1.0, 1.0]).requires_grad_(True)
    anchor_consistency([new], [old], pseudo, num_old=1).sum().backward()
    assert new.grad is not None and new.grad.abs().sum() > 0 and old.grad is None


def test_stages_must_pair_up():
    with pytest.raises(ValueError, match="same non-zero number of stages"):
        anchor_consistency([torch.zeros(1, 2, 1, 1, 2)], [], voxel_labels(1, 0), num_old=1)


def test_hard_negatives_are_new_organ_voxels_the_old_model_gives_to_an_old_organ_above_tau():
    # Old model over {0, spleen, kidney}; labels: new organ 3 at voxels 0-2, background at voxel 3.
    logits_old = logits_from_probabilities([0.1, 0.8, 0.1], [0.3, 0.6, 0.1], [0.9, 0.05, 0.05], [0.05, 0.9, 0.05])
    labels = voxel_labels(3, 3, 3, 0)
    assert hard_negatives(labels, logits_old, num_old=2, confidence=0.7).flatten().tolist() == [True, False, False, False]
    assert hard_negatives(labels, logits_old, num_old=2, confidence=0.5).flatten().tolist() == [True, True, False, False]


def test_foreground_and_background_terms_by_hand():
    # Current model over {0, spleen, liver(new)}: voxel 0 liver, voxel 1 liver, voxel 2 background (not counted).
    logits = logits_from_probabilities([0.2, 0.2, 0.6], [0.5, 0.1, 0.4], [0.9, 0.05, 0.05])
    foreground, background = (term(logits, voxel_labels(2, 2, 0), num_old=1) for term in (new_organ_ce, background_claim))
    torch.testing.assert_close(foreground, torch.tensor([-(math.log(0.6) + math.log(0.4)) / 2]))
    torch.testing.assert_close(background, torch.tensor([((0.2**2 + 0.2**2) + (0.5**2 + 0.1**2)) / 2]))
    none_new = [term(logits, voxel_labels(0, 0, IGNORE), num_old=1) for term in (new_organ_ce, background_claim)]
    assert [float(t) for t in none_new] == [0.0, 0.0]


def test_trade_off_scales_patches_dominated_by_new_organs_under_the_pseudo_labels():
    pseudo = torch.stack([
        torch.tensor([3, 3, 3, 3, 1, 0, 0, 0, 0, 0]),  # r = 0.8 > 0.7: rebalanced
        torch.tensor([3, 1, 1, 1, 2, 0, 0, 0, 0, 0]),  # r = 0.2
        torch.tensor([0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),  # neither: r = 0
        torch.tensor([3, 3, 3, IGNORE, IGNORE, IGNORE, IGNORE, 1, 1, 0]),  # r = 0.6: ignored voxels count for neither
    ]).reshape(4, 1, 1, 10)
    retention, learning = trade_off_scales(pseudo, 2, threshold=0.7, old_scale=10.0, new_scale=0.5)
    assert retention.tolist() == [10.0, 1.0, 1.0, 1.0] and learning.tolist() == [0.5, 1.0, 1.0, 1.0]


def test_voxel_losses_are_what_the_unbiased_ce_averages():
    logits = logits_from_probabilities([0.2, 0.3, 0.5], [0.6, 0.3, 0.1], [0.1, 0.1, 0.8])
    labels = voxel_labels(0, 2, IGNORE)
    loss = UnbiasedCrossEntropy(num_old=1)
    per_voxel, valid = loss.voxel_losses(logits, labels)
    torch.testing.assert_close(per_voxel.flatten(), torch.tensor([-math.log(0.5), -math.log(0.1), 0.0]))
    assert valid.flatten().tolist() == [True, True, False]
    torch.testing.assert_close(loss(logits, labels), per_voxel.sum() / 2)
