"""One typed, namespaced trame state per panel, shared by the panel's UI and its logic."""
from __future__ import annotations

import re
from typing import TypeVar

from trame_server.state import State
from trame_server.utils.typed_state import TypedState

from ciss_engine.errors import InputError

T = TypeVar("T")
NAMESPACE = "ciss"
HEX_COLOR = re.compile(r"#?([0-9a-fA-F]{2})([0-9a-fA-F]{2})([0-9a-fA-F]{2})")


def panel_state(state: State, state_type: type[T]) -> TypedState[T]:
    """The typed state of one panel; keys read ``ciss__<DataclassName>__<field>``, so panels never share one.

    >>> panel_state(server.state, LearnState).name.preset
    'ciss__LearnState__preset'
    """
    return TypedState(state, state_type, namespace=NAMESPACE)


def hex_color(rgb: tuple[int, int, int]) -> str:
    """0-255 RGB (classes.json) → ``#rrggbb`` (what the page and colour inputs use)."""
    return "#{:02x}{:02x}{:02x}".format(*rgb)


def rgb_from_hex_or_raise(text: str) -> tuple[int, int, int]:
    """``#rrggbb`` → 0-255 RGB."""
    match = HEX_COLOR.fullmatch(text.strip())
    if match is None:
        raise InputError(f"invalid colour {text!r}", "pick the organ's colour with the colour button (#rrggbb)")
    return tuple(int(part, 16) for part in match.groups())  # type: ignore[return-value]
