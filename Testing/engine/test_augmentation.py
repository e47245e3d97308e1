"""Patch augmentation: labels move with the image, cached teacher maps are never moved, draws are reproducible,
each organ gets its own contrast in base training inside the model's intensities, and the switches are recorded in
the bundle."""
import dataclasses
import json

import torch
from ciss_test_helpers import TINY_TRAIN_ARGS, new_organ_labels, run_cli, tiny_base
from monai.data import MetaTensor
from monai.transforms import Compose, RandAffined, RandGaussianNoised, RandShiftIntensityd

from ciss_engine.cli import build_parser
from ciss_engine.preprocessing import ModelIntensities, PreprocessingConfig
from ciss_engine.preprocessing_options import IntensityStep
from ciss_engine.registry import enhancing_organ_names
from ciss_engine.training import adapt, base, incremental
from ciss_engine.training.augmentation import NOISE_HU, ORGAN_CONTRAST_HU, SHIFT_HU, OrganContrast, RandOrganContrastd, patch_augmentation
from ciss_engine.training.base import BaseTrainingRequest, _fingerprint
from ciss_engine.training.cases import PreparedCase
from ciss_engine.training.loop_config import ORGAN_CONTRAST, SYNTHETIC_CASES, SYNTHETIC_SHARE, LoopConfig
from ciss_engine.training.sampler import PatchSampler

PATCH = (24, 24, 24)
OFFSETS = (-0.4, 0.4)


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
    sampler = PatchSampler([case], num_classes=2, patch_size=PATCH, batch_size=2, seed=3, augment=True, organ_contrast=OrganContrast(0.5, (1,)))
    plain = PatchSampler([case], num_classes=2, patch_size=PATCH, batch_size=2, seed=3)
    for iteration in range(4):
        first, again = sampler.batch(iteration), sampler.batch(iteration)
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


def test_organ_contrast_gives_each_enhancing_organ_its_own_offset_and_leaves_the_rest_and_the_labels_alone():
    shape = (40, 40, 40)
    label = torch.zeros((1, *shape), dtype=torch.uint8)
    label[0, 2:18, 2:18, 2:18] = 1
    label[0, 22:38, 22:38, 22:38] = 2
    label[0, 26:34, 2:10, 2:10] = 3  # an organ contrast does not brighten (bile, urine)
    image = torch.full((1, *shape), 0.5)
    transform = RandOrganContrastd(keys="image", label_key="label", organs=(1, 2), prob=1.0, offsets=OFFSETS)
    offsets = set()
    for seed in range(5):
        transform.set_random_state(seed=seed)
        out = transform({"image": MetaTensor(image.clone()), "label": MetaTensor(label.clone())})
        shown = torch.as_tensor(out["image"])[0]
        assert torch.equal(torch.as_tensor(out["label"]), label)
        # Organ interiors beyond the blend's reach (5 voxels in) shifted by one offset each; background far from
        # the organs untouched; a rim voxel between its organ's offset and none (partial volume).
        first, second = shown[7:13, 7:13, 7:13] - 0.5, shown[27:33, 27:33, 27:33] - 0.5
        assert float(first.max() - first.min()) < 1e-6 and float(second.max() - second.min()) < 1e-6
        first, second = float(first.mean()), float(second.mean())
        assert abs(first - second) > 1e-3 and all(OFFSETS[0] <= v <= OFFSETS[1] for v in (first, second))
        assert bool((shown[:8, 30, 30] == 0.5).all()) and bool((shown[26:34, 2:10, 2:10] == 0.5).all())
        assert 0 < (float(shown[2, 10, 10]) - 0.5) / first < 1
        offsets.add(round(first, 6))
    assert len(offsets) == 5, "each draw its own offsets"
    transform.prob = 0.0
    assert torch.equal(torch.as_tensor(transform({"image": MetaTensor(image.clone()), "label": MetaTensor(label)})["image"]), image)


def test_organ_contrast_keeps_offset_organs_inside_the_models_intensities():
    """Clipped as the normalisation clips a brighter or darker organ of a real CT; voxels it does not offset keep
    their values even outside the bounds (a resampling overshoot is not its business)."""
    label = torch.zeros((1, 32, 32, 32), dtype=torch.uint8)
    label[0, 2:14, 2:14, 2:14] = 1
    image = torch.full((1, 32, 32, 32), 1.05)
    image[label == 1] = 0.9
    for offsets, bounds, expected in (((0.3, 0.4), (0.0, 1.0), 1.0), ((-1.0, -0.95), (0.0, 1.0), 0.0), ((0.3, 0.4), (-0.5, 0.5), 0.5)):
        transform = RandOrganContrastd(keys="image", label_key="label", organs=(1,), prob=1.0, offsets=offsets, bounds=bounds)
        transform.set_random_state(seed=0)
        shown = torch.as_tensor(transform({"image": MetaTensor(image.clone()), "label": MetaTensor(label)})["image"])[0]
        assert bool((shown[5:11, 5:11, 5:11] == expected).all()), (offsets, bounds)
        assert bool((shown[20:, 20:, 20:] == 1.05).all())
    unbounded = RandOrganContrastd(keys="image", label_key="label", organs=(1,), prob=1.0, offsets=(0.3, 0.4))
    unbounded.set_random_state(seed=0)
    assert float(torch.as_tensor(unbounded({"image": MetaTensor(image.clone()), "label": MetaTensor(label)})["image"])[0, 8, 8, 8]) > 1.15


