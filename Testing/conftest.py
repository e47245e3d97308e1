"""Session fixtures: a phantom cohort, a tiny trained bundle and a bundle that paints organs.

The tiny bundle is trained once per session with settings that take seconds (8 filters, 32³
patches, a few iterations): tests pin correctness, not accuracy (accuracy lives in benchmarks/). It predicts
almost no organ voxel; tests that need organs in a result use the painting bundle (painting_bundle.py).
"""
from __future__ import annotations

import os

# One math thread per process: tests run engine subprocesses beside the pytest process, and on 2 cores
# oversubscribed OpenMP threads spin (measured: a tiny training iteration took 4.1 s with 2 threads
# under load against 0.045 s with 1).
os.environ["OMP_NUM_THREADS"] = "1"

import sys
from pathlib import Path

import pytest
from ciss_test_helpers import TINY_PHANTOM, TINY_TRAIN_ARGS, new_organ_labels, run_cli

@pytest.fixture(scope="session")
def phantom_cohort(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Four small synthetic cases (image.nii.gz + label_seg8.nii.gz), made by the project itself."""
    from ciss_engine.phantom import write_cohort

    return write_cohort(tmp_path_factory.mktemp("phantom"), 4, 0, **TINY_PHANTOM)


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory: pytest.TempPathFactory, phantom_cohort: list[Path]) -> Path:
    """A base bundle on 4 organs of the phantom, trained for a few iterations."""
    output = tmp_path_factory.mktemp("bundles") / "tiny"
    code = run_cli(
        "train", "-i", *[c / "image.nii.gz" for c in phantom_cohort[:2]], "-l", *[c / "label_seg8.nii.gz" for c in phantom_cohort[:2]],
        "--organs", "spleen=1,kidney_right=2,kidney_left=3,gallbladder=4", "--other-labels", "background", "-o", output,
        *TINY_TRAIN_ARGS, "--quiet",
    )
    assert code == 0
    return output


@pytest.fixture(scope="session")
def painting_bundle(tmp_path_factory: pytest.TempPathFactory, tiny_bundle: Path, phantom_cohort: list[Path]) -> Path:
    """The tiny bundle with a classifier that paints every organ on about 5 % of a phantom CT, on any machine."""
    from painting_bundle import paint_organs

    return paint_organs(tiny_bundle, tmp_path_factory.mktemp("bundles") / "painting", phantom_cohort[2] / "image.nii.gz")


@pytest.fixture()
def painted_bundle(painting_bundle: Path, tmp_path: Path) -> Path:
    """A copy of the painting bundle that a test may change."""
    import shutil

    return Path(shutil.copytree(painting_bundle, tmp_path / "painted_bundle"))


@pytest.fixture()
def step_labels(phantom_cohort: list[Path], tmp_path: Path) -> list[Path]:
    """pancreas (seg8 6) = 1 and liver (seg8 7) = 2 on two phantom cases (their CTs: ciss_test_helpers.step_images)."""
    return [new_organ_labels(c, tmp_path / f"new_{i}.nii.gz", {6: 1, 7: 2}) for i, c in enumerate(phantom_cohort[2:4])]


@pytest.fixture()
def bundle(tiny_bundle: Path, tmp_path: Path) -> Path:
    """A copy of the tiny bundle that a test may change (learn, adapt, lock, roll back)."""
    import shutil

    return Path(shutil.copytree(tiny_bundle, tmp_path / "bundle"))


@pytest.fixture(scope="session")
def python_executable() -> str:
    return sys.executable


@pytest.fixture(scope="session")
def engine_forks(tmp_path_factory: pytest.TempPathFactory):
    """A server that forks ``ciss`` runs from a warm interpreter (engine_forks.py): for tests that kill dozens."""
    from engine_forks import EngineForks

    server = EngineForks(env={"XDG_STATE_HOME": str(tmp_path_factory.mktemp("crash_logs"))})
    yield server
    server.close()


@pytest.fixture()
def cudnn_left_free(monkeypatch: pytest.MonkeyPatch) -> None:
    """cuDNN free to pick any algorithm (as a fresh process may have it), so a test sees whether a run holds it to deterministic ones."""
    import torch

    monkeypatch.setattr(torch.backends.cudnn, "deterministic", False)
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", True)
