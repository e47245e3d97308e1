"""Run the module's self-test (``CISSegmentationTest``: the whole workflow on a phantom) in a real 3D Slicer.

    python Testing/slicer_logic/run_slicer_selftest.py --slicer /opt/Slicer/Slicer

``--slicer`` defaults to ``$SLICER_EXECUTABLE``. Slicer's own Python must hold the engine's packages
(the module's Install button, or ``PythonSlicer -m pip install torch -r CISSegmentation/CISSegmentationLib/engine-requirements.txt``).
Without a display it runs under ``xvfb-run`` when available, else with Qt's offscreen platform.
Exit status: Slicer's (0 = every test passed).
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
MODULE_DIR = REPO_ROOT / "CISSegmentation"


def selftest_command(slicer: str) -> tuple[list[str], dict[str, str]]:
    """The command line and environment that run ``CISSegmentationTest`` through ``slicer.testing``."""
    code = (
        "import slicer.testing; "
        f"slicer.testing.runUnitTest([{str(MODULE_DIR)!r}, {str(REPO_ROOT)!r}], 'CISSegmentation')"
    )
    command = [slicer, "--no-splash", "--testing", "--additional-module-paths", str(MODULE_DIR), "--python-code", code]
    env = dict(os.environ)
    if sys.platform.startswith("linux") and not env.get("DISPLAY"):
        if shutil.which("xvfb-run"):
            command = ["xvfb-run", "--auto-servernum", "--server-args=-screen 0 1280x1024x24", *command]
        else:
            env["QT_QPA_PLATFORM"] = "offscreen"
    return command, env


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slicer", default=os.environ.get("SLICER_EXECUTABLE"), help="Slicer executable (default: $SLICER_EXECUTABLE)")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds before the run is stopped (default 3600)")
    args = parser.parse_args(argv)
    if not args.slicer or not Path(args.slicer).exists():
        parser.error("give the Slicer executable with --slicer or SLICER_EXECUTABLE")
    command, env = selftest_command(args.slicer)
    print(" ".join(command), flush=True)
    return subprocess.run(command, env=env, timeout=args.timeout).returncode


if __name__ == "__main__":
    sys.exit(main())
