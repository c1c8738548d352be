"""One batch worker: loads the models once, then segments exam after exam with `segment`'s own
engine calls (``load_exam`` -> ``segment_exam`` -> ``write_result``), reading the next exam in a
background thread while the current one is computed. Used by local processes and Ray actors alike.
"""
from __future__ import annotations

import gc
import os
import socket
import sys
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace
from typing import Callable

from ..core.errors import BreastTumorSegError, InputError
from ..engine.settings import SegmentSettings
from ..io.files import load_exam
from ..io.safety import check_case_id
from .cases import Case
from .ledger import Ledger

HELD = "another process holds it"  # the "why" of a case skipped because another run computes it

Emit = Callable[[dict], None]


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text if isinstance(exc, BreastTumorSegError) else f"{type(exc).__name__}: {text or 'no message'}"


class ExamWorker:
    """Holds the loaded models and the output ledger; :meth:`run` works through a case source.

    ``engine`` are the keyword arguments of ``segment_exam`` as the `segment` command builds them
    (``model``, ``device``, ``models_dir``, ``model_options``, ``settings``: a
    :class:`~..engine.settings.SegmentSettings`); ``write`` those of
    ``write_result`` (``dicom_seg``, ``deidentify``). ``overwrite`` allows replacing output files
    that this batch did not make.
    """

    def __init__(self, out_dir, engine: dict, write: dict | None = None, overwrite: bool = False,
                 emit: Emit | None = None, worker_id: str | None = None):
        from ..core.memory import return_freed_memory
        from ..engine.pipeline import segment_exam  # noqa: F401  (PyTorch imported here, once)
        from ..models.registry import get_segmenter

        return_freed_memory()

        self.ledger = Ledger(out_dir)
        self.engine = dict(engine)
        self.write = dict(write or {})
        self.overwrite = overwrite
        self.id = worker_id or f"{socket.gethostname()}:{os.getpid()}"
        self._emit_fn = emit
        t0 = time.perf_counter()
        dirs = [self.engine["models_dir"]] if self.engine.get("models_dir") else None
        self.segmenter = get_segmenter(self.engine.pop("model"), dirs, self.engine.get("model_options"))
        settings = self.engine.get("settings") or SegmentSettings()
        breast = settings.breast_model or self.segmenter.card.get("breast_model")
        self.breast_model = None
        if breast:
            from ..models.breast_model import BreastMaskModel

            self.breast_model = BreastMaskModel.load(breast, dirs)
        # the loaded whole-breast model is reused for every exam
        self.engine["settings"] = replace(settings, breast_model=self.breast_model)
        self.emit({"event": "models_loaded", "model_id": self.segmenter.model_id,
                   "breast_model": self.breast_model.model_id if self.breast_model else None,
                   "seconds": round(time.perf_counter() - t0, 3)})
        self._reader = ThreadPoolExecutor(1, thread_name_prefix="prefetch")

    def emit(self, event: dict) -> None:
        event = {"time": round(time.time(), 3), "worker": self.id, **event}
        if event["event"] != "stage":
            self.ledger.log(event)
        if self._emit_fn is not None:
            self._emit_fn(event)

    # ------------------------------------------------------------------ reading
    @staticmethod
    def _read(case: Case):
        t0 = time.perf_counter()
        try:
            if case.problem:
                raise InputError(case.problem)
            return load_exam(**case.load_kwargs()), time.perf_counter() - t0
        except Exception as exc:  # handed to the case's own processing, which records it
            return exc, 0.0

    def prefetch(self, case: Case) -> Future:
        return self._reader.submit(self._read, case)

    # ------------------------------------------------------------------ one case
    def process(self, case: Case, loading: Future | None = None) -> dict:
        """Segment one case unless it is done or held by another process; returns the final event."""
        ledger, key = self.ledger, case.key
        claim = ledger.claim(key)
        if claim is None:
            return self.emit_final({"event": "skipped", "case": key, "why": HELD})
        try:
            if ledger.is_done(key):
                return self.emit_final({"event": "skipped", "case": key, "why": "done"})
            pending = ledger.pending_record(key)
            if pending is not None:  # committed by a run that was killed while moving the files
                ledger.log({"event": "rolled_forward", "case": key, "token": pending["token"]})
                ledger.finish(key, pending)
                return self.emit_final({"event": "done", "case": key, "rolled_forward": True,
                                        "doubt": pending.get("doubt"), "seconds": 0.0})
            ledger.clear_work(key)  # an exam that was in flight when a run died: redone
            return self._compute(case, loading or self.prefetch(case))
        finally:
            ledger.release(claim)

    def emit_final(self, event: dict) -> dict:
        self.emit(event)
        return event

    def _compute(self, case: Case, loading: Future) -> dict:
        from ..engine.pipeline import output_names, segment_exam, write_result
        from ..io.atomic import check_no_overwrite

        key, ledger = case.key, self.ledger
        state = {"stage": "load"}
        t0 = time.perf_counter()
        self.emit({"event": "started", "case": key})

        def progress(stage, fraction, message=""):
            if stage != state["stage"]:
                state["stage"] = stage
                self.emit({"event": "stage", "case": key, "stage": stage})

        try:
            exam, t_load = loading.result()
            if isinstance(exam, BaseException):
                raise exam
            for warning in (exam.metadata.get("dicom") or {}).get("warnings", []):  # as `segment` warns
                self.emit({"event": "warning", "case": key, "message": warning})
            case_id = check_case_id(exam.case_id, f"case id of {case.inputs[0]} (set it with a manifest CSV)")
            state["stage"] = "check"
            names = output_names(case_id, self.write.get("dicom_seg", False))
            earlier = set((ledger.read_done(key) or {}).get("files", {}))  # this case's own, now incomplete
            check_no_overwrite([ledger.out / n for n in names.values() if n not in earlier], self.overwrite,
                               option="--output folder (the outputs of another exam or run are there)")
            if self.write.get("dicom_seg") and "dicom" not in exam.metadata:
                raise InputError("--dicom-seg needs a DICOM input (the SEG must reference the source series)",
                                 case.inputs[0], "run on the DICOM folder, or drop --dicom-seg")
            result = segment_exam(exam, model=self.segmenter, progress=progress, **self.engine)
            state["stage"] = "write"
            write_result(result, ledger.work_dir(key), overwrite=True, exam=exam, load_seconds=t_load,
                         **self.write)
            doubt = _read_doubt(ledger.work_dir(key) / names["summary"])
            rec = ledger.record_work(key, {"case_id": case_id, "inputs": list(case.inputs), "doubt": doubt,
                                           "n_lesions": len(result.lesions),
                                           "total_volume_ml": round(sum(les.volume_ml for les in result.lesions), 4),
                                           "summary": names["summary"], "seconds": round(time.perf_counter() - t0, 3),
                                           "worker": self.id})
            ledger.log({"event": "committed", "case": key, "token": rec["token"]})
            ledger.finish(key, rec)
            return self.emit_final({"event": "done", "case": key, "seconds": rec["seconds"], "doubt": doubt,
                                    **memory_mb()})
        except (KeyboardInterrupt, SystemExit):
            ledger.clear_work(key)
            raise
        except Exception as exc:  # one exam's failure is recorded; the batch goes on
            ledger.clear_work(key)
            rec = ledger.record_failure(key, state["stage"], _one_line(exc))
            return self.emit_final({"event": "failed", **rec})
        finally:
            exam = result = None  # noqa: F841  (free the exam before the next one is read)
            gc.collect()

    # ------------------------------------------------------------------ the loop
    def run(self, next_case: Callable[[], Case | None]) -> int:
        """Process cases from *next_case* (None: no more) until it is empty; the next exam is
        read while the current one is computed. Returns how many cases were handled."""
        n = 0
        current = next_case()
        loading = self.prefetch(current) if current is not None else None
        while current is not None:
            following = next_case()
            # queued behind the current read: it runs while the current exam is computed
            following_loading = self.prefetch(following) if following is not None else None
            self.process(current, loading)
            current, loading = following, following_loading
            n += 1
        return n

    def close(self) -> None:
        from ..core.interrupts import join_pool

        join_pool(self._reader)  # queued reads cancelled, the running one waited for (a signal too)


def memory_mb() -> dict:
    """This process's resident memory now and at its peak (MB), for the logs and the benchmark
    (``psutil`` on every platform; the peak from ``getrusage`` where there is no ``peak_wset``)."""
    import psutil

    info = psutil.Process().memory_info()
    peak = getattr(info, "peak_wset", None)  # Windows
    if peak is None:
        try:
            import resource  # POSIX only: imported here, never at the top of a module
        except ImportError:
            peak = info.rss
        else:  # ru_maxrss is KiB on Linux, bytes on macOS
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (1 if sys.platform == "darwin" else 1024)
    return {"peak_rss_mb": round(peak / 2**20, 1), "rss_mb": round(info.rss / 2**20, 1)}


def _read_doubt(summary_path) -> dict | None:
    import json

    try:
        return json.loads(summary_path.read_text()).get("doubt")
    except (OSError, ValueError):
        return None
