"""classify-v11 (issue 29): version 4's training data, the finder's candidates of every training exam
plus the cached segmenter lesions of the segmented ones (``training/classify_segmenter.py``), and the
per-candidate sample weights ``training/classify.fit`` takes."""
from __future__ import annotations

import numpy as np
import pytest

from BreastTumorSegLib.models.classifier import FEATURES
from BreastTumorSegLib.training import classify_segmenter
from BreastTumorSegLib.training.classify import CANDIDATE_MODELS, fit
from BreastTumorSegLib.training.classify_segmenter import collect_with_segmenter, seeds_text


def _finder(path, case, n, malignant_rows):
    y = np.zeros(n, int)
    y[list(malignant_rows)] = 1
    np.savez(path, x=np.full((n, len(FEATURES)), float(n)), y=y, keys=np.array([f"{case}:L"] * n),
             truth_keys=np.array([f"{case}:L", f"{case}:R"]), truth_values=np.array([int(y.any()), 0]),
             cand_side=np.array(["left"] * n), cand_foot=np.zeros((n, 2, 2), bool), spacing2d=np.ones(2))


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    _finder(tmp_path / "malignancy_100.npz", "m100", 2, [0])
    _finder(tmp_path / "malignancy_101.npz", "m101", 3, [])
    np.savez(tmp_path / "malignancy_100.seglesions.npz", x=np.full((1, len(FEATURES)), 9.0), y=np.array([1]),
             keys=np.array(["m100:R"]))
    # a missing segmenter record is never computed here (that is the prefill's cost, run once)
    monkeypatch.setattr(classify_segmenter, "make_class_exam", lambda *a: pytest.fail("generated an exam"))
    return tmp_path


def test_finder_candidates_of_every_exam_and_segmenter_lesions_where_cached(cache):
    d = collect_with_segmenter([("malignancy", [100, 101])], cache, log=lambda *_: None)
    assert d["x"].shape == (6, len(FEATURES)) and d["y"].tolist() == [1, 0, 1, 0, 0, 0]
    assert d["keys"].tolist() == ["m100:L", "m100:L", "m100:R", "m101:L", "m101:L", "m101:L"]
    assert d["from_segmenter"].tolist() == [False, False, True, False, False, False]
    assert d["segmented"] == {"malignancy": [100]} and d["w"] is None
    assert set(d["truth"]) == {"m100:L", "m100:R", "m101:L", "m101:R"}
    weighted = collect_with_segmenter([("malignancy", [100, 101])], cache, log=lambda *_: None, weight_segmented=True)
    assert weighted["w"].tolist() == [1, 1, 2, 1, 1, 1]  # 2 exams / 1 segmented
    only = collect_with_segmenter([("malignancy", [100, 101])], cache, log=lambda *_: None, only_segmented=True)
    assert only["keys"].tolist() == ["m100:L", "m100:L", "m100:R"] and set(only["truth"]) == {"m100:L", "m100:R"}
    assert seeds_text([6000, 6001, 6002, 6005, 100]) == "100,6000-6002,6005"


def test_fit_takes_per_candidate_weights():
    rng = np.random.default_rng(0)
    n = 400
    x = rng.normal(size=(n, len(FEATURES)))
    y = (x[:, 0] + rng.normal(scale=1.5, size=n) > 0).astype(int)
    keys = np.array([f"case{i // 4}:{'LR'[i % 2]}" for i in range(n)])
    truth = {}
    for k, v in zip(keys, y):
        truth[k] = max(truth.get(k, 0), int(v))
    spec = next(m for m in CANDIDATE_MODELS if m[0] == "logistic" and m[1] == "all")
    plain, _, _ = fit({"x": x, "y": y, "keys": keys, "truth": truth}, spec)
    w = np.where(y == 1, 5.0, 1.0)  # the malignant candidates weigh more: every candidate scores higher
    heavy, _, _ = fit({"x": x, "y": y, "keys": keys, "truth": truth, "w": w}, spec)
    assert (heavy.decision_function(x) > plain.decision_function(x)).all()
