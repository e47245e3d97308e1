"""Appearance replay: every base and domain step records its organs' median intensities, and a later domain step shows
a share of its organ-contrast patches as an earlier site showed them, by the offsets from its own medians to the
recorded ones."""
import dataclasses
import json

import nibabel as nib
import numpy as np
import pytest
import torch
from ciss_test_helpers import new_organ_labels, run_cli
from monai.data import MetaTensor

from ciss_engine.cli import build_parser
from ciss_engine.events import EventSink, ProgressMode
from ciss_engine.preprocessing import PreprocessingConfig
from ciss_engine.registry import ClassRegistry
from ciss_engine.training import adapt
from ciss_engine.training.adapt import AdaptRequest, _fingerprint
from ciss_engine.training.augmentation import RandOrganContrastd, organ_contrast_for
from ciss_engine.training.cases import PreparedCase, prepare_cases
from ciss_engine.training.loop_config import LoopConfig
from ciss_engine.training.sampler import PatchSampler
from ciss_engine.training.site_appearance import APPEARANCE_KEY, organ_medians, recorded_appearances, replay_offsets

SHAPE = (40, 40, 40)
TINY = PreprocessingConfig(spacing_mm=(6.0, 6.0, 6.0), patch_size=(32, 32, 32))
SPLEEN_HU = 170.0


def _two_organs() -> torch.Tensor:
    label = torch.zeros((1, *SHAPE), dtype=torch.uint8)
    label[0, 2:18, 2:18, 2:18] = 1
    label[0, 22:38, 22:38, 22:38] = 2
    return label


