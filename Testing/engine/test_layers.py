"""The layers point one way (issue 18): the engine never imports a front end, the Slicer logic never imports
the engine's command modules, and ``ciss_engine.api`` stays standard-library only so that both sides import it.
Checked statically on every import statement of every file, those inside functions included."""
from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from ciss_test_helpers import REPO_ROOT

ENGINE = REPO_ROOT / "ciss_engine"
SLICER_LIB = REPO_ROOT / "CISSegmentation" / "CISSegmentationLib"


def _package(path: Path) -> str:
    """The dotted package of a source file, from the folder that holds its top-level package."""
    root = SLICER_LIB.parent if SLICER_LIB in path.parents else REPO_ROOT
    return ".".join(path.relative_to(root).parent.parts)


def imported_modules(path: Path) -> Iterator[str]:
    """Every module a file imports, relative imports resolved (``from . import x`` yields ``package.x``)."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = _package(path).split(".")
                base = ".".join([*parts[: len(parts) - node.level + 1], *filter(None, [node.module])])
            yield base
            yield from (f"{base}.{alias.name}" for alias in node.names)


def _violations(folder: Path, forbidden: tuple[str, ...]) -> list[str]:
    return sorted(
        f"{path.relative_to(REPO_ROOT)} imports {module}"
        for path in folder.rglob("*.py")
        for module in imported_modules(path)
        if any(module == name or module.startswith(name + ".") for name in forbidden)
    )


def test_relative_imports_are_resolved_to_their_package():
    """The check must see ``from ..commands import x`` as ``ciss_engine.commands``, or it would miss them."""
    modules = set(imported_modules(ENGINE / "commands" / "learn.py"))
    assert {"ciss_engine.api.settings", "ciss_engine.training.loop_config", "ciss_engine.commands.arguments"} <= modules


def test_the_engine_never_imports_a_front_end():
    assert _violations(ENGINE, ("ciss_studio", "CISSegmentationLib", "CISSegmentation")) == []


def test_the_slicer_logic_never_imports_the_engine_commands_or_the_studio():
    assert _violations(SLICER_LIB, ("ciss_engine.commands", "ciss_engine.cli", "ciss_studio")) == []


@pytest.mark.parametrize("path", sorted((ENGINE / "api").glob("*.py")), ids=lambda p: p.name)
def test_the_api_imports_only_the_standard_library_and_the_engine_errors(path):
    allowed = ("ciss_engine.api", "ciss_engine.errors")
    outside = [
        module for module in imported_modules(path)
        if module.split(".")[0] not in sys.stdlib_module_names and not any(module == a or module.startswith(a + ".") for a in allowed)
    ]
    assert outside == []
