"""kill -9 in a loop: ``ciss learn``, ``ciss train`` and ``ciss rollback`` are SIGKILLed at 10 points each, and
every time the bundle still opens, its current version is intact and loads, and the same command run again
(``--resume`` for learn and train) finishes with a model bit-identical to an uninterrupted run's.

The points are the dangerous instants of the write path, where the engine freezes itself on request
(``CISS_FAULT_POINT``, fault_points.py) so the kill lands exactly there, and points drawn with a fixed seed
from the events a run prints (there the kill lands wherever the run is by then: inside an iteration, a
checkpoint write, the old model's pass). Runs are real processes forked from a warm interpreter
(engine_forks.py). benchmarks/kill_loop.py runs the same loop for many more points.
"""
import random
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from crash_consistency import (
    assert_current_version_intact, assert_nothing_left_over, assert_same_model, finish, kill_points, kill_run, learn_argv, model_of,
    train_argv, tree_state,
)

from ciss_engine.bundle import Bundle
from ciss_engine.errors import BundleError
from ciss_engine.training.base import work_dir_for

SEED = 16
KILLS = 10


@pytest.fixture(scope="module")
def pancreas_labels(phantom_cohort, tmp_path_factory) -> Path:
    case = phantom_cohort[2]
    seg8 = nib.load(str(case / "label_seg8.nii.gz"))
    path = tmp_path_factory.mktemp("kill_loop") / "pancreas.nii.gz"
    nib.save(nib.Nifti1Image((np.asarray(seg8.dataobj) == 6).astype(np.uint8), seg8.affine), str(path))
    return path


@pytest.fixture(scope="module")
def trained(phantom_cohort, engine_forks, tmp_path_factory) -> tuple[list[dict], Path]:
    """An uninterrupted ``ciss train``: its events and bundle (the base of the learn step below)."""
    root = tmp_path_factory.mktemp("trained") / "bundle"
    run = engine_forks.run(*train_argv(phantom_cohort[0], root))
    assert run.wait() == 0, run.lines[-10:]
    return run.events, root


@pytest.fixture(scope="module")
def learned(trained, phantom_cohort, pancreas_labels, engine_forks, tmp_path_factory) -> tuple[list[dict], Path]:
    """An uninterrupted ``ciss learn`` adding the pancreas to the trained bundle: its events and bundle."""
    root = Path(shutil.copytree(trained[1], tmp_path_factory.mktemp("learned") / "bundle"))
    run = engine_forks.run(*learn_argv(root, phantom_cohort[2] / "image.nii.gz", pancreas_labels))
    assert run.wait() == 0, run.lines[-10:]
    return run.events, root


def test_learn_killed_anywhere_resumes_to_the_uninterrupted_model(trained, learned, phantom_cohort, pancreas_labels, engine_forks, tmp_path):
    base, (events, reference) = trained[1], learned
    parent = tree_state(base / "versions" / "1.0.0")
    points = kill_points(events, "1.1.0", KILLS, random.Random(SEED))
    for index, point in enumerate(points):
        root = shutil.copytree(base, tmp_path / f"bundle{index}")
        command = learn_argv(root, phantom_cohort[2] / "image.nii.gz", pancreas_labels)
        kill_run(engine_forks, command, point)
        assert assert_current_version_intact(root) in ("1.0.0", "1.1.0"), point
        finish(engine_forks, [*command, "--resume"])
        assert assert_current_version_intact(root) == "1.1.0", point
        assert_same_model(model_of(root), model_of(reference))
        assert tree_state(root / "versions" / "1.0.0") == parent, f"the parent version changed ({point})"
        assert_nothing_left_over(root, ["1.0.0", "1.1.0"])
    assert len(points) == KILLS


def test_train_killed_anywhere_resumes_to_the_uninterrupted_model(trained, phantom_cohort, engine_forks, tmp_path):
    events, reference = trained
    points = kill_points(events, "1.0.0", KILLS, random.Random(SEED))
    for index, point in enumerate(points):
        root = tmp_path / f"bundle{index}"
        command = train_argv(phantom_cohort[0], root)
        kill_run(engine_forks, command, point)
        if (root / "bundle.json").exists():
            assert assert_current_version_intact(root) == "1.0.0", point
        else:  # killed before its first version became current: no bundle yet, and it says so
            with pytest.raises(BundleError):
                Bundle.open_or_raise(root)
        finish(engine_forks, [*command, "--resume"])
        assert assert_current_version_intact(root) == "1.0.0", point
        assert_same_model(model_of(root), model_of(reference))
        assert_nothing_left_over(root, ["1.0.0"])
        assert not work_dir_for(root).exists(), point
    assert len(points) == KILLS


def test_rollback_killed_anywhere_leaves_either_version_current(learned, engine_forks, tmp_path):
    root = shutil.copytree(learned[1], tmp_path / "bundle")
    versions = {version: tree_state(root / "versions" / version) for version in ("1.0.0", "1.1.0")}
    for index in range(KILLS):
        before = Bundle.open_or_raise(root).current_version
        target = "1.0.0" if before == "1.1.0" else "1.1.0"
        command = ["rollback", "-b", root, "--to", target, "--progress", "jsonl"]
        kill_run(engine_forks, command, ["locked", "replace:bundle.json"][index % 2])
        assert assert_current_version_intact(root) in (before, target)
        finish(engine_forks, command)
        assert assert_current_version_intact(root) == target
        assert_nothing_left_over(root, ["1.0.0", "1.1.0"])
        assert {version: tree_state(root / "versions" / version) for version in versions} == versions, "a version changed"
