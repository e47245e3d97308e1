"""CISSegmentationLib loads without Qt and without torch (front ends run the engine as a process)."""
from __future__ import annotations

import subprocess
import sys

import pytest

from slicer_logic_helpers import REPO_ROOT

QT_FREE_MODULES = [
    "bundle_reader", "can_apply", "dicom_export", "engine_commands", "engine_location", "errors", "install_logic", "job_runner", "parameters",
    "segmentation_logic", "self_test", "terminology", "training_set", "volume_io", "workflow_logic",
]


def test_logic_modules_import_without_qt_torch_or_nibabel():
    """Before the first install, Slicer's Python has no torch, nibabel or psutil: the module must still load."""
    imports = "; ".join(f"import CISSegmentationLib.{name}" for name in QT_FREE_MODULES)
    probe = f"import sys; {imports}; print(sorted(m for m in ('qt', 'torch', 'monai', 'nibabel', 'psutil', 'PythonQt') if m in sys.modules))"
    completed = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True,
        env={"PYTHONPATH": f"{REPO_ROOT}:{REPO_ROOT / 'CISSegmentation'}", "PATH": ""}, cwd=REPO_ROOT,
    )
    assert completed.stdout.strip() == "[]"


def test_every_logic_file_is_listed_in_the_module_cmake():
    """slicerMacroBuildScriptedModule installs only what CMakeLists.txt lists."""
    cmake = (REPO_ROOT / "CISSegmentation" / "CMakeLists.txt").read_text()
    files = sorted(p.name for p in (REPO_ROOT / "CISSegmentation" / "CISSegmentationLib").glob("*.py"))
    assert [f for f in files if f"${{MODULE_NAME}}Lib/{f}" not in cmake] == []
    assert sorted([*QT_FREE_MODULES, "widget"]) == sorted(f[:-3] for f in files if f != "__init__.py")


@pytest.mark.parametrize(("wrong", "allowed"), [({"device": "gpu"}, "auto, cpu, cuda"), ({"preset": "fast"}, "quick, standard, thorough")])
def test_parameters_refuse_what_the_engine_would_refuse(wrong, allowed):
    from CISSegmentationLib.errors import InputError
    from CISSegmentationLib.parameters import CissParameters

    CissParameters().check_or_raise()
    with pytest.raises(InputError) as caught:
        CissParameters(**wrong).check_or_raise()
    assert allowed in caught.value.hint
