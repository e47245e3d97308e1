"""Add a new organ (catalog name or a custom one, with its colour) and paint it with the segment editor."""
from __future__ import annotations

import dataclasses

from trame.widgets import html
from trame.widgets.vuetify3 import VBtn, VChip, VCombobox
from undo_stack import Signal

from ..state import panel_state
from .status_ui import StatusState


@dataclasses.dataclass
class NewOrganRow:
    name: str = ""
    color: str = "#000000"
    painted: str = ""  # "ct_042: 1,234 voxels"


@dataclasses.dataclass
class OrganState:
    name: str = ""
    color: str = "#e6b34d"
    known_names: list[str] = dataclasses.field(default_factory=list)
    can_add: bool = False  # a bundle and a CT are open
    new_organs: list[NewOrganRow] = dataclasses.field(default_factory=list)


class OrganUI(html.Div):
    add_clicked = Signal()
    paint_clicked = Signal(str)  # organ name

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        name = panel_state(self.state, OrganState).name
        busy = panel_state(self.state, StatusState).name.is_busy
        with self:
            with html.Div(classes="d-flex align-center ga-2"):
                VCombobox(v_model=(name.name,), items=(name.known_names,), label="Organ name", density="compact", hide_details=True,
                          id="ciss-organ-name")
                html.Input(type="color", v_model=(name.color,), id="ciss-organ-color", title="Colour of the new organ",
                           style="width: 36px; height: 36px; border: none; background: none;")
            VBtn("Add new organ and paint it", id="ciss-add-organ", prepend_icon="mdi-brush", variant="tonal", block=True, classes="mt-2",
                 disabled=(f"!{name.can_add} || !{name.name} || {busy}",), click=self.add_clicked)
            with html.Div(v_for=f"organ in {name.new_organs}", key="organ.name", classes="d-flex align-center mt-1"):
                VChip("{{ organ.name }}", color=("organ.color",), size="small", variant="flat", prepend_icon="mdi-circle")
                html.Span("{{ organ.painted }}", classes="text-caption mx-2 ciss-painted")
                VBtn(icon="mdi-brush", size="x-small", variant="text", title="Paint", click=(self.paint_clicked, "[organ.name]"))
