"""Batch progress: a bar with ETA on a terminal, one line per exam in a log, or JSON lines."""
from __future__ import annotations

import json
import sys
import time


def _clock(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    return f"{seconds // 3600:d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


class BatchProgress:
    """``mode``: ``"bar"`` (a bar on a terminal, one line per finished exam otherwise),
    ``"json"`` (every event as one JSON line on *stream*, for the Slicer panel and cluster logs)
    or ``"none"``."""

    def __init__(self, total: int, mode: str = "bar", stream=None):
        self.total = total
        self.mode = mode
        self.stream = stream or (sys.stdout if mode == "json" else sys.stderr)
        self.tty = mode == "bar" and hasattr(self.stream, "isatty") and self.stream.isatty()
        self.t0 = time.monotonic()
        self.done = self.failed = self.skipped = 0
        self._last_draw = 0.0
        self._current = ""

    @property
    def finished(self) -> int:
        return self.done + self.failed + self.skipped

    def eta(self) -> float | None:
        worked = self.done + self.failed
        if not worked:
            return None
        rate = worked / (time.monotonic() - self.t0)
        return (self.total - self.finished) / rate

    def __call__(self, event: dict) -> None:
        kind = event.get("event")
        if kind == "done":
            self.done += 1
        elif kind == "failed":
            self.failed += 1
        elif kind == "skipped":
            self.skipped += 1
        if kind in ("started", "stage"):
            self._current = f"{event.get('case')}: {event.get('stage', 'load')}"
        if self.mode == "json":
            self.stream.write(json.dumps({**event, "finished": self.finished, "total": self.total}, default=str) + "\n")
            self.stream.flush()
        elif self.mode == "bar":
            self._draw(event)

    def _draw(self, event: dict) -> None:
        kind = event.get("event")
        if kind == "models_loaded":  # once per worker: the log shows the models are not reloaded
            self.stream.write(("\r" if self.tty else "") + f"worker {event['worker']}: loaded {event['model_id']}"
                              + (f" and {event['breast_model']}" if event.get("breast_model") else "")
                              + f" in {event['seconds']:.1f} s\n")
            self.stream.flush()
            return
        eta = self.eta()
        head = (f"{self.finished}/{self.total} exams, {self.failed} failed, "
                f"elapsed {_clock(time.monotonic() - self.t0)}, ETA {_clock(eta) if eta is not None else '?'}")
        if self.tty:
            now = time.monotonic()
            if kind not in ("done", "failed", "skipped") and now - self._last_draw < 0.5:
                return
            self._last_draw = now
            filled = int(24 * self.finished / max(self.total, 1))
            line = f"[{'#' * filled}{'.' * (24 - filled)}] {head}  {self._current}"
            self.stream.write("\r" + line[:120].ljust(120))
        elif kind == "failed":
            self.stream.write(f"{head}  {event['case']} FAILED at {event['stage']}: {event['message']}\n")
        elif kind == "done":
            self.stream.write(f"{head}  {event['case']} done ({event.get('seconds', 0):.1f} s)\n")
        else:
            return
        self.stream.flush()

    def close(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()
