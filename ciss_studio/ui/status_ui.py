"""The engine's activity and the last outcome: progress, Cancel, errors with their hint and log."""
from __future__ import annotations

import dataclasses

from trame.widgets import html
from trame.widgets.vuetify3 import VAlert, VBtn, VCard, VCardText, VProgressLinear
from undo_stack import Signal

from ..state import panel_state

LOG_STYLE = "white-space: pre-wrap; font-size: 11px; max-height: 200px; overflow-y: auto;"


@dataclasses.dataclass
class StatusState:
    is_busy: bool = False
    title: str = ""  # what the engine does now, e.g. "Learning liver"
    progress: float = 0.0  # percent of the current stage
    detail: str = ""  # "train: 120/400, loss 0.412, about 1 min 35 s left"
    message: str = ""  # the last outcome, e.g. "Segmented with version 1.1.0"
    error: str = ""
    hint: str = ""
    error_log: str = ""  # the engine's last log lines when it failed
    log: str = ""  # the engine's log of the current or last run


class StatusUI(VCard):
    cancel_clicked = Signal()
    dismiss_clicked = Signal()

    def __init__(self, **kwargs) -> None:
        super().__init__(variant="flat", **kwargs)
        typed = panel_state(self.state, StatusState)
        name = typed.name
        with self, VCardText(classes="pa-2"):
            with html.Div(v_if=(name.is_busy,), id="ciss-busy"):
                html.Div("{{ %s }}" % name.title, classes="text-subtitle-2")
                VProgressLinear(model_value=(name.progress,), indeterminate=(f"{name.progress} <= 0",), color="primary", height=6, classes="my-1")
                html.Div("{{ %s }}" % name.detail, classes="text-caption", id="ciss-progress-detail")
                VBtn("Cancel", id="ciss-cancel", size="small", variant="tonal", prepend_icon="mdi-stop", click=self.cancel_clicked)
            VAlert(v_if=(f"{name.message} && !{name.error}",), text=(name.message,), type="success", density="compact", variant="tonal",
                   id="ciss-message", classes="my-1")
            with VAlert(v_if=(name.error,), type="error", density="compact", variant="tonal", closable=True, id="ciss-error", classes="my-1",
                        click_close=self.dismiss_clicked):
                html.Div("{{ %s }}" % name.error, classes="font-weight-bold", id="ciss-error-message")
                html.Div("{{ %s }}" % name.hint, id="ciss-error-hint")
                with html.Details(v_if=(name.error_log,), classes="text-caption mt-1"):
                    html.Summary("Engine log")
                    html.Pre("{{ %s }}" % name.error_log, id="ciss-error-log", style=LOG_STYLE)
            with html.Details(v_if=(f"{name.log} && !{name.error_log}",), classes="text-caption"):
                html.Summary("Engine log")
                html.Pre("{{ %s }}" % name.log, id="ciss-log", style=LOG_STYLE)
