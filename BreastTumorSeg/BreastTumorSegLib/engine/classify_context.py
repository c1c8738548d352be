"""Breast-context features of the per-breast classifier's candidates (issue 29, version 5 trial).

A candidate's own features (:data:`~..models.classifier.FEATURES`) are absolute: its enhancement in
percent, its volume in mL. On the domain-randomised exams (contrast, dose, timing and anatomy drawn at
random) the same lesion can enhance 80 % or 250 %, and on the training exams the malignant breasts
that score low are mostly found lesions outranked by, or scored like, the breast's other enhancing
regions: blood pool (heart, vessels) inside the region, large background-enhancement patches
(``docs/decisions/classify-v5-context.md``). These features put each candidate against the other
candidates of its own breast and exam, using nothing but the candidates' feature rows, so the same
function serves the run time (:func:`.classify.classify_exam`) and the trainer's cached exams:

* ``ctx_log_n_candidates``: log of the number of candidates of the breast;
* ``ctx_p90_rank`` / ``ctx_volume_rank``: the share of the breast's candidates that enhance more
  (90th percentile of the early enhancement) / are larger (0 = the breast's first);
* ``ctx_p90_over_breast_max`` / ``ctx_p90_over_exam_max``: its enhancement over the breast's / the
  exam's most enhancing candidate (``(p90 + 20) / (max + 20)``; the exam's is often the blood pool);
* ``ctx_p90_over_other_breast``: the same against the other breast's most enhancing candidate (its
  own breast's on a unilateral exam or an empty other breast);
* ``ctx_volume_minus_breast_max``: log volume minus the breast's largest candidate's;
* ``ctx_log_n_other_breast``: log(1 + the number of candidates of the other breast).
"""
from __future__ import annotations

import numpy as np

from ..models.classifier import CONTEXT_FEATURES, FEATURES

_P90 = FEATURES.index("pe_early_p90")
_VOL = FEATURES.index("log_volume_ml")
OFFSET_PE = 20.0  # % added to both sides of an enhancement ratio (a candidate barely above 0 % has no ratio)


def _breast_rows(p90: np.ndarray, vol: np.ndarray, exam_max: float, other_max: float | None, n_other: int) -> np.ndarray:
    n = len(p90)
    own_max = float(p90.max())
    return np.stack([
        np.full(n, np.log(n)),
        (p90[None, :] > p90[:, None]).sum(axis=1) / n,
        (vol[None, :] > vol[:, None]).sum(axis=1) / n,
        (p90 + OFFSET_PE) / (own_max + OFFSET_PE),
        (p90 + OFFSET_PE) / (exam_max + OFFSET_PE),
        (p90 + OFFSET_PE) / ((own_max if other_max is None else other_max) + OFFSET_PE),
        vol - float(vol.max()),
        np.full(n, np.log1p(n_other))], axis=1)


def context_features(x: np.ndarray, breast_keys) -> np.ndarray:
    """(n, len(CONTEXT_FEATURES)) for the candidate rows *x* (FEATURES first, in any order of
    breasts); *breast_keys*: each row's breast as ``"<exam>:<side>"`` (rows of one exam share the
    part before the last colon)."""
    keys = np.asarray(breast_keys).astype(str)
    out = np.zeros((len(keys), len(CONTEXT_FEATURES)))
    if not len(keys):
        return out
    x = np.asarray(x, np.float64).reshape(len(keys), -1)
    p90, vol = x[:, _P90] * 100.0, x[:, _VOL]
    exams = np.array([k.rsplit(":", 1)[0] for k in keys])
    for exam in np.unique(exams):
        in_exam = exams == exam
        exam_max = float(p90[in_exam].max())
        for key in np.unique(keys[in_exam]):
            mine = keys == key
            other = in_exam & ~mine
            out[mine] = _breast_rows(p90[mine], vol[mine], exam_max, float(p90[other].max()) if other.any() else None,
                                     int(other.sum()))
    return out
