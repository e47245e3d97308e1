"""A full disk: ``learn``, ``train`` and ``segment`` writing to a real full file system end with exit 5, an error
naming the file and the fix, and the disk exactly as it was (every file's bytes, no temporary file, no folder).

Two kinds of full: a small tmpfs filled to the last few pages (ENOSPC; needs root to mount, skipped
elsewhere), and a file-size limit (``ulimit -f``: EFBIG, anywhere). Runs are forked engine processes
(engine_forks.py), the limit set in the child only.
"""
import dataclasses
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from crash_consistency import learn_argv, train_argv, tree_state

from ciss_engine.errors import ExitCode

DISK_BYTES = 32 << 20
# Room left on the disk: the lock, the publication note and JSON fit, a model (4.7 MB) or checkpoint does not.
ROOM = 256 << 10


@dataclasses.dataclass(frozen=True)
class FullDisk:
    folder: Path
    kind: str  # "tmpfs" or "file_size_limit"

    def fill(self, room: int) -> None:
        """Leave ``room`` bytes: a tmpfs is filled up to that; otherwise runs get it as their file-size limit."""
        if self.kind == "tmpfs":
            stats = os.statvfs(self.folder)
            filler = stats.f_bavail * stats.f_frsize - room
            with open(self.folder / "filler", "wb") as file:
                for offset in range(0, filler, 1 << 20):
                    file.write(bytes(min(1 << 20, filler - offset)))

    def run(self, forks, argv: list, room: int = ROOM) -> dict:
        """Fill the disk, run ``argv``, return its error event (after checking the exit code)."""
        self.fill(room)
        before = tree_state(self.folder)
        run = forks.run(*argv, file_size_limit=room if self.kind == "file_size_limit" else None)
        assert run.wait() == ExitCode.OUTPUT_ERROR, run.lines[-10:]
        assert tree_state(self.folder) == before, "the disk changed"
        error = run.events[-1]
        assert error["event"] == "error" and error["exit_code"] == ExitCode.OUTPUT_ERROR
        expected = ("disk full while writing", "free space on the disk holding") if self.kind == "tmpfs" else ("file too large while writing", "raise the file-size limit")
        assert expected[0] in error["message"] and expected[1] in error["hint"], error
        return error


@pytest.fixture(params=["tmpfs", "file_size_limit"])
def full_disk(request, tmp_path) -> Iterator[FullDisk]:
    folder = tmp_path / "disk"
    folder.mkdir()
    if request.param == "file_size_limit":
        yield FullDisk(folder, "file_size_limit")
        return
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={DISK_BYTES}", "tmpfs", str(folder)], capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({mounted.stderr.strip()}); the file-size-limit case runs the same code")
    try:
        yield FullDisk(folder, "tmpfs")
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=True)


@pytest.fixture(scope="module")
def small_bundle(phantom_cohort, engine_forks, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("full_disk") / "bundle"
    assert engine_forks.run(*train_argv(phantom_cohort[0], root)).wait() == 0
    return root


@pytest.fixture(scope="module")
def pancreas_labels(phantom_cohort, tmp_path_factory) -> Path:
    seg8 = nib.load(str(phantom_cohort[2] / "label_seg8.nii.gz"))
    path = tmp_path_factory.mktemp("full_disk") / "pancreas.nii.gz"
    nib.save(nib.Nifti1Image((np.asarray(seg8.dataobj) == 6).astype(np.uint8), seg8.affine), str(path))
    return path


@pytest.mark.parametrize(("checkpoint_every", "failing_file"), [(100, "versions/1.1.0/models/model.pt"), (1, "checkpoint.pt")])
def test_learn_on_a_full_disk_leaves_the_bundle_as_it_was(full_disk, small_bundle, phantom_cohort, pancreas_labels, engine_forks, checkpoint_every, failing_file):
    root = full_disk.folder / "bundle"
    subprocess.run(["cp", "-a", str(small_bundle), str(root)], check=True)
    argv = learn_argv(root, phantom_cohort[2] / "image.nii.gz", pancreas_labels, "--checkpoint-every", checkpoint_every)
    error = full_disk.run(engine_forks, argv)
    assert str(root) in error["message"] and failing_file in error["message"]


def test_train_on_a_full_disk_leaves_no_bundle_and_no_checkpoint(full_disk, phantom_cohort, engine_forks):
    error = full_disk.run(engine_forks, train_argv(phantom_cohort[0], full_disk.folder / "new", "--checkpoint-every", 100))
    assert str(full_disk.folder / "new" / "versions" / "1.0.0" / "models" / "model.pt") in error["message"]


def test_segment_on_a_full_disk_writes_nothing(full_disk, small_bundle, phantom_cohort, engine_forks):
    output = full_disk.folder / "labels.nii.gz"
    error = full_disk.run(engine_forks, ["segment", "-b", small_bundle, "-i", phantom_cohort[3] / "image.nii.gz", "-o", output, "--progress", "jsonl"], room=0)
    assert str(output) in error["message"]
