"""Named points in the write path where a crash test can freeze the engine and kill it (docs/reliability.md).

Inert unless ``CISS_FAULT_POINT`` is set, so production runs never stop here. With
``CISS_FAULT_POINT=NAME`` (or ``NAME#N`` for the N-th time the point is reached, default the first) the
process writes ``ciss fault point: NAME`` on stderr and stops itself with SIGSTOP; the test then kills it
with SIGKILL exactly there (or inspects the bundle while the writer is frozen). A test cannot hit a
window of microseconds (the rename that publishes a version, the switch of ``bundle.json``) by timing.

Points: ``replace:FILE`` (a temporary file of an atomic write is complete, ``FILE`` not yet replaced),
``rename:NAME`` (a staged folder is complete, not yet renamed to ``NAME``), ``version:model`` (the model
file of a version being written is in its staging folder, its metadata not yet), ``version:published``
(a new version is current, the run has not yet cleaned up).
"""
from __future__ import annotations

import os
import signal
import sys

ENVIRONMENT_VARIABLE = "CISS_FAULT_POINT"
_reached: dict[str, int] = {}


def fault_point(name: str) -> None:
    """Freeze here if ``CISS_FAULT_POINT`` names this point (and this is the occurrence it asks for)."""
    wanted = os.environ.get(ENVIRONMENT_VARIABLE)
    if not wanted:
        return
    target, _, occurrence = wanted.partition("#")
    if name != target:
        return
    _reached[name] = _reached.get(name, 0) + 1
    if _reached[name] != int(occurrence or 1):
        return
    sys.stderr.write(f"ciss fault point: {name}\n")
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGSTOP)
