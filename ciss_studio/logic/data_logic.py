"""Opens the bundle and the CT the user names; a bad path or a damaged file is shown, never raised."""
from __future__ import annotations

from pathlib import Path

from trame_server import Server

from CISSegmentationLib.bundle_reader import read_bundle_or_raise

from ..state import hex_color
from ..ui.data_ui import DataState, DataUI, OrganRow, VersionRow
from .context import StudioContext
from .ct_reader import describe_ct, read_ct_or_raise
from .panel_logic import PanelLogic
from .status_logic import StatusLogic


class DataLogic(PanelLogic[DataState]):
    def __init__(self, server: Server, context: StudioContext, status: StatusLogic) -> None:
        super().__init__(server, context, DataState)
        self._status = status
        self.session.bundle_changed.connect(self._on_bundle_changed)

    def set_ui(self, ui: DataUI) -> None:
        ui.open_bundle_clicked.connect(self._status.guarded(self._on_open_bundle_clicked))
        ui.open_ct_clicked.connect(self._status.guarded(self._on_open_ct_clicked))

    def open_bundle(self, path: str) -> None:
        """Read the bundle's current version (organs, versions); the CLI's ``--bundle`` comes here too."""
        self.data.bundle_path = path
        self.session.set_bundle(read_bundle_or_raise(path.strip()))
        self._status.show_message(f"Bundle {Path(path).name} version {self.session.bundle.current} open")

    def reload_bundle(self) -> None:
        """After learn, reject or rollback: the bundle's current version changed on disk."""
        self.session.set_bundle(read_bundle_or_raise(self.session.bundle_or_raise().path))

    def open_ct(self, path: str) -> None:
        """Load the CT into the scene and show it; its earlier results stay in the scene, hidden."""
        self.data.ct_path = path
        source = Path(path.strip()).expanduser()
        volume_node = read_ct_or_raise(self.context.slicer_app, source)
        self.session.set_ct(volume_node, source)
        self.context.views.show_ct(volume_node)
        self.data.ct_name, self.data.ct_description = volume_node.GetName(), describe_ct(volume_node)
        self._status.show_message(f"CT {volume_node.GetName()} open")

    def _on_open_bundle_clicked(self) -> None:
        self.open_bundle(self.data.bundle_path)

    def _on_open_ct_clicked(self) -> None:
        self.open_ct(self.data.ct_path)

    def _on_bundle_changed(self) -> None:
        bundle = self.session.bundle
        self.data.current_version = bundle.current
        self.data.organs = [OrganRow(organ.label, organ.name, hex_color(organ.rgb)) for organ in bundle.organs]
        self.data.versions = [VersionRow(v.version, v.status, ", ".join(v.organs)) for v in bundle.versions]
