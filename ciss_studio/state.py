"""One typed, namespaced trame state per panel, shared by the panel's UI and its logic."""
from __future__ import annotations

from typing import TypeVar

from trame_server.state import State
from trame_server.utils.typed_state import TypedState

T = TypeVar("T")
NAMESPACE = "ciss"


def panel_state(state: State, state_type: type[T]) -> TypedState[T]:
    """The typed state of one panel; keys read ``ciss__<DataclassName>__<field>``, so panels never share one.

    >>> panel_state(server.state, LearnState).name.preset
    'ciss__LearnState__preset'
    """
    return TypedState(state, state_type, namespace=NAMESPACE)


def hex_color(rgb: tuple[int, int, int]) -> str:
    """0-255 RGB (classes.json) → ``#rrggbb`` (what the page and colour inputs use)."""
    return "#{:02x}{:02x}{:02x}".format(*rgb)

