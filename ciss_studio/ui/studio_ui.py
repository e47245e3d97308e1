"""The page: views on the right; on the left the workflow panels or trame-slicer's segment editor, and the status.

Built on trame-slicer's ``ViewerLayout`` (app bar, tool bar, drawer, layout grid) so the views, the
layout menu and the segment editor behave as in trame-slicer's own apps.
"""
from __future__ import annotations

from trame.widgets import html
from trame_server import Server
from trame_slicer.app.ui import LayoutButton, SegmentEditorToolbarUI, SegmentEditorUI, SegmentEditorUndoRedoUI, ViewerLayout
from trame_slicer.app.ui.control_button import ControlButton
from trame_slicer.core import LayoutManager

from .compare_ui import CompareUI
from .contours_ui import ContoursUI
from .data_ui import DataUI
from .export_ui import ExportUI
from .learn_ui import LearnUI
from .organ_ui import OrganUI
from .segment_ui import SegmentUI
from .status_ui import StatusUI

WORKFLOW_TOOL = "workflow"
EDITOR_TOOL = SegmentEditorUI.__name__


class StudioUI:
    """Builds the page once; holds the panel UIs whose signals the logics connect to."""

    def __init__(self, server: Server, layout_manager: LayoutManager) -> None:
        with ViewerLayout(server, title="CISS Studio", is_drawer_visible=True) as self.layout:
            server.state.trame__title = "CISS Studio"
            self.layout.typed_state.data.active_tool = WORKFLOW_TOOL
            with self.layout.drawer:
                with html.Div(v_if=(self._is_active(WORKFLOW_TOOL),), classes="pa-2", id="ciss-workflow"):
                    self.data = self._section("1. Bundle and CT", DataUI)
                    self.segment = self._section("2. Segment all organs", SegmentUI)
                    self.organ = self._section("3. New organ", OrganUI)
                    self.contours = self._section("or: correct the bundle's organs for this site", ContoursUI)
                    self.learn = self._section("4. Learn or adapt", LearnUI)
                    self.compare = self._section("5. Compare versions", CompareUI)
                    self.export = self._section("6. Export", ExportUI)
                self.segment_editor = SegmentEditorUI(v_if=(self._is_active(EDITOR_TOOL),), style="height: 65%;")
                # Sticky at the bottom of the drawer: progress and errors stay in sight while the panels scroll.
                self.status = StatusUI(id="ciss-status", style="position: sticky; bottom: 0; z-index: 2; border-top: 1px solid rgba(128,128,128,.4);")
            with self.layout.toolbar:
                self._tool_button("Workflow", "mdi-format-list-numbered", WORKFLOW_TOOL, "ciss-tool-workflow")
                self.layout_button = LayoutButton(classes="mt-1")
                self._tool_button("Segment editor", "mdi-brush", EDITOR_TOOL, "ciss-tool-editor")
                SegmentEditorToolbarUI(editor_ui=self.segment_editor)
            with self.layout.undo_redo:
                SegmentEditorUndoRedoUI(editor_ui=self.segment_editor)
            with self.layout.content:
                layout_manager.initialize_layout_grid(self.layout)

    def _is_active(self, tool: str) -> str:
        return f"{self.layout.typed_state.name.active_tool} === '{tool}'"

    @staticmethod
    def _section(title: str, panel_type: type):
        html.Div(title, classes="text-subtitle-2 mt-3 mb-1")
        return panel_type()

    def _tool_button(self, name: str, icon: str, tool: str, element_id: str) -> None:
        typed = self.layout.typed_state

        def show_tool() -> None:
            typed.data.is_drawer_visible = True
            typed.data.active_tool = tool

        ControlButton(name=name, icon=icon, click=show_tool, active=(self._is_active(tool),), classes="mt-1", id=element_id)
