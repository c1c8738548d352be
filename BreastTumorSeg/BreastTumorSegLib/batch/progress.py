"""Progress of `batch` and `segment`: a bar with ETA on a terminal, one line per exam in a log, or
JSON lines in the one event schema both commands share (``--progress json``).

The schema: one JSON object per line on stdout; the human summary goes to stderr. Every event has

* ``event`` -- ``started``, ``stage``, ``warning``, ``done`` or ``failed`` (``batch`` also
  ``skipped``, ``models_loaded``, ``worker_failed`` ...);
* ``case`` -- the case id (``batch``: the case key; ``segment``: null until the exam is read);
* ``stage`` -- the engine stage (``load``, ``register``, ``breast_mask``, ``predict``, ``postprocess``,
  ``write``; ``failed``: the stage that failed);
* ``fraction`` -- 0..1 of the whole command (``segment``: of the exam; ``batch``: finished exams / total);
* ``message`` -- what a person reads: the stage's message, the warning, or for ``failed`` the one-line
  error that ends with its fix;
* ``time`` -- seconds since the epoch.

``done`` adds ``files`` (``segment``: output name -> path written); ``batch`` adds ``finished`` and
``total`` to every event. The Slicer panel (``slicer/process.py``) reads exactly this.
"""
from __future__ import annotations

import json
import sys
import time

EVENT_KEYS = ("event", "case", "stage", "fraction", "message", "time")


def json_event(event: dict) -> str:
    """One event as its JSON line (without the newline), every key of the schema present."""
    full = {key: None for key in EVENT_KEYS}
    full["time"] = round(time.time(), 3)
    full.update(event)
    return json.dumps(full, default=str)


class JsonEvents:
    """Writes events (dicts of the schema above) as JSON lines on *stream* (stdout by default)."""

    def __init__(self, stream=None):
        self.stream = stream or sys.stdout

    def __call__(self, event: dict) -> None:
        self.stream.write(json_event(event) + "\n")
        self.stream.flush()


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
            fraction = self.finished / self.total if self.total else 1.0
            self.stream.write(json_event({"fraction": fraction, **event, "finished": self.finished,
                                          "total": self.total}) + "\n")
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
