"""Compare two versions' results on the open CT side by side (after a Learn step: old vs new)."""
from __future__ import annotations

import dataclasses

from trame.widgets import html
from trame.widgets.vuetify3 import VBtn, VSelect
from undo_stack import Signal

from ..state import panel_state


@dataclasses.dataclass
class CompareState:
    versions: list[str] = dataclasses.field(default_factory=list)
    old_version: str = ""
    new_version: str = ""
    is_comparing: bool = False


class CompareUI(html.Div):
    compare_clicked = Signal()
    single_view_clicked = Signal()

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        name = panel_state(self.state, CompareState).name
        with self:
            html.Div("Segment the CT with two versions to compare them.", v_if=(f"{name.versions}.length < 2",), classes="text-caption")
            with html.Div(v_else=True):
                with html.Div(classes="d-flex ga-2"):
                    VSelect(v_model=(name.old_version,), items=(name.versions,), label="Left", density="compact", hide_details=True,
                            id="ciss-compare-old")
                    VSelect(v_model=(name.new_version,), items=(name.versions,), label="Right", density="compact", hide_details=True,
                            id="ciss-compare-new")
                VBtn("Compare side by side", id="ciss-compare", v_if=(f"!{name.is_comparing}",), prepend_icon="mdi-compare",
                     variant="tonal", block=True, classes="mt-2", click=self.compare_clicked)
                VBtn("Back to one result", id="ciss-single-view", v_else=True, prepend_icon="mdi-view-dashboard", variant="tonal",
                     block=True, classes="mt-2", click=self.single_view_clicked)