def _steps(*steps: dict) -> ModelIntensities:
    return PreprocessingConfig(hu_window=None, intensity=tuple(IntensityStep.from_json(step) for step in steps)).model_intensities()


def test_model_intensities_say_what_one_unit_is_in_hu_and_where_the_normalisation_clips():
    window = {"op": "scale_intensity_range", "a_min": -1000, "a_max": 1000, "b_min": -1, "b_max": 1}
    assert PreprocessingConfig().model_intensities() == ModelIntensities(425.0, (0.0, 1.0))
    assert PreprocessingConfig(hu_window=(-100.0, 200.0)).model_intensities() == ModelIntensities(300.0, (0.0, 1.0))
    assert _steps({**window, "clip": True}) == ModelIntensities(1000.0, (-1.0, 1.0))
    assert _steps({**window, "b_min": 2, "b_max": -2, "clip": True}) == ModelIntensities(500.0, (-2.0, 2.0))
    assert _steps(window) == ModelIntensities(1000.0, None)  # Hounsfield units have no top
    assert _steps({**window, "b_min": None, "b_max": None}) == ModelIntensities(2000.0, None)
    assert _steps({"op": "scale_intensity", "minv": -1, "maxv": 1}) == ModelIntensities(None, (-1.0, 1.0))  # per image
    assert _steps({"op": "scale_intensity", "minv": -1, "maxv": 1}, {"op": "normalize_intensity"}) == ModelIntensities(None, None)
    # nnU-Net's CT normalisation as imported (clip at percentiles, then a fixed z-score), then a second fixed map.
    assert _steps({**window, "clip": True}, {**window, "a_min": -1, "a_max": 1, "b_min": 0, "b_max": 10}) == ModelIntensities(200.0, (0.0, 10.0))


def test_the_augmentations_amounts_are_hounsfield_units_in_the_models_own_units():
    def amounts(intensities: ModelIntensities, augment: Compose | None = None) -> tuple:
        augment = augment or patch_augmentation(PATCH, with_maps=False, organ_contrast=OrganContrast(0.5, (1,)), intensities=intensities)
        (organ,) = [t for t in augment.transforms if isinstance(t, RandOrganContrastd)]
        (shift,) = [t for t in augment.transforms if isinstance(t, RandShiftIntensityd)]
        (noise,) = [t for t in augment.transforms if isinstance(t, RandGaussianNoised)]
        return organ.offsets, organ.bounds, shift.shifter.offsets, noise.rand_gaussian_noise.std

    assert amounts(ModelIntensities(425.0, (0.0, 1.0))) == ((-0.4, 0.4), (0.0, 1.0), (-0.05, 0.05), 0.03)  # as chosen on the window
    assert amounts(ModelIntensities(100.0, (-2.0, 3.0))) == (
        (-ORGAN_CONTRAST_HU / 100, ORGAN_CONTRAST_HU / 100), (-2.0, 3.0), (-SHIFT_HU / 100, SHIFT_HU / 100), NOISE_HU / 100)
    assert amounts(ModelIntensities(None, None)) == ((-0.4, 0.4), None, (-0.05, 0.05), 0.03)  # a per-image scale: the window's units
    case = PreparedCase("a", MetaTensor(torch.rand((1, 40, 40, 40))), MetaTensor(_blob((40, 40, 40))), "x")
    sampler = PatchSampler([case], num_classes=2, patch_size=PATCH, batch_size=1, seed=0, augment=True, organ_contrast=OrganContrast(0.5, (1,)),
                           intensities=ModelIntensities(100.0, (-2.0, 3.0)))
    assert amounts(ModelIntensities(100.0, (-2.0, 3.0)), sampler._augment) == amounts(ModelIntensities(100.0, (-2.0, 3.0)))


def test_every_training_path_draws_its_patches_in_the_bundles_intensities(tmp_path, phantom_cohort, monkeypatch):
    """Base training, ciss adapt and ciss learn hand their sampler the bundle's ModelIntensities: a model on another
    window gets organ contrast, shift and noise of the same HU, clipped at its own bounds."""
    handed = []

    class RecordingSampler(PatchSampler):
        def __init__(self, *args, **kwargs) -> None:
            handed.append(kwargs["intensities"])
            super().__init__(*args, **kwargs)

    for module in (base, adapt, incremental):
        monkeypatch.setattr(module, "PatchSampler", RecordingSampler)
    bundle = tmp_path / "b"
    tiny_base(phantom_cohort, bundle, organ_contrast=0.15, preprocessing=PreprocessingConfig(hu_window=(-100.0, 200.0), spacing_mm=(6.0, 6.0, 6.0), patch_size=(32, 32, 32)))
    case = phantom_cohort[1]
    image, kidney = case / "image.nii.gz", new_organ_labels(case, tmp_path / "kidney.nii.gz", {2: 1})
    spleen = new_organ_labels(case, tmp_path / "spleen.nii.gz", {1: 1})
    step = ["--iterations", "1", "--batch-size", "1", "--accept-forgetting", "--quiet"]
    assert run_cli("adapt", "-b", bundle, "-i", image, "-l", spleen, "--organs", "spleen=1", *step) == 0
    assert run_cli("learn", "-b", bundle, "--organ", "kidney_right", "-i", image, "-l", kidney, *step) == 0
    assert handed == [ModelIntensities(300.0, (0.0, 1.0))] * 3


