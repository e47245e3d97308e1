"""PatchSampler on its own (training/sampler.py): each patch is centred on a class present in any case, drawn
uniformly, in a case that holds it, or on background for ``background_share`` of the draws; the draws depend on (seed, iteration)
alone, so a resumed run gets the very patches an uninterrupted one got."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from ciss_engine.training.cases import PreparedCase
from ciss_engine.training.sampler import PatchSampler, iteration_seed

PATCH = (3, 3, 3)  # odd: the sampled voxel is the patch's centre
NUM_CLASSES = 4  # class 3 is in no case


def _case() -> PreparedCase:
    """A large organ (class 1), a small one (class 2, 8 voxels) and background; the image is 10 × the label."""
    label = torch.zeros((1, 16, 16, 16), dtype=torch.uint8)
    label[0, 2:6, 2:6, 2:6] = 1
    label[0, 9:11, 9:11, 9:11] = 2
    return PreparedCase("case", MetaTensor(label.float() * 10), MetaTensor(label), "sha")


def _sampler(seed: int = 0, background_share: float = 0.2, batch_size: int = 4) -> PatchSampler:
    return PatchSampler([_case()], num_classes=NUM_CLASSES, patch_size=PATCH, batch_size=batch_size, seed=seed, background_share=background_share)


@pytest.mark.parametrize("background_share", [0.2, 0.5])
def test_each_present_class_gets_an_equal_share_and_background_its_own(background_share):
    sampler = _sampler(background_share=background_share, batch_size=50)
    batches = [sampler.batch(iteration) for iteration in range(4)]
    centres = torch.cat([b.labels[:, 1, 1, 1] for b in batches])
    shares = torch.bincount(centres, minlength=NUM_CLASSES).float() / len(centres)
    organ_share = (1 - background_share) / 2
    assert shares.tolist() == pytest.approx([background_share, organ_share, organ_share, 0.0], abs=0.1)  # 200 draws: 3 standard deviations
    assert all(torch.equal(b.images[:, 0], b.labels.float() * 10) for b in batches), "image and label cropped alike"


def test_an_organ_labelled_in_one_case_of_two_gets_the_share_of_any_other():
    """The class is drawn before the case: drawn per case, the small organ (only in the first case) got half."""
    without_small = _case()
    without_small.label.as_tensor()[without_small.label.as_tensor() == 2] = 0
    sampler = PatchSampler([_case(), without_small], num_classes=NUM_CLASSES, patch_size=PATCH, batch_size=50, seed=0, background_share=0.2)
    centres = torch.cat([sampler.batch(iteration).labels[:, 1, 1, 1] for iteration in range(4)])
    shares = torch.bincount(centres, minlength=NUM_CLASSES).float() / len(centres)
    assert shares.tolist() == pytest.approx([0.2, 0.4, 0.4, 0.0], abs=0.1)


def test_background_patches_in_the_body_are_centred_inside_it_and_anywhere_otherwise():
    """A body (image 0.5) filling half of each axial slice, the rest air (0): drawn anywhere, background centres fall in
    the air about half of the time; with ``background_in_body`` never, while the organs keep their share."""
    case = _case()
    image = case.image.as_tensor()
    image[0, :, 8:, :] = 0.5  # the body: every y from 8 on, holding the small organ (class 2)
    image[0, :, :8, :] = 0.0  # air, holding the large organ's label (a label need not lie in the body)
    centres = {}
    for in_body in (False, True):
        sampler = PatchSampler([case], num_classes=NUM_CLASSES, patch_size=PATCH, batch_size=50, seed=0, background_share=0.5, background_in_body=in_body)
        batches = [sampler.batch(iteration) for iteration in range(4)]
        centres[in_body] = (torch.cat([b.labels[:, 1, 1, 1] for b in batches]), torch.cat([b.images[:, 0, 1, 1, 1] for b in batches]))
    for in_body, (labels, images) in centres.items():
        background_in_air = ((labels == 0) & (images == 0)).float().sum() / (labels == 0).sum()
        assert (background_in_air == 0) if in_body else (background_in_air > 0.25)
        assert (labels != 0).float().mean() == pytest.approx(0.5, abs=0.12)


def test_new_organs_weighted_w_times_an_old_one_get_that_share_of_the_organ_patches():
    """Organ 2 new, organ 1 old: at weight 3 the new one centres 3/4 of the organ patches (uniform: 1/2); background keeps its share."""
    shares = {}
    for weight in (1.0, 3.0):
        sampler = PatchSampler([_case()], num_classes=NUM_CLASSES, patch_size=PATCH, batch_size=100, seed=0, background_share=0.2,
                               new_organs=(2,), new_organ_weight=weight)
        centres = torch.cat([sampler.batch(iteration).labels[:, 1, 1, 1] for iteration in range(4)])
        shares[weight] = torch.bincount(centres, minlength=NUM_CLASSES).float() / len(centres)
    assert shares[1.0].tolist() == pytest.approx([0.2, 0.4, 0.4, 0.0], abs=0.07)  # 400 draws: over 3 standard deviations
    assert shares[3.0].tolist() == pytest.approx([0.2, 0.2, 0.6, 0.0], abs=0.07)


def _centres_drawn_before_the_weight(seed: int, iterations: int, batch_size: int, background_share: float, organs: list[int]) -> list[int]:
    """The centre classes in the draw order of samplers before ``new_organ_weight`` existed, for one case: background or
    not, the organ among all alike, the case among those holding it, the crop's seed."""
    centres = []
    for iteration in range(iterations):
        rng = np.random.default_rng(iteration_seed(seed, iteration))
        for _ in range(batch_size):
            background = rng.random() < background_share
            centres.append(0 if background else organs[int(rng.integers(len(organs)))])
            rng.integers(1)
            rng.integers(2**31 - 1)
    return centres


