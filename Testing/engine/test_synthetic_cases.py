"""Synthetic phantom patients beside a site's CTs in base training (training/synthetic_cases.py, the sampler's pools)."""
from __future__ import annotations

import dataclasses
import io
import json

import numpy as np
import pytest
import torch
from ciss_test_helpers import tiny_base
from monai.data import MetaTensor

from ciss_engine.cli import build_parser
from ciss_engine.events import EventSink, ProgressMode
from ciss_engine.phantom import case_seed, generate_case
from ciss_engine.preprocessing import PreprocessingConfig
from ciss_engine.registry import ClassRegistry
from ciss_engine.training.base import BaseTrainingRequest, _fingerprint
from ciss_engine.training.cases import PreparedCase
from ciss_engine.training.augmentation import OrganContrast
from ciss_engine.training.loop_config import SYNTHETIC_CASES, SYNTHETIC_SHARE, LoopConfig
from ciss_engine.training.sampler import PatchSampler
from ciss_engine.training.synthetic_cases import synthetic_cases

CONFIG = PreprocessingConfig(spacing_mm=(6.0, 6.0, 6.0), patch_size=(32, 32, 32))
QUIET = EventSink(ProgressMode.QUIET)


def _registry(*names: str) -> ClassRegistry:
    return ClassRegistry.from_names([(name, None) for name in names])


def test_synthetic_patients_are_the_phantom_drawn_on_the_network_grid_with_the_runs_class_ids():
    """The liver is the run's class 1 and the phantom's value 7: each organ lands on its own class, the phantom's
    other organs on background; the first patient's image is the phantom's CT in the model's [0, 1] window, the second
    shows it as the portal-venous site does (its kidneys enhanced), the fourth as the first again (three sites in turn)."""
    registry = _registry("liver", "spleen")
    cases = synthetic_cases(registry, 0.5, count=4, seed=0, config=CONFIG, sink=QUIET)
    assert len(cases) == 4 and all(case.synthetic for case in cases)
    low, high = CONFIG.hu_window
    for index in (0, 1, 3):
        case = cases[index]
        drawn = generate_case(case_seed(0, index), shape=(56, 48, 40), spacing=(6.0, 6.0, 6.0))
        label, image = case.label[0].numpy(), case.image[0].numpy()
        assert label.shape == drawn.label.shape
        assert np.array_equal(label == registry.by_name("liver").label, drawn.label == 7)
        assert np.array_equal(label == registry.by_name("spleen").label, drawn.label == 1)
        assert set(np.unique(label).tolist()) == {0, 1, 2}
        as_generated = np.clip((drawn.image - low) / (high - low), 0.0, 1.0)
        kidneys = np.isin(drawn.label, (2, 3))
        if index % 3 == 0:
            np.testing.assert_allclose(image, as_generated, atol=1e-5)
        else:  # portal-venous: +120 HU in the kidneys, then the site's calibration (x 1.05 + 50 HU) and noise
            assert image[kidneys].mean() - as_generated[kidneys].mean() > 150.0 / (high - low)


def test_the_same_seed_draws_the_same_synthetic_patients_and_another_seed_others():
    registry = _registry("spleen")
    first, again, other = (synthetic_cases(registry, 0.5, count=2, seed=seed, config=CONFIG, sink=QUIET) for seed in (0, 0, 1))
    assert all(torch.equal(a.image, b.image) and torch.equal(a.label, b.label) for a, b in zip(first, again))
    assert not any(torch.equal(a.label, b.label) for a, b in zip(first, other))


def test_no_synthetic_patients_without_a_share_or_for_an_organ_the_phantom_does_not_draw():
    """The phantom would call an aorta it drew background: a run learning one gets no synthetic patients, and says why."""
    assert synthetic_cases(_registry("spleen"), 0.0, count=2, seed=0, config=CONFIG, sink=QUIET) == []
    log = io.StringIO()
    assert synthetic_cases(_registry("spleen", "aorta"), 0.5, count=2, seed=0, config=CONFIG, sink=EventSink(ProgressMode.JSONL, stdout=io.StringIO(), stderr=log)) == []
    assert "aorta" in log.getvalue()


