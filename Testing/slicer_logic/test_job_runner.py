"""The job runner on real processes: the engine itself and a small JSON-line script (``jsonl_process.py``)."""
from __future__ import annotations

import dataclasses
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest
from slicer_logic_helpers import REPO_ROOT

from ciss_engine import __version__
from ciss_engine.cli import build_parser
from ciss_engine.registry import parse_organ_spec
from CISSegmentationLib.engine_commands import EngineLauncher, adapt_args, export_args, learn_args, rollback_args, segment_args
from CISSegmentationLib.errors import EngineFailedError, EngineNotInstalledError
from ciss_engine.api.events import ForgettingGuard, TrainMetric, parse_event
from ciss_engine.api.presets import DEFAULT_ADAPT_PRESET, DEFAULT_PRESET
from CISSegmentationLib.job_runner import EngineJob, JobCallbacks, JobState, describe_guard

SCRIPT = Path(__file__).with_name("jsonl_process.py")


def _script_job(*args: str, callbacks: JobCallbacks | None = None, grace_s: float = 10.0) -> EngineJob:
    return EngineJob([sys.executable, str(SCRIPT), *args], callbacks=callbacks, cancel_grace_s=grace_s)


def _wait_for_file(path: Path, timeout_s: float = 20.0) -> int:
    deadline = time.monotonic() + timeout_s
    while not (path.is_file() and path.read_text()):
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.02)
    return int(path.read_text())


def _is_gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_progress_events_reach_the_callbacks_in_order():
    progress, events, logs, finished = [], [], [], []
    callbacks = JobCallbacks(on_progress=progress.append, on_event=events.append, on_log=logs.append, on_finished=finished.append)
    result = _script_job("progress", "4", "0.01", callbacks=callbacks).start().wait(timeout_s=60)
    assert result.state is JobState.SUCCEEDED and result.exit_code == 0
    assert [p.step for p in progress] == [1, 2, 3, 4]
    assert [p.fraction for p in progress] == [0.25, 0.5, 0.75, 1.0]
    assert progress[1].loss == 0.5 and progress[0].eta_s == pytest.approx(0.03)
    assert [e.kind for e in events] == ["progress"] * 4 + ["checkpoint_saved", "done"]
    assert result.done.to_json() == {"event": "done", "version": "1.1.0"}
    assert "starting" in logs and "a stray line that is not JSON" in logs  # non-JSON stdout is log, not an event
    assert finished == [result]


def test_event_parsing_accepts_only_json_objects_with_an_event_name():
    line = '{"event": "metric", "stage": "train", "seconds_per_iteration": 0.5, "peak_memory_mb": null}'
    assert parse_event(line) == TrainMetric(seconds_per_iteration=0.5, peak_memory_mb=None)
    assert parse_event("100%|#####| 4/4") is None
    assert parse_event('["event", "done"]') is None
    assert parse_event('{"message": "no event key"}') is None


def test_poll_answers_while_the_process_waits_for_the_caller(tmp_path):
    """A GUI timer tick never waits for the child: the child here ends only when the test lets it, so a
    poll that waited for it could return only after the safety release, which the test would then see."""
    release, progress = tmp_path / "release", []
    safety = threading.Timer(60.0, release.touch)
    safety.start()
    try:
        job = _script_job("blocked", str(release), callbacks=JobCallbacks(on_progress=progress.append)).start()
        while not progress:  # until the child has started and waits
            assert job.poll(), "the job ended before it was released"
            time.sleep(0.01)
        assert job.poll() and not release.exists(), "poll waited for the child"
        release.touch()
        result = job.wait(timeout_s=60)
    finally:
        safety.cancel()
    assert result.state is JobState.SUCCEEDED and result.done.to_json() == {"event": "done", "version": "1.1.0"}


def test_error_event_gives_message_and_hint():
    result = _script_job("error").start().wait(timeout_s=60)
    assert result.state is JobState.FAILED and result.exit_code == 3
    assert result.message == "CT not found: /nowhere/ct.nii.gz" and result.hint == "check the path"
    # The event joins the stderr lines (their order across the two pipes is not defined), as the engine prints it on a terminal.
    assert sorted(result.log_tail.split("\n")) == ["  hint: check the path", "error: CT not found: /nowhere/ct.nii.gz", "reading the CT"]
    assert "error: CT not found: /nowhere/ct.nii.gz\n  hint: check the path" in result.log_tail
    error = result.to_error()
    assert isinstance(error, EngineFailedError) and (error.message, error.hint, error.log_tail) == (result.message, result.hint, result.log_tail)


