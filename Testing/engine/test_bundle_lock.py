"""One writer per bundle: train, learn and rollback hold the bundle's lock; a second writer fails at once
naming the holder, readers never wait, and the lock of a killed process is taken over.

Concurrency is tested with real processes (``python -m ciss_engine``) and the real lock code; flock
conflicts between two open files of one process too, so a lock held by the test process stands for
another writer."""
import json
import os
import signal
import subprocess
import sys
import time

import nibabel as nib
import numpy as np
import pytest
from ciss_test_helpers import TINY_TRAIN_ARGS, run_cli

from ciss_engine.bundle import Bundle
from ciss_engine.bundle_lock import LOCK_NAME, bundle_lock
from ciss_engine.errors import ExitCode
from ciss_engine.events import EventSink, ProgressMode


def _ciss(*args: object, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ciss_engine", *map(str, args)], capture_output=True, text=True, timeout=timeout)


def _last_event(result: subprocess.CompletedProcess) -> dict:
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.fixture()
def learn_args(bundle, phantom_cohort, tmp_path):
    """``ciss learn`` arguments adding the pancreas (seg8 value 6) from a pancreas-only label map; ``+ [iterations]``."""
    case = phantom_cohort[2]
    seg8 = nib.load(str(case / "label_seg8.nii.gz"))
    pancreas = tmp_path / "pancreas.nii.gz"
    nib.save(nib.Nifti1Image((np.asarray(seg8.dataobj) == 6).astype(np.uint8), seg8.affine), str(pancreas))
    return ["learn", "-b", bundle, "--organ", "pancreas", "-i", case / "image.nii.gz", "-l", pancreas,
            "--batch-size", "1", "--accept-forgetting", "--progress", "jsonl", "--iterations"]


def test_a_second_writer_fails_at_once_naming_the_holder_and_readers_go_on(bundle, phantom_cohort, tmp_path):
    quiet = EventSink(ProgressMode.QUIET)
    with bundle_lock(bundle, "learn", sink=quiet):
        holder = json.loads((bundle / LOCK_NAME).read_text())
        assert holder["pid"] == os.getpid() and holder["command"] == "learn"
        refused = _ciss("rollback", "-b", bundle, "--to", "1.0.0", "--progress", "jsonl")
        assert refused.returncode == ExitCode.BUNDLE_ERROR
        error = _last_event(refused)
        assert error["event"] == "error" and error["exit_code"] == ExitCode.BUNDLE_ERROR
        assert f"is being changed by `ciss learn` (pid {os.getpid()}" in error["message"] and holder["started"] in error["message"]
        # Readers never take the lock: they answer while it is held.
        assert _ciss("info", "-b", bundle, "--json").returncode == 0
        assert _ciss("verify", "-b", bundle, "--quiet").returncode == 0
        assert run_cli("segment", "-b", bundle, "-i", phantom_cohort[3] / "image.nii.gz", "-o", tmp_path / "seg.nii.gz", "--no-preview", "--quiet") == 0
    assert not (bundle / LOCK_NAME).exists(), "a released lock leaves no file behind"
    assert run_cli("rollback", "-b", bundle, "--to", "1.0.0", "--quiet") == 0


def test_train_locks_its_new_bundle_before_training(phantom_cohort, tmp_path, capsys):
    output = tmp_path / "new"
    case = phantom_cohort[0]
    train = ["train", "-i", case / "image.nii.gz", "-l", case / "label_seg8.nii.gz", "--organs", "spleen=1", "--other-labels", "background",
             "-o", output, *TINY_TRAIN_ARGS, "--quiet"]
    with bundle_lock(output, "train", sink=EventSink(ProgressMode.QUIET), create=True):
        assert run_cli(*train) == ExitCode.BUNDLE_ERROR
        assert "is being changed by `ciss train`" in capsys.readouterr().err
        assert not (tmp_path / ".new.work").exists(), "refused before any work"
    assert not output.exists(), "a lock on a folder the run created goes with it when nothing was written"
    assert run_cli(*train) == 0 and Bundle.open_or_raise(output).versions() == ["1.0.0"] and not (output / LOCK_NAME).exists()


def test_two_real_learn_processes_and_the_stale_lock_of_a_killed_one(bundle, learn_args):
    first = subprocess.Popen([sys.executable, "-m", "ciss_engine", *map(str, learn_args), "100000"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not (bundle / LOCK_NAME).is_file() or f'"pid": {first.pid}' not in (bundle / LOCK_NAME).read_text():
            assert first.poll() is None and time.monotonic() < deadline, "the first learn never took the lock"
            time.sleep(0.2)
        second = _ciss(*learn_args, 2)
        assert second.returncode == ExitCode.BUNDLE_ERROR, second.stderr
        assert f"is being changed by `ciss learn` (pid {first.pid}" in _last_event(second)["message"]
        assert first.poll() is None, "the first run goes on"
    finally:
        first.send_signal(signal.SIGKILL)  # dies holding the lock: the kernel drops the flock, the file stays
        first.wait(30)
    assert json.loads((bundle / LOCK_NAME).read_text())["pid"] == first.pid
    taken_over = _ciss("rollback", "-b", bundle, "--to", "1.0.0")
    assert taken_over.returncode == 0, taken_over.stderr
    assert f"taking over the lock of {bundle}: `ciss learn` (pid {first.pid}" in taken_over.stderr
    assert not (bundle / LOCK_NAME).exists() and Bundle.open_or_raise(bundle).versions() == ["1.0.0"]
