"""What the CLI does with an exception that is not a ``CissError``: a one-line error event, never a raw traceback.

The traceback goes to a log file under ``$XDG_STATE_HOME/ciss/logs`` (``~/.local/state/ciss/logs`` when
the variable is unset; docs/reliability.md), and the error names that file. Running out of memory
is not a bug: it gets its own exit code and a hint on how to need less; nor is a full disk that a write
the engine does not wrap itself met (exit 5, like the ones it wraps).
"""
from __future__ import annotations

import datetime
import os
import platform
import sys
import traceback
from pathlib import Path

from . import __version__
from .atomic import DISK_FULL_ERRNOS
from .errors import ExitCode
from .events import EventSink

OOM_HINT = (
    "the run needs less memory: a smaller --patch-size or --batch-size (train, learn), --device cpu when the GPU is the "
    "one that ran out, fewer or smaller CTs a run; close other programs that hold GPU or main memory"
)
BUG_HINT = "this is a bug: please report it with"
DISK_FULL_HINT = "free space on the disk the command writes to (the bundle or the output folder), or raise the file-size limit (ulimit -f), then run again"


def log_dir() -> Path:
    """Where crash logs go: the XDG state folder (``$XDG_STATE_HOME``, default ``~/.local/state``) + ``ciss/logs``."""
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "ciss" / "logs"


# How PyTorch's RuntimeErrors say memory ran out: CUDA and cuDNN "out of memory"; the CPU allocator
# "DefaultCPUAllocator: can't allocate memory: … Error code 12 (Cannot allocate memory)".
OOM_PHRASES = ("out of memory", "cannot allocate memory")


def _chain(error: BaseException) -> list[BaseException]:
    """``error`` and the exceptions it wraps."""
    chain: list[BaseException] = []
    link: BaseException | None = error
    while link is not None and link not in chain:  # `raise e from e` makes a cycle
        chain.append(link)
        link = link.__cause__ or link.__context__
    return chain


def is_out_of_memory(error: BaseException) -> bool:
    """MemoryError (numpy, Python), torch's OutOfMemoryError (CUDA), or a RuntimeError saying memory ran out,
    also when another exception wraps it."""
    return any(
        isinstance(e, MemoryError) or type(e).__name__ == "OutOfMemoryError"
        or (isinstance(e, RuntimeError) and any(phrase in str(e).lower() for phrase in OOM_PHRASES))
        for e in _chain(error)
    )


def disk_full_error(error: BaseException) -> OSError | None:
    """The OSError saying the disk (or quota, or file-size limit) is full, also when another exception wraps it."""
    return next((e for e in _chain(error) if isinstance(e, OSError) and e.errno in DISK_FULL_ERRNOS), None)


# Options whose values are secrets: crash logs are meant to be attached to bug reports.
SECRET_OPTIONS = ("--token",)


def redacted(argv: list[str]) -> list[str]:
    """``argv`` with the values of SECRET_OPTIONS replaced by ***, in both ``--opt VALUE`` and ``--opt=VALUE`` form."""
    out: list[str] = []
    for index, word in enumerate(argv):
        if index > 0 and argv[index - 1] in SECRET_OPTIONS:
            out.append("***")
        elif word.split("=", 1)[0] in SECRET_OPTIONS and "=" in word:
            out.append(word.split("=", 1)[0] + "=***")
        else:
            out.append(word)
    return out


def _write_log(error: BaseException, argv: list[str], program: str) -> Path:
    now = datetime.datetime.now()
    path = log_dir() / f"ciss-{now:%Y%m%d-%H%M%S}-{os.getpid()}.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    header = f"ciss {__version__}, Python {platform.python_version()} on {platform.platform()}\ncommand: {program} {' '.join(redacted(argv))}\ntime: {now.isoformat()}\n\n"
    path.write_text(header + "".join(traceback.format_exception(error)), encoding="utf-8")
    return path


def report_unexpected_error(error: Exception, argv: list[str], sink: EventSink, program: str = "ciss") -> int:
    """Report ``error`` as an ``error`` event (exit 1, or 7 when memory ran out) whose ``log`` field names the log
    file (which names the command as ``program ARGV``); a full disk is no bug and writes no log (exit 5)."""
    full = disk_full_error(error)
    if full is not None:
        where = f" while writing {full.filename}" if full.filename else ""
        sink.error(f"disk full{where}: {full.strerror}", DISK_FULL_HINT, exit_code=int(ExitCode.OUTPUT_ERROR))
        return ExitCode.OUTPUT_ERROR
    summary = (str(error).strip().splitlines() or [""])[0][:300]
    message = f"{type(error).__name__}: {summary}" if summary else type(error).__name__
    try:
        log: str | None = str(_write_log(error, argv, program))
        evidence = f"the log {log}"
    except OSError as log_error:
        traceback.print_exception(error, file=sys.stderr)
        log, evidence = None, f"the traceback above (no log written in {log_dir()}: {log_error.strerror})"
    if is_out_of_memory(error):
        code, message, hint = ExitCode.OUT_OF_MEMORY, f"out of memory: {message}", OOM_HINT
    else:
        code, hint = ExitCode.INTERNAL_ERROR, f"{BUG_HINT} {evidence}"
    sink.error(message, hint, exit_code=int(code), log=log)
    return code
