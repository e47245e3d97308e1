"""Errors the engine reports to people, and the exit codes the CLI returns for them.

Every error carries a ``hint`` naming the file and the fix, because the reader is a clinician
or a CI log, not a Python developer.
"""
from __future__ import annotations

import enum


class ExitCode(enum.IntEnum):
    """Process exit codes of ``ciss``; documented in the README and read by the Slicer job runner."""

    OK = 0
    INTERNAL_ERROR = 1
    USAGE_ERROR = 2
    INPUT_ERROR = 3
    BUNDLE_ERROR = 4
    OUTPUT_ERROR = 5
    FORGETTING_REJECTED = 6
    OUT_OF_MEMORY = 7  # CUDA or host memory ran out (docs/reliability.md): the run needs less memory, not a bug report
    CANCELLED = 130


def error_text(message: str, hint: str = "") -> str:
    """How an error reads in a terminal or a log, wherever it is shown: ``error: …`` then ``  hint: …``."""
    return f"error: {message}" + (f"\n  hint: {hint}" if hint else "")


class CissError(Exception):
    """An error with a message, a hint that names the file and the fix, and an exit code."""

    exit_code: ExitCode = ExitCode.INTERNAL_ERROR

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message}\n  hint: {self.hint}" if self.hint else self.message


class InputError(CissError):
    """Bad CT, label or argument given by the user."""

    exit_code = ExitCode.INPUT_ERROR


class BundleError(CissError):
    """A bundle that is missing, damaged, foreign or in the wrong state."""

    exit_code = ExitCode.BUNDLE_ERROR


class OutputError(CissError):
    """An output that cannot be written (permissions, full disk)."""

    exit_code = ExitCode.OUTPUT_ERROR


class ForgettingRejected(CissError):
    """The forgetting guard kept a new version from becoming current."""

    exit_code = ExitCode.FORGETTING_REJECTED


class TrainingDiverged(CissError):
    """The gradient stayed NaN or infinite for many iterations in a row: the settings (learning rate) do not fit."""

    exit_code = ExitCode.INPUT_ERROR


class Cancelled(CissError):
    """The run was cancelled by SIGINT/SIGTERM; a resumable checkpoint was left."""

    exit_code = ExitCode.CANCELLED
