"""Cached records of the segmenter's lesions as classifier candidates (classify-v10, issue 29).

:func:`segmenter_record` generates a malignancy-family exam once, runs the shipped segmenter on it
(``segment_exam``, default model, no registration: the exams are motion-free) and keeps every
lesion as a candidate with version 3's features (:func:`..engine.classify.segmenter_candidates`)
and the trainer's label (:func:`.classify.candidate_labels`); the exam's
:func:`.classify_mip.mip_record` (the finder's candidates) is written from the same generated exam
when missing, so ``bench_classify.py --segmenter-candidates`` generates each exam only once.
Cached as ``<cache_dir>/<family>_<seed>.seglesions.npz``.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..engine.classify import exam_candidates, segmenter_candidates
from ..engine.classify_lesions import segmenter_label
from .classify import candidate_labels
from .classify_mip import analyse_phantom
from .phantom.malignancy import make_class_exam


def _save(path: Path, rec: dict, compressed: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name[:-4] + ".tmp.npz")
    (np.savez_compressed if compressed else np.savez)(tmp, **rec)
    tmp.replace(path)


def segmenter_record(family: str, seed: int, cache_dir: Path) -> dict:
    """``{"x", "y", "keys"}`` of the segmenter's lesions of one exam (module docstring); a
    RuntimeError when the generator cannot build the exam."""
    path = Path(cache_dir) / f"{family}_{seed}.seglesions.npz"
    if path.exists():
        d = np.load(path, allow_pickle=False)
        return {k: d[k] for k in d.files}
    ph = make_class_exam(family, seed)
    mip_path = Path(cache_dir) / f"{family}_{seed}.npz"
    if not mip_path.exists():
        _save(mip_path, analyse_phantom(ph), compressed=True)
    exam, sides, _, maps, context = exam_candidates(ph.exam, register=False)
    cands = segmenter_candidates(exam, maps, sides, context["breast_hint"], context, segmenter_label(exam))
    x, y, where = candidate_labels(ph, cands)
    rec = {"x": x, "y": y, "keys": np.array([k for k, _ in where], dtype="U64")}
    _save(path, rec)
    return rec
