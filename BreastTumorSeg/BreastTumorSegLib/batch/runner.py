"""Run a batch: pick the shard, skip what is done, hand the rest to workers, write the reports.

    from BreastTumorSegLib.batch.cases import discover
    from BreastTumorSegLib.batch.runner import run_batch
    report = run_batch(discover("exams/"), "out/", engine={"model": "st-demo", "device": "auto"})

``engine="local"`` runs ``workers`` processes on this machine (``workers=1``: in this process);
``engine="ray"`` runs Ray actors (:mod:`.ray_engine`). After the run ``OUT/failures.csv`` (case,
stage, message) and ``OUT/worklist.csv`` (done exams, most doubtful first) are rewritten from
the records of every run into OUT, so shards of a job array sharing OUT all contribute.
"""
from __future__ import annotations

import csv
import io
import os
import queue
import signal
from dataclasses import dataclass, field
from pathlib import Path

from ..engine.doubt import worklist_key
from ..io.atomic import write_text
from .cases import Case, in_shard
from .ledger import Ledger
from .progress import BatchProgress
from .worker import HELD


@dataclass
class BatchReport:
    selected: int = 0  # cases in this shard
    already_done: int = 0  # complete from an earlier run, or computed by a concurrent run sharing OUT
    done: int = 0
    failed: list[dict] = field(default_factory=list)
    unfinished: list[str] = field(default_factory=list)  # neither done nor failed (a worker died)
    models_loaded: int = 0  # "models_loaded" events: one per worker

    @property
    def exit_code(self) -> int:
        return 1 if self.failed or self.unfinished else 0


def run_batch(cases: list[Case], out_dir, engine: dict, write: dict | None = None, workers: int = 1,
              shard: tuple[int, int] | None = None, backend: str = "local", progress: str = "bar",
              overwrite: bool = False, verify: str = "size", ray_address: str | None = None,
              progress_stream=None) -> BatchReport:
    out_dir = Path(out_dir)
    ledger = Ledger(out_dir)
    selected = [c for c in cases if in_shard(c.key, shard)]
    todo = [c for c in selected if not ledger.is_done(c.key, verify)]
    report = BatchReport(selected=len(selected), already_done=len(selected) - len(todo))
    bar = BatchProgress(len(todo), progress, progress_stream)
    finals: dict[str, dict] = {}

    def handle(event: dict) -> None:
        if event.get("event") == "models_loaded":
            report.models_loaded += 1
        if event.get("event") in ("done", "failed", "skipped") and event.get("case"):
            finals[event["case"]] = event
        bar(event)

    try:
        if not todo:
            pass
        elif backend == "ray":
            from .ray_engine import run_ray

            run_ray(todo, out_dir, engine, write or {}, workers, overwrite, handle, address=ray_address)
        elif workers <= 1:
            _run_here(todo, out_dir, engine, write or {}, overwrite, handle)
        else:
            _run_processes(todo, out_dir, engine, write or {}, workers, overwrite, handle, ledger)
        held = [c.key for c in todo if (finals.get(c.key) or {}).get("why") == HELD]
        _wait_for_other_runs(ledger, held)
    finally:
        bar.close()
        write_reports(ledger)
    failures = {rec["case"]: rec for rec in ledger.failures()}
    for case in todo:
        ev = finals.get(case.key)
        if ev is not None and ev.get("why") == HELD:  # another run (or shard) computed it: its outcome counts
            if ledger.is_done(case.key, verify):
                report.already_done += 1
            elif case.key in failures:
                report.failed.append({"event": "failed", **failures[case.key]})
            else:
                report.unfinished.append(case.key)
        elif ev is None or (ev["event"] == "skipped" and ev.get("why") != "done"):
            report.unfinished.append(case.key)
        elif ev["event"] == "failed":
            report.failed.append(ev)
        else:
            report.done += 1
    return report


def _wait_for_other_runs(ledger: Ledger, keys: list[str], poll_s: float = 0.5) -> None:
    """Wait while another live process (a concurrent run or shard sharing OUT) computes one of
    *keys* -- its last ``started`` event names it and it has not finished -- so that this run
    reports that case's outcome instead of calling it unfinished. A claim held without such a
    worker (or by a process that died) is not waited for."""
    import socket
    import time

    for key in keys:
        while True:
            worker = _computing_worker(ledger, key)
            if worker is None or not _alive_here(worker, socket.gethostname()):
                break
            claim = ledger.claim(key)
            if claim is not None:
                ledger.release(claim)
                break
            time.sleep(poll_s)


def _computing_worker(ledger: Ledger, key: str) -> str | None:
    """The worker id ("host:pid") whose ``started`` event for *key* is the last one, when no
    ``done``/``failed`` followed it; else None."""
    worker = None
    for ev in ledger.events():
        if ev.get("case") != key:
            continue
        if ev.get("event") == "started":
            worker = ev.get("worker")
        elif ev.get("event") in ("done", "failed"):
            worker = None
    return worker if isinstance(worker, str) else None


