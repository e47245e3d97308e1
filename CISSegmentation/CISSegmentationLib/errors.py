"""Errors of the Slicer side; the engine's own error classes are reused so one hint style holds.

The engine package ``ciss_engine`` ships inside the extension (its torch-free modules are imported
here); its heavy dependencies are installed on first use (``install_logic``).
"""
from __future__ import annotations

from ciss_engine.errors import BundleError, CissError, InputError, OutputError

__all__ = ["BundleError", "CissError", "EngineFailedError", "EngineNotInstalledError", "InputError", "OutputError"]


class EngineNotInstalledError(CissError):
    """The engine's Python packages are missing, or the engine's Python cannot be started."""


class EngineFailedError(CissError):
    """The engine process failed or crashed; ``log_tail`` holds its last log lines for the user."""

    def __init__(self, message: str, hint: str = "", log_tail: str = "") -> None:
        super().__init__(message, hint)
        self.log_tail = log_tail
