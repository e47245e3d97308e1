"""Open a bundle and a CT by their paths on the studio's computer; list the bundle's organs and versions."""
from __future__ import annotations

import dataclasses

from trame.widgets import html
from trame.widgets.vuetify3 import VBtn, VChip, VTextField
from undo_stack import Signal

from ..state import panel_state


@dataclasses.dataclass
class OrganRow:
    label: int = 0
    name: str = ""
    color: str = "#000000"


@dataclasses.dataclass
class VersionRow:
    version: str = ""
    status: str = ""  # current, published, rejected
    organs: str = ""


@dataclasses.dataclass
class DataState:
    bundle_path: str = ""
    ct_path: str = ""
    current_version: str = ""
    organs: list[OrganRow] = dataclasses.field(default_factory=list)
    versions: list[VersionRow] = dataclasses.field(default_factory=list)
    ct_name: str = ""
    ct_description: str = ""


class DataUI(html.Div):
    open_bundle_clicked = Signal()
    open_ct_clicked = Signal()

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        name = panel_state(self.state, DataState).name
        with self:
            with html.Div(classes="d-flex align-center ga-2"):
                VTextField(v_model=(name.bundle_path,), label="Bundle folder", density="compact", hide_details=True, id="ciss-bundle-path")
                VBtn("Open", id="ciss-open-bundle", variant="tonal", size="small", click=self.open_bundle_clicked)
            with html.Div(v_if=(name.current_version,), classes="my-2", id="ciss-organs"):
                html.Div("Version {{ %s }}: organs" % name.current_version, classes="text-caption")
                VChip("{{ organ.label }} {{ organ.name }}", v_for=f"organ in {name.organs}", key="organ.name", color=("organ.color",),
                      size="small", variant="flat", classes="ma-1", prepend_icon="mdi-circle")
                with html.Details(classes="text-caption"):
                    html.Summary("Versions")
                    html.Div("{{ v.version }} ({{ v.status }}): {{ v.organs }}", v_for=f"v in {name.versions}", key="v.version")
            with html.Div(classes="d-flex align-center ga-2 mt-3"):
                VTextField(v_model=(name.ct_path,), label="CT: NIfTI/NRRD file or DICOM folder", density="compact", hide_details=True,
                           id="ciss-ct-path")
                VBtn("Open", id="ciss-open-ct", variant="tonal", size="small", click=self.open_ct_clicked)
            html.Div("{{ %s }}: {{ %s }}" % (name.ct_name, name.ct_description), v_if=(name.ct_name,), classes="text-caption my-1", id="ciss-ct")
