"""Segment all organs of the bundle on the open CT; choose which version's result the views show."""
from __future__ import annotations

import dataclasses

from trame.widgets import html
from trame.widgets.vuetify3 import VBtn, VSelect
from undo_stack import Signal

from ..state import panel_state
from .status_ui import StatusState


@dataclasses.dataclass
class SegmentState:
    is_ready: bool = False  # a bundle and a CT are open
    versions: list[str] = dataclasses.field(default_factory=list)  # bundle versions with a result on this CT
    shown_version: str = ""


class SegmentUI(html.Div):
    segment_clicked = Signal()

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        name = panel_state(self.state, SegmentState).name
        busy = panel_state(self.state, StatusState).name.is_busy
        with self:
            VBtn("Segment all organs", id="ciss-segment", prepend_icon="mdi-auto-fix", variant="tonal", block=True,
                 disabled=(f"!{name.is_ready} || {busy}",), click=self.segment_clicked)
            VSelect(v_if=(f"{name.versions}.length",), v_model=(name.shown_version,), items=(name.versions,), label="Result shown",
                    density="compact", hide_details=True, classes="mt-2", id="ciss-shown-version")
