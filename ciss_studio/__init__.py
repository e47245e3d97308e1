"""CISS Studio: the clinical workflow of CISSegmentation in a web browser, on trame-slicer.

The studio reuses the Slicer logic of the desktop module (``CISSegmentationLib``) on the scene of a
trame-slicer app, and runs the engine as a separate process (``python -m ciss_engine … --progress
jsonl``), so this process never imports torch. Start it with ``ciss-studio`` (docs/studio.md).
"""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path


def _make_slicer_lib_importable() -> None:
    """In a source checkout ``CISSegmentationLib`` lives in the Slicer module folder, not on ``sys.path``."""
    if importlib.util.find_spec("CISSegmentationLib") is None:
        module_dir = Path(__file__).resolve().parent.parent / "CISSegmentation"
        if (module_dir / "CISSegmentationLib" / "__init__.py").is_file():
            sys.path.append(str(module_dir))


_make_slicer_lib_importable()
