"""``--engine ray``: the same worker (:class:`.worker.ExamWorker`) in Ray actors.

Each actor loads the models once (``num_gpus=1`` per actor when the device is CUDA, so Ray puts
one actor on each GPU) and pulls cases from a Ray queue, reading each exam itself where it lives
(paths must be visible to every node, e.g. a shared file system); outputs and records go to the
shared OUT with the same commit rules as local runs. Ray does the scheduling; nothing here does.
Connects to ``address`` (``"auto"``: a running cluster) or starts a local Ray instance.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

from ..core.errors import BreastTumorSegError

PACKAGE_PARENT = str(Path(__file__).resolve().parents[2])  # the folder holding BreastTumorSegLib


class _RayWorker:
    def __init__(self, out_dir, engine, write, overwrite, events):
        from .worker import ExamWorker

        self.events = events
        self.worker = ExamWorker(out_dir, engine, write, overwrite, emit=events.put)

    def run(self, tasks) -> int:
        n = self.worker.run(lambda: tasks.get())
        self.worker.close()
        return n


def _import_ray():
    try:
        import ray
    except ImportError:
        raise BreastTumorSegError("--engine ray needs Ray. Fix: pip install \"breasttumorseg[ray]\" "
                                  "(or pip install ray), or use --engine local") from None
    return ray


def run_ray(todo, out_dir, engine: dict, write: dict, workers: int, overwrite: bool, handle,
            address: str | None = None) -> None:
    ray = _import_ray()
    from ray.util.queue import Empty, Queue

    if not ray.is_initialized():
        path = os.pathsep.join(p for p in (PACKAGE_PARENT, os.environ.get("PYTHONPATH")) if p)
        ray.init(address=address, include_dashboard=False, log_to_driver=False,
                 runtime_env={"env_vars": {"PYTHONPATH": path}})
    cuda = str(engine.get("device", "auto")).startswith("cuda")
    actor_cls = ray.remote(num_cpus=1, num_gpus=1 if cuda else 0)(_RayWorker)
    n = max(1, min(workers, len(todo)))
    tasks, events = Queue(), Queue()
    for case in todo:
        tasks.put(case)
    for _ in range(n):
        tasks.put(None)
    actors = [actor_cls.remote(str(out_dir), engine, write, overwrite, events) for _ in range(n)]
    pending = [a.run.remote(tasks) for a in actors]
    running: dict[str, str] = {}

    def drain():
        while True:
            try:
                batch = events.get_nowait_batch(max(1, events.qsize()))
            except Empty:
                return
            if not batch:
                return
            for ev in batch:
                if ev.get("event") == "started":
                    running[ev["worker"]] = ev["case"]
                elif ev.get("event") in ("done", "failed"):
                    running.pop(ev.get("worker"), None)
                handle(ev)

    errors = []
    try:
        while pending:
            ready, pending = ray.wait(pending, num_returns=1, timeout=0.5)
            drain()
            for ref in ready:
                try:
                    ray.get(ref)
                except Exception as exc:  # an actor that died (out of memory, node lost)
                    errors.append(" ".join(str(exc).split())[:300])
        time.sleep(0.1)
        drain()
    finally:
        for a in actors:
            ray.kill(a)
        ray.kill(tasks.actor)
        ray.kill(events.actor)
    if errors and not running:
        raise BreastTumorSegError(f"a Ray worker failed: {errors[0]}")
    from .ledger import Ledger

    ledger = Ledger(out_dir)
    for wid, key in running.items():
        handle({"event": "failed", **ledger.record_failure(
            key, "worker", f"the Ray actor {wid} died while computing this exam ({errors[0] if errors else '?'})")})
