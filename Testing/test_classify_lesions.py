"""Issue 29, classify-v10 (docs/decisions/classify-v10.md): the shipped segmenter's lesions as more
classifier candidates (``engine/classify_lesions.SEGMENTER_CANDIDATES``).

Development exam 7038 of the domain-randomised malignancy family (axial, one breast in view): its
malignant 4.9 mL spiculated plateau lesion is never one of the classifier's own candidates, so version
3 scores the breast 0.18 (below its 0.39 threshold); the segmenter outlines it, and as a candidate
version 3's unchanged trees score it above the threshold.
"""
from __future__ import annotations

import numpy as np
import pytest

from BreastTumorSegLib.engine import classify_lesions
from BreastTumorSegLib.engine.classify import classify_exam, exam_candidates, segmenter_candidates
from BreastTumorSegLib.engine.classify_lesions import segmenter_label
from BreastTumorSegLib.training.classify import candidate_labels
from BreastTumorSegLib.training.phantom.malignancy import make_class_exam


@pytest.fixture(scope="module")
def missed():
    return make_class_exam("malignancy-randomized", 7038)


def test_segmenter_lesion_is_a_malignant_candidate_the_finder_misses(missed):
    ph = missed
    assert ph.breast_truth == {"right": 1}
    exam, sides, own, maps, context = exam_candidates(ph.exam, register=False)
    _, y_own, _ = candidate_labels(ph, own)
    assert not y_own.any()  # the finder's candidates: none is the malignant lesion
    seg = segmenter_candidates(exam, maps, sides, context["breast_hint"], context, segmenter_label(exam))
    _, y_seg, _ = candidate_labels(ph, seg)
    assert [c.side for c, y in zip(seg, y_seg) if y] == ["right"]


def test_missed_malignant_breast_scored_above_threshold_with_the_switch(missed, monkeypatch):
    monkeypatch.setattr(classify_lesions, "SEGMENTER_CANDIDATES", False)
    off = classify_exam(missed.exam, register=False)
    monkeypatch.setattr(classify_lesions, "SEGMENTER_CANDIDATES", True)
    on = classify_exam(missed.exam, register=False)
    t = off.threshold
    assert off.probabilities["R"] < t <= on.probabilities["R"]
    assert on.probabilities["R"] > 0.8
    assert len(on.candidates["R"]) > len(off.candidates["R"])  # the finder's candidates stay
    assert "segmenter lesions" in on.timings


def test_shipped_segmenters_label_is_used_without_segmenting_again(missed, monkeypatch):
    """``segment --classify`` passes the default model's label map: the segmenter does not run a
    second time; another model's result is not taken as the shipped segmenter's."""
    from types import SimpleNamespace

    label = segmenter_label(missed.exam)
    assert classify_lesions.shipped_label(SimpleNamespace(model_id="ftv-outline-73d912d1", label=label)) is label
    assert classify_lesions.shipped_label(SimpleNamespace(model_id="test-subtraction", label=label)) is None
    monkeypatch.setattr(classify_lesions, "SEGMENTER_CANDIDATES", True)
    monkeypatch.setattr(classify_lesions, "segmenter_label", lambda exam: pytest.fail("segmented again"))
    on = classify_exam(missed.exam, register=False, lesion_mask=label, segmenter_lesions=label)
    assert on.probabilities["R"] >= on.threshold


def test_segmenter_candidates_reuse_the_finders_pass(missed, monkeypatch):
    """classify-v11 (B): the segmenter's candidates read the smoothed enhancement, the breasts'
    levels and the MIPs the finder's pass already made (``context["finder_pass"]``): each is
    computed once, and every candidate's features and the probabilities are exactly as before."""
    from BreastTumorSegLib.engine import classify as C

    calls = {"smoothed": 0, "mips": 0}

    def counting(name, fn):
        def wrapped(*a, **k):
            calls[name] += 1
            return fn(*a, **k)
        return wrapped

    monkeypatch.setattr(classify_lesions, "SEGMENTER_CANDIDATES", True)
    monkeypatch.setattr(C, "smoothed_enhancement", counting("smoothed", C.smoothed_enhancement))
    monkeypatch.setattr(C, "exam_mips", counting("mips", C.exam_mips))
    label = segmenter_label(missed.exam)
    shared = classify_exam(missed.exam, register=False, segmenter_lesions=label)
    assert calls == {"smoothed": 1, "mips": 1}
    monkeypatch.setattr(C, "finder_pass", lambda *a: None)  # every step computed afresh, as before
    calls.update(smoothed=0, mips=0)
    fresh = classify_exam(missed.exam, register=False, segmenter_lesions=label)
    assert calls == {"smoothed": 2, "mips": 2}
    assert shared.probabilities == fresh.probabilities
    for side in fresh.candidates:
        a, b = shared.candidates[side], fresh.candidates[side]
        assert len(a) == len(b) > 0
        for ca, cb in zip(a, b):
            assert ca.probability == cb.probability
            assert np.array_equal(ca.features, cb.features) and np.array_equal(ca.mip_features, cb.mip_features)
            assert np.array_equal(ca.context_features, cb.context_features)
