"""The engine as a background process for the Slicer panel: start, follow progress, cancel.

The panel must stay responsive while a run takes minutes, and Cancel must stop everything the
run started (the engine may use worker processes). :class:`EngineProcess` starts the engine CLI
with :mod:`subprocess` in its own process group, reads its merged stdout/stderr on a thread
into a queue, and the GUI drains that queue from a timer in the main thread
(:meth:`EngineProcess.poll`) -- no Qt here, so it is tested in plain Python. :meth:`cancel`
kills the whole process tree (POSIX process group, or ``taskkill /T`` on Windows).

The engine runs with ``segment --progress json``: it prints one JSON event per line, the schema
``batch --progress json`` uses (:mod:`BreastTumorSegLib.batch.progress`): ``stage`` events carry
the fraction and message, ``warning`` events what the reader must know, ``done`` the files written,
``failed`` the one-line error with its fix. Any other line (the summary, a library's warning) is
kept for the log. An error raised before the engine starts (a bad option) is the CLI's one line
``breasttumorseg: error: ...`` on stderr.
"""
from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Sequence

_ERROR_RE = re.compile(r"^breasttumorseg:\s*(?:error:\s*)?(?P<msg>.+)$")


@dataclass
class ProgressUpdate:
    fraction: float  # 0..1 of the whole run
    message: str


def parse_event(line: str) -> dict | None:
    """The engine's JSON event on *line*, or None for any other line."""
    text = line.strip()
    if not text.startswith("{"):
        return None
    try:
        event = json.loads(text)
    except ValueError:
        return None
    return event if isinstance(event, dict) and isinstance(event.get("event"), str) else None


def parse_error(lines: Sequence[str]) -> str | None:
    """The engine's one-line error message from its output, if it printed one."""
    for line in reversed(lines):
        m = _ERROR_RE.match(line.strip())
        if m:
            return m["msg"].strip()
    return None


@dataclass
class ProcessState:
    """What :meth:`EngineProcess.poll` reports."""

    running: bool
    returncode: int | None = None
    progress: ProgressUpdate | None = None  # latest update seen, if any
    new_lines: list[str] = field(default_factory=list)
    cancelled: bool = False
    warnings: list[str] = field(default_factory=list)  # every warning event so far
    files: dict | None = None  # output name -> path, from the "done" event

    @property
    def succeeded(self) -> bool:
        return not self.running and self.returncode == 0 and not self.cancelled


class EngineProcess:
    """One run of the engine CLI in a background process group."""

    def __init__(self, command: Sequence[str], env: dict | None = None, cwd: str | None = None):
        self.command = list(command)
        self.env = env
        self.cwd = cwd
        self.lines: list[str] = []
        self.cancelled = False
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._proc: subprocess.Popen | None = None
        self._reader: threading.Thread | None = None
        self._progress: ProgressUpdate | None = None
        self.warnings: list[str] = []
        self.files: dict | None = None
        self.failure: str | None = None  # the "failed" event's message

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> "EngineProcess":
        kwargs: dict = {}
        if sys.platform == "win32":
            kwargs["creationflags"] = subprocess.CREATE_NEW_PROCESS_GROUP | subprocess.CREATE_NO_WINDOW
        else:
            kwargs["start_new_session"] = True  # own process group: cancel kills the whole tree
        self._proc = subprocess.Popen(self.command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                      stdin=subprocess.DEVNULL, env=self.env, cwd=self.cwd, text=True,
                                      encoding="utf-8", errors="replace", bufsize=1, **kwargs)
        self._reader = threading.Thread(target=self._read, name="BreastTumorSeg engine output", daemon=True)
        self._reader.start()
        return self

    def _read(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        for line in self._proc.stdout:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    def poll(self) -> ProcessState:
        """Drain new output (call from the GUI thread, e.g. every 100 ms) and report the state."""
        new: list[str] = []
        finished_output = False
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is None:
                finished_output = True
                break
            new.append(item)
            self._take(parse_event(item))
        self.lines.extend(new)
        rc = None if self._proc is None else self._proc.poll()
        running = rc is None or (not finished_output and self._reader is not None and self._reader.is_alive())
        if not running and self._reader is not None:
            self._reader.join(timeout=1.0)
            # Lines that arrived between the drain and the exit.
            while True:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is not None:
                    new.append(item)
                    self.lines.append(item)
                    self._take(parse_event(item))
        return ProcessState(running, rc, self._progress, new, self.cancelled, list(self.warnings), self.files)

    def _take(self, event: dict | None) -> None:
        """Fold one engine event into the run's state."""
        if event is None:
            return
        kind, message = event["event"], str(event.get("message") or "")
        if isinstance(event.get("fraction"), (int, float)) and kind in ("started", "stage", "done"):
            self._progress = ProgressUpdate(min(max(float(event["fraction"]), 0.0), 1.0),
                                            message or str(event.get("stage") or ""))
        if kind == "warning" and message:
            self.warnings.append(message)
        elif kind == "done":
            self.files = dict(event.get("files") or {})
        elif kind == "failed" and message:
            self.failure = message

    def wait(self, timeout: float | None = None, interval: float = 0.05) -> ProcessState:
        """Poll until the process ends (for batch use and tests)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            state = self.poll()
            if not state.running:
                return state
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"engine still running after {timeout} s")
            time.sleep(interval)

    def cancel(self, grace_s: float = 3.0) -> None:
        """Stop the run and every process it started: terminate, then kill after *grace_s*."""
        if self._proc is None or self._proc.poll() is not None:
            return
        self.cancelled = True
        kill_tree(self._proc, grace_s)

    def error_message(self) -> str:
        """One readable line explaining why the run failed (never a traceback)."""
        if self.cancelled:
            return "Cancelled; no results were written."
        if self.failure:
            return self.failure
        msg = parse_error(self.lines)
        if msg:
            return msg
        tail = [ln for ln in self.lines if ln.strip()][-1:] or ["no output"]
        rc = None if self._proc is None else self._proc.returncode
        return f"the segmentation engine stopped unexpectedly (exit code {rc}): {tail[0].strip()[:300]}"


def kill_tree(proc: subprocess.Popen, grace_s: float = 3.0) -> None:
    """Terminate *proc* and its children (its process group on POSIX, its tree on Windows)."""
    if sys.platform == "win32":
        subprocess.run(["taskkill", "/T", "/F", "/PID", str(proc.pid)], capture_output=True, check=False)
        proc.wait(timeout=grace_s)
        return
    try:
        pgid = os.getpgid(proc.pid)
    except ProcessLookupError:
        return
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=grace_s)
            # The leader is gone; make sure no child of the group survives it.
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            return
        except subprocess.TimeoutExpired:
            continue
        return
