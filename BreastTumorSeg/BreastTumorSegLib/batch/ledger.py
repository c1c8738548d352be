"""The batch's records in ``OUT/.batch/``: who works on a case, what is done, what failed.

* ``claims/<key>.lock`` — held (:class:`filelock.FileLock`: ``flock`` on POSIX, ``msvcrt.locking``
  on Windows) by the process working on the case. The operating system drops it when that process
  dies, SIGKILL included, so a case is never worked on twice at once,
  also by shards of a job array sharing OUT or by a worker left behind by a killed run.
* ``work/<key>/`` — the case's outputs as ``write_result`` leaves them (all or nothing), then
  ``record.json`` written last: sizes, modification times and SHA-256 of every file. The record
  is the commit point: from then on the case is done and is never computed again; the files are
  moved into OUT, the record last (to ``done/<key>.json``). A run killed during the move is
  rolled forward by the next run. A work folder without a record is an exam that was in flight:
  removed and redone.
* ``done/<key>.json`` — the case is complete when every file it lists is in OUT with the
  recorded size and modification time (``verify="hash"``: and SHA-256); otherwise it is redone.
* ``failed/<key>.json`` — the last failure (stage, one-line message); ``failures.csv`` is
  written from these.
* ``events.jsonl`` — one JSON line per event (models loaded, case started / done / failed),
  appended with ``O_APPEND``.
"""
from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from pathlib import Path

import filelock

from ..core import interrupts
from ..io.atomic import sha256_file, write_json

RECORD = "record.json"


class Ledger:
    def __init__(self, out_dir: str | os.PathLike):
        self.out = Path(out_dir)
        self.root = self.out / ".batch"
        for sub in ("claims", "work", "done", "failed"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        self.events_path = self.root / "events.jsonl"

    # ------------------------------------------------------------------ paths
    def work_dir(self, key: str) -> Path:
        return self.root / "work" / key

    def done_path(self, key: str) -> Path:
        return self.root / "done" / f"{key}.json"

    def failed_path(self, key: str) -> Path:
        return self.root / "failed" / f"{key}.json"

    # ------------------------------------------------------------------ claims
    def claim(self, key: str):
        """A held claim (a :class:`filelock.FileLock`) for *key*, or None when another process holds it."""
        lock = filelock.FileLock(self.root / "claims" / f"{key}.lock", timeout=0, thread_local=False)
        try:
            lock.acquire()
        except filelock.Timeout:
            return None
        return lock

    @staticmethod
    def release(lock) -> None:
        if lock is not None:
            lock.release()

    # ------------------------------------------------------------------ state
    def read_done(self, key: str) -> dict | None:
        try:
            return json.loads(self.done_path(key).read_text())
        except (OSError, ValueError):
            return None

    def is_done(self, key: str, verify: str = "size") -> bool:
        """The case's outputs are all in OUT as recorded (size and mtime; ``"hash"``: SHA-256 too)."""
        rec = self.read_done(key)
        if not rec:
            return False
        for name, meta in rec.get("files", {}).items():
            path = self.out / name
            try:
                st = path.stat()
            except OSError:
                return False
            if st.st_size != meta["size"] or st.st_mtime_ns != meta["mtime_ns"]:
                return False
            if verify == "hash" and sha256_file(path) != meta["sha256"]:
                return False
        return bool(rec.get("files"))

    # ------------------------------------------------------------------ commit
    def record_work(self, key: str, info: dict) -> dict:
        """Write the commit record of the finished outputs in ``work/<key>/`` (the commit point)."""
        work = self.work_dir(key)
        files = {}
        for path in sorted(work.iterdir()):
            if path.is_file() and path.name != RECORD:
                st = path.stat()
                files[path.name] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": sha256_file(path)}
        rec = {"key": key, "token": uuid.uuid4().hex, "files": files,
               "finished_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **info}
        write_json(work / RECORD, rec)
        return rec

    def pending_record(self, key: str) -> dict | None:
        """The commit record of a case whose move into OUT was interrupted, if any."""
        try:
            return json.loads((self.work_dir(key) / RECORD).read_text())
        except (OSError, ValueError):
            return None

    def finish(self, key: str, rec: dict) -> None:
        """Move the recorded outputs into OUT (already moved ones are skipped), the record last."""
        work = self.work_dir(key)
        with interrupts.signals_deferred():
            for name in rec["files"]:
                src = work / name
                if src.exists():
                    os.replace(src, self.out / name)
            os.replace(work / RECORD, self.done_path(key))
            shutil.rmtree(work, ignore_errors=True)
            try:
                self.failed_path(key).unlink()
            except FileNotFoundError:
                pass

    def clear_work(self, key: str) -> None:
        shutil.rmtree(self.work_dir(key), ignore_errors=True)

    # ------------------------------------------------------------------ failures and events
    def record_failure(self, key: str, stage: str, message: str) -> dict:
        rec = {"case": key, "stage": stage, "message": " ".join(str(message).split())[:500],
               "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        write_json(self.failed_path(key), rec)
        return rec

    def failures(self) -> list[dict]:
        """Recorded failures of cases that are not done since (sorted by case)."""
        out = []
        for path in sorted((self.root / "failed").glob("*.json")):
            try:
                rec = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            if not self.done_path(rec["case"]).exists():
                out.append(rec)
        return out

    def log(self, event: dict) -> None:
        line = (json.dumps(event, default=str) + "\n").encode("utf-8")
        fd = os.open(self.events_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)

    def events(self) -> list[dict]:
        try:
            lines = self.events_path.read_text().splitlines()
        except OSError:
            return []
        out = []
        for ln in lines:
            try:
                out.append(json.loads(ln))
            except ValueError:  # a line cut by a kill
                pass
        return out
