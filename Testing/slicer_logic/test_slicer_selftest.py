"""The module's self-test in a real 3D Slicer, where ``SLICER_EXECUTABLE`` points to one; skipped elsewhere."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from run_slicer_selftest import MODULE_DIR, main, selftest_command  # noqa: E402

SLICER = os.environ.get("SLICER_EXECUTABLE")


def test_command_loads_the_module_and_its_engine_from_this_checkout():
    command, _ = selftest_command("/opt/Slicer/Slicer")
    assert command[command.index("--additional-module-paths") + 1] == str(MODULE_DIR)
    assert "runUnitTest" in command[-1] and str(MODULE_DIR.parent) in command[-1]


@pytest.mark.skipif(not SLICER, reason="SLICER_EXECUTABLE is not set: no real 3D Slicer on this machine")
def test_module_self_test_passes_in_real_slicer():
    assert main(["--slicer", SLICER]) == 0
