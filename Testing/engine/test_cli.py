"""The ``ciss`` command line end to end: events, outputs, light commands without torch."""
import json
import subprocess
import sys

import nibabel as nib
import numpy as np
from ciss_test_helpers import run_cli

from ciss_engine import __version__
from ciss_engine.api.bundle_record import BundleDescription
from ciss_engine.bundle import describe_bundle
from ciss_engine.errors import ExitCode


def _jsonl(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


def test_info_json_and_list_classes_answer_without_torch(tiny_bundle):
    code = (
        "import sys, json, io, contextlib\n"
        "from ciss_engine.cli import main\n"
        "buffer = io.StringIO()\n"
        "with contextlib.redirect_stdout(buffer):\n"
        f"    main(['info', '-b', {str(tiny_bundle)!r}, '--json']); main(['--list-classes'])\n"
        "print(json.dumps({'torch': 'torch' in sys.modules, 'monai': 'monai' in sys.modules, 'out': buffer.getvalue()}))\n"
    )
    result = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
    assert result["torch"] is False and result["monai"] is False
    info = json.loads(result["out"][: result["out"].rindex("}") + 1].split("\nspleen")[0])
    assert info["current"] == "1.0.0" and [c["name"] for c in info["classes"]] == ["spleen", "kidney_right", "kidney_left", "gallbladder"]
    assert "kidney_left" in result["out"] and "SCT" in result["out"]
    # The JSON is the typed description, field for field, as a front end reads it back.
    assert BundleDescription.from_json(info) == describe_bundle(tiny_bundle) and info["history"][0]["kind"] == "base"


def test_version_flag(capsys):
    try:
        run_cli("--version")
    except SystemExit as stop:
        assert stop.code == 0
    assert __version__ in capsys.readouterr().out


def test_segment_writes_label_map_summary_preview_and_jsonl_events(tiny_bundle, phantom_cohort, tmp_path):
    image_path = phantom_cohort[3] / "image.nii.gz"
    output = tmp_path / "out" / "case.nii.gz"
    result = subprocess.run(
        [sys.executable, "-m", "ciss_engine", "segment", "-b", str(tiny_bundle), "-i", str(image_path), "-o", str(output), "--per-organ", str(tmp_path / "organs"), "--progress", "jsonl"],
        capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stderr
    events = _jsonl(result.stdout)
    assert events[-1]["event"] == "done" and set(events[-1]["volumes_ml"]) == {"spleen", "kidney_right", "kidney_left", "gallbladder"}
    assert all(e["event"] in {"progress", "done", "metric"} for e in events)
    seg = nib.load(str(output))
    assert seg.get_data_dtype() == np.uint8 and set(np.unique(np.asarray(seg.dataobj))) <= {0, 1, 2, 3, 4}
    summary = json.loads((tmp_path / "out" / "case.json").read_text())
    assert [o["name"] for o in summary["organs"]] == ["spleen", "kidney_right", "kidney_left", "gallbladder"]
    voxel_ml = abs(np.linalg.det(seg.affine[:3, :3])) / 1000
    assert abs(summary["organs"][0]["volume_ml"] - (np.asarray(seg.dataobj) == 1).sum() * voxel_ml) < 1e-2
    png = (tmp_path / "out" / "case_preview.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    masks = sorted(p.name for p in (tmp_path / "organs").iterdir())
    assert masks == ["gallbladder.nii.gz", "kidney_left.nii.gz", "kidney_right.nii.gz", "spleen.nii.gz"]


def test_errors_are_jsonl_events_with_hint_and_exit_code(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "ciss_engine", "segment", "-b", str(tmp_path / "missing"), "-i", "x.nii.gz", "-o", str(tmp_path / "o.nii.gz"), "--progress", "jsonl"],
        capture_output=True, text=True,
    )
    assert result.returncode == ExitCode.BUNDLE_ERROR
    event = _jsonl(result.stdout)[-1]
    assert event["event"] == "error" and "bundle not found" in event["message"] and event["hint"] and event["exit_code"] == 4


def test_evaluate_writes_scores(tiny_bundle, phantom_cohort, tmp_path):
    case = phantom_cohort[3]
    code = run_cli("evaluate", "-b", tiny_bundle, "-i", case / "image.nii.gz", "-l", case / "label_seg8.nii.gz", "--organs", "spleen=1,kidney_right=2,kidney_left=3,gallbladder=4", "-o", tmp_path, "--quiet")
    assert code == 0
    scores = json.loads((tmp_path / "scores.json").read_text())
    assert set(scores["per_organ"]) == {"spleen", "kidney_right", "kidney_left", "gallbladder"}
    assert all(0.0 <= v["dsc"] <= 1.0 for v in scores["per_organ"].values())
    assert "| **mean** |" in (tmp_path / "scores.md").read_text()


def test_versions_and_rollback_commands(tiny_bundle, tmp_path, capsys):
    assert run_cli("versions", "-b", tiny_bundle) == 0
    assert "* 1.0.0" in capsys.readouterr().out
    assert run_cli("rollback", "-b", tiny_bundle, "--to", "2.0.0", "--quiet") == ExitCode.BUNDLE_ERROR


def test_old_studio_command_points_to_its_own_entry_point(capsys):
    """`ciss studio` moved to `ciss-studio`: the usage error says where, instead of argparse's bare "invalid choice"."""
    from ciss_engine.cli import main

    try:
        main(["studio", "--port", "8080"])
    except SystemExit as stop:
        assert stop.code == ExitCode.USAGE_ERROR
    else:
        raise AssertionError("`ciss studio` should stop with a usage error")
    assert "ciss-studio" in capsys.readouterr().err