def test_crash_surfaces_the_log():
    result = _script_job("crash").start().wait(timeout_s=60)
    assert result.state is JobState.FAILED and result.exit_code == 1
    assert result.message == "the engine stopped with exit code 1 and no error message"
    assert "Traceback" in result.log_tail and "RuntimeError: worker exploded" in result.log_tail
    assert "about to fail" in result.log_tail


def test_killed_process_is_reported_as_a_crash():
    result = _script_job("killed").start().wait(timeout_s=60)
    assert result.state is JobState.FAILED and result.exit_code == -9
    assert "SIGKILL" in result.message and "out of memory" in result.message


def test_cancel_stops_the_engine_and_the_worker_it_leaves_behind(tmp_path):
    pid_file = tmp_path / "worker.pid"
    job = _script_job("worker", str(pid_file)).start()
    worker_pid = _wait_for_file(pid_file)
    job.cancel()
    result = job.wait(timeout_s=30)
    assert result.state is JobState.CANCELLED and result.exit_code == 130  # it honoured SIGTERM itself
    assert _is_gone(worker_pid)


def test_cancel_kills_a_process_that_ignores_sigterm(tmp_path):
    pid_file = tmp_path / "stubborn.pid"
    job = _script_job("stubborn", str(pid_file), grace_s=0.5).start()
    _wait_for_file(pid_file)
    job.cancel()
    result = job.wait(timeout_s=30)
    assert result.state is JobState.CANCELLED and result.exit_code == -9  # only the escalation's SIGKILL ends it
    assert _is_gone(job.pid)


def test_real_engine_reports_its_version():
    launcher = EngineLauncher(python=sys.executable, pythonpath=(str(REPO_ROOT),))
    assert launcher.check_or_raise() == f"ciss {__version__}"
    result = EngineJob(launcher.command("--version", progress=False), env=launcher.environment(), cwd=launcher.working_dir).start().wait(timeout_s=120)
    assert result.state is JobState.SUCCEEDED and f"ciss {__version__}" in result.log_tail


def test_real_engine_error_event_names_the_bundle(tmp_path):
    launcher = EngineLauncher(python=sys.executable, pythonpath=(str(REPO_ROOT),))
    args = segment_args(bundle=tmp_path / "no_bundle", image=tmp_path / "ct.nii.gz", output=tmp_path / "out.nii.gz")
    result = launcher.job(*args).start().wait(timeout_s=120)
    assert result.state is JobState.FAILED and result.exit_code == 4  # ExitCode.BUNDLE_ERROR
    assert str(tmp_path / "no_bundle") in result.message and "ciss train" in result.hint
    assert f"error: {result.message}\n  hint: {result.hint}" in result.log_tail  # stderr alone is empty in jsonl mode


def test_engine_that_is_not_installed_says_how_to_install(tmp_path, monkeypatch):
    with pytest.raises(EngineNotInstalledError, match="cannot start the engine"):
        EngineJob([str(tmp_path / "no-python"), "-m", "ciss_engine"]).start()
    monkeypatch.delenv("PYTHONPATH", raising=False)
    # A fresh, empty environment: a real Python that does not have the engine (ours may be pip-installed).
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(tmp_path / "bare")], check=True)
    with pytest.raises(EngineNotInstalledError, match="No module named ciss_engine") as caught:
        EngineLauncher(python=str(tmp_path / "bare" / "bin" / "python"), pythonpath=()).check_or_raise()
    assert "Install engine" in caught.value.hint


def test_learn_arguments_follow_the_engine_contract(tmp_path):
    args = learn_args(
        bundle=tmp_path / "b", organs=[("gallbladder", (139, 200, 98)), ("left_adrenal", None)], images=[tmp_path / "1.nii.gz"],
        labels=[tmp_path / "1l.nii.gz"], preset="quick", device="cpu",
    )
    assert args[:5] == ["learn", "-b", str(tmp_path / "b"), "--organ", "gallbladder:#8bc862,left_adrenal"]
    assert args[5:] == ["-i", str(tmp_path / "1.nii.gz"), "-l", str(tmp_path / "1l.nii.gz"), "--preset", "quick", "--device", "cpu"]
    name, _, rgb = parse_organ_spec(args[4].split(",")[0])  # the engine's own parser reads the colour back
    assert (name, rgb) == ("gallbladder", (139, 200, 98))
    with pytest.raises(ValueError, match="unknown preset"):
        learn_args(bundle=tmp_path, organs=[("x", None)], images=[], labels=[], preset="fast")


