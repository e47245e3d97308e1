"""A real child process that talks like the engine (JSON lines on stdout, logs on stderr).

Used by the job-runner tests for what the real engine does only rarely or slowly: crash, ignore
SIGTERM, leave a worker process behind. Modes:
  progress N SLEEP   N progress events, then done (exit 0)
  blocked RELEASE    one progress event, then waits until the file RELEASE exists; done (exit 0)
  error              an error event with a hint (exit 3, like an input error)
  crash              a Python traceback and no event (exit 1)
  killed             dies by SIGKILL, as the kernel's OOM killer would
  worker PIDFILE     starts a sleeping worker, writes its pid, exits 130 on SIGTERM (leaving the worker)
  stubborn PIDFILE   ignores SIGTERM and loops until killed
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path


def emit(event: str, **fields: object) -> None:
    print(json.dumps({"event": event, **fields}), flush=True)


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def loop_progress(total: int = 10_000, sleep_s: float = 0.05) -> None:
    for step in range(1, total + 1):
        emit("progress", stage="train", step=step, total=total, loss=1.0 / step, eta_s=(total - step) * sleep_s)
        time.sleep(sleep_s)


def main(argv: list[str]) -> int:
    mode = argv[0]
    if mode == "progress":
        total, sleep_s = int(argv[1]), float(argv[2])
        log("starting")
        print("a stray line that is not JSON", flush=True)
        for step in range(1, total + 1):
            time.sleep(sleep_s)
            emit("progress", stage="train", step=step, total=total, loss=round(1.0 / step, 4), eta_s=round((total - step) * sleep_s, 3))
        emit("checkpoint_saved", stage="train", iteration=total, path="ckpt.pt")
        emit("done", version="1.1.0")
        return 0
    if mode == "blocked":
        emit("progress", stage="train", step=1, total=2)
        while not Path(argv[1]).exists():
            time.sleep(0.01)
        emit("done", version="1.1.0")
        return 0
    if mode == "error":
        log("reading the CT")
        emit("error", message="CT not found: /nowhere/ct.nii.gz", hint="check the path", exit_code=3)
        return 3
    if mode == "crash":
        log("about to fail")
        raise RuntimeError("worker exploded")
    if mode == "killed":
        log("allocating too much")
        os.kill(os.getpid(), signal.SIGKILL)
    if mode == "worker":
        worker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
        Path(argv[1]).write_text(str(worker.pid))
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(130))
        loop_progress()
    if mode == "stubborn":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        Path(argv[1]).write_text(str(os.getpid()))
        loop_progress()
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
