"""Where the engine package ``ciss_engine`` lives, put on ``sys.path`` before anything here imports it.

Slicer puts only the module folder on ``sys.path``. The extension build copies the engine beside the
module; a module-path install (a checkout whose ``CISSegmentation/`` folder is an *Additional module
path*) has it one level up. Standard library only: this runs before anything else of the package.
"""
from __future__ import annotations

import sys
from pathlib import Path

ENGINE_PACKAGE = "ciss_engine"
_MODULE_DIR = Path(__file__).resolve().parent.parent
# In this order: the extension's own copy, then the checkout around the module folder.
ENGINE_SEARCH_DIRS = (_MODULE_DIR, _MODULE_DIR.parent)


def shipped_engine_dir_or_raise() -> Path:
    """The folder holding the engine that came with this module (the engine process gets it on ``PYTHONPATH``)."""
    for folder in ENGINE_SEARCH_DIRS:
        if (folder / ENGINE_PACKAGE / "__main__.py").is_file():
            return folder
    searched = " and ".join(str(f) for f in ENGINE_SEARCH_DIRS)
    raise ModuleNotFoundError(
        f"CISSegmentation cannot find its engine package {ENGINE_PACKAGE}/ in {searched}: add the CISSegmentation/ "
        "folder of a complete clone of the repository as the module path (not a copy of that folder alone), "
        "or install the CISSegmentation extension",
        name=ENGINE_PACKAGE,
    )


def put_engine_on_path_or_raise() -> None:
    """Make the shipped engine importable ahead of any other copy: the engine process runs the shipped one too."""
    folder = str(shipped_engine_dir_or_raise())
    if folder not in sys.path:
        sys.path.insert(0, folder)
