"""CISSegmentation: segment organs on CT with a deployed model, and teach it new organs from a few painted CTs.

This file only declares the module to Slicer. The panel is ``CISSegmentationLib/widget.py``, the logic is the
rest of ``CISSegmentationLib/`` (Qt-free, tested on slicer-core), and the engine runs as its own process.
"""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Annotated

import slicer
from slicer import vtkMRMLScalarVolumeNode
from slicer.parameterNodeWrapper import Choice, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin

from CISSegmentationLib.bundle_reader import new_organ_or_raise, read_bundle_or_raise
from CISSegmentationLib.engine_commands import DEFAULT_PRESET, PRESETS, EngineLauncher
from CISSegmentationLib.errors import BundleError, EngineNotInstalledError, InputError
from CISSegmentationLib.parameters import DEVICE_CHOICES, CissParameters
from CISSegmentationLib.self_test import NEW_ORGAN, PhantomBundle, WorkflowSelfTest, build_phantom_bundle
from CISSegmentationLib.workflow_logic import WorkflowLogic


class CISSegmentation(ScriptedLoadableModule):
    def __init__(self, parent) -> None:
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "CISSegmentation"
        self.parent.categories = ["Segmentation"]
        self.parent.dependencies = []
        self.parent.contributors = ["CISSegmentation developers"]
        self.parent.helpText = (
            "Segment abdominal organs on CT with a deployed model (bundle), paint a new organ on a few CTs, and let the "
            "model learn it without forgetting the others. Every step makes a new bundle version that can be rolled back."
        )
        self.parent.acknowledgementText = "Class-incremental learning after PCDD and MiB; networks from MONAI."


@parameterNodeWrapper
class CISSegmentationParameterNode(CissParameters):
    """The panel's choices stored typed in the scene; combo boxes need their choices declared."""

    device: Annotated[str, Choice(list(DEVICE_CHOICES))] = "auto"
    preset: Annotated[str, Choice(list(PRESETS))] = DEFAULT_PRESET
    input_volume: vtkMRMLScalarVolumeNode


class CISSegmentationWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.panel = None
        self._parameterNode = None
        self._guiTag = None

    def setup(self) -> None:
        from CISSegmentationLib.widget import CISSegmentationPanel

        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/CISSegmentation.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = CISSegmentationLogic()
        self._parameterNode = self.logic.getParameterNode()
        self._guiTag = self._parameterNode.connectGui(self.ui)
        self.panel = CISSegmentationPanel(self.ui, self._parameterNode, slicer.mrmlScene)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)

    def onSceneStartClose(self, caller, event) -> None:
        """The engine's inputs live in this scene: stop a running job before the scene goes."""
        if self.panel and self.panel.job:
            self.panel.job.cancel(grace_s=2)
        self._parameterNode.disconnectGui(self._guiTag)

    def onSceneEndClose(self, caller, event) -> None:
        """A new scene gets a new parameter node; the panel keeps its engine and bundle."""
        self._parameterNode = self.logic.getParameterNode()
        self._guiTag = self._parameterNode.connectGui(self.ui)
        self.panel.parameters = self._parameterNode

    def cleanup(self) -> None:
        self.removeObservers()
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._guiTag)
        if self.panel:
            self.panel.cleanup()


class CISSegmentationLogic(ScriptedLoadableModuleLogic):
    """Scripting entry point: ``slicer.util.getModuleLogic("CISSegmentation").workflow()``."""

    def getParameterNode(self) -> CISSegmentationParameterNode:
        return CISSegmentationParameterNode(super().getParameterNode())

    def workflow(self) -> WorkflowLogic:
        """Segment, learn, roll back and export on the application's scene (see ``workflow_logic.py``)."""
        return WorkflowLogic(slicer.mrmlScene)


