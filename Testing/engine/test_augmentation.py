"""Patch augmentation: labels move with the image, cached teacher maps are never moved, draws are reproducible,
and the switch is recorded in the bundle."""
import json

import torch
from ciss_test_helpers import TINY_TRAIN_ARGS, run_cli
from monai.data import MetaTensor
from monai.transforms import RandAffined

from ciss_engine.training.augmentation import patch_augmentation
from ciss_engine.training.cases import PreparedCase
from ciss_engine.training.sampler import PatchSampler

PATCH = (24, 24, 24)


def _blob(shape: tuple[int, ...]) -> torch.Tensor:
    """An off-centre box, so any rotation, scaling or shear moves some of its voxels."""
    label = torch.zeros((1, *shape), dtype=torch.uint8)
    label[0, 4:14, 6:20, 3:12] = 1
    return label


def test_a_spatial_transform_moves_the_labels_with_the_image():
    augment = patch_augmentation(PATCH, with_maps=False)
    spatial = next(t for t in augment.transforms if isinstance(t, RandAffined))
    spatial.prob = 1.0  # this test is about the transform firing; its probability is a training choice
    label = _blob(PATCH)
    image = 0.2 + 0.6 * label.float()  # bright organ on dim tissue: the intensity transforms keep 0.5 between them
    moved_somewhere = False
    for seed in range(6):
        augment.set_random_state(seed=seed)
        out = augment({"image": MetaTensor(image.clone()), "label": MetaTensor(label.clone())})
        new_label = torch.as_tensor(out["label"])[0].round().long()
        moved_somewhere |= bool((new_label != label[0]).any())
        agreement = ((torch.as_tensor(out["image"])[0] > 0.5) == (new_label > 0)).float().mean()
        assert agreement > 0.97, f"seed {seed}: labels and image disagree on {1 - agreement:.1%} of the patch"
    assert moved_somewhere


def test_the_same_iteration_draws_the_same_augmented_patches():
    case = PreparedCase("a", MetaTensor(torch.rand((1, 40, 40, 40), generator=torch.Generator().manual_seed(0))), MetaTensor(_blob((40, 40, 40))), "x")
    sampler = PatchSampler([case], num_classes=2, patch_size=PATCH, batch_size=2, seed=3, augment=True)
    plain = PatchSampler([case], num_classes=2, patch_size=PATCH, batch_size=2, seed=3)
    first, again = sampler.batch(7), sampler.batch(7)
    assert torch.equal(first.images, again.images) and torch.equal(first.labels, again.labels)
    assert not all(torch.equal(sampler.batch(i).images, plain.batch(i).images) for i in range(8))  # it does augment


def test_cached_teacher_maps_stay_on_the_labels_they_were_computed_for():
    """With maps, no spatial transform may move image and labels away from the maps' voxels."""
    label = _blob((40, 40, 40))
    case = PreparedCase("a", MetaTensor(0.2 + 0.6 * label.float()), MetaTensor(label), "x")
    sampler = PatchSampler([case], num_classes=2, patch_size=PATCH, batch_size=2, seed=0, augment=True, maps=[label.float() * 5])
    for iteration in range(20):
        batch = sampler.batch(iteration)
        assert torch.equal(batch.maps[:, 0] / 5, batch.labels.float())


def test_no_augmentation_is_recorded_in_the_bundle(tmp_path, phantom_cohort):
    case = phantom_cohort[0]
    for flag, recorded in (([], True), (["--no-augmentation"], False)):
        output = tmp_path / f"bundle_{recorded}"
        assert run_cli("train", "-i", case / "image.nii.gz", "-l", case / "label_seg8.nii.gz", "--organs", "spleen=1", "--other-labels", "background",
                       "-o", output, *TINY_TRAIN_ARGS, *flag, "--quiet") == 0
        metadata = json.loads((output / "versions" / "1.0.0" / "configs" / "metadata.json").read_text())
        assert metadata["ciss"]["training"]["augmentation"] is recorded
