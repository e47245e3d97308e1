"""Real Slicer core for the CISSegmentationLib tests: PyPI's ``slicer-core``, no Qt, no mocks.

``import slicer`` in this environment is slicer-core's meta-package: the MRML and module-logic
libraries (vtkMRMLScene, vtkSlicerApplicationLogic, vtkSlicerSegmentationsModuleLogic, …), no
``slicer.app``/``slicer.mrmlScene``/``slicer.modules``. (This folder is not called ``slicer``: with
``Testing/`` on ``sys.path``, slicer-core's namespace scan would import a ``Testing/slicer`` folder as
part of ``slicer``.) MRML and segmentation logic work once the
module logics are registered with an application logic, which ``slicer_core`` does per test.
"""
from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
for path in (REPO_ROOT, REPO_ROOT / "CISSegmentation", Path(__file__).resolve().parent):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

import slicer  # noqa: E402
from slicer_logic_helpers import TinyPhantom, make_tiny_phantom  # noqa: E402


@dataclasses.dataclass
class SlicerCore:
    """A scene with the application logic and the module logics our code relies on."""

    scene: object
    app_logic: object
    volumes_logic: object
    segmentations_logic: object
    subject_hierarchy_logic: object


def _register(core_scene, app_logic, logic, name: str):
    logic.SetMRMLScene(core_scene)
    logic.SetMRMLApplicationLogic(app_logic)
    app_logic.SetModuleLogic(name, logic)
    return logic


@pytest.fixture
def slicer_core() -> SlicerCore:
    scene = slicer.vtkMRMLScene()
    app_logic = slicer.vtkSlicerApplicationLogic()
    app_logic.SetMRMLScene(scene)
    # Colour tables first: volume display nodes look up the default grey and label colour nodes.
    app_logic.GetColorLogic().SetMRMLScene(scene)
    app_logic.GetColorLogic().AddDefaultColorNodes()
    return SlicerCore(
        scene=scene,
        app_logic=app_logic,
        volumes_logic=_register(scene, app_logic, slicer.vtkSlicerVolumesLogic(), "Volumes"),
        segmentations_logic=_register(scene, app_logic, slicer.vtkSlicerSegmentationsModuleLogic(), "Segmentations"),
        subject_hierarchy_logic=_register(scene, app_logic, slicer.vtkSlicerSubjectHierarchyModuleLogic(), "SubjectHierarchy"),
    )


@pytest.fixture
def scene(slicer_core: SlicerCore):
    return slicer_core.scene


@pytest.fixture
def tiny_phantom() -> TinyPhantom:
    return make_tiny_phantom()
