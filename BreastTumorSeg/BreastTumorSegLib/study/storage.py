"""Crash-safe files for a study folder shared by several readers (possibly on a network drive).

* Whole files are written with :mod:`..io.atomic` and ``durable=True`` (temporary file in the same
  folder, fsynced, renamed over the target, folder fsynced: a reader of the target sees the old or
  the new file, never half); a version once written is never replaced (``exclusive=True``).
* :func:`append_line` — one JSON line per ``write`` on an ``O_APPEND`` descriptor, fsynced; a
  line torn by a kill is the last one and :func:`read_lines` skips it.
* :class:`Lock` — ``O_CREAT|O_EXCL`` lock file holding pid, host and a heartbeat; a lock whose
  process is gone (same host; asked with ``psutil``, which signals nothing) or whose heartbeat is
  older than ``stale_after_s`` is taken over. The same on Windows, macOS and Linux.
"""
from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path
from typing import Callable, Iterator

import psutil

from ..core.errors import BreastTumorSegError, InputError
from ..io.atomic import FILE_MODE, TEMP_PREFIX, write_json

LOCKED_MODE = 0o444  # submitted work: read-only


class StudyLockedError(BreastTumorSegError):
    """Someone else holds the lock (another session of the same reader, or the coordinator)."""


def read_json(path: str | os.PathLike, what: str) -> dict:
    """A JSON object from *path*; a missing, truncated or hand-broken file is an InputError naming it."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"{what} is missing", path,
                         "copy the whole study folder again (it may be half-copied)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read {what} ({exc})", path, "copy the whole study folder again") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{what} is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg}); it was "
                         "edited by hand or copied only in part", path,
                         "restore it from the study's backup or copy the folder again") from None
    if not isinstance(data, dict):
        raise InputError(f"{what} must hold a JSON object, not {type(data).__name__}", path,
                         "restore it from the study's backup")
    return data


def append_line(path: str | os.PathLike, record: dict) -> None:
    """Append one JSON line; one ``write`` call on an ``O_APPEND`` descriptor, then fsync."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = (json.dumps(record, sort_keys=True, allow_nan=False) + "\n").encode("utf-8")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, FILE_MODE)
    try:
        # a previous line torn by a kill has no newline: start on a fresh line
        if os.fstat(fd).st_size:
            with open(path, "rb") as fh:
                fh.seek(-1, os.SEEK_END)
                if fh.read(1) != b"\n":
                    data = b"\n" + data
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def read_lines(path: str | os.PathLike) -> list[dict]:
    """Records of a JSON-lines log; a torn line (a kill during the append) is skipped."""
    path = Path(path)
    if not path.exists():
        return []
    out = []
    for raw in path.read_bytes().splitlines():
        if not raw.strip():
            continue
        try:
            rec = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError):
            continue
        if isinstance(rec, dict):
            out.append(rec)
    return out


def clean_temporaries(folder: Path) -> int:
    """Remove the temporary files a killed writer left behind (``.tmp-*``); returns how many."""
    n = 0
    if folder.is_dir():
        for p in folder.rglob(TEMP_PREFIX + "*"):
            try:
                p.unlink()
                n += 1
            except OSError:
                pass
    return n