def _uniform_case(value: float, synthetic: bool) -> PreparedCase:
    """A case whose every voxel reads ``value``, with one organ in its middle: where a patch came from shows in its mean."""
    label = torch.zeros((1, 16, 16, 16), dtype=torch.uint8)
    label[:, 6:10, 6:10, 6:10] = 1
    return PreparedCase(name=str(value), image=MetaTensor(torch.full((1, 16, 16, 16), value)), label=MetaTensor(label), sha256=str(value), synthetic=synthetic)


def test_the_sampler_draws_the_synthetic_share_of_its_patches_however_many_synthetic_patients_there_are():
    """Four synthetic patients beside one site CT: drawn case by case they would take 4/5 of the patches."""
    cases = [_uniform_case(0.25, False)] + [_uniform_case(0.75, True) for _ in range(4)]
    for share in (0.2, 0.7):
        sampler = PatchSampler(cases, num_classes=2, patch_size=(8, 8, 8), batch_size=1, seed=0, synthetic_share=share)
        from_synthetic = np.mean([float(sampler.batch(i).images.mean()) > 0.5 for i in range(300)])
        assert from_synthetic == pytest.approx(share, abs=0.08)


def test_a_sampler_without_a_synthetic_share_draws_the_site_patches_it_drew_before():
    """Synthetic cases at share 0 change no draw: runs without synthetic patients train as they did."""
    site = _uniform_case(0.25, False)
    site.image[0, :8] = 0.5  # patches from different places differ
    plain = PatchSampler([site], num_classes=2, patch_size=(8, 8, 8), batch_size=2, seed=3)
    beside = PatchSampler([site, _uniform_case(0.75, True)], num_classes=2, patch_size=(8, 8, 8), batch_size=2, seed=3, synthetic_share=0.0)
    for iteration in range(10):
        assert torch.equal(plain.batch(iteration).images, beside.batch(iteration).images)
    with pytest.raises(ValueError, match="synthetic_share"):
        PatchSampler([site], num_classes=2, patch_size=(8, 8, 8), batch_size=1, seed=0, synthetic_share=1.0)


def _uniform_case_with_organ(value: float, synthetic: bool) -> PreparedCase:
    """32³ voxels of ``value`` with an 8³ organ in the middle: a 24³ patch's medians read the organ and its
    surroundings, whatever smoothing does at the patch's faces."""
    label = torch.zeros((1, 32, 32, 32), dtype=torch.uint8)
    label[:, 12:20, 12:20, 12:20] = 1
    return PreparedCase(name=str(value), image=MetaTensor(torch.full((1, 32, 32, 32), value)), label=MetaTensor(label), sha256=str(value), synthetic=synthetic)


def test_synthetic_patches_get_their_own_organ_contrast_and_the_sites_patches_keep_theirs():
    """Organ contrast in every synthetic patch and in no site patch: the phantom's organ steps away from its
    surroundings, and the site's patches are the very ones a sampler without the synthetic setting draws."""
    cases = [_uniform_case_with_organ(0.25, False), _uniform_case_with_organ(0.75, True)]

    def sampler(synthetic_organ_contrast: OrganContrast | None) -> PatchSampler:
        return PatchSampler(cases, num_classes=2, patch_size=(24, 24, 24), batch_size=1, seed=0, augment=True, synthetic_share=0.5,
                            synthetic_organ_contrast=synthetic_organ_contrast)

    def organ_step(images: torch.Tensor, labels: torch.Tensor) -> float:
        organ = labels[:, None] == 1
        return abs(float(images[organ].median() - images[~organ].median()))

    contrasted, plain = sampler(OrganContrast(1.0, (1,))), sampler(None)
    steps: dict[str, list[float]] = {"contrasted": [], "plain": []}
    for iteration in range(40):
        with_it, without = contrasted.batch(iteration), plain.batch(iteration)
        if float(without.images.median()) > 0.5:
            steps["contrasted"].append(organ_step(with_it.images, with_it.labels))
            steps["plain"].append(organ_step(without.images, without.labels))
        else:
            assert torch.equal(with_it.images, without.images)
    assert len(steps["plain"]) >= 10 and max(steps["contrasted"]) > 0.1 and max(steps["plain"]) < 0.02