def test_a_weight_that_cannot_act_draws_what_samplers_drew_before_it_existed():
    """Weight 1, or no old organ beside the new ones: no extra random draw, so a step recorded before the setting
    existed is reproduced patch for patch."""
    expected = _centres_drawn_before_the_weight(2, 3, 4, 0.2, [1, 2])
    for new_organs, weight in (((), 1.0), ((2,), 1.0), ((1, 2), 3.0)):
        sampler = PatchSampler([_case()], num_classes=NUM_CLASSES, patch_size=PATCH, batch_size=4, seed=2, background_share=0.2,
                               new_organs=new_organs, new_organ_weight=weight)
        assert torch.cat([sampler.batch(iteration).labels[:, 1, 1, 1] for iteration in range(3)]).tolist() == expected


def test_the_same_seed_draws_the_same_patches_and_another_seed_others():
    first, again, other = _sampler(seed=3), _sampler(seed=3), _sampler(seed=4)
    for iteration in range(3):
        assert torch.equal(first.batch(iteration).labels, again.batch(iteration).labels)
        assert torch.equal(first.batch(iteration).images, again.batch(iteration).images)
    assert not all(torch.equal(first.batch(i).labels, other.batch(i).labels) for i in range(3))


def test_a_resumed_run_draws_what_the_uninterrupted_run_drew():
    uninterrupted = _sampler(seed=5)
    drawn = [uninterrupted.batch(iteration).labels for iteration in range(8)]
    resumed = _sampler(seed=5)  # a new process that starts at iteration 6
    assert [torch.equal(resumed.batch(i).labels, drawn[i]) for i in (6, 7, 6)] == [True, True, True]


def test_patches_reach_the_network_as_plain_tensors():
    """Cases are MetaTensors; their patches must not be: a MetaTensor sends every op of the forward and backward
    through MONAI's metadata tracking, and torch.compile refuses it."""
    batch = _sampler().batch(0)
    assert [type(t) for t in (batch.images, batch.labels)] == [torch.Tensor, torch.Tensor]
