"""The main job (`ciss demo`) end to end: on the phantom, as on a machine without the real CTs, and on the real CTs."""
import json

import pytest

from ciss_test_helpers import data_dir, real_case, run_cli


def test_demo_without_real_data_uses_the_phantom_and_writes_table_and_previews(tmp_path, capsys):
    code = run_cli("demo", "-o", tmp_path / "demo", "--data", tmp_path / "no_data_here", "--iterations", "2", "--progress", "quiet")
    assert code == 0
    out = capsys.readouterr().out
    assert "synthetic phantom" in out and "| **mean** |" in out
    report = json.loads((tmp_path / "demo" / "demo_report.json").read_text())
    assert report["data"].startswith("synthetic phantom") and report["iterations"] == 2
    assert set(report["per_organ"]) == {"spleen", "kidney_right", "kidney_left", "gallbladder"}  # every phantom case has all four
    assert (tmp_path / "demo" / "case_003_preview.png").read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "demo" / "bundle" / "bundle.json").is_file()


def test_demo_on_real_ct_keeps_the_training_ct_out_of_the_means(tmp_path, capsys):
    real_case("ts_abdpelvis")  # skips without the real CTs
    code = run_cli("demo", "-o", tmp_path / "demo", "--data", data_dir(), "--iterations", "2", "--progress", "quiet")
    assert code == 0
    report = json.loads((tmp_path / "demo" / "demo_report.json").read_text())
    assert set(report["cases"]) == {"ts_abdpelvis", "ts_abd_sm", "chest_4x"} and report["training_cases"] == ["ts_abdpelvis"]
    held_out = [report["cases"][name]["spleen"]["dsc"] for name in ("ts_abd_sm", "chest_4x")]
    assert report["per_organ"]["spleen"] == pytest.approx({**report["per_organ"]["spleen"], "dsc": sum(held_out) / 2, "cases": 2})
    assert "ts_abdpelvis (training CT, not in the mean)" in capsys.readouterr().out
