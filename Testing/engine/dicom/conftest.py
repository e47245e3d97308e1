"""Fixtures of the DICOM tests: synthetic series folders, the real dcmqi series, the dciodvfy validator."""
from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from ciss_test_helpers import data_dir

from .synthetic_dicom import SyntheticSeries, phantom_hu, rotation, write_ct_series


@pytest.fixture
def make_series(tmp_path: Path) -> Callable[..., SyntheticSeries]:
    """``make_series(name, hu=None, **geometry)`` → a series folder under tmp_path."""

    def make(name: str, hu: np.ndarray | None = None, **kwargs: object) -> SyntheticSeries:
        return write_ct_series(tmp_path / name, phantom_hu() if hu is None else hu, **kwargs)  # type: ignore[arg-type]

    return make


@pytest.fixture
def oblique_series(make_series: Callable[..., SyntheticSeries]) -> SyntheticSeries:
    return make_series("oblique", rotation_matrix=rotation(25.0, -15.0, 10.0))


@pytest.fixture
def dcmqi_folder() -> Path:
    """The real three-slice GE series (uncompressed) with its liver SEG and NRRD label, or skip."""
    folder = data_dir() / "dicom" / "dcmqi_ct3slice"
    if not (folder / "ct").is_dir():
        pytest.skip(f"dcmqi test series not found under {data_dir()} (set CISS_DATA)")
    return folder


@pytest.fixture
def dciodvfy() -> Callable[[Path], list[str]]:
    """Run Debian dicom3tools' IOD validator on a file; its 'Error' lines (none = valid)."""
    executable = shutil.which("dciodvfy")
    if executable is None:
        pytest.skip("dciodvfy is not installed (apt-get install dicom3tools); files are checked by read-back only")

    def validate(path: Path) -> list[str]:
        result = subprocess.run([executable, "-new", str(path)], capture_output=True, text=True, timeout=60)
        return [line for line in (result.stdout + result.stderr).splitlines() if line.startswith(("Error", "Abort"))]

    return validate


