"""Opening trame-slicer's segment editor on one segment, and recounting what was drawn once the strokes stop.

Both the new organs (organ_logic.py) and the corrected organs of a site (contours_logic.py) are drawn this way.
"""
from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING

from trame_server.utils.asynchronous import create_task
from trame_server.utils.typed_state import TypedState
from trame_slicer.app.ui import SegmentEditorState, SegmentEditorUI, ViewerLayoutState
from trame_slicer.segmentation import SegmentationEffectPaint

from .context import StudioContext

if TYPE_CHECKING:
    from slicer import vtkMRMLScalarVolumeNode, vtkMRMLSegmentationNode

RECOUNT_DELAY_S = 0.5  # after the last stroke: counting every stroke would slow painting on large CTs


def open_segment_editor(context: StudioContext, state, segmentation: vtkMRMLSegmentationNode, volume: vtkMRMLScalarVolumeNode,
                        segment_id: str) -> None:
    """The editor drawer on ``segment_id`` of ``segmentation`` (drawn on ``volume``) with the Paint effect active."""
    editor = context.slicer_app.segmentation_editor
    # trame-slicer's editor drops the 3D surfaces of the segmentation it edits unless told to keep them.
    editor.set_surface_representation_enabled(True)
    TypedState(state, SegmentEditorState).data.segment_display.show_3d = True
    editor.set_active_segmentation(segmentation, volume)
    editor.set_active_segment_id(segment_id)
    editor.set_active_effect_type(SegmentationEffectPaint)
    layout = TypedState(state, ViewerLayoutState).data
    layout.active_tool = SegmentEditorUI.__name__
    layout.is_drawer_visible = True


class RecountAfterStrokes:
    """Runs ``recount`` once, ``RECOUNT_DELAY_S`` after the last edit of any segmentation, inside a state change."""

    def __init__(self, context: StudioContext, state, recount: Callable[[], None]) -> None:
        self._state, self._recount = state, recount
        self._task: asyncio.Task | None = None
        context.slicer_app.segmentation_editor.segmentation_modified.connect(self._on_segmentation_modified)

    def _on_segmentation_modified(self) -> None:
        if self._task is not None:
            self._task.cancel()
        self._task = create_task(self._later())

    async def _later(self) -> None:
        await asyncio.sleep(RECOUNT_DELAY_S)
        with self._state:
            self._recount()
