"""First use: find which engine packages the engine's Python lacks and install them after one confirmation.

In Slicer, torch comes through the PyTorch extension (``PyTorchUtils`` picks the CUDA build that fits
the GPU) and the rest through ``slicer.util.pip_install``; elsewhere (the studio) through
``python -m pip``. Checking runs in the engine's interpreter, because that is where the engine imports them.
"""
from __future__ import annotations

import json
import socket
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path

from .engine_commands import EngineLauncher
from .errors import EngineNotInstalledError

# Beside this file, so it travels with the package in Slicer and when installed with pip for the studio.
REQUIREMENTS_FILE = Path(__file__).with_name("engine-requirements.txt")
TORCH_REQUIREMENT = "torch>=2.4"
OFFLINE_SIGNS = ("Failed to establish a new connection", "Temporary failure in name resolution", "No matching distribution",
                 "Could not find a version", "Network is unreachable", "ConnectionError", "ReadTimeoutError")

# Runs in the engine's Python: which requirements are not satisfied (missing or wrong version)?
_CHECK_SCRIPT = """
import json, sys
from importlib import metadata
from packaging.requirements import Requirement
missing = []
for text in json.loads(sys.argv[1]):
    requirement = Requirement(text)
    try:
        installed = metadata.version(requirement.name)
    except metadata.PackageNotFoundError:
        missing.append(text)
        continue
    if not requirement.specifier.contains(installed, prereleases=True):
        missing.append(text)
print(json.dumps(missing))
"""


def read_requirements(path: Path = REQUIREMENTS_FILE) -> list[str]:
    """Requirement lines of ``path`` (comments and blank lines dropped)."""
    lines = (line.split("#", 1)[0].strip() for line in path.read_text(encoding="utf-8").splitlines())
    return [line for line in lines if line]


def missing_requirements_or_raise(launcher: EngineLauncher, requirements: Sequence[str]) -> list[str]:
    """The requirements the engine's Python does not satisfy yet."""
    command = [launcher.python, "-c", _CHECK_SCRIPT, json.dumps(list(requirements))]
    try:
        completed = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=launcher.working_dir)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise EngineNotInstalledError(f"cannot run {launcher.python}: {error}", "reinstall 3D Slicer, or set CISS_ENGINE_PYTHON to a working Python") from error
    if completed.returncode != 0:
        raise EngineNotInstalledError(
            f"cannot check the packages of {launcher.python}: {completed.stderr.strip().splitlines()[-1:]}",
            f"install 'packaging' in that Python ({launcher.python} -m pip install packaging)",
        )
    return json.loads(completed.stdout)


def confirmation_text(missing: Sequence[str]) -> str:
    """What the one confirmation dialog says before anything is downloaded."""
    torch_note = " PyTorch alone is about 1-3 GB;" if any(r.startswith("torch") for r in missing) else ""
    return (
        f"CISSegmentation needs these Python packages: {', '.join(missing)}.{torch_note} they are downloaded once from the "
        "internet and installed into Slicer's Python. This takes several minutes. Install now?"
    )


def install_failure(missing: Sequence[str], output: str) -> EngineNotInstalledError:
    """An install error that says whether the machine is offline and how to install without internet."""
    requirements = " ".join(missing)
    if any(sign in output for sign in OFFLINE_SIGNS):
        return EngineNotInstalledError(
            f"could not download {requirements}: this computer seems to have no internet connection",
            "connect to the internet and click Install again, or install offline: on a connected machine run "
            f"`pip download {requirements} -d wheels`, copy the folder, then run "
            f"`PythonSlicer -m pip install --no-index --find-links wheels {requirements}`",
        )
    last_lines = "\n".join(output.strip().splitlines()[-5:])
    return EngineNotInstalledError(f"installing {requirements} failed: {last_lines}", "see the Python console for pip's full output")


def pip_install_or_raise(launcher: EngineLauncher, missing: Sequence[str], *, extra_args: Sequence[str] = ()) -> None:
    """``python -m pip install MISSING`` in the engine's Python (outside Slicer, e.g. the studio)."""
    command = [launcher.python, "-m", "pip", "install", *extra_args, *missing]
    completed = subprocess.run(command, capture_output=True, text=True, cwd=launcher.working_dir)
    if completed.returncode != 0:
        raise install_failure(missing, completed.stdout + completed.stderr)


class SlicerInstaller:
    """Desktop Slicer: PyTorch through the PyTorch extension, the rest through ``slicer.util.pip_install``."""

    def __init__(self, launcher: EngineLauncher | None = None, requirements: Sequence[str] | None = None) -> None:
        self.launcher = launcher or EngineLauncher.default()
        self.requirements = list(requirements) if requirements is not None else [TORCH_REQUIREMENT, *read_requirements()]

    def install_or_raise(self, confirm: Callable[[str], bool]) -> bool:
        """Install what is missing after ``confirm(text)``; False when the user declined."""
        missing = missing_requirements_or_raise(self.launcher, self.requirements)
        if not missing:
            return True
        if not confirm(confirmation_text(missing)):
            return False
        torch = [r for r in missing if r.startswith("torch")]
        if torch:
            self._install_torch_or_raise(torch)
        rest = [r for r in missing if not r.startswith("torch")]
        if rest:
            self._pip_install_or_raise(rest)
        return True

    def _install_torch_or_raise(self, torch: Sequence[str]) -> None:
        try:
            import PyTorchUtils
        except ImportError as error:
            raise EngineNotInstalledError(
                "the PyTorch extension of 3D Slicer is not installed",
                "install 'PyTorch' from the Extensions Manager (View → Extensions Manager), restart Slicer, then click Install again",
            ) from error
        try:
            PyTorchUtils.PyTorchUtilsLogic().installTorch(askConfirmation=False, torchVersionRequirement=torch[0][len("torch"):])
        except Exception as error:  # PyTorchUtils raises whatever pip or light-the-torch raised
            raise install_failure(torch, str(error)) from error

    def _pip_install_or_raise(self, requirements: Sequence[str]) -> None:
        import slicer

        try:
            slicer.util.pip_install(list(requirements))
        except Exception as error:  # CalledProcessError; pip's own output went to the Python console
            offline = "" if _pypi_reachable() else OFFLINE_SIGNS[0]
            raise install_failure(requirements, f"{error}\n{offline}") from error


def _pypi_reachable(timeout_s: float = 3.0) -> bool:
    """Whether the package index answers at all (tells "offline" from other pip failures)."""
    try:
        socket.create_connection(("pypi.org", 443), timeout=timeout_s).close()
    except OSError:
        return False
    return True
