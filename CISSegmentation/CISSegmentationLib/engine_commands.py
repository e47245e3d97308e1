"""The engine's command lines: which Python runs ``-m ciss_engine``, and the arguments of each command.

Inside Slicer the engine runs under ``PythonSlicer`` (Slicer's own Python, where the install step put
torch and monai); elsewhere under this Python. ``CISS_ENGINE_PYTHON`` overrides both, e.g. to use a
separate environment with a CUDA build of torch.
"""
from __future__ import annotations

import dataclasses
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from ciss_engine.api.presets import DEFAULT_ADAPT_PRESET, DEFAULT_PRESET, PRESETS
from ciss_engine.dicom import EXPORT_FORMATS as DICOM_FORMATS

from .engine_location import ENGINE_PACKAGE, shipped_engine_dir_or_raise
from .errors import EngineFailedError, EngineNotInstalledError
from .job_runner import EngineJob, JobCallbacks

MISSING_MODULE = re.compile(r"No module named '?([\w.]+)'?")


@dataclasses.dataclass(frozen=True)
class EngineLauncher:
    """How to start the engine: an interpreter and the folders to put on its ``PYTHONPATH``."""

    python: str
    pythonpath: tuple[str, ...] = ()

    @classmethod
    def default(cls) -> EngineLauncher:
        python = os.environ.get("CISS_ENGINE_PYTHON") or shutil.which("PythonSlicer") or sys.executable
        return cls(python=python, pythonpath=(str(shipped_engine_dir_or_raise()),))

    def command(self, *args: str | os.PathLike[str], progress: bool = True) -> list[str]:
        """``python -m ciss_engine ARGS --progress jsonl`` (the flag belongs to the sub-command)."""
        command = [self.python, "-m", ENGINE_PACKAGE, *[str(a) for a in args]]
        return command + ["--progress", "jsonl"] if progress else command

    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        if self.pythonpath:
            env["PYTHONPATH"] = os.pathsep.join([*self.pythonpath, *filter(None, [env.get("PYTHONPATH")])])
        # Unbuffered: events must arrive as they happen, not when a buffer fills.
        env["PYTHONUNBUFFERED"] = "1"
        return env

    @property
    def working_dir(self) -> str:
        """A neutral folder: ``-m`` puts the working folder on ``sys.path``, which must not shadow packages."""
        return tempfile.gettempdir()

    def job(self, *args: str | os.PathLike[str], callbacks: JobCallbacks | None = None, cancel_grace_s: float = 10.0) -> EngineJob:
        """An (unstarted) engine run of ``ciss ARGS`` with JSON-line progress."""
        return EngineJob(self.command(*args), env=self.environment(), cwd=self.working_dir, callbacks=callbacks, cancel_grace_s=cancel_grace_s,
                         engine_command=str(args[0]))

    def check_or_raise(self, timeout_s: float = 120.0) -> str:
        """Run ``ciss --version``; the version text, or an error saying how to install the engine."""
        hint = "install the engine: CISSegmentation → Install engine (needs internet once), then restart Slicer"
        try:
            completed = subprocess.run(
                self.command("--version", progress=False), capture_output=True, text=True, env=self.environment(),
                cwd=self.working_dir, timeout=timeout_s,
            )
        except (OSError, subprocess.TimeoutExpired) as error:
            raise EngineNotInstalledError(f"cannot run the engine's Python {self.python}: {error}", hint) from error
        if completed.returncode != 0:
            last_line = (completed.stderr.strip().splitlines() or ["no output"])[-1]
            missing = MISSING_MODULE.search(last_line)
            # A missing engine or dependency means "install"; a missing engine sub-module means a broken engine.
            if missing and (missing.group(1) == ENGINE_PACKAGE or not missing.group(1).startswith(ENGINE_PACKAGE + ".")):
                raise EngineNotInstalledError(f"the engine is not installed in {self.python}: {last_line}", hint)
            raise EngineFailedError(
                f"the engine does not start: {last_line}",
                "reinstall the CISSegmentation extension; if it persists, report the log below",
                log_tail=completed.stderr[-4000:],
            )
        return completed.stdout.strip()


def _device_args(device: str) -> list[str]:
    return [] if device == "auto" else ["--device", device]