def test_the_catalog_marks_perfused_organs_and_blood_as_enhancing():
    assert {"spleen", "kidney_right", "kidney_left", "liver", "pancreas", "aorta"} <= enhancing_organ_names()
    assert not {"gallbladder", "urinary_bladder", "esophagus", "stomach", "lung_left", "femur_right", "spinal_cord"} & enhancing_organ_names()


def test_base_training_draws_its_patches_with_the_requests_organ_contrast(tmp_path, phantom_cohort):
    """The request's share reaches the sampler (the same seed trains other weights), only for enhancing organs
    (a gallbladder-only model trains the same weights with or without), and the bundle records it."""
    plain, contrasted = (tiny_base(phantom_cohort, tmp_path / name, organ_contrast=share).load_state_dict() for name, share in (("plain", 0.0), ("contrast", 1.0)))
    assert any(not torch.equal(plain[k], contrasted[k]) for k in plain)
    bile = (("gallbladder", 4, None),)
    plain, contrasted = (tiny_base(phantom_cohort, tmp_path / name, bile, organ_contrast=share).load_state_dict() for name, share in (("bile_plain", 0.0), ("bile_contrast", 1.0)))
    assert all(torch.equal(plain[k], contrasted[k]) for k in plain)
    metadata = json.loads((tmp_path / "contrast" / "versions" / "1.0.0" / "configs" / "metadata.json").read_text())
    assert metadata["ciss"]["training"]["organ_contrast"] == 1.0


def test_no_augmentation_organ_contrast_and_synthetic_patients_are_recorded_in_the_bundle(tmp_path, phantom_cohort):
    """As they ran: --no-augmentation turns organ contrast off too, so its bundle records none; synthetic patients are
    not augmentation and stay, as many as asked for; their organ contrast is augmentation and goes; unless set, it is
    the site's share."""
    case = phantom_cohort[0]
    for index, (flag, augmentation, organ_contrast, synthetic_share, synthetic_cases, synthetic_organ_contrast) in enumerate((
        ([], True, ORGAN_CONTRAST, SYNTHETIC_SHARE, SYNTHETIC_CASES, ORGAN_CONTRAST),
        (["--organ-contrast", "0.4"], True, 0.4, SYNTHETIC_SHARE, SYNTHETIC_CASES, 0.4),
        (["--no-augmentation", "--organ-contrast", "0.3", "--synthetic-share", "0.3", "--synthetic-patients", "2"], False, 0.0, 0.3, 2, 0.0),
        (["--synthetic-organ-contrast", "0.3"], True, ORGAN_CONTRAST, SYNTHETIC_SHARE, SYNTHETIC_CASES, 0.3),
    )):
        output = tmp_path / f"bundle_{index}"
        assert run_cli("train", "-i", case / "image.nii.gz", "-l", case / "label_seg8.nii.gz", "--organs", "spleen=1", "--other-labels", "background",
                       "-o", output, *TINY_TRAIN_ARGS, *flag, "--quiet") == 0
        metadata = json.loads((output / "versions" / "1.0.0" / "configs" / "metadata.json").read_text())
        training = metadata["ciss"]["training"]
        assert (training["augmentation"], training["organ_contrast"]) == (augmentation, organ_contrast)
        assert (training["synthetic_share"], training["synthetic_cases"], training["synthetic_organ_contrast"]) == (synthetic_share, synthetic_cases, synthetic_organ_contrast)


def test_organ_contrast_is_part_of_a_runs_fingerprint_and_off_in_the_protocols_bases(tmp_path):
    """A run resumed with another share must not continue the checkpoint; the protocols' bases stay comparable with
    every result recorded before organ contrast existed."""
    request = BaseTrainingRequest(images=[], labels=[], organs=[("spleen", 1, None)], output=tmp_path / "b", loop=LoopConfig())
    assert _fingerprint(request, [], 1) != _fingerprint(dataclasses.replace(request, organ_contrast=0.3), [], 1)
    assert build_parser().parse_args(["protocol", "--data", "phantom", "-o", str(tmp_path)]).base_organ_contrast == 0.0
    assert build_parser().parse_args(["train", "-i", "a", "-l", "b", "--organs", "spleen", "-o", "c"]).organ_contrast == ORGAN_CONTRAST > 0
