"""Every Slicer API call under ``CISSegmentation/`` exists in the real Slicer API (``slicer_api.json``).

Errors fail the test and name the Slicer commit the index describes; names the index does not cover
are reported as warnings (see the pytest warnings summary), not failed.
"""
from __future__ import annotations

import sys
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from api_checker import ApiChecker, ui_object_classes  # noqa: E402
from api_index import SlicerApiIndex  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[2]
MODULE_DIR = REPO_ROOT / "CISSegmentation"
UI_FILE = MODULE_DIR / "Resources" / "UI" / "CISSegmentation.ui"
INDEX = SlicerApiIndex.load()


class SlicerApiUnindexed(UserWarning):
    """A Slicer name the static index does not cover (reported, not failed)."""


def _check() -> tuple[ApiChecker, list]:
    checker = ApiChecker(INDEX, ui_object_classes(UI_FILE), own_modules=["CISSegmentation"])
    findings = checker.check_files(sorted(MODULE_DIR.rglob("*.py")), REPO_ROOT)
    return checker, findings


def test_every_slicer_call_of_the_module_exists():
    checker, findings = _check()
    for finding in findings:
        if finding.severity != "error":
            warnings.warn(str(finding), SlicerApiUnindexed, stacklevel=1)
    errors = [str(f) for f in findings if f.severity == "error"]
    assert not errors, f"Slicer API (index of Slicer {INDEX.slicer_commit[:10]}) has no:\n" + "\n".join(errors)
    assert checker.checked_calls >= 60, f"only {checker.checked_calls} calls were checked: is type tracking broken?"


def test_widget_classes_of_the_ui_are_known():
    unknown = sorted({cls for cls in ui_object_classes(UI_FILE).values() if not cls.startswith("Q") and not INDEX.qt_widget(cls)})
    assert unknown == [], f"widgets neither Qt nor in the Slicer index: {unknown}"


def test_the_index_copy_is_the_one_the_readme_describes():
    readme = (Path(__file__).with_name("README.md")).read_text()
    assert INDEX.slicer_commit in readme and INDEX.data["meta"]["schema_version"] == 1
