"""Shows two versions' results on the same CT in two linked axial views (left: old, right: new)."""
from __future__ import annotations

from trame_server import Server

from CISSegmentationLib.errors import InputError

from ..ui.compare_ui import CompareState, CompareUI
from .context import StudioContext
from .panel_logic import PanelLogic
from .status_logic import StatusLogic


class CompareLogic(PanelLogic[CompareState]):
    def __init__(self, server: Server, context: StudioContext, status: StatusLogic) -> None:
        super().__init__(server, context, CompareState)
        self._status = status
        self.session.result_added.connect(self._on_result_added)
        self.session.ct_changed.connect(self._on_ct_changed)

    def set_ui(self, ui: CompareUI) -> None:
        ui.compare_clicked.connect(self._status.guarded(self._on_compare_clicked))
        ui.single_view_clicked.connect(self._on_single_view_clicked)

    def compare(self, old_version: str, new_version: str) -> None:
        results = self.session.results
        missing = [v for v in (old_version, new_version) if v not in results]
        if missing:
            raise InputError(f"no result of version {missing[0]} on this CT", "segment the CT with both versions first (Segment all organs)")
        self.data.old_version, self.data.new_version = old_version, new_version
        self.context.views.compare(results[old_version], results[new_version])
        self.data.is_comparing = True

    def _on_compare_clicked(self) -> None:
        self.compare(self.data.old_version, self.data.new_version)

    def _on_single_view_clicked(self) -> None:
        node = self.session.results.get(self.data.new_version)
        if node is not None:
            self.session.shown_version = self.data.new_version
            self.context.views.show_result(node)
        self.data.is_comparing = False

    def _on_result_added(self, version: str) -> None:
        self.data.versions = list(self.session.results)
        self.data.is_comparing = False  # a new result is shown alone
        others = [v for v in self.data.versions if v != version]
        if others:
            self.data.old_version, self.data.new_version = others[-1], version

    def _on_ct_changed(self) -> None:
        self.data.versions, self.data.is_comparing = [], False