def _shown(transform: RandOrganContrastd, seed: int, image: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
    transform.set_random_state(seed=seed)
    return torch.as_tensor(transform({"image": MetaTensor(image.clone()), "label": MetaTensor(label.clone())})["image"])[0]


def test_a_replayed_patch_shows_one_recorded_sites_offsets_and_an_organ_it_lacks_unchanged():
    label, image = _two_organs(), torch.full((1, *SHAPE), 0.5)
    sites = ({1: 0.2, 2: -0.1}, {1: -0.3})
    transform = RandOrganContrastd(keys="image", label_key="label", organs=(1, 2), prob=1.0, offsets=(-0.4, 0.4), replay=1.0, recorded=sites)
    seen = set()
    for seed in range(8):
        shown = _shown(transform, seed, image, label)
        first, second = shown[7:13, 7:13, 7:13] - 0.5, shown[27:33, 27:33, 27:33] - 0.5  # interiors beyond the rim's blend
        offsets = (float(first.mean()), float(second.mean()))
        assert float(first.max() - first.min()) < 1e-6 and float(second.max() - second.min()) < 1e-6
        matching = [i for i, expected in enumerate(((0.2, -0.1), (-0.3, 0.0))) if offsets == pytest.approx(expected, abs=1e-5)]
        assert len(matching) == 1, offsets
        seen.add(matching[0])
    assert len(seen) == 2, "each recorded site is drawn"


def test_a_replay_share_mixes_recorded_and_random_patches_and_none_draws_exactly_as_before():
    label, image = _two_organs(), torch.full((1, *SHAPE), 0.5)
    site = ({1: 0.2, 2: -0.1},)
    arguments = {"keys": "image", "label_key": "label", "organs": (1, 2), "prob": 1.0, "offsets": (-0.4, 0.4)}
    plain = RandOrganContrastd(**arguments)
    unused = RandOrganContrastd(**arguments, replay=0.0, recorded=site)
    nothing_recorded = RandOrganContrastd(**arguments, replay=1.0, recorded=())
    half = RandOrganContrastd(**arguments, replay=0.5, recorded=site)
    replayed = 0
    for seed in range(12):
        before = _shown(plain, seed, image, label)
        assert torch.equal(_shown(unused, seed, image, label), before) and torch.equal(_shown(nothing_recorded, seed, image, label), before)
        replayed += abs(float(_shown(half, seed, image, label)[10, 10, 10]) - 0.7) < 1e-4
    assert 0 < replayed < 12


def test_an_organs_median_is_taken_on_its_labels_over_every_case():
    label = _two_organs()
    image = torch.full((1, *SHAPE), 0.1)
    image[label == 1] = 0.3
    elsewhere = torch.zeros_like(label)
    elsewhere[0, 30:, :10, :10] = 1  # a sampling label over other voxels: what the old model believed, not the organ
    image[elsewhere == 1] = 0.9
    second = torch.full((1, *SHAPE), 0.5)
    second[label == 1] = 0.5
    cases = [PreparedCase("a", MetaTensor(image), MetaTensor(label), "x", MetaTensor(elsewhere)),
             PreparedCase("b", MetaTensor(second), MetaTensor(label * (label == 1)), "y")]
    registry = ClassRegistry.from_names([("spleen", None), ("liver", None), ("stomach", None)])
    medians = organ_medians(cases, registry)
    assert medians == {"spleen": pytest.approx(0.3), "liver": pytest.approx(0.1)}  # liver only in the first case, stomach nowhere
    image[label == 1] = 0.4
    second[label == 1] = 0.4
    assert organ_medians(cases, registry)["spleen"] == pytest.approx(0.4)  # the median of the pooled voxels


def test_the_offsets_move_this_sites_organs_to_each_recorded_sites_and_skip_what_either_lacks():
    history = [{"version": "1.0.0", APPEARANCE_KEY: {"spleen": 0.3, "liver": 0.5}}, {"version": "2.0.0"},
               {"version": "2.1.0", APPEARANCE_KEY: {"spleen": 0.6, "kidney_left": 0.4}}]
    recorded = recorded_appearances(history)
    assert recorded == [{"spleen": 0.3, "liver": 0.5}, {"spleen": 0.6, "kidney_left": 0.4}]
    assert replay_offsets(recorded, {"spleen": 0.4, "liver": 0.45}) == ({"spleen": pytest.approx(-0.1), "liver": pytest.approx(0.05)},
                                                                        {"spleen": pytest.approx(0.2)})
    # A site that recorded none of this step's organs is no site to replay: it would show the patch unchanged.
    assert replay_offsets([{"kidney_left": 0.4}, {"spleen": 0.5}], {"spleen": 0.4}) == ({"spleen": pytest.approx(0.1)},)
    registry = ClassRegistry.from_names([("spleen", None), ("liver", None), ("kidney_left", None)])
    organ_contrast = organ_contrast_for(0.5, registry, replay=1.0, recorded=replay_offsets(recorded, {"spleen": 0.4, "liver": 0.45}))
    assert organ_contrast.labels == (1, 2, 3) and organ_contrast.recorded == ({1: pytest.approx(-0.1), 2: pytest.approx(0.05)}, {1: pytest.approx(0.2)})


def test_appearance_replay_is_part_of_a_runs_fingerprint_and_a_flag_of_adapt_and_the_protocol(tmp_path):
    request = AdaptRequest(bundle=tmp_path, images=[], labels=[], loop=LoopConfig())
    assert _fingerprint(request, "1.0.0", []) != _fingerprint(dataclasses.replace(request, appearance_replay=0.5), "1.0.0", [])
    assert build_parser().parse_args(["adapt", "-b", "b", "-i", "a", "-l", "c", "--appearance-replay", "0.5"]).appearance_replay == 0.5
    assert build_parser().parse_args(["protocol", "--data", "phantom", "-o", "o", "--step-appearance-replay", "1"]).step_appearance_replay == 1.0


def _medians_of(image, label, organs: list[tuple[str, int]]) -> dict[str, float]:
    registry = ClassRegistry.from_names([(name, None) for name, _ in organs])
    cases = prepare_cases([image], [label], value_to_class={value: registry.by_name(name).label for name, value in organs},
                          other_labels="background", config=TINY, sink=EventSink(ProgressMode.QUIET))
    return organ_medians(cases, registry)


def _record_organ_contrast(monkeypatch) -> list:
    """The organ contrast each adapt step hands its sampler, in order."""
    handed = []

    class RecordingSampler(PatchSampler):
        def __init__(self, *args, **kwargs) -> None:
            handed.append(kwargs["organ_contrast"])
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(adapt, "PatchSampler", RecordingSampler)
    return handed


def test_a_domain_step_replays_the_base_sites_recorded_organs_and_records_its_own(tmp_path, phantom_cohort, monkeypatch):
    """The base records its CTs' medians; a step on a CT whose spleen is 170 HU brighter hands its sampler the offset
    from its own spleen back to the base's (negative: the recorded site is darker), records it, and records its own
    medians for the steps after it."""
    case = phantom_cohort[0]
    bundle = tmp_path / "b"
    assert run_cli("train", "-i", case / "image.nii.gz", "-l", case / "label_seg8.nii.gz", "--organs", "spleen=1,liver=7", "--other-labels", "background",
                   "-o", bundle, "--iterations", "2", "--spacing", "6", "--patch-size", "32", "--init-filters", "8", "--batch-size", "1", "--quiet") == 0
    base_history = json.loads((bundle / "versions" / "1.0.0" / "docs" / "history.json").read_text())
    base_medians = _medians_of(case / "image.nii.gz", case / "label_seg8.nii.gz", [("spleen", 1), ("liver", 7)])
    assert base_history[0][APPEARANCE_KEY] == pytest.approx(base_medians) and set(base_medians) == {"spleen", "liver"}

    ct = nib.load(str(case / "image.nii.gz"))
    seg8 = np.asarray(nib.load(str(case / "label_seg8.nii.gz")).dataobj)
    enhanced = np.asarray(ct.dataobj, dtype=np.float32) + SPLEEN_HU * (seg8 == 1)
    image = tmp_path / "enhanced.nii.gz"
    nib.save(nib.Nifti1Image(enhanced, ct.affine), str(image))
    spleen = new_organ_labels(case, tmp_path / "spleen.nii.gz", {1: 1})
    handed = _record_organ_contrast(monkeypatch)
    assert run_cli("adapt", "-b", bundle, "-i", image, "-l", spleen, "--organs", "spleen=1", "--appearance-replay", "1",
                   "--iterations", "1", "--batch-size", "1", "--accept-forgetting", "--quiet") == 0
    step_medians = _medians_of(image, spleen, [("spleen", 1)])
    expected = base_medians["spleen"] - step_medians["spleen"]
    assert expected < -0.2  # the CT's own spleen is brighter by 170 HU (0.4 of the window) less what clipping took
    (organ_contrast,) = handed
    assert organ_contrast.replay == 1.0 and organ_contrast.recorded == ({1: pytest.approx(expected, abs=1e-5)},)
    step = json.loads((bundle / "versions" / "1.1.0" / "docs" / "history.json").read_text())[-1]
    assert step["replayed_offsets"] == [{"spleen": pytest.approx(expected, abs=1e-5)}]
    assert step[APPEARANCE_KEY] == pytest.approx(step_medians)
    metadata = json.loads((bundle / "versions" / "1.1.0" / "configs" / "metadata.json").read_text())
    assert metadata["ciss"]["training"]["appearance_replay"] == 1.0
    # Without the augmentation (organ contrast is part of it) nothing is replayed, and the version says so.
    assert run_cli("adapt", "-b", bundle, "-i", image, "-l", spleen, "--organs", "spleen=1", "--appearance-replay", "1", "--no-augmentation",
                   "--iterations", "1", "--batch-size", "1", "--accept-forgetting", "--quiet") == 0
    assert handed[-1].recorded == () and json.loads((bundle / "versions" / "1.2.0" / "docs" / "history.json").read_text())[-1]["replayed_offsets"] == []
    assert json.loads((bundle / "versions" / "1.2.0" / "configs" / "metadata.json").read_text())["ciss"]["training"]["appearance_replay"] == 0.0


def test_a_lineage_without_records_draws_random_offsets_and_says_so(bundle, phantom_cohort, tmp_path, monkeypatch, capsys):
    """A bundle from before the medians were recorded (its history without them): the step replays nothing and logs why."""
    history_file = bundle / "versions" / "1.0.0" / "docs" / "history.json"
    history = json.loads(history_file.read_text())
    history_file.write_text(json.dumps([{k: v for k, v in entry.items() if k != APPEARANCE_KEY} for entry in history]))
    handed = _record_organ_contrast(monkeypatch)
    case = phantom_cohort[0]
    spleen = new_organ_labels(case, tmp_path / "spleen.nii.gz", {1: 1})
    capsys.readouterr()
    assert run_cli("adapt", "-b", bundle, "-i", case / "image.nii.gz", "-l", spleen, "--organs", "spleen=1", "--appearance-replay", "1",
                   "--iterations", "1", "--batch-size", "1", "--accept-forgetting") == 0
    assert "no earlier site's organ intensities in the lineage" in capsys.readouterr().err
    assert handed[0].recorded == ()
    step = json.loads((bundle / "versions" / "1.1.0" / "docs" / "history.json").read_text())[-1]
    assert step["replayed_offsets"] == [] and set(step[APPEARANCE_KEY]) == {"spleen"}