def test_base_training_gives_the_synthetic_patches_the_requests_organ_contrast(tmp_path, phantom_cohort):
    plain, contrasted = (_trained(phantom_cohort, tmp_path / name, 0.5, synthetic_organ_contrast=share) for name, share in (("plain", 0.0), ("contrast", 1.0)))
    assert any(not torch.equal(plain["state"][k], contrasted["state"][k]) for k in plain["state"])
    assert (plain["training"]["synthetic_organ_contrast"], contrasted["training"]["synthetic_organ_contrast"]) == (0.0, 1.0)
    assert "synthetic patients (0.5 of the patches, organ contrast 1)" in contrasted["log"]
    assert "synthetic patients (0.5 of the patches, organ contrast 0)" in plain["log"]


def _trained(cohort, output, synthetic_share: float, organs=(("spleen", 1, None), ("liver", 7, None)), **request_fields) -> dict:
    """A tiny base's weights, the training record its bundle wrote and the lines it logged."""
    log = io.StringIO()
    sink = EventSink(ProgressMode.JSONL, stdout=io.StringIO(), stderr=log)
    state = tiny_base(cohort, output, organs, sink=sink, synthetic_share=synthetic_share, **request_fields).load_state_dict()
    training = json.loads((output / "versions" / "1.0.0" / "configs" / "metadata.json").read_text())["ciss"]["training"]
    return {"state": state, "training": training, "log": log.getvalue()}


def test_base_training_draws_patches_from_synthetic_patients_at_the_requests_share_and_records_it(tmp_path, phantom_cohort):
    plain, mixed = _trained(phantom_cohort, tmp_path / "plain", 0.0), _trained(phantom_cohort, tmp_path / "mixed", 0.5, synthetic_cases=2)
    assert any(not torch.equal(plain["state"][k], mixed["state"][k]) for k in plain["state"])
    assert (plain["training"]["synthetic_share"], plain["training"]["synthetic_cases"]) == (0.0, 0)
    assert (mixed["training"]["synthetic_share"], mixed["training"]["synthetic_cases"]) == (0.5, 2)
    custom = _trained(phantom_cohort, tmp_path / "custom", 0.5, organs=(("spleen", 1, None), ("lesion", 2, (200, 40, 40))))
    assert (custom["training"]["synthetic_share"], custom["training"]["synthetic_cases"]) == (0.0, 0)


def test_the_synthetic_share_and_patients_are_part_of_a_runs_fingerprint_and_flags_of_ciss_train(tmp_path):
    request = BaseTrainingRequest(images=[], labels=[], organs=[("spleen", 1, None)], output=tmp_path / "b", loop=LoopConfig())
    assert _fingerprint(request, [], 1) != _fingerprint(dataclasses.replace(request, synthetic_share=0.2), [], 1)
    assert _fingerprint(request, [], 1) != _fingerprint(dataclasses.replace(request, synthetic_cases=SYNTHETIC_CASES + 1), [], 1)
    assert _fingerprint(request, [], 1) != _fingerprint(dataclasses.replace(request, synthetic_organ_contrast=0.1), [], 1)
    # Unset, the synthetic patches get the site's share: the same training as that share set.
    assert _fingerprint(request, [], 1) == _fingerprint(dataclasses.replace(request, synthetic_organ_contrast=request.organ_contrast), [], 1)
    assert _fingerprint(request, [], 1) != _fingerprint(dataclasses.replace(request, organ_contrast=0.5), [], 1)
    train = ["train", "-i", "a", "-l", "b", "--organs", "spleen", "-o", "c"]
    assert build_parser().parse_args(train).synthetic_share == SYNTHETIC_SHARE
    assert build_parser().parse_args([*train, "--synthetic-share", "0.3"]).synthetic_share == 0.3
    with pytest.raises(SystemExit):
        build_parser().parse_args([*train, "--synthetic-share", "1"])
    assert build_parser().parse_args(train).synthetic_patients == SYNTHETIC_CASES
    assert build_parser().parse_args([*train, "--synthetic-patients", "9"]).synthetic_patients == 9
    with pytest.raises(SystemExit):
        build_parser().parse_args([*train, "--synthetic-patients", "0"])
    assert build_parser().parse_args(train).synthetic_organ_contrast is None
