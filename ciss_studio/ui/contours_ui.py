"""This site's contours of the bundle's own organs: a result copied and corrected in the segment editor, Adapt's labels."""
from __future__ import annotations

import dataclasses

from trame.widgets import html
from trame.widgets.vuetify3 import VBtn
from undo_stack import Signal

from ..state import panel_state
from .status_ui import StatusState


@dataclasses.dataclass
class ContourRow:
    ct: str = ""
    organs: str = ""  # "spleen 1,234 · liver 5,678 voxels"


@dataclasses.dataclass
class ContoursState:
    can_correct: bool = False  # a result is shown on the open CT
    contours: list[ContourRow] = dataclasses.field(default_factory=list)


class ContoursUI(html.Div):
    correct_clicked = Signal()

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        name = panel_state(self.state, ContoursState).name
        busy = panel_state(self.state, StatusState).name.is_busy
        with self:
            VBtn("Correct this result", id="ciss-correct", prepend_icon="mdi-pencil", variant="tonal", block=True,
                 title="Copy the result's organs into your annotations and correct them: Adapt learns this site from them",
                 disabled=(f"!{name.can_correct} || {busy}",), click=self.correct_clicked)
            html.Div("No organ of the bundle drawn yet", v_if=(f"!{name.contours}.length",), classes="text-caption mt-1")
            html.Div("{{ row.ct }}: {{ row.organs }}", v_for=f"row in {name.contours}", key="row.ct", classes="text-caption mt-1 ciss-contours")
