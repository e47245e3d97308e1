"""``ciss protocol`` end to end on a tiny phantom: files, table, per-step label remapping."""
import json
import shutil

import nibabel as nib
import numpy as np
import pytest
import torch
from ciss_test_helpers import run_cli

from ciss_engine.bundle import Bundle
from ciss_engine.imaging import load_volume_or_raise
from ciss_engine.inference import Segmenter
from ciss_engine.protocol import PROTOCOLS, Case, cases_in, old_new_all, score_bundle, step_labels
from ciss_engine.protocol_report import where_old_organs_lie


def test_step_labels_keep_only_the_step_organs_renumbered(phantom_cohort, tmp_path):
    pairs = step_labels(cases_in(phantom_cohort[0].parent)[:1], (5, 6), tmp_path)
    data = np.asarray(nib.load(str(pairs[0][1])).dataobj)
    source = np.asarray(nib.load(str(phantom_cohort[0] / "label_seg8.nii.gz")).dataobj)
    assert set(np.unique(data)) == {0, 1, 2}
    assert np.array_equal(data == 1, source == 5) and np.array_equal(data == 2, source == 6)


def test_old_new_all_means():
    scores = {"a": {"spleen": 0.8, "liver": 0.6}, "b": {"spleen": 0.6}}
    result = old_new_all(scores, PROTOCOLS["7-1"])
    assert result["per_organ"] == {"spleen": 0.7, "liver": 0.6}
    assert result["old"] == pytest.approx(0.65) and result["new"] is None and result["all"] == pytest.approx(0.65)


def test_protocol_runs_strategies_and_offline_and_writes_reports(phantom_cohort, tmp_path, capsys):
    data = phantom_cohort[0].parent
    arguments = (
        "protocol", "--protocol", "4-4", "--strategies", "pcdd,finetune", "--data", data, "--test-cases", "1", "--base-iterations", "2",
        "--step-iterations", "2", "--offline-iterations", "2", "--patch-size", "32", "--spacing", "6", "--init-filters", "8", "--no-amp", "--base-organ-contrast", "0.25", "-o", tmp_path / "run", "--quiet",
    )
    assert run_cli(*arguments) == 0
    # --no-amp reaches the base model, every step and the offline bound (what bf16 costs is measured with it);
    # --base-organ-contrast the models trained from scratch.
    for model in ("base", "pcdd", "finetune", "offline"):
        assert Bundle.open_or_raise(tmp_path / "run" / "seed_0" / model).load().settings.training["amp"] is False, model
    for model in ("base", "offline"):
        training = Bundle.open_or_raise(tmp_path / "run" / "seed_0" / model).load("1.0.0").settings.training
        assert (training["organ_contrast"], training["synthetic_share"]) == (0.25, 0.0), model
    # A run killed inside finetune's step left its bundle a copy of the base model: the re-run learns that step
    # (it used to score the base model as finetune's result) and leaves pcdd's finished step alone.
    seed_folder = tmp_path / "run" / "seed_0"
    shutil.rmtree(seed_folder / "finetune")
    shutil.copytree(seed_folder / "base", seed_folder / "finetune")
    assert run_cli(*arguments) == 0
    assert Bundle.open_or_raise(seed_folder / "finetune").versions() == ["1.0.0", "1.1.0"]
    assert Bundle.open_or_raise(seed_folder / "pcdd").versions() == ["1.0.0", "1.1.0"]
    results = json.loads((tmp_path / "run" / "protocol.json").read_text())
    assert (results["settings"]["step_iterations"], results["settings"]["amp"], results["settings"]["organ_contrast"]) == (2, False, 0.25)
    seed = results["seeds"]["0"]
    assert set(seed) == {"base", "pcdd", "finetune", "offline"}
    assert set(seed["pcdd"]["scores"]) == {"case_003"}
    assert all(0 <= seed[m]["all"] <= 1 for m in ("pcdd", "finetune", "offline"))
    table = (tmp_path / "run" / "protocol.md").read_text()
    assert "| pcdd |" in table and "| offline |" in table
    assert (tmp_path / "run" / "protocol.png").read_bytes()[:4] == b"\x89PNG"
    # Every organ of each model has a row of where its predicted voxels lie, in reference-label names.
    assert set(seed["pcdd"]["confusion"]) == {"spleen", "kidney_right", "kidney_left", "gallbladder", "esophagus", "pancreas", "liver", "stomach"}
    assert set(seed["base"]["confusion"]) == {"spleen", "kidney_right", "kidney_left", "gallbladder"}
    names = {"background", "spleen", "kidney_right", "kidney_left", "gallbladder", "esophagus", "pancreas", "liver", "stomach"}
    assert all(set(row) <= names and all(v > 0 for v in row.values()) for row in seed["finetune"]["confusion"].values())


def test_where_old_organs_lie_sums_cases_and_seeds():
    results = {"steps": [["spleen"], ["liver"]], "seeds": {
        "0": {"pcdd": {"confusion": {"spleen": {"spleen": 60, "background": 30, "liver": 10}}}},
        "1": {"pcdd": {"confusion": {"spleen": {"spleen": 40, "background": 10}}}, "finetune": {"confusion": {"spleen": {}}}},
    }}
    lines = where_old_organs_lie(results)
    # pcdd's spleen over both seeds: 150 voxels, 100 on the spleen, 40 on background, 10 on the liver.
    assert "| pcdd | spleen | 150 | 67 % | 27 % | 7 % |" in lines
    assert "| finetune | spleen | 0 | – | – | – |" in lines
    assert where_old_organs_lie({"steps": [["spleen"]], "seeds": {"0": {"pcdd": {"old": 0.5}}}}) == []


def test_confusion_counts_every_predicted_voxel_once_by_its_reference_label(phantom_cohort, painting_bundle):
    case = Case(phantom_cohort[0] / "image.nii.gz", phantom_cohort[0] / "label_seg8.nii.gz")
    scored = score_bundle(painting_bundle, [case], torch.device("cpu"))
    version = Bundle.open_or_raise(painting_bundle).load()
    prediction = Segmenter(version, torch.device("cpu")).segment(load_volume_or_raise(case.image)).label
    reference = np.asarray(nib.load(str(case.label)).dataobj).astype(np.int64)
    assert all(sum(scored["confusion"][organ.name].values()) > 0 for organ in version.registry.organs)  # it paints every organ
    for organ in version.registry.organs:
        predicted = prediction == organ.label
        row = scored["confusion"][organ.name]
        assert sum(row.values()) == int(predicted.sum())
        assert row.get("background", 0) == int((predicted & (reference == 0)).sum())
