"""The real ``ciss-studio`` command in a child process, with its JSON-line events read on a thread."""
from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ciss_studio.access import TOKEN_ENV

REPO_ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO_ROOT / "test_artifacts" / "studio"  # git-ignored: screenshots and studio logs for people to look at
# How long a test waits for an engine job (segment, learn, adapt, export, rollback) to finish: a guard against a hang,
# not a speed requirement. Two test workers beside other CPU-bound work slowed a segment job past the 90 s it once had.
JOB_DEADLINE_S = 600.0


def studio_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This checkout's engine and studio on the path; one math thread (see Testing/conftest.py); then ``extra``.

    A ``CISS_STUDIO_TOKEN`` of the person running the tests is dropped: each test says which token it wants."""
    env = {k: v for k, v in os.environ.items() if k != TOKEN_ENV}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    env["OMP_NUM_THREADS"] = "1"
    env.update(extra or {})
    return env


def run_studio(*args: str, timeout_s: float = 60) -> subprocess.CompletedProcess[str]:
    """``ciss-studio ARGS`` run to its end (for starts that must fail before serving)."""
    return subprocess.run([sys.executable, "-m", "ciss_studio", *args], capture_output=True, text=True, env=studio_env(),
                          cwd=REPO_ROOT.parent, timeout=timeout_s)


class StudioProcess:
    """``python -m ciss_studio ARGS --progress jsonl``; ``url`` is known once it reported ``server_started``."""

    def __init__(self, *args: str | Path, log_path: Path, env: Mapping[str, str] | None = None) -> None:
        command = [sys.executable, "-m", "ciss_studio", *[str(a) for a in args], "--progress", "jsonl"]
        self.log_path = log_path
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = log_path.open("w")
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=self._log, text=True, env=studio_env(env), cwd=REPO_ROOT.parent)
        self.events: queue.Queue[dict[str, Any]] = queue.Queue()
        self.seen: list[dict[str, Any]] = []
        threading.Thread(target=self._read, daemon=True).start()
        self.url = ""

    def _read(self) -> None:
        for line in self.process.stdout:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            self.events.put(event)

    def wait_event(self, kind: str, timeout_s: float = 60.0, **fields: Any) -> dict[str, Any]:
        """The next event of ``kind`` whose fields match ``fields`` (earlier ones are kept in ``seen``)."""
        deadline = time.monotonic() + timeout_s
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no {kind} {fields} event from the studio in {timeout_s} s; log: {self.log_tail()}")
            try:
                event = self.events.get(timeout=min(remaining, 0.5))
            except queue.Empty:
                if self.process.poll() is not None and self.events.empty():
                    raise RuntimeError(f"the studio exited with {self.process.returncode}; log: {self.log_tail()}") from None
                continue
            self.seen.append(event)
            if event.get("event") == kind and all(event.get(k) == v for k, v in fields.items()):
                return event

    def wait_started(self, timeout_s: float = 60.0) -> str:
        self.url = self.wait_event("server_started", timeout_s)["url"]
        return self.url

    def wait_log(self, text: str, timeout_s: float = 10.0) -> None:
        """Until the studio's standard error holds ``text`` (its lines and its events travel through separate pipes)."""
        deadline = time.monotonic() + timeout_s
        while text not in self.log_path.read_text(errors="replace"):
            if time.monotonic() > deadline:
                raise TimeoutError(f"the studio did not log {text!r} in {timeout_s} s; log: {self.log_tail()}")
            time.sleep(0.1)

    def log_tail(self, chars: int = 3000) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")[-chars:]

    def stop(self, timeout_s: float = 60.0) -> int:
        """SIGTERM, as a service manager stops it; returns the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
        return self.process.returncode


def launch_studio(name: str, *args: str | Path, env: Mapping[str, str] | None = None) -> StudioProcess:
    """Start ``ciss-studio ARGS`` on a free port with lossless PNG views (so colours can be checked exactly) and wait
    until it serves; its log is ``ARTIFACTS/<name>.log``. A studio that fails to start is stopped before raising."""
    studio = StudioProcess(*args, "--port", "0", "--image-format", "png", log_path=ARTIFACTS / f"{name}.log", env=env)
    try:
        studio.wait_started()
    except BaseException:
        studio.stop()
        raise
    return studio
