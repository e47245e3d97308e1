"""Atomic file and directory writes: a reader sees the old content or the new, never half of it."""
from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from .errors import OutputError


def output_error(path: Path, error: OSError) -> OutputError:
    """Translate an OS error on ``path`` into an error that says what to do about it."""
    if error.errno == errno.ENOSPC:
        return OutputError(f"disk full while writing {path}", f"free space on the disk holding {path.parent} and run again")
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


def write_atomic(path: Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp)`` on a temporary sibling of ``path``, then rename it into place.

    ``write`` receives a path whose suffixes match ``path`` (so writers that choose a format by
    extension, such as nibabel's ``.nii.gz``, keep working).
    """
    path = Path(path)
    suffix = "".join(path.suffixes)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name.split('.')[0]}-", suffix=suffix)
        os.close(fd)
    except OSError as error:
        raise output_error(path, error) from error
    tmp = Path(tmp_name)
    try:
        write(tmp)
        # mkstemp creates 0600 files; give the result the permissions a plain open() would have.
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except OSError as error:
        tmp.unlink(missing_ok=True)
        raise output_error(path, error) from error
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def write_json_atomic(path: Path, data: Any) -> Path:
    """Write ``data`` as indented JSON, atomically."""
    text = json.dumps(data, indent=2, sort_keys=False) + "\n"
    return write_atomic(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_text_atomic(path: Path, text: str) -> Path:
    return write_atomic(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


@contextlib.contextmanager
def staged_directory(final: Path) -> Iterator[Path]:
    """Yield a hidden staging directory beside ``final``; rename it to ``final`` only on success.

    Raises FileExistsError, and replaces nothing, if ``final`` exists by then: the caller knows what
    that means and what to do about it."""
    final = Path(final)
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".staging-{final.name}-"))
    except OSError as error:
        raise output_error(final, error) from error
    try:
        yield staging
        if final.exists():
            raise FileExistsError(errno.EEXIST, "already exists", str(final))
        os.rename(staging, final)
    except FileExistsError:
        raise
    except OSError as error:
        if error.errno == errno.ENOTEMPTY:  # ``final`` appeared between the check and the rename
            raise FileExistsError(errno.EEXIST, "already exists", str(final)) from error
        raise output_error(final, error) from error
    finally:
        shutil.rmtree(staging, ignore_errors=True)
