"""Helpers shared by the sub-commands: terminal progress."""
from __future__ import annotations

import sys
import time


class TerminalProgress:
    """Progress callback that draws one updating line on stderr (plain lines when not a TTY)."""

    def __init__(self, stream=None, min_interval: float = 0.5):
        self.stream = stream or sys.stderr
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.min_interval = min_interval
        self._last = 0.0
        self._last_stage = None

    def __call__(self, stage: str, fraction: float, message: str = "") -> None:
        now = time.monotonic()
        new_stage = stage != self._last_stage
        if not new_stage and now - self._last < self.min_interval and fraction < 1.0:
            return
        self._last = now
        self._last_stage = stage
        bar_len = 24
        filled = int(round(bar_len * fraction))
        line = f"[{'#' * filled}{'.' * (bar_len - filled)}] {100 * fraction:5.1f}%  {message or stage}"
        if self.tty:
            self.stream.write("\r" + line[:100].ljust(100))
            if fraction >= 1.0:
                self.stream.write("\n")
        else:  # a log or a parent process (the Slicer panel) reads one line per update
            self.stream.write(line + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()
