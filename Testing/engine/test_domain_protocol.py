"""The domain-incremental protocol (``ciss protocol --protocol domain``): phantom sites that differ only as
scanners do, and the run end to end: base on site 1, each domain strategy adapted to sites 2 and 3 in
sequence, every site scored after every step, resumable."""
import json

import nibabel as nib
import numpy as np
import pytest
from ciss_test_helpers import run_cli

from ciss_engine.bundle import Bundle
from ciss_engine.scanner_sites import ARTERIAL, PORTAL_VENOUS, SITES, ScannerSite


def _array(path) -> np.ndarray:
    return np.asarray(nib.load(str(path)).dataobj, dtype=np.float64)


def _volume() -> tuple[np.ndarray, np.ndarray]:
    image = np.random.default_rng(0).normal(0, 50, (12, 10, 8)).astype(np.float32)
    label = np.zeros(image.shape, np.uint8)
    label[2:5, 2:5, 2:5] = 7  # liver: enhances
    label[7:9, 6:8, 3:6] = 4  # gallbladder: does not
    return image, label


def test_a_site_changes_intensities_as_a_scanner_would_and_never_the_labels():
    image, label = _volume()
    calibrated = ScannerSite("s", hu_scale=1.1, hu_offset=40.0).apply(image, label, np.random.default_rng(0))
    np.testing.assert_allclose(calibrated, image * 1.1 + 40.0, rtol=1e-6, atol=1e-4)
    enhanced = ScannerSite("s", enhancement_hu=((7, 60.0), (4, -5.0))).apply(image, label, np.random.default_rng(0)) - image
    np.testing.assert_allclose(enhanced[label == 7], 60.0, atol=1e-4)  # each organ by its own amount
    np.testing.assert_allclose(enhanced[label == 4], -5.0, atol=1e-4)
    np.testing.assert_allclose(enhanced[label == 0], 0.0, atol=1e-4)
    # The phases reorder the organs: enhanced kidneys outshine the liver, which no global intensity transform does.
    for phase in (PORTAL_VENOUS, ARTERIAL):
        added = dict(phase)
        assert added[2] == added[3] > added[7] and 4 not in added
    thick = ScannerSite("s", slice_blur_voxels=1.5).apply(image, label, np.random.default_rng(0))
    assert thick[:, :, 1:].std() < image[:, :, 1:].std()  # smoothed along the slices only:
    np.testing.assert_allclose(thick.mean(axis=2), image.mean(axis=2), atol=15.0)
    noisy = ScannerSite("s", noise_hu=25.0).apply(image, label, np.random.default_rng(0)) - image
    assert 20.0 < noisy.std() < 30.0
    assert [site.name for site in SITES] == ["site_1", "site_2", "site_3"] and SITES[0] == ScannerSite("site_1")


@pytest.fixture()
def split_cohort(phantom_cohort, tmp_path):
    """Training cases (2) and held-out cases (1) in folders of their own."""
    folders = {}
    for split, cases in (("train", phantom_cohort[:2]), ("test", phantom_cohort[3:4])):
        folders[split] = tmp_path / split
        folders[split].mkdir()
        for case in cases:
            (folders[split] / case.name).symlink_to(case)
    return folders


def test_each_strategy_adapts_to_the_sites_in_sequence_and_every_site_is_scored(split_cohort, tmp_path):
    output = tmp_path / "run"
    arguments = (
        "protocol", "--protocol", "domain", "--strategies", "finetune,dual_alignment", "--data", split_cohort["train"], "--test-data", split_cohort["test"],
        "--base-iterations", "2", "--step-iterations", "2", "--patch-size", "32", "--spacing", "6", "--init-filters", "8",
        "--setting", "dual_alignment.buffer_per_class=10", "--base-organ-contrast", "0.25", "--step-organ-contrast", "0.35", "-o", output, "--quiet",
    )
    assert run_cli(*arguments) == 0
    assert Bundle.open_or_raise(output / "seed_0" / "base").load().settings.training["organ_contrast"] == 0.25
    results = json.loads((output / "protocol.json").read_text())
    assert results["sites"] == ["site_1", "site_2", "site_3"] and results["organs"] == ["spleen", "kidney_right", "kidney_left", "gallbladder"]
    # protocol.json says what the run was: its budget, shares, settings and sites (not the machine's paths).
    settings = results["settings"]
    assert (settings["base_iterations"], settings["step_iterations"], settings["step_organ_contrast"], settings["organ_contrast"]) == (2, 2, 0.35, 0.25)
    assert settings["strategy_settings"] == {"dual_alignment": {"buffer_per_class": "10"}} and settings["preprocessing"]["patch_size"] == [32, 32, 32]
    assert [site["name"] for site in settings["sites"]] == ["site_1", "site_2", "site_3"] and not {"train", "test", "output"} & settings.keys()
    seed = results["seeds"]["0"]
    assert [row["after"] for row in seed["base"]] == ["site_1"]
    for strategy in ("finetune", "dual_alignment"):
        assert [row["after"] for row in seed[strategy]] == ["site_2", "site_3"]
        assert all(set(row["dsc"]) == {"site_1", "site_2", "site_3"} for row in seed[strategy])
        bundle = Bundle.open_or_raise(output / "seed_0" / strategy)
        assert [row["version"] for row in seed[strategy]] == bundle.versions()[1:]
        assert [bundle.load(v).history[-1]["kind"] for v in bundle.versions()[1:]] == ["domain", "domain"]
        assert [bundle.load(v).settings.training["organ_contrast"] for v in bundle.versions()[1:]] == [0.35, 0.35]
    # Each site's images are the cohort as that scanner shows it; the labels are the cohort's own.
    site_2, source = output / "data" / "site_2" / "train" / "case_000", split_cohort["train"] / "case_000"
    assert np.array_equal(_array(site_2 / "label_seg8.nii.gz"), _array(source / "label_seg8.nii.gz"))
    shown, original = _array(site_2 / "image.nii.gz"), _array(source / "image.nii.gz")
    # Site 2: HU × 1.05 + 50 plus zero-mean noise outside the organs its contrast phase enhances, more inside them.
    labels = _array(source / "label_seg8.nii.gz")
    plain = ~np.isin(labels, [value for value, _ in PORTAL_VENOUS])
    slope, intercept = np.polyfit(original[plain], shown[plain], 1)
    assert slope == pytest.approx(1.05, abs=0.01) and intercept == pytest.approx(50.0, abs=3.0)
    liver = labels == 7
    assert (shown[liver] - (1.05 * original[liver] + 50.0)).mean() == pytest.approx(1.05 * dict(PORTAL_VENOUS)[7], abs=5.0)
    table = (output / "protocol.md").read_text()
    assert "| dual_alignment | site_3 |" in table and "| base | site_1 |" in table
    # A re-run resumes: nothing is trained again.
    before = {s: Bundle.open_or_raise(output / "seed_0" / s).versions() for s in ("base", "finetune", "dual_alignment")}
    assert run_cli(*arguments) == 0
    assert {s: Bundle.open_or_raise(output / "seed_0" / s).versions() for s in before} == before
