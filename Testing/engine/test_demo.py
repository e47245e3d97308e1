"""The main job (`ciss demo`) end to end: base model, new organs from new-organ-only labels, the guard,
before/after scores. On the phantom, as on a machine without the real CTs, and on the real CTs."""
import json

import nibabel as nib
import numpy as np
import pytest

from ciss_engine.training.loop_config import SYNTHETIC_CASES, SYNTHETIC_SHARE
from ciss_test_helpers import data_dir, real_case, run_cli

TINY_DEMO_ARGS = ["--iterations", "2", "--step-iterations", "2", "--patch-size", "32", "--spacing", "6", "--init-filters", "8", "--progress", "quiet"]


def _values(path) -> np.ndarray:
    return np.asarray(nib.load(str(path)).dataobj)


def test_demo_without_real_data_adds_liver_and_stomach_to_the_phantom_base_and_scores_before_and_after(tmp_path, capsys):
    output = tmp_path / "demo"
    assert run_cli("demo", "-o", output, "--data", tmp_path / "no_data_here", *TINY_DEMO_ARGS) == 0
    out = capsys.readouterr().out
    assert "synthetic phantom" in out and "Forgetting guard:" in out and "| liver (new) | stomach (new) |" in out
    report = json.loads((output / "demo_report.json").read_text())
    assert report["versions"] == {"before": "1.0.0", "after": "1.1.0"} and report["new_organs"] == ["liver", "stomach"]
    assert set(report["forgetting_guard"]["agreement"]) == {"spleen", "kidney_right", "kidney_left", "gallbladder"}
    roles = {name: case["role"] for name, case in report["cases"].items()}
    assert roles == {"case_000": "base training", "case_001": "base + step training", "case_002": "step training", "case_003": "held-out"}

    # The step went through `ciss learn`'s code: a new version in the bundle's lineage, parent 1.0.0.
    history = json.loads((output / "bundle" / "versions" / "1.1.0" / "docs" / "history.json").read_text())
    assert history[-1]["kind"] == "incremental" and history[-1]["organs"] == ["liver", "stomach"] and history[-1]["parent_version"] == "1.0.0"
    # The base trained as `ciss train` does by default: half its patches from the synthetic patients.
    base_training = json.loads((output / "bundle" / "versions" / "1.0.0" / "configs" / "metadata.json").read_text())["ciss"]["training"]
    assert (base_training["synthetic_share"], base_training["synthetic_cases"]) == (SYNTHETIC_SHARE, SYNTHETIC_CASES) and SYNTHETIC_SHARE > 0
    # Its labels were the new organs only, taken from the reference's liver (7) and stomach (8).
    for case in ("case_001", "case_002"):
        step_label = _values(output / "step_labels" / f"{case}_liver_stomach.nii.gz")
        reference = _values(output / "phantom" / case / "label_seg8.nii.gz")
        assert np.array_equal(step_label, np.select([reference == 7, reference == 8], [1, 2], 0))

    for name, case in report["cases"].items():
        assert set(case["before"]) == {"spleen", "kidney_right", "kidney_left", "gallbladder"}
        assert set(case["after"]) == set(case["before"]) | {"liver", "stomach"}
        for organ, ratio in case["retention"].items():
            before, after = case["before"][organ]["dsc"], case["after"][organ]["dsc"]
            assert ratio == (pytest.approx(after / before) if before else None)
        assert (output / f"{name}_before_after.png").read_bytes()[:4] == b"\x89PNG"
        assert (output / f"{name}_after_organs.nii.gz").is_file() and (output / f"{name}_before_organs.nii.gz").is_file()

    # A second run reuses the base model and the step: no third version, the same report.
    assert run_cli("demo", "-o", output, "--data", tmp_path / "no_data_here", *TINY_DEMO_ARGS) == 0
    assert sorted(p.name for p in (output / "bundle" / "versions").iterdir()) == ["1.0.0", "1.1.0"]
    assert json.loads((output / "demo_report.json").read_text())["cases"] == report["cases"]


def test_demo_on_real_ct_learns_the_new_organs_on_two_patients_and_marks_each_ct(tmp_path, capsys):
    real_case("ts_abdpelvis")  # skips without the real CTs
    output = tmp_path / "demo"
    assert run_cli("demo", "-o", output, "--data", data_dir(), *TINY_DEMO_ARGS) == 0
    report = json.loads((output / "demo_report.json").read_text())
    assert {name: case["role"] for name, case in report["cases"].items()} == {
        "ts_abdpelvis": "base + step training", "ts_abd_sm": "held-out, same patient as training", "chest_4x": "base + step training",
    }
    # The base learned the old organs on both patients: its lineage records both CTs' data.
    base_history = json.loads((output / "bundle" / "versions" / "1.0.0" / "docs" / "history.json").read_text())
    assert len(base_history[0]["data_sha256"]) == 2
    # chest_4x has no gallbladder: it is scored only where the reference has it.
    assert "gallbladder" not in report["cases"]["chest_4x"]["before"]
    liver_voxels = (_values(real_case("chest_4x") / "label_seg8.nii.gz") == 7).sum()
    assert (_values(output / "step_labels" / "chest_4x_liver_stomach.nii.gz") == 1).sum() == liver_voxels
    # ...and that chest_4x's labels held no gallbladder: the step's guard does not compare the gallbladder there.
    assert base_history[0]["organs_per_case"] == [["spleen", "kidney_right", "kidney_left", "gallbladder"], ["spleen", "kidney_right", "kidney_left"]]
    assert sorted(report["step_cts"]) == ["chest_4x", "ts_abdpelvis"]
    assert report["forgetting_guard"]["known_absent"] == {"gallbladder": [report["step_cts"].index("chest_4x")]}
    out = capsys.readouterr().out
    assert "ts_abdpelvis | base + step training |" in out and "training labels held none of the organ: gallbladder on chest_4x." in out
