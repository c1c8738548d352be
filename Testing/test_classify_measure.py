"""Issue 29, classify-v12 (docs/decisions/classify-v12.md): the measurement features of the
classifier's candidates (``engine/classify_measure.py``).

Development exam 7030 of the domain-randomised malignancy family holds a rim-enhancing lesion (left,
1.1 mL, plateau) and a lobulated solid one (right, 0.4 mL, persistent). Version 3's ``rim_ratio``
(the outer 2 mm shell against the core) reads both as brighter in the core (< 0: no rim), so it does
not tell the rim; the radial profile from the half-maximum region's centroid (``m_rim_profile``)
reads the rim lesion's centre dark (> 0.5) and the solid lesion's bright (< 0).
"""
from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from BreastTumorSegLib.engine.classify import add_measure_features, exam_candidates
from BreastTumorSegLib.models.classifier import FEATURES, MEASURE_FEATURES, WITH_MEASURE
from BreastTumorSegLib.training.phantom.malignancy import make_class_exam


@pytest.fixture(scope="module")
def rim_and_solid():
    ph = make_class_exam("malignancy-randomized", 7030)
    exam, _, cands, maps, context = exam_candidates(ph.exam, register=False)
    assert all(c.measure_features is None for c in cands)  # computed only for a card that reads them
    add_measure_features(exam, maps, cands, context)
    labels = sitk.GetArrayViewFromImage(ph.tumor_labels)
    best = {}
    for t in ph.tumors:
        cover = [int((labels[c.box][c.mask] == t["label"]).sum()) for c in cands]
        best[t["kind"]] = cands[int(np.argmax(cover))] if max(cover, default=0) > 0 else None
    return ph, best


def test_radial_profile_tells_the_rim_lesion_version_3_misses(rim_and_solid):
    ph, best = rim_and_solid
    assert sorted(t["kind"] for t in ph.tumors) == ["lobulated", "rim"]
    rim, solid = best["rim"], best["lobulated"]
    assert rim is not None and solid is not None
    v3 = FEATURES.index("rim_ratio")
    assert rim.features[v3] < 0 and solid.features[v3] < 0  # version 3 reads no rim in either
    m = MEASURE_FEATURES.index("m_rim_profile")
    assert rim.measure_features[m] > 0.5
    assert solid.measure_features[m] < 0


def test_measurement_features_are_finite_and_read_by_a_measure_card(rim_and_solid):
    _, best = rim_and_solid
    c = best["rim"]
    assert c.measure_features.shape == (len(MEASURE_FEATURES),) and np.isfinite(c.measure_features).all()
    assert np.array_equal(c.model_input(WITH_MEASURE), np.concatenate([c.features, c.measure_features]))
    assert np.array_equal(c.model_input(FEATURES), c.features)  # version 3's input is unchanged


def test_a_card_reading_the_measurement_features_gets_them_at_run_time(rim_and_solid, tmp_path):
    """A card listing ``WITH_MEASURE`` (version 3's trees, which read the first 26 columns, plus a
    ``logit_adjustment`` on ``m_rim_profile``: variant E2 of classify-v12) scores the rim lesion's
    breast through ``classify_exam``: the measurement features are computed for it (and only for it),
    and the term lifts the rim lesion's candidate by exactly its log-odds."""
    import json
    import shutil

    from BreastTumorSegLib.engine.classify import classify_exam
    from BreastTumorSegLib.models.classifier import load_classifier
    from BreastTumorSegLib.models.cards import BUNDLED_MODELS_DIR

    ph, _ = rim_and_solid
    card = json.loads((BUNDLED_MODELS_DIR / "breastcls-demo.json").read_text())
    card.update(name="rim-test", features=list(WITH_MEASURE), n_features=len(WITH_MEASURE), weights="rim-test.safetensors",
                logit_adjustment={"terms": [{"feature": "m_rim_profile", "above": 0.4, "add": 2.0}]})
    shutil.copy(BUNDLED_MODELS_DIR / "breastcls-demo.safetensors", tmp_path / "rim-test.safetensors")
    (tmp_path / "rim-test.json").write_text(json.dumps(card))
    clf = load_classifier("rim-test", [tmp_path])
    v3 = classify_exam(ph.exam, register=False)
    res = classify_exam(ph.exam, clf, register=False)
    assert all(c.measure_features is None for cs in v3.candidates.values() for c in cs)
    m = MEASURE_FEATURES.index("m_rim_profile")
    left = {c.centroid_lps: c for c in v3.candidates["L"]}
    for c in res.candidates["L"]:
        p3 = left[c.centroid_lps].probability
        lifted = c.measure_features[m] > 0.4
        z3 = np.log(p3 / (1 - p3))
        assert c.probability == pytest.approx(1 / (1 + np.exp(-(z3 + (2.0 if lifted else 0.0)))), rel=1e-6)
    assert res.probabilities["L"] > v3.probabilities["L"]
