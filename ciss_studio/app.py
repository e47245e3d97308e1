"""The studio app: trame-slicer's core, views and segment editor, CISSegmentationLib's workflow, the panels.

Wiring only: every behaviour lives in ``logic/``, every widget in ``ui/``.
"""
from __future__ import annotations

from pathlib import Path

from trame.app import TrameApp
from trame_rca.encoders import RcaImageEncoder
from trame_server import Server
from trame_slicer import module as trame_slicer_module
from trame_slicer.app.logic import LayoutButtonLogic, SegmentEditorLogic
from trame_slicer.core import SlicerApp
from trame_slicer.rca_view import register_rca_factories

from ciss_engine.events import EventSink
from CISSegmentationLib.workflow_logic import WorkflowLogic

from .logic.compare_logic import CompareLogic
from .logic.context import StudioContext
from .logic.contours_logic import ContoursLogic
from .logic.data_logic import DataLogic
from .logic.export_logic import ExportLogic
from .logic.learn_logic import LearnLogic
from .logic.organ_logic import OrganLogic
from .logic.segment_logic import SegmentLogic
from .logic.session import StudioSession
from .logic.status_logic import StatusLogic
from .logic.views import StudioViews
from .ui.studio_ui import StudioUI

IMAGE_ENCODERS = {"jpeg": RcaImageEncoder.TURBO_JPEG, "png": RcaImageEncoder.PNG}


class StudioApp(TrameApp):
    """One studio session on ``server``; ``image_format`` is how views travel to the browser (png: lossless, larger)."""

    def __init__(self, server: Server | None = None, *, image_format: str = "jpeg", sink: EventSink | None = None,
                 work_dir: Path | None = None) -> None:
        super().__init__(server)
        self.server.enable_module(trame_slicer_module)
        slicer_app = SlicerApp()
        register_rca_factories(slicer_app.view_manager, self.server, rca_encoder=IMAGE_ENCODERS[image_format])
        layout_logic = LayoutButtonLogic(self.server, slicer_app)
        # Every view must exist before the segment editor: a view created later gets effect pipelines without a view.
        session = StudioSession()
        workflow = WorkflowLogic(slicer_app.scene, work_dir=work_dir)
        views = StudioViews(slicer_app, layout_logic, session, workflow.training_set)
        editor_logic = SegmentEditorLogic(self.server, slicer_app)
        self.context = StudioContext(slicer_app=slicer_app, workflow=workflow, session=session, views=views, sink=sink)
        self.status = StatusLogic(self.server, self.context)
        self.data = DataLogic(self.server, self.context, self.status)
        self.segment = SegmentLogic(self.server, self.context, self.status)
        self.compare = CompareLogic(self.server, self.context, self.status)
        self.organ = OrganLogic(self.server, self.context, self.status)
        self.contours = ContoursLogic(self.server, self.context, self.status)
        self.learn = LearnLogic(self.server, self.context, self.status, self.data, self.segment, self.compare)
        self.export = ExportLogic(self.server, self.context, self.status)

        self.page = StudioUI(self.server, layout_logic.layout_manager)
        layout_logic.set_ui(self.page.layout_button)
        editor_logic.set_ui(self.page.segment_editor)
        for logic, panel in ((self.status, self.page.status), (self.data, self.page.data), (self.segment, self.page.segment),
                             (self.compare, self.page.compare), (self.organ, self.page.organ), (self.contours, self.page.contours),
                             (self.learn, self.page.learn), (self.export, self.page.export)):
            logic.set_ui(panel)

    def shutdown(self) -> None:
        """Stop a running engine job cleanly and remove the engine's input/output copies."""
        self.status.shutdown()
        self.context.workflow.cleanup()
