"""The Slicer module loads wherever it is installed, with only its own folder on ``sys.path`` (as Slicer does).

A fresh isolated interpreter (``module_import_probe.py``) runs the module file's own imports, builds the
workflow logic and its engine launcher, and reports where the engine came from. slicer-core lacks Slicer's
GUI framework (``ScriptedLoadableModule``, ``parameterNodeWrapper``, ``qt``), so the module's classes
themselves are not instantiated here; the static API check covers those calls.
"""
from __future__ import annotations

import json
import shutil
import site
import subprocess
import sys
from pathlib import Path
from typing import Any

from slicer_logic_helpers import REPO_ROOT

PROBE = Path(__file__).with_name("module_import_probe.py")
MODULE_DIR = REPO_ROOT / "CISSegmentation"
NO_CACHE = shutil.ignore_patterns("__pycache__")


def load_module(module_dir: Path) -> dict[str, Any]:
    completed = subprocess.run(
        [sys.executable, "-I", "-S", str(PROBE), str(module_dir), *site.getsitepackages()],
        capture_output=True, text=True, check=True, env={"PATH": ""}, cwd=module_dir,
    )
    report = json.loads(completed.stdout)
    # Only an engine in the module's own folder (the extension layout) may be importable before the module runs.
    assert report["engine_before"] in (None, str(module_dir.resolve() / "ciss_engine" / "__init__.py")), "the installed project leaks in"
    return report


def copy_module(destination: Path) -> Path:
    """The module as Slicer finds it: ``CISSegmentation.py`` and ``CISSegmentationLib/`` in one folder."""
    destination.mkdir(parents=True)
    shutil.copy2(MODULE_DIR / "CISSegmentation.py", destination)
    shutil.copytree(MODULE_DIR / "CISSegmentationLib", destination / "CISSegmentationLib", ignore=NO_CACHE)
    return destination


def assert_engine_from(report: dict[str, Any], module_dir: Path, engine_dir: Path) -> None:
    assert report["error"] is None
    assert report["lib_file"] == str(module_dir.resolve() / "CISSegmentationLib" / "__init__.py")
    assert report["engine_file"] == str(engine_dir.resolve() / "ciss_engine" / "__init__.py")
    assert report["pythonpath"] == [str(engine_dir.resolve())]
    assert report["engine_env_pythonpath"] == str(engine_dir.resolve())
    assert report["command"][1:] == ["-m", "ciss_engine", "--version"]
    assert report["heavy_modules"] == []  # before the first install, Slicer's Python has none of them


def test_module_path_install_finds_the_engine_of_the_checkout():
    """README install: the checkout's CISSegmentation/ folder is an Additional module path."""
    assert_engine_from(load_module(MODULE_DIR), MODULE_DIR, REPO_ROOT)


def test_extension_layout_prefers_the_engine_beside_the_module(tmp_path):
    """The CMake build puts ciss_engine/ beside the module; it wins over a copy one level up."""
    modules = copy_module(tmp_path / "qt-scripted-modules")
    for engine_dir in (modules, tmp_path):
        shutil.copytree(REPO_ROOT / "ciss_engine", engine_dir / "ciss_engine", ignore=NO_CACHE)
    assert_engine_from(load_module(modules), modules, modules)


def test_module_folder_without_engine_says_where_it_looked(tmp_path):
    """A copy of CISSegmentation/ alone: Install engine cannot help (it installs the engine's dependencies)."""
    modules = copy_module(tmp_path / "CISSegmentation")
    error = load_module(modules)["error"]
    assert error.startswith("ModuleNotFoundError: CISSegmentation cannot find its engine package ciss_engine/")
    assert str(modules.resolve()) in error and f"{tmp_path.resolve()}:" in error and "complete clone" in error
