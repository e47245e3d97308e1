"""Atomic file and directory writes: a reader sees the old content or the new, never half of it."""
from __future__ import annotations

import contextlib
import errno
import itertools
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from .errors import OutputError
from .fault_points import fault_point

# No room for what is being written: a full file system, a full quota, or a file-size limit (``ulimit -f``;
# Python ignores SIGXFSZ, so the write fails with EFBIG instead of killing the process).
DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


def output_error(path: Path, error: OSError) -> OutputError:
    """Translate an OS error on ``path`` into an error that says what to do about it."""
    if error.errno == errno.EFBIG:
        return OutputError(
            f"file too large while writing {path}: it exceeds the file-size limit (ulimit -f) or what the file system allows",
            "raise the file-size limit or write to another file system, then run again",
        )
    if error.errno in DISK_FULL_ERRNOS:
        return OutputError(f"disk full while writing {path}", f"free space on the disk holding {path.parent} (or raise the disk quota) and run again")
    if error.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return OutputError(f"cannot write {path}: permission denied", f"choose a writable location or fix the permissions of {path.parent}")
    return OutputError(f"cannot write {path}: {error.strerror}", f"check that {path.parent} exists and is writable")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def ensure_writable_dir(directory: Path) -> Path:
    """Create ``directory`` if needed and prove it is writable before any long work starts."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=directory, prefix=".ciss-probe-"):
            pass
    except OSError as error:
        raise output_error(directory / "<probe>", error) from error
    return directory


def _temporary_affixes(path: Path) -> tuple[str, str]:
    """Prefix and suffix of the temporary siblings ``write_atomic`` makes for ``path``."""
    return f".{path.name.split('.')[0]}-", "".join(path.suffixes)


def temporary_glob(path: Path) -> str:
    """A glob (relative to ``path.parent``) matching the temporary files a killed writer of ``path`` left."""
    prefix, suffix = _temporary_affixes(Path(path))
    return f"{prefix}*{suffix}"


def _make_folder(folder: Path) -> list[Path]:
    """Create ``folder`` with its missing parents; those it created, deepest first, so that a write that
    fails can leave the disk as it found it."""
    missing = list(itertools.takewhile(lambda p: not p.exists(), (folder, *folder.parents)))
    folder.mkdir(parents=True, exist_ok=True)
    return missing


def _remove_folders(folders: list[Path]) -> None:
    """Remove the folders a failed write created, deepest first, each only if it is empty."""
    for folder in folders:
        with contextlib.suppress(OSError):
            folder.rmdir()


def remove_empty_folders(folder: Path) -> None:
    """Remove ``folder`` and its subfolders if they hold no file (never a file, whatever happens)."""
    subfolders = sorted((p for p in Path(folder).rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True)
    _remove_folders([*subfolders, Path(folder)])


def write_atomic(path: Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp)`` on a temporary sibling of ``path``, then rename it into place. A write that
    fails leaves nothing behind: no temporary file, no folder it created.

    ``write`` receives a path whose suffixes match ``path`` (so writers that choose a format by
    extension, such as nibabel's ``.nii.gz``, keep working).
    """
    path = Path(path)
    prefix, suffix = _temporary_affixes(path)
    created: list[Path] = []
    try:
        created = _make_folder(path.parent)
        fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=prefix, suffix=suffix)
        os.close(fd)
    except OSError as error:
        _remove_folders(created)
        raise output_error(path, error) from error
    tmp = Path(tmp_name)
    try:
        write(tmp)
        # mkstemp creates 0600 files; give the result the permissions a plain open() would have.
        os.chmod(tmp, 0o666 & ~_umask())
        fault_point(f"replace:{path.name}")
        os.replace(tmp, path)
    except BaseException as error:
        tmp.unlink(missing_ok=True)
        _remove_folders(created)
        if isinstance(error, OSError):
            raise output_error(path, error) from error
        raise
    return path


def write_bytes_atomic(path: Path, data: bytes) -> Path:
    """Write ``data`` atomically. Serialise in memory first (``torch.save`` to a buffer): torch and
    safetensors report a full disk as RuntimeError or SafetensorError, Python's own writes as the OSError
    that ``output_error`` explains."""
    return write_atomic(path, lambda tmp: tmp.write_bytes(data))


def json_bytes(data: Any) -> bytes:
    """``data`` as the indented JSON every file the engine writes holds."""
    return (json.dumps(data, indent=2, sort_keys=False) + "\n").encode("utf-8")


def write_json_atomic(path: Path, data: Any) -> Path:
    """Write ``data`` as indented JSON, atomically."""
    return write_bytes_atomic(path, json_bytes(data))


def write_text_atomic(path: Path, text: str) -> Path:
    return write_atomic(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


STAGING_PREFIX = ".staging-"


@contextlib.contextmanager
def staged_directory(final: Path) -> Iterator[Path]:
    """Yield a hidden staging directory beside ``final``; rename it to ``final`` only on success.

    Raises FileExistsError, and replaces nothing, if ``final`` exists by then: the caller knows what
    that means and what to do about it."""
    final = Path(final)
    created: list[Path] = []
    try:
        created = _make_folder(final.parent)
        staging = Path(tempfile.mkdtemp(dir=final.parent, prefix=f"{STAGING_PREFIX}{final.name}-"))
    except OSError as error:
        _remove_folders(created)
        raise output_error(final, error) from error
    renamed = False
    try:
        yield staging
        if final.exists():
            raise FileExistsError(errno.EEXIST, "already exists", str(final))
        fault_point(f"rename:{final.name}")
        os.rename(staging, final)
        renamed = True
    except FileExistsError:
        raise
    except OSError as error:
        if error.errno == errno.ENOTEMPTY:  # ``final`` appeared between the check and the rename
            raise FileExistsError(errno.EEXIST, "already exists", str(final)) from error
        raise output_error(final, error) from error
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        if not renamed:
            _remove_folders(created)
