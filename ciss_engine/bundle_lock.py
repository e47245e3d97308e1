"""One writer per bundle: an advisory ``flock`` on ``BUNDLE/.lock`` held by train, learn and rollback.

Two runs that change one bundle at once would race for the same version number and the same
pointer; the second one fails at once, naming the first. Readers (segment, info, versions,
evaluate, verify) never take the lock: versions are published by rename, so they never need to wait.

The lock file holds its holder as JSON (pid, command, host, start time) for that error message. The
kernel drops a ``flock`` when its process dies, so a lock file whose lock can be taken is stale: it is
taken over, and the takeover is logged. A holder removes the file while it still holds the lock, and
a process that locked a file which is no longer at the path tries again: no two processes ever hold
locks on different files of one bundle. ``flock`` is POSIX (Linux, macOS).

Having the lock, a writer first finishes what a killed writer left half done
(``bundle.finish_interrupted_publication``): no write of the bundle can meet another writer's leftovers.
"""
from __future__ import annotations

import contextlib
import datetime
import fcntl
import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .atomic import ensure_writable_dir, output_error, remove_empty_folders
from .bundle import finish_interrupted_publication
from .errors import BundleError
from .events import EventSink
from .fault_points import fault_point

LOCK_NAME = ".lock"


def _describe(holder: dict[str, Any]) -> str:
    """``ciss learn (pid 123 on host, started 2025-01-01T10:00:00+00:00)``, from the lock file's JSON."""
    return f"`ciss {holder.get('command', '?')}` (pid {holder.get('pid', '?')} on {holder.get('host', '?')}, started {holder.get('started', '?')})"


def _read_holder(fd: int) -> dict[str, Any] | None:
    """The JSON a holder wrote, or None while it is being written or when the file is empty."""
    try:
        holder = json.loads(os.pread(fd, 4096, 0).decode("utf-8"))
    except ValueError:  # empty, half written, or not UTF-8 JSON
        return None
    return holder if isinstance(holder, dict) else None


def _still_at(fd: int, path: Path) -> bool:
    """Whether ``fd`` is the file now at ``path`` (a releasing holder may have removed it meanwhile)."""
    try:
        return os.path.samestat(os.fstat(fd), os.stat(path))
    except FileNotFoundError:
        return False


def _acquire_or_raise(path: Path, root: Path) -> int:
    """A locked descriptor of the lock file now at ``path``; tried again when a releasing holder removed the
    file between our open and our lock (we would hold a lock nobody else can see)."""
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as error:
            raise output_error(path, error) from error
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise BundleError(
                f"bundle {root} is being changed by {_describe(holder) if holder else 'another process (starting up)'}",
                "one run at a time may change a bundle: wait for it to finish or stop it, then run again "
                "(segment, info, versions, evaluate and verify work meanwhile)",
            ) from None
        if _still_at(fd, path):
            return fd
        os.close(fd)


def _write_holder(fd: int, path: Path, command: str) -> None:
    holder = {"pid": os.getpid(), "command": command, "host": socket.gethostname(),
              "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(holder).encode("utf-8"), 0)
    except OSError as error:
        raise output_error(path, error) from error


@contextlib.contextmanager
def bundle_lock(root: Path, command: str, *, sink: EventSink, create: bool = False) -> Iterator[None]:
    """Hold ``root``'s writer lock for the block; raise BundleError (exit 4) naming the holder if it is taken.

    ``create`` (``ciss train``) makes ``root`` first, and removes it again if the run leaves it empty.
    """
    root = Path(root)
    created = create and not root.exists()
    if create:
        ensure_writable_dir(root)
    path = root / LOCK_NAME
    try:
        fd = _acquire_or_raise(path, root)
        try:
            stale = _read_holder(fd)
            if stale:
                sink.log(f"taking over the lock of {root}: {_describe(stale)} ended without releasing it")
            _write_holder(fd, path, command)
            finish_interrupted_publication(root, sink.log)
            fault_point("locked")
            yield
        finally:
            path.unlink(missing_ok=True)  # while still locked: see the module docstring
            os.close(fd)
    finally:
        if created:
            remove_empty_folders(root)  # a run that failed before writing a file leaves no folder behind
