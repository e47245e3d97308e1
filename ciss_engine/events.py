"""Progress and result events of a run: JSON lines on stdout, a bar on a terminal, or nothing.

Stdout carries only events (one JSON object a line) so that the Slicer job runner and the studio
never parse free text; human-readable logs go to stderr. Progress is throttled to one event per
second or per 1 % so a long run cannot flood a GUI log (a known failure of other extensions).
"""
from __future__ import annotations

import enum
import json
import math
import sys
import time
from typing import Any, TextIO

from .api.events import Done, ErrorEvent, Event, Progress, WarningEvent
from .errors import error_text


class ProgressMode(str, enum.Enum):
    JSONL = "jsonl"
    BAR = "bar"
    QUIET = "quiet"


def _clean(value: Any) -> Any:
    """Make numbers JSON-safe (no NaN/inf, plain floats)."""
    if isinstance(value, float):
        return round(value, 6) if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if hasattr(value, "item"):
        return _clean(value.item())
    return value


class EventSink:
    """Where a run reports progress, metrics, results and errors."""

    def __init__(self, mode: ProgressMode | str = ProgressMode.BAR, *, stdout: TextIO | None = None, stderr: TextIO | None = None) -> None:
        self.mode = ProgressMode(mode)
        self.stdout = stdout or sys.stdout
        self.stderr = stderr or sys.stderr
        self._last_emit: dict[str, tuple[float, int]] = {}
        self._bars: dict[str, Any] = {}
        self._stage_started: dict[str, tuple[float, int]] = {}

    def emit(self, event: Event) -> None:
        """Write ``event`` as one JSON line (jsonl mode only)."""
        if self.mode is ProgressMode.JSONL:
            self.stdout.write(json.dumps(_clean(event.to_json())) + "\n")
            self.stdout.flush()

    def log(self, message: str) -> None:
        """A human-readable line on stderr (never on stdout, which carries events)."""
        if self.mode is not ProgressMode.QUIET:
            self._close_bars()
            self.stderr.write(message + "\n")
            self.stderr.flush()

    def progress(self, stage: str, step: int, total: int, **fields: Any) -> None:
        """Report ``step`` of ``total`` in ``stage``; throttled to 1 s or 1 %, the last step always sent."""
        now = time.monotonic()
        started_at, started_step = self._stage_started.setdefault(stage, (now, step))
        done_steps = step - started_step
        eta = (now - started_at) / done_steps * (total - step) if done_steps > 0 else None
        if self.mode is ProgressMode.BAR:
            self._bar_update(stage, step, total, fields)
            return
        last_time, last_step = self._last_emit.get(stage, (-math.inf, -total))
        if step < total and now - last_time < 1.0 and (step - last_step) * 100 < total:
            return
        self._last_emit[stage] = (now, step)
        self.emit(Progress(stage=stage, step=step, total=total, eta_s=None if eta is None else round(eta, 1), **fields))

    def _bar_update(self, stage: str, step: int, total: int, fields: dict[str, Any]) -> None:
        if not self.stderr.isatty():
            return
        from tqdm import tqdm

        bar = self._bars.get(stage)
        if bar is None:
            bar = self._bars[stage] = tqdm(total=total, desc=stage, file=self.stderr, leave=False, dynamic_ncols=True)
        bar.update(step - bar.n)
        if fields:
            bar.set_postfix({k: (f"{v:.4g}" if isinstance(v, float) else v) for k, v in fields.items()}, refresh=False)
        if step >= total:
            bar.close()
            del self._bars[stage]

    def _close_bars(self) -> None:
        for bar in self._bars.values():
            bar.close()
        self._bars.clear()

    def warning(self, message: str, hint: str, **fields: Any) -> None:
        """An input that can be used but deserves a look: a ``warning`` event and a log line."""
        self.log(f"warning: {message}\n  hint: {hint}")
        self.emit(WarningEvent(message=message, hint=hint, **fields))

    def done(self, result: Done) -> None:
        self._close_bars()
        self.emit(result)

    def error(self, message: str, hint: str = "", **fields: Any) -> None:
        self._close_bars()
        self.emit(ErrorEvent(message=message, hint=hint, **fields))
        if self.mode is not ProgressMode.JSONL:
            self.stderr.write(error_text(message, hint) + "\n")
            self.stderr.flush()
