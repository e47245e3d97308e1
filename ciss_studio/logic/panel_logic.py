"""Base of the panel logics: the server, the context and the panel's typed state."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar

from trame_server import Server

from ..state import panel_state
from .context import StudioContext

T = TypeVar("T")


class PanelLogic(Generic[T]):
    """Handles one panel: reads and writes ``data`` (its dataclass state), reacts in ``_on_<signal>``."""

    def __init__(self, server: Server, context: StudioContext, state_type: type[T]) -> None:
        self.server = server
        self.context = context
        self._typed_state = panel_state(server.state, state_type)

    @property
    def state(self):
        return self.server.state

    @property
    def data(self) -> T:
        return self._typed_state.data

    @property
    def name(self) -> T:
        return self._typed_state.name

    @property
    def session(self):
        return self.context.session

    def bind_changes(self, changes: dict[Any, Callable[..., None]]) -> None:
        self._typed_state.bind_changes(changes)
