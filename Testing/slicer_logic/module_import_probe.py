"""Loads the Slicer module the way Slicer does: its folder alone on ``sys.path``, the project not installed.

Run as ``python -I -S module_import_probe.py MODULE_DIR SITE_PACKAGES...``: ``-S`` skips the
``.pth`` files, so the project's editable install stays off, and only slicer-core and the other third-party
packages come from ``SITE_PACKAGES``. Prints one JSON object: where the engine was importable from before,
the import error if any, else where the engine and the Lib came from and the engine command the workflow
logic would run.
"""
from __future__ import annotations

import ast
import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

HEAVY_MODULES = ("torch", "monai", "nibabel", "psutil", "qt")
OWN_PACKAGES = ("CISSegmentationLib", "ciss_engine")


def own_imports(module_file: Path) -> list[str]:
    """The module file's top-level imports of the Lib and the engine, in file order.

    The others are Slicer's GUI framework (``slicer.ScriptedLoadableModule``, ``parameterNodeWrapper``),
    which slicer-core does not have.
    """
    statements = []
    for node in ast.parse(module_file.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.ImportFrom):
            names = [node.module or ""]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        if any(name.split(".")[0] in OWN_PACKAGES for name in names):
            statements.append(ast.unparse(node))
    return statements


def probe(module_dir: Path) -> dict[str, Any]:
    before = importlib.util.find_spec("ciss_engine")
    report: dict[str, Any] = {"engine_before": str(Path(before.origin).resolve()) if before else None}
    namespace: dict[str, Any] = {}
    try:
        for statement in own_imports(module_dir / "CISSegmentation.py"):
            exec(statement, namespace)
    except ImportError as error:
        return {**report, "error": f"{type(error).__name__}: {error}"}
    import ciss_engine
    import CISSegmentationLib
    import slicer

    # What CISSegmentationLogic.workflow() builds, on a slicer-core scene instead of slicer.mrmlScene.
    workflow = namespace["WorkflowLogic"](slicer.vtkMRMLScene())
    launcher = workflow.launcher  # EngineLauncher.default(), as in the panel
    workflow.cleanup()
    return {
        **report,
        "error": None,
        "engine_file": str(Path(ciss_engine.__file__).resolve()),
        "lib_file": str(Path(CISSegmentationLib.__file__).resolve()),
        "pythonpath": list(launcher.pythonpath),
        "engine_env_pythonpath": launcher.environment()["PYTHONPATH"],
        "command": launcher.command("--version", progress=False),
        "heavy_modules": sorted(m for m in HEAVY_MODULES if m in sys.modules),
    }


if __name__ == "__main__":
    module_dir, *site_packages = sys.argv[1:]
    sys.path[:0] = [module_dir]
    sys.path.extend(site_packages)
    print(json.dumps(probe(Path(module_dir))))