class CISSegmentationTest(ScriptedLoadableModuleTest):
    """The whole workflow on a small phantom with the real engine, then the bad inputs the panel must refuse."""

    _phantom = None  # built once: training even a tiny bundle takes a while

    def setUp(self) -> None:
        slicer.mrmlScene.Clear()
        self.work_dir = Path(slicer.util.tempDirectory("CISSegmentationTest"))

    def phantom(self):
        if CISSegmentationTest._phantom is None:
            self.delayDisplay("Building a phantom and a tiny base bundle (engine process)")
            CISSegmentationTest._phantom = build_phantom_bundle(EngineLauncher.default(), Path(slicer.util.tempDirectory("CISSegmentationPhantom")))
        return CISSegmentationTest._phantom

    def runTest(self) -> None:
        self.setUp()
        self.test_workflow_on_phantom()
        self.setUp()
        self.test_bad_inputs()
        self.setUp()
        self.test_panel_buttons_say_what_is_missing()

    def test_workflow_on_phantom(self) -> None:
        phantom = self.phantom()
        learning_copy = self.work_dir / "bundle"
        shutil.copytree(phantom.bundle, learning_copy)
        summary = WorkflowSelfTest(slicer.mrmlScene, self.work_dir, log=self.delayDisplay).run_all(PhantomBundle(phantom.cases, learning_copy))
        self.assertEqual(summary["bundle"].current, summary["learned"].new_version)
        after = summary["after"].segmentation_node.GetSegmentation()
        self.assertTrue(after.GetSegmentIdBySegmentName(NEW_ORGAN))
        self.assertFalse(summary["before"].segmentation_node.GetSegmentation().GetSegmentIdBySegmentName(NEW_ORGAN))  # strokes stay out of results
        self.assertTrue(Path(summary["exported"]).is_file())
        self.delayDisplay("Workflow passed")

    def test_bad_inputs(self) -> None:
        with self.assertRaises(BundleError):
            read_bundle_or_raise("")
        with self.assertRaises(EngineNotInstalledError):
            EngineLauncher(python=str(self.work_dir / "no-python")).check_or_raise()
        phantom = self.phantom()
        bundle = read_bundle_or_raise(phantom.bundle)
        self_test = WorkflowSelfTest(slicer.mrmlScene, self.work_dir, log=self.delayDisplay)
        ct, _ = self_test.load_case(phantom.cases[0], "CT")
        organ = new_organ_or_raise(bundle, NEW_ORGAN, None)
        self_test.workflow.segmentation_logic.add_organ_segment(self_test.workflow.training_set.training_segmentation(ct), organ)
        with self.assertRaises(InputError):  # the new organ exists but nothing is painted
            self_test.workflow.learn_job(bundle=bundle, new_organs=[organ])
        self.delayDisplay("Bad inputs refused")

    def test_panel_buttons_say_what_is_missing(self) -> None:
        """The module's own panel on its .ui: a button is enabled only when its action can run, and a disabled
        one's tooltip says what to do first (can_apply.py), as the user meets it."""
        panel = slicer.util.getModuleWidget("CISSegmentation").panel
        panel.ui.bundlePathLineEdit.currentPath = ""
        panel.ui.inputVolumeSelector.setCurrentNode(None)
        self.assertFalse(panel.ui.learnButton.enabled)
        self.assertIn("Not now: choose a bundle folder", panel.ui.learnButton.toolTip)
        phantom = self.phantom()
        panel.ui.bundlePathLineEdit.currentPath = str(phantom.bundle)
        self.assertIsNotNone(panel.bundle, panel.ui.bundleStatusLabel.text)
        ct, _ = WorkflowSelfTest(slicer.mrmlScene, self.work_dir, log=self.delayDisplay).load_case(phantom.cases[0], "CT")
        panel.ui.inputVolumeSelector.setCurrentNode(ct)
        self.assertEqual(panel.ui.segmentButton.enabled, panel.engine_ready)
        self.assertFalse(panel.ui.learnButton.enabled)
        self.assertIn("add a new organ", panel.ui.learnButton.toolTip)
        self.assertFalse(panel.ui.exportButton.enabled)
        self.assertIn("segment the chosen CT first", panel.ui.exportButton.toolTip)
        self.assertFalse(panel.ui.correctResultButton.enabled)
        self.assertIn("segment the chosen CT first", panel.ui.correctResultButton.toolTip)
        self.delayDisplay("Panel buttons follow the can-apply check")
