"""The static checker itself: it must fail on calls that do not exist and only report unindexed names."""
from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from api_checker import ApiChecker, ui_object_classes  # noqa: E402
from api_index import SlicerApiIndex  # noqa: E402

INDEX = SlicerApiIndex.load()
UI = """<?xml version="1.0" encoding="UTF-8"?>
<ui version="4.0"><class>Panel</class>
 <widget class="qMRMLWidget" name="Panel"><layout class="QVBoxLayout" name="mainLayout">
  <item><widget class="qMRMLNodeComboBox" name="volumeSelector"/></item>
  <item><widget class="ctkCollapsibleButton" name="learnCollapsibleButton"/></item>
  <item><widget class="QPushButton" name="learnButton"/></item>
 </layout></widget></ui>
"""


def _check(tmp_path: Path, source: str) -> list[tuple[str, str]]:
    path = tmp_path / "module.py"
    path.write_text(textwrap.dedent(source))
    (tmp_path / "panel.ui").write_text(UI)
    checker = ApiChecker(INDEX, ui_object_classes(tmp_path / "panel.ui"), own_modules=["MyModule"])
    return [(f.severity, f.message) for f in checker.check_files([path], tmp_path)]


def _errors(findings: list[tuple[str, str]]) -> list[str]:
    return [message for severity, message in findings if severity == "error"]


def test_correct_calls_pass(tmp_path):
    findings = _check(tmp_path, """
        import slicer
        def run(scene):
            node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "seg")
            node.CreateDefaultDisplayNodes()
            segment = node.GetSegmentation().GetSegment("a")
            segment.SetColor(1.0, 0.0, 0.0)
            image = slicer.vtkOrientedImageData()
            slicer.vtkSlicerSegmentationsModuleLogic.ExportSegmentsToLabelmapNode(node, ["a"], None, None)
            slicer.util.loadUI("x.ui")
            return slicer.vtkSegmentation.EXTENT_REFERENCE_GEOMETRY, slicer.modules.segmentations.logic().GetDefaultOverwriteMode()
    """)
    assert _errors(findings) == []


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ('node = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode")\nnode.GetSegmentationn()',
         "vtkMRMLSegmentationNode has no member 'GetSegmentationn'"),
        ('node = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode")\nnode.GetSegmentation(1, 2)',
         "vtkMRMLSegmentationNode.GetSegmentation takes 0..0 arguments, 2 given"),
        ("slicer.util.loadUIFile('a')", "slicer.util.loadUIFile does not exist"),
        ("slicer.util.loadUI('a', parent=None)", "slicer.util.loadUI has no parameter 'parent'"),
        ("slicer.util.loadUI()", "slicer.util.loadUI needs 'path'"),
        ("slicer.vtkSegmentation.EXTENT_EVERYTHING", "vtkSegmentation has no member 'EXTENT_EVERYTHING'"),
        ("slicer.vtkMRMLSegmentationNode.GetSegmentation()", "vtkMRMLSegmentationNode.GetSegmentation is not static: call it on an instance"),
        ("slicer.vtkMRMLNode()", "vtkMRMLNode cannot be created from Python (abstract)"),
        ("slicer.vtkMRMLScene().PrintSelf(None, None)", "vtkMRMLScene.PrintSelf is not callable from Python (param ostream)"),
    ],
)
def test_calls_that_do_not_exist_fail(tmp_path, source, expected):
    assert expected in _errors(_check(tmp_path, "import slicer\n" + source))


def test_annotated_parameters_are_checked(tmp_path):
    findings = _check(tmp_path, """
        from typing import TYPE_CHECKING
        if TYPE_CHECKING:
            from slicer import vtkMRMLScalarVolumeNode
        def spacing(volume: vtkMRMLScalarVolumeNode | None) -> vtkMRMLScalarVolumeNode:
            return volume.GetSpacingg()
    """)
    assert _errors(findings) == ["vtkMRMLScalarVolumeNode has no member 'GetSpacingg'"]


def test_unindexed_names_are_reported_not_failed(tmp_path):
    findings = _check(tmp_path, """
        import slicer
        entry = slicer.vtkSlicerTerminologyEntry()
        slicer.modules.pytorchutils
        node = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLLinearTransformNode")
        node.Anything()
    """)
    assert _errors(findings) == []
    assert {severity for severity, _ in findings} == {"unknown"}
    assert len(findings) == 3


def test_ui_names_and_widget_members_are_checked(tmp_path):
    findings = _check(tmp_path, """
        import slicer
        from slicer.ScriptedLoadableModule import ScriptedLoadableModuleWidget
        class MyModuleWidget(ScriptedLoadableModuleWidget):
            def setup(self):
                self.ui = slicer.util.childWidgetVariables(slicer.util.loadUI(self.resourcePath("UI/panel.ui")))
                self.ui.volumeSelector.setMRMLScene(slicer.mrmlScene)
                self.ui.volumeSelector.nodeTypes = ["vtkMRMLScalarVolumeNode"]
                self.ui.learnCollapsibleButton.collapsed = True
                self.ui.learnCollapsibleButton.setCollapsed(False)
                self.ui.learnButton.clicked.connect(self.onLearn)
                self.ui.segmentButton.enabled = False
                self.onSegment()
            def onLearn(self):
                pass
    """)
    assert sorted(_errors(findings)) == [
        "ctkCollapsibleButton.setCollapsed is C++ only (not callable from Python); use its property",
        "self.onSegment is defined neither in MyModuleWidget nor in its Slicer base classes",
        "self.ui.segmentButton: no object named 'segmentButton' in the .ui file",
    ]


def test_parameter_node_wrapper_imports_are_checked(tmp_path):
    findings = _check(tmp_path, "from slicer.parameterNodeWrapper import parameterNodeWrapper, WithinRange, Choise\n")
    assert _errors(findings) == ["slicer.parameterNodeWrapper has no 'Choise'"]