def test_a_step_without_a_preset_gets_the_engines_default_for_its_command(tmp_path):
    """Learn and adapt differ (thorough against standard): the front ends ask for what the engine's own command line
    would choose, read back by the engine's parser, and a swapped default fails."""
    parser = build_parser()
    files = {"images": [tmp_path / "1.nii.gz"], "labels": [tmp_path / "1l.nii.gz"]}
    from_front_end = {
        "learn": parser.parse_args(learn_args(bundle=tmp_path, organs=[("pancreas", None)], **files)).preset,
        "adapt": parser.parse_args(adapt_args(bundle=tmp_path, organs=[("spleen", 1)], **files)).preset,
    }
    bare = {"learn": parser.parse_args(["learn", "-b", "b", "--organ", "pancreas", "-i", "c", "-l", "l"]).preset,
            "adapt": parser.parse_args(["adapt", "-b", "b", "-i", "c", "-l", "l"]).preset}
    assert from_front_end == bare == {"learn": DEFAULT_PRESET, "adapt": DEFAULT_ADAPT_PRESET} and DEFAULT_PRESET != DEFAULT_ADAPT_PRESET


def test_rollback_and_export_arguments_follow_the_engine_contract(tmp_path):
    """Read back by the engine's own parser: a misspelt flag or a dropped value fails here, not in the clinic."""
    parser = build_parser()
    plain = parser.parse_args(rollback_args(bundle=tmp_path / "b", version="1.0.0"))
    accepting = parser.parse_args(rollback_args(bundle=tmp_path / "b", version="1.1.0", accept_forgetting=True))
    assert (plain.command, plain.bundle, plain.target, plain.accept_forgetting) == ("rollback", str(tmp_path / "b"), "1.0.0", False)
    assert (accepting.target, accepting.accept_forgetting) == ("1.1.0", True)
    export = parser.parse_args(export_args(labels=tmp_path / "l.nii.gz", ct=tmp_path / "dicom", bundle=tmp_path / "b", output=tmp_path / "out",
                                           version="1.1.0"))
    assert (export.command, export.labels, export.ct, export.bundle) == ("export", tmp_path / "l.nii.gz", tmp_path / "dicom", str(tmp_path / "b"))
    assert (export.format, export.output, export.bundle_version) == (["rtstruct", "seg"], tmp_path / "out", "1.1.0")
    seg_only = parser.parse_args(export_args(labels=tmp_path / "l.nii.gz", ct=tmp_path, bundle=tmp_path, output=tmp_path, formats=["seg"]))
    assert (seg_only.format, seg_only.bundle_version) == (["seg"], None)
    for wrong in ([], ["nifti"]):
        with pytest.raises(ValueError, match="rtstruct, seg"):
            export_args(labels=tmp_path, ct=tmp_path, bundle=tmp_path, output=tmp_path, formats=wrong)


def test_the_guard_line_of_both_front_ends_names_an_organ_the_old_version_never_found():
    """The desktop panel formatted every agreement as a number and failed on an organ the old version missed (None)."""
    guard = ForgettingGuard(version="1.1.0", passed=False, threshold=0.9, agreement={"spleen": 0.971, "gallbladder": None}, failing_organs=["gallbladder"])
    line = describe_guard(guard, published=False)
    assert "REJECTED" in line and "spleen 0.97" in line and "gallbladder (not found by the old version)" in line
    assert "failed, and the new version was published" in describe_guard(guard, published=True)


def test_the_guard_line_says_where_an_organ_was_not_compared():
    guard = ForgettingGuard(version="1.1.0", passed=True, threshold=0.9, agreement={"spleen": 0.97, "gallbladder": 0.93}, failing_organs=[],
                            known_absent={"gallbladder": [1]})
    assert describe_guard(guard, published=True).endswith(
        "Not compared where the model's training labels held none of the organ: gallbladder on CT 2.")
    assert "Not compared" not in describe_guard(dataclasses.replace(guard, known_absent={}), published=True)
