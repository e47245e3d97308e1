"""No raw traceback from ``ciss``: an unexpected exception is one ``error`` event (exit 1) naming a log file
that holds the traceback; running out of memory gets exit 7 and its own hint; bad argument values fail
at parse time (exit 2), before any file is written."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from ciss_engine.crash import BUG_HINT, OOM_HINT, is_out_of_memory, log_dir
from ciss_engine.errors import ExitCode


def _ciss(*args: object, state: Path) -> subprocess.CompletedProcess:
    """``python -m ciss_engine`` with its crash logs under ``state`` (``$XDG_STATE_HOME``)."""
    env = {**os.environ, "XDG_STATE_HOME": str(state)}
    return subprocess.run([sys.executable, "-m", "ciss_engine", *map(str, args)], capture_output=True, text=True, env=env, timeout=120)


def _error_event(result: subprocess.CompletedProcess) -> dict:
    event = json.loads(result.stdout.strip().splitlines()[-1])
    assert event["event"] == "error", event
    return event


# A bug planted in the real CLI process: segmenting raises an exception no code path expects (every
# damaged input is now refused by a check, so a bug has to be made on purpose).
PLANTED_BUG = """
import sys
import ciss_engine.inference as inference
def planted_bug(self, image):
    raise KeyError("spacing_mm")
inference.Segmenter.segment = planted_bug
from ciss_engine.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_an_unexpected_exception_is_one_error_event_with_a_log(tiny_bundle, phantom_cohort, tmp_path):
    bundle = Path(shutil.copytree(tiny_bundle, tmp_path / "bundle"))
    args = ["segment", "-b", bundle, "-i", phantom_cohort[0] / "image.nii.gz", "-o", tmp_path / "o.nii.gz", "--progress", "jsonl"]
    env = {**os.environ, "XDG_STATE_HOME": str(tmp_path / "state")}
    result = subprocess.run([sys.executable, "-c", PLANTED_BUG, *map(str, args)], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == ExitCode.INTERNAL_ERROR
    assert "Traceback" not in result.stderr
    event = _error_event(result)
    assert event["exit_code"] == ExitCode.INTERNAL_ERROR and event["message"] == "KeyError: 'spacing_mm'"
    log = Path(event["log"])
    assert log.parent == tmp_path / "state" / "ciss" / "logs" and event["hint"] == f"{BUG_HINT} the log {log}"
    text = log.read_text()
    assert "Traceback (most recent call last)" in text and "KeyError: 'spacing_mm'" in text and f"segment -b {bundle}" in text


def test_running_out_of_memory_has_its_own_exit_code_and_hint(tmp_path):
    # A real allocation that cannot succeed: a phantom of 16 x 16 x 10^12 voxels.
    result = _ciss("phantom", "-o", tmp_path / "cohort", "--cases", "1", "--shape", "16,16,1000000000000", "--progress", "jsonl", state=tmp_path / "state")
    assert result.returncode == ExitCode.OUT_OF_MEMORY == 7
    event = _error_event(result)
    assert event["message"].startswith("out of memory: MemoryError: Unable to allocate") and event["hint"] == OOM_HINT
    assert "MemoryError" in Path(event["log"]).read_text()


def _raised(action) -> BaseException:
    try:
        action()
    except Exception as error:  # whatever the allocation raises
        return error
    raise AssertionError("expected an exception")


def test_out_of_memory_is_recognised_in_its_usual_forms():
    # Real failed allocations on this machine: PyTorch's CPU allocator and numpy.
    assert is_out_of_memory(_raised(lambda: torch.empty(10**15, dtype=torch.uint8)))
    assert is_out_of_memory(_raised(lambda: np.empty(10**15, dtype=np.uint8)))
    # CUDA's error as torch raises it (no GPU here), and an out-of-memory wrapped by another error.
    assert is_out_of_memory(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"))

    def wrapped() -> None:
        try:
            torch.empty(10**15, dtype=torch.uint8)
        except RuntimeError as error:
            raise ValueError("while stitching windows") from error

    assert is_out_of_memory(_raised(wrapped))
    assert not is_out_of_memory(_raised(lambda: {}["spacing_mm"]))


def test_log_folder_follows_xdg_state_home(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    assert log_dir() == tmp_path / "ciss" / "logs"
    monkeypatch.delenv("XDG_STATE_HOME")
    assert log_dir() == Path.home() / ".local" / "state" / "ciss" / "logs"


@pytest.mark.parametrize("arguments, message", [
    (["protocol", "--seeds", "0,x"], "argument --seeds: expected an integer >= 0, got 'x'"),
    (["protocol", "--strategies", "pcdd,magic"], "argument --strategies: unknown strategy 'magic'"),
    (["protocol", "--setting", "lambda_orcd=5"], "argument --setting: expected STRATEGY.NAME=VALUE"),
    (["protocol", "--seeds", ","], "argument --seeds: expected a comma-separated list"),
])
def test_argument_values_fail_at_parse_time_before_any_file_is_written(arguments, message, tmp_path):
    output = tmp_path / "protocol"
    result = _ciss(*arguments, "--data", "phantom", "-o", output, state=tmp_path / "state")
    assert result.returncode == ExitCode.USAGE_ERROR and message in result.stderr
    assert "Traceback" not in result.stderr and not output.exists()


def test_strategy_settings_of_protocol_are_checked_before_any_file_is_written(tmp_path):
    output = tmp_path / "protocol"
    result = _ciss("protocol", "--setting", "pcdd.lambda_x=1", "--data", "phantom", "-o", output, "--progress", "jsonl", state=tmp_path / "state")
    assert result.returncode == ExitCode.INPUT_ERROR and "unknown setting 'lambda_x' of strategy pcdd" in _error_event(result)["message"]
    assert not output.exists()


def test_negative_seed_is_refused_at_parse_time(tmp_path):
    result = _ciss("train", "-i", "ct.nii.gz", "-l", "l.nii.gz", "--organs", "spleen", "-o", tmp_path / "b", "--seed", "-1", state=tmp_path / "state")
    assert result.returncode == ExitCode.USAGE_ERROR and "argument --seed: expected an integer >= 0, got '-1'" in result.stderr


def test_crash_logs_never_hold_the_studio_token(tmp_path, monkeypatch):
    from ciss_engine.crash import redacted, report_unexpected_error
    from ciss_engine.events import EventSink, ProgressMode

    assert redacted(["studio", "--token", "s3cret", "--host", "0.0.0.0"]) == ["studio", "--token", "***", "--host", "0.0.0.0"]
    assert redacted(["studio", "--token=s3cret"]) == ["studio", "--token=***"]
    # The log a crash actually writes: the command line is in it, the token is not.
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    report_unexpected_error(KeyError("boom"), ["studio", "--host", "0.0.0.0", "--token", "s3cret"], EventSink(ProgressMode.QUIET))
    (log,) = log_dir().glob("*.log")
    text = log.read_text()
    assert "studio --host 0.0.0.0 --token ***" in text and "s3cret" not in text
