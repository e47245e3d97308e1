"""``ciss`` runs as real processes forked from one warm interpreter, for tests that start and kill dozens.

Each run is its own process (its own pid, killed with a real SIGKILL, its files closed by the kernel), forked
from a server that imported torch, MONAI and the engine once: a tiny run then costs its work, not the
seconds of importing them again. The server has no threads and forks only while idle (fork-safe), one
run at a time. A run's stdout and stderr (events, log lines, ``ciss fault point: NAME``) arrive as lines,
in order, through one pipe; the server's own messages are JSON lines with a ``"server"`` key.
"""
from __future__ import annotations

import dataclasses
import json
import os
import selectors
import signal
import subprocess
import sys
from typing import Any, Callable

# Only what the server needs before it forks; the command line is run by the child.
SERVER = r"""
import json, os, resource, sys, traceback
import ciss_engine.training.base, ciss_engine.training.incremental, ciss_engine.commands.learn, ciss_engine.commands.train
import psutil, safetensors.torch, torch._dynamo  # imported lazily by a run (the optimizer imports dynamo: 4 s)
from ciss_engine.cli import main

def say(**fields):
    os.write(1, (json.dumps({"server": fields}) + "\n").encode())

def exit_code(pid):
    # Waited for without reaping: the pid stays a zombie until the next run, so a late SIGKILL can hit no other process.
    info = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)
    return info.si_status if info.si_code == os.CLD_EXITED else -info.si_status

say(state="ready")
previous = None
for line in sys.stdin:
    if previous is not None:
        os.waitpid(previous, 0)
    request = json.loads(line)
    pid = previous = os.fork()
    if pid == 0:
        os.environ.update(request["env"])
        if request["file_size_limit"] is not None:  # Python ignores SIGXFSZ: a write past it fails with EFBIG
            resource.setrlimit(resource.RLIMIT_FSIZE, (request["file_size_limit"],) * 2)
        try:
            code = main(request["argv"])
        except BaseException:
            traceback.print_exc()
            code = 99
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(int(code))
    say(state="started", pid=pid)
    say(state="exited", pid=pid, code=exit_code(pid))
"""

# A safety net against a hung engine, not a timing assumption: a run that prints nothing this long has failed.
SILENCE_LIMIT_S = 600.0
FAULT_PREFIX = "ciss fault point: "


@dataclasses.dataclass
class EngineRun:
    """One forked ``ciss`` run: its pid, everything it printed, its exit code (negative: killed by that signal)."""

    server: EngineForks
    pid: int | None = None
    lines: list[str] = dataclasses.field(default_factory=list)
    code: int | None = None

    @property
    def events(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.lines if line.startswith("{")]

    def read_until(self, predicate: Callable[[str], bool]) -> str | None:
        """Read the run's lines until one satisfies ``predicate`` (returned) or the run ends (None)."""
        while self.code is None:
            line = self.server.next_line(self)
            if line is not None and predicate(line):
                return line
        return None

    def wait(self) -> int:
        self.read_until(lambda _line: False)
        assert self.code is not None
        return self.code

    def kill(self) -> int:
        """SIGKILL the run (it may be stopped at a fault point) and return its exit code: -9, or its own if it
        ended first (its pid is not reused before the next run starts)."""
        while self.pid is None:
            self.server.next_line(self)
        os.kill(self.pid, signal.SIGKILL)
        return self.wait()

    def kill_at_fault_point(self) -> str | None:
        """Kill the run where it froze at its ``CISS_FAULT_POINT``; the point's name, or None if it ended first."""
        line = self.read_until(lambda text: text.startswith(FAULT_PREFIX))
        if line is None:
            return None
        self.kill()
        return line[len(FAULT_PREFIX):]

    def kill_after_events(self, count: int) -> int:
        """Kill the run once it has printed ``count`` events (it goes on meanwhile: the kill lands wherever it
        is by then); its exit code, -9 unless it ended first."""
        seen = 0

        def counted(line: str) -> bool:
            nonlocal seen
            seen += line.startswith("{")
            return seen >= count

        self.read_until(counted)
        return self.kill()


class EngineForks:
    """The server process; ``run(*argv)`` starts one ``ciss`` command line in a fresh forked process."""

    def __init__(self, env: dict[str, str] | None = None) -> None:
        self._process = subprocess.Popen(
            [sys.executable, "-u", "-c", SERVER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})},
        )
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._process.stdout, selectors.EVENT_READ)
        self._buffer = b""
        self._last: EngineRun | None = None
        ready = self._line()
        assert json.loads(ready) == {"server": {"state": "ready"}}, ready

    def run(self, *argv: object, env: dict[str, str] | None = None, file_size_limit: int | None = None) -> EngineRun:
        request = {"argv": [str(a) for a in argv], "env": env or {}, "file_size_limit": file_size_limit}
        assert self._process.stdin is not None
        self._process.stdin.write((json.dumps(request) + "\n").encode())
        self._process.stdin.flush()
        self._last = EngineRun(self)
        return self._last

    def next_line(self, run: EngineRun) -> str | None:
        """The run's next output line, or None for a server message (which it applies to ``run``)."""
        line = self._line()
        if line.startswith('{"server"'):
            message = json.loads(line)["server"]
            if message["state"] == "started":
                run.pid = message["pid"]
            elif message["state"] == "exited":
                run.code = message["code"]
            return None
        run.lines.append(line)
        return line

    def _line(self) -> str:
        while b"\n" not in self._buffer:
            if not self._selector.select(timeout=SILENCE_LIMIT_S):
                raise TimeoutError(f"the engine printed nothing for {SILENCE_LIMIT_S:.0f} s")
            chunk = os.read(self._process.stdout.fileno(), 1 << 16)  # type: ignore[union-attr]
            if not chunk:
                raise RuntimeError(f"the engine fork server ended (exit {self._process.wait()}); its last output: {self._buffer[-2000:]!r}")
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return line.decode("utf-8", errors="replace")

    def close(self) -> None:
        """End the server; a run a failed test left frozen at a fault point is killed first."""
        if self._last is not None and self._last.pid is not None:
            os.kill(self._last.pid, signal.SIGKILL)  # at worst a zombie: the server reaps runs only later
        assert self._process.stdin is not None
        self._process.stdin.close()
        try:
            self._process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self._process.kill()
        self._selector.close()