def _alive_here(worker: str, host: str) -> bool:
    """A worker on another machine counts as alive (its claim says so); on this one, its process must
    exist and not be this process."""
    name, _, pid = worker.rpartition(":")
    if name != host or not pid.isdigit():
        return name != host
    if int(pid) == os.getpid():
        return False
    try:
        import psutil

        return psutil.pid_exists(int(pid))
    except ImportError:  # pragma: no cover
        return os.path.exists(f"/proc/{pid}")


# ---------------------------------------------------------------------- reports
def write_reports(ledger: Ledger) -> tuple[Path, Path]:
    """``failures.csv`` and ``worklist.csv`` from the records in OUT (all runs, all shards)."""
    fail = io.StringIO()
    w = csv.writer(fail, lineterminator="\n")
    w.writerow(["case", "stage", "message"])
    for rec in ledger.failures():
        w.writerow([rec["case"], rec["stage"], rec["message"]])
    failures = write_text(ledger.out / "failures.csv", fail.getvalue())

    rows = []
    for path in sorted((ledger.root / "done").glob("*.json")):
        rec = ledger.read_done(path.stem)
        if rec:
            rows.append(rec)
    rows.sort(key=lambda r: (worklist_key(r.get("doubt") or {}), r["key"]))
    wl = io.StringIO()
    w = csv.writer(wl, lineterminator="\n")
    w.writerow(["rank", "case", "case_id", "uncertainty", "soft_disagreement", "flags", "n_lesions",
                "total_volume_ml", "summary"])
    for rank, r in enumerate(rows, start=1):
        d = r.get("doubt") or {}
        w.writerow([rank, r["key"], r.get("case_id", ""), d.get("uncertainty", ""), d.get("soft_disagreement", ""),
                    ";".join(d.get("flags", [])), r.get("n_lesions", ""), r.get("total_volume_ml", ""),
                    r.get("summary", "")])
    worklist = write_text(ledger.out / "worklist.csv", wl.getvalue())
    return failures, worklist


# ---------------------------------------------------------------------- local engines
def _run_here(todo, out_dir, engine, write, overwrite, handle) -> None:
    from .worker import ExamWorker

    worker = ExamWorker(out_dir, engine, write, overwrite, emit=handle)
    cases = iter(todo)
    try:
        worker.run(lambda: next(cases, None))
    finally:
        worker.close()


def _die_with_parent() -> None:
    """Linux: the kernel kills this worker when the batch process dies (SIGKILL included)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _process_main(out_dir, engine, write, overwrite, tasks, events, parent) -> None:
    _die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and stops the workers
    if os.getppid() != parent:  # the parent died before the death signal was armed
        return
    from .worker import ExamWorker

    try:
        worker = ExamWorker(out_dir, engine, write, overwrite, emit=events.put)
    except Exception as exc:
        events.put({"event": "worker_failed", "worker": os.getpid(), "message": " ".join(str(exc).split())})
        return

    def next_case():
        case = tasks.get()
        return None if case is None or os.getppid() != parent else case

    worker.run(next_case)
    worker.close()
    events.put({"event": "worker_exit", "worker": worker.id})


def _run_processes(todo, out_dir, engine, write, workers, overwrite, handle, ledger) -> None:
    import multiprocessing as mp

    from ..core.errors import BreastTumorSegError

    ctx = mp.get_context("spawn")  # no fork of a process holding threads (ITK, PyTorch)
    tasks, events = ctx.Queue(), ctx.Queue()
    for case in todo:
        tasks.put(case)
    n = min(workers, len(todo))
    for _ in range(n):
        tasks.put(None)
    procs = [ctx.Process(target=_process_main, args=(str(out_dir), engine, write, overwrite, tasks, events,
                                                     os.getpid()), daemon=True) for _ in range(n)]
    for p in procs:
        p.start()
    running: dict[str, str] = {}  # worker id -> case it is computing
    exited = 0
    try:
        while exited < n:
            try:
                ev = events.get(timeout=1.0)
            except queue.Empty:
                dead = [p for p in procs if p.exitcode is not None]
                if len(dead) == n and events.empty():
                    # workers gone without a word (killed, out of memory): their exams failed
                    for wid, key in running.items():
                        handle({"event": "failed", **ledger.record_failure(
                            key, "worker", f"the worker process {wid} died while computing this exam "
                                           f"(out of memory?); re-run to retry it")})
                    break
                continue
            kind = ev.get("event")
            if kind == "worker_failed":
                raise BreastTumorSegError(f"a batch worker could not start: {ev['message']}")
            if kind == "worker_exit":
                exited += 1
                continue
            if kind == "started":
                running[ev["worker"]] = ev["case"]
            elif kind in ("done", "failed") and running.get(ev.get("worker")) == ev.get("case"):
                running.pop(ev["worker"], None)
            handle(ev)
    finally:
        for p in procs:
            if p.is_alive():
                p.terminate()
        for p in procs:
            p.join(timeout=10)
