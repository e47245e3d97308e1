"""DICOM in and out: read a CT series folder, write RTSTRUCT and SEG that reference it.

Imports are lazy (PEP 562) so that ``is_dicom_folder`` costs no highdicom import for NIfTI inputs.
"""
from __future__ import annotations

import importlib
from typing import Any

# What ``ciss export`` writes: RTSTRUCT contours (for planning systems) and DICOM SEG.
EXPORT_FORMATS = ("rtstruct", "seg")

_EXPORTS = {
    "CtSeries": "series",
    "DicomWarning": "series",
    "dicom_reference": "series",
    "is_dicom_folder": "series",
    "read_ct_series": "series",
    "scan_series": "series",
    "read_rtstruct": "rtstruct",
    "write_rtstruct": "rtstruct",
    "read_seg": "seg",
    "write_seg": "seg",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
