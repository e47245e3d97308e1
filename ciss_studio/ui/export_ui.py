"""Export the shown result: a NIfTI label map, or DICOM RTSTRUCT and SEG when the CT came from DICOM."""
from __future__ import annotations

import dataclasses

from trame.widgets import html
from trame.widgets.vuetify3 import VBtn, VSelect, VTextField
from undo_stack import Signal

from ..state import panel_state
from .status_ui import StatusState

NIFTI = "NIfTI label map"
DICOM = "DICOM RTSTRUCT + SEG"


@dataclasses.dataclass
class ExportState:
    folder: str = ""
    format: str = NIFTI
    formats: list[str] = dataclasses.field(default_factory=lambda: [NIFTI])  # DICOM only for a CT read from DICOM
    has_result: bool = False
    exported: str = ""  # the files written last


class ExportUI(html.Div):
    export_clicked = Signal()

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        name = panel_state(self.state, ExportState).name
        busy = panel_state(self.state, StatusState).name.is_busy
        with self:
            VTextField(v_model=(name.folder,), label="Output folder", density="compact", hide_details=True, id="ciss-export-folder")
            VSelect(v_model=(name.format,), items=(name.formats,), label="Format", density="compact", hide_details=True, classes="mt-2",
                    id="ciss-export-format")
            VBtn("Export the shown result", id="ciss-export", prepend_icon="mdi-export", variant="tonal", block=True, classes="mt-2",
                 disabled=(f"!{name.has_result} || !{name.folder} || {busy}",), click=self.export_clicked)
            html.Div("{{ %s }}" % name.exported, v_if=(name.exported,), classes="text-caption mt-1", id="ciss-exported")