class Lock:
    """An exclusive lock file (works across processes and, on a shared folder, across machines).

    The file holds ``{"pid", "host", "owner", "acquired", "heartbeat"}``. It is stale, and taken
    over, when its process no longer exists on this host, or when its heartbeat is older than
    ``stale_after_s`` (another machine that died). :meth:`refresh` renews the heartbeat.
    """

    def __init__(self, path: str | os.PathLike, owner: str, stale_after_s: float = 600.0,
                 clock: Callable[[], float] = time.time):
        self.path = Path(path)
        self.owner = owner
        self.stale_after_s = stale_after_s
        self.clock = clock
        self.held = False
        self.recovered: dict | None = None  # the stale lock this one replaced

    def _record(self) -> dict:
        now = self.clock()
        return {"pid": os.getpid(), "host": socket.gethostname(), "owner": self.owner,
                "acquired": now, "heartbeat": now}

    def holder(self) -> dict | None:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            return data if isinstance(data, dict) else {}
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return {}  # being written, or torn: judged by its age

    def is_stale(self, info: dict | None) -> bool:
        if info is None:
            return True
        if info.get("host") == socket.gethostname() and isinstance(info.get("pid"), int):
            return not _pid_alive(info["pid"])
        beat = info.get("heartbeat")
        if not isinstance(beat, (int, float)):
            try:
                beat = self.path.stat().st_mtime
            except FileNotFoundError:
                return True
        return self.clock() - beat > self.stale_after_s

    def acquire(self) -> "Lock":
        data = json.dumps(self._record()).encode()
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
            except FileExistsError:
                info = self.holder()
                if not self.is_stale(info):
                    who = (info or {}).get("owner", "someone")
                    raise StudyLockedError(
                        f"{self.path}: in use by {who} (process {(info or {}).get('pid')} on "
                        f"{(info or {}).get('host')}). Fix: close the other session first; a lock left by a "
                        f"crashed machine is taken over after {self.stale_after_s / 60:g} min") from None
                # take the stale lock over: move it aside atomically (only one taker gets it), then
                # check that what was moved is still stale: a fresh lock taken meanwhile goes back
                aside = self.path.with_name(f"{self.path.name}.stale-{socket.gethostname()}-{os.getpid()}")
                try:
                    os.replace(self.path, aside)
                except FileNotFoundError:
                    continue
                try:
                    moved = json.loads(aside.read_text(encoding="utf-8"))
                except (OSError, ValueError):
                    moved = {}
                if isinstance(moved, dict) and moved and not self.is_stale(moved):
                    try:
                        os.link(aside, self.path)
                    except OSError:
                        pass
                    aside.unlink(missing_ok=True)
                    continue
                aside.unlink(missing_ok=True)
                self.recovered = info or {}
                continue
            try:
                os.write(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)
            self.held = True
            return self
        raise StudyLockedError(f"{self.path}: could not take the lock (others keep taking it). "
                               "Fix: try again in a moment")

    def refresh(self) -> None:
        """Renew the heartbeat; raises StudyLockedError when another session took the lock over
        (this one was judged stale, e.g. a machine that slept longer than ``stale_after_s``)."""
        if self.held:
            rec = self._record()
            old = self.holder()
            if old is None or (old and (old.get("pid"), old.get("host")) != (rec["pid"], rec["host"])):
                self.held = False
                raise StudyLockedError(f"{self.path}: this session's lock was taken over by "
                                       f"{(old or {}).get('owner', 'someone')} on {(old or {}).get('host')}. "
                                       "Fix: close this session; the other one continues the work")
            rec["acquired"] = old.get("acquired", rec["acquired"])
            write_json(self.path, rec, durable=True, allow_nan=False)

    def release(self) -> None:
        if self.held:
            info = self.holder()
            if info and info.get("pid") == os.getpid() and info.get("host") == socket.gethostname():
                self.path.unlink(missing_ok=True)
            self.held = False

    def __enter__(self) -> "Lock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def _pid_alive(pid: int) -> bool:
    """Whether process *pid* runs on this machine, asked with :mod:`psutil` on every platform.

    Never ``os.kill(pid, 0)``: on Windows CPython turns any signal but CTRL_C/CTRL_BREAK into
    ``TerminateProcess``, so *checking* a lock would kill its holder. A zombie (a killed child not
    yet reaped) is dead for our purpose."""
    if pid <= 0 or not psutil.pid_exists(pid):
        return False
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
    except psutil.Error:  # e.g. access denied to another user's process: it exists
        return True


def iter_versions(folder: Path, prefix: str = "v", suffix: str = ".nii.gz") -> Iterator[tuple[int, Path]]:
    """``(number, path)`` of ``v0001.nii.gz``-style files in *folder*, in order."""
    if not folder.is_dir():
        return iter(())
    found = []
    for p in folder.iterdir():
        name = p.name
        if name.startswith(prefix) and name.endswith(suffix) and name[len(prefix):-len(suffix)].isdigit():
            found.append((int(name[len(prefix):-len(suffix)]), p))
    return iter(sorted(found))