def segment_args(*, bundle: Path, image: Path, output: Path, version: str | None = None, device: str = "auto") -> list[str]:
    """``segment``: all organs of ``bundle`` on ``image`` into the label map ``output``."""
    args = ["segment", "-b", str(bundle), "-i", str(image), "-o", str(output), "--no-preview"]
    if version:
        args += ["--bundle-version", version]
    return args + _device_args(device)


def organ_spec(name: str, rgb: tuple[int, int, int] | None) -> str:
    """``NAME`` or ``NAME:#rrggbb`` as ``--organ`` takes it (hex: commas already separate the organs)."""
    return name if rgb is None else f"{name}:#{rgb[0]:02x}{rgb[1]:02x}{rgb[2]:02x}"


def _step_options(*, images: Sequence[Path], labels: Sequence[Path], preset: str, iterations: int | None, device: str,
                  accept_forgetting: bool) -> list[str]:
    """The data, budget, guard and device options ``learn`` and ``adapt`` share."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    args = ["-i", *[str(p) for p in images], "-l", *[str(p) for p in labels], "--preset", preset]
    if iterations:
        args += ["--iterations", str(iterations)]
    if accept_forgetting:
        args.append("--accept-forgetting")
    return args + _device_args(device)


def learn_args(*, bundle: Path, organs: Sequence[tuple[str, tuple[int, int, int] | None]], images: Sequence[Path], labels: Sequence[Path],
               preset: str = DEFAULT_PRESET, iterations: int | None = None, device: str = "auto", accept_forgetting: bool = False) -> list[str]:
    """``learn``: add ``organs`` (label values 1..n in this order in every label file) to ``bundle``."""
    return ["learn", "-b", str(bundle), "--organ", ",".join(organ_spec(n, c) for n, c in organs)] + _step_options(
        images=images, labels=labels, preset=preset, iterations=iterations, device=device, accept_forgetting=accept_forgetting)


def adapt_args(*, bundle: Path, organs: Sequence[tuple[str, int]], images: Sequence[Path], labels: Sequence[Path],
               preset: str = DEFAULT_ADAPT_PRESET, iterations: int | None = None, device: str = "auto", accept_forgetting: bool = False) -> list[str]:
    """``adapt``: the bundle's own ``organs`` (name, value in every label file) learned on a new site's CTs."""
    return ["adapt", "-b", str(bundle), "--organs", ",".join(f"{name}={value}" for name, value in organs)] + _step_options(
        images=images, labels=labels, preset=preset, iterations=iterations, device=device, accept_forgetting=accept_forgetting)


def rollback_args(*, bundle: Path, version: str, accept_forgetting: bool = False) -> list[str]:
    """``rollback``: make ``version`` current; ``accept_forgetting`` also takes a version the guard rejected."""
    args = ["rollback", "-b", str(bundle), "--to", version]
    return args + ["--accept-forgetting"] if accept_forgetting else args


def export_args(*, labels: Path, ct: Path, bundle: Path, output: Path, version: str | None = None,
                formats: Sequence[str] = DICOM_FORMATS) -> list[str]:
    """``export``: the label map ``labels`` made on the DICOM series folder ``ct`` as RTSTRUCT and/or SEG in ``output``.

    ``version`` is the bundle version that made the labels (its organs name the label values).
    """
    if not formats or any(f not in DICOM_FORMATS for f in formats):
        raise ValueError(f"invalid DICOM formats {list(formats)}; choose one or more of {', '.join(DICOM_FORMATS)}")
    args = ["export", "--labels", str(labels), "--ct", str(ct), "-b", str(bundle), "--format", ",".join(formats), "--output", str(output)]
    return args + ["--bundle-version", version] if version else args


def phantom_args(*, output: Path, cases: int, seed: int = 0, shape: tuple[int, int, int] | None = None, spacing_mm: float | None = None) -> list[str]:
    """``phantom``: synthetic CTs with 8 organ labels in ``output/case_NNN/`` (the self-test's data)."""
    args = ["phantom", "-o", str(output), "--cases", str(cases), "--seed", str(seed)]
    if shape:
        args += ["--shape", ",".join(str(n) for n in shape)]
    return args + (["--spacing", str(spacing_mm)] if spacing_mm else [])
