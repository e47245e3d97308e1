"""First-use install: requirement checks in a real interpreter and pip's real offline failure."""
from __future__ import annotations

import sys
import tomllib

import pytest
from slicer_logic_helpers import REPO_ROOT

from CISSegmentationLib.engine_commands import EngineLauncher
from CISSegmentationLib.errors import EngineNotInstalledError
from CISSegmentationLib.install_logic import (
    TORCH_REQUIREMENT,
    SlicerInstaller,
    confirmation_text,
    missing_requirements_or_raise,
    pip_install_or_raise,
    read_requirements,
)

LAUNCHER = EngineLauncher(python=sys.executable, pythonpath=(str(REPO_ROOT),))


def _must_not_ask(text: str) -> bool:
    raise AssertionError(f"asked for confirmation although nothing is missing: {text}")


def test_requirements_file_matches_the_engine_dependencies():
    """Slicer installs what pyproject.toml declares: torch through PyTorchUtils, the rest with pip."""
    declared = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert sorted(read_requirements()) == sorted(d for d in declared if not d.startswith("torch"))
    assert TORCH_REQUIREMENT in declared


def test_missing_packages_are_found_in_the_engine_interpreter():
    assert missing_requirements_or_raise(LAUNCHER, [TORCH_REQUIREMENT, *read_requirements()]) == []
    wanted = ["torch<1.0", "ciss-package-that-does-not-exist>=1", "numpy>=1.0"]
    assert missing_requirements_or_raise(LAUNCHER, wanted) == wanted[:2]


def test_installer_asks_once_and_only_when_something_is_missing():
    assert SlicerInstaller(LAUNCHER, [TORCH_REQUIREMENT]).install_or_raise(_must_not_ask) is True
    asked = []
    assert SlicerInstaller(LAUNCHER, ["torch<1.0"]).install_or_raise(lambda text: asked.append(text) or False) is False
    assert len(asked) == 1 and "torch<1.0" in asked[0] and "1-3 GB" in asked[0]
    assert "1-3 GB" not in confirmation_text(["monai==1.6.1"])


def test_offline_install_gives_a_clear_message():
    """pip without an index (as on a machine without internet) fails; the message says what to do."""
    with pytest.raises(EngineNotInstalledError, match="no internet connection") as caught:
        pip_install_or_raise(LAUNCHER, ["ciss-package-that-does-not-exist==0.0.1"], extra_args=["--no-index"])
    assert "--no-index --find-links" in caught.value.hint


def test_unrunnable_engine_python_is_reported(tmp_path):
    with pytest.raises(EngineNotInstalledError, match="cannot run"):
        missing_requirements_or_raise(EngineLauncher(python=str(tmp_path / "missing-python")), ["numpy"])
