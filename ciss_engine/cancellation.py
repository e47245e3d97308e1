"""Cancel on SIGINT/SIGTERM at the next iteration, so a run can leave a resumable checkpoint."""
from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator


class CancelToken:
    """Set by a signal or by code; long loops check ``is_cancelled`` once an iteration."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def is_cancelled(self) -> bool:
        return self._event.is_set()


@contextlib.contextmanager
def cancel_on_signals(token: CancelToken) -> Iterator[CancelToken]:
    """Route SIGINT and SIGTERM to ``token`` while the block runs (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield token
        return
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    for sig in previous:
        signal.signal(sig, lambda *_: token.cancel())
    try:
        yield token
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
