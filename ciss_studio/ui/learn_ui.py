"""Learn the painted new organs, or adapt the bundle's organs to this site, into a new bundle version; show the
forgetting guard and let the user decide."""
from __future__ import annotations

import dataclasses

from trame.widgets import html
from trame.widgets.vuetify3 import VAlert, VBtn, VSelect, VTextField
from undo_stack import Signal

from CISSegmentationLib.engine_commands import DEFAULT_PRESET, PRESETS

from ..state import panel_state
from .status_ui import StatusState


@dataclasses.dataclass
class LearnState:
    preset: str = DEFAULT_PRESET
    presets: list[str] = dataclasses.field(default_factory=lambda: list(PRESETS))
    iterations: str = ""  # empty: the preset's budget
    organ_names: str = ""  # the organs a Learn step would add now
    can_adapt: bool = False  # some organ of the bundle is drawn on some CT (the site's contours)
    guard_verdict: str = ""  # "", "passed" or "rejected"
    guard_text: str = ""
    show_decision: bool = False
    accept_text: str = "Accept new version"
    reject_text: str = "Reject new version (roll back)"


class LearnUI(html.Div):
    learn_clicked = Signal()
    adapt_clicked = Signal()
    accept_clicked = Signal()
    reject_clicked = Signal()

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        name = panel_state(self.state, LearnState).name
        busy = panel_state(self.state, StatusState).name.is_busy
        with self:
            with html.Div(classes="d-flex ga-2"):
                VSelect(v_model=(name.preset,), items=(name.presets,), label="Training budget", density="compact", hide_details=True,
                        id="ciss-preset")
                VTextField(v_model=(name.iterations,), label="Iterations", placeholder="preset", density="compact", hide_details=True,
                           id="ciss-iterations", style="max-width: 110px;")
            VBtn("Learn {{ %s }}" % name.organ_names, id="ciss-learn", prepend_icon="mdi-school", variant="tonal", block=True, classes="mt-2",
                 disabled=(f"!{name.organ_names} || {busy}",), click=self.learn_clicked)
            VBtn("Adapt to this site", id="ciss-adapt", prepend_icon="mdi-hospital-building", variant="tonal", block=True, classes="mt-2",
                 title="Fine-tune the bundle's own organs on this site's corrected contours (ciss adapt)",
                 disabled=(f"!{name.can_adapt} || {busy}",), click=self.adapt_clicked)
            VAlert(v_if=(name.guard_verdict,), text=(name.guard_text,), type=(f"{name.guard_verdict} === 'passed' ? 'info' : 'warning'",),
                   density="compact", variant="tonal", classes="mt-2", id="ciss-guard")
            with html.Div(v_if=(f"{name.show_decision} && !{busy}",), classes="d-flex ga-2 mt-2"):
                VBtn("{{ %s }}" % name.accept_text, id="ciss-accept", color="success", variant="tonal", size="small", click=self.accept_clicked)
                VBtn("{{ %s }}" % name.reject_text, id="ciss-reject", color="error", variant="tonal", size="small", click=self.reject_clicked)
