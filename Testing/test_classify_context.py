"""Breast-context features of the classifier's candidates (engine/classify_context.py): ranks and
ratios computed by hand, independent of row order, the malignant lesion of the small classification
phantom as its breast's dominant candidate, the trainer's cached route giving the run-time values,
and a card that reads them."""
from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk

from BreastTumorSegLib.engine.classify import classify_exam, exam_candidates
from BreastTumorSegLib.engine.classify_context import context_features
from BreastTumorSegLib.models.classifier import CONTEXT_FEATURES, FEATURES, WITH_CONTEXT, load_classifier
from BreastTumorSegLib.training.classify import CANDIDATE_MODELS, _pipeline, save
from classify_fixtures import two_lesion_candidates

C = {f: i for i, f in enumerate(CONTEXT_FEATURES)}
P90, VOL = FEATURES.index("pe_early_p90"), FEATURES.index("log_volume_ml")


def _rows(p90_percent, log_volume):
    x = np.zeros((len(p90_percent), len(FEATURES)))
    x[:, P90] = np.asarray(p90_percent) / 100
    x[:, VOL] = log_volume
    return x


def test_ranks_and_ratios_by_hand():
    # exam a: left 100 % / 200 %, right 80 %; exam b: one unilateral candidate
    x = _rows([100, 200, 80, 60], [1.0, 0.0, 2.0, 0.5])
    f = context_features(x, ["a:L", "a:L", "a:R", "b:L"])
    assert f[:, C["ctx_log_n_candidates"]] == pytest.approx(np.log([2, 2, 1, 1]))
    assert f[:, C["ctx_p90_rank"]] == pytest.approx([0.5, 0.0, 0.0, 0.0])  # share of the breast above it
    assert f[:, C["ctx_volume_rank"]] == pytest.approx([0.0, 0.5, 0.0, 0.0])
    assert f[0, C["ctx_p90_over_breast_max"]] == pytest.approx(120 / 220)
    assert f[2, C["ctx_p90_over_exam_max"]] == pytest.approx(100 / 220)  # the exam's brightest is the left one
    assert f[2, C["ctx_p90_over_other_breast"]] == pytest.approx(100 / 220)
    assert f[1, C["ctx_p90_over_other_breast"]] == pytest.approx(220 / 100)
    assert f[3, C["ctx_p90_over_other_breast"]] == pytest.approx(1.0)  # no other breast: its own
    assert f[:, C["ctx_volume_minus_breast_max"]] == pytest.approx([0.0, -1.0, 0.0, 0.0])
    assert f[:, C["ctx_log_n_other_breast"]] == pytest.approx(np.log1p([1, 1, 2, 0]))
    assert context_features(np.zeros((0, len(FEATURES))), []).shape == (0, len(CONTEXT_FEATURES))


def test_row_order_does_not_matter():
    rng = np.random.default_rng(3)
    x = _rows(rng.uniform(50, 400, 12), rng.normal(0, 1, 12))
    keys = np.array([f"e{i % 2}:{'LR'[(i // 2) % 2]}" for i in range(12)])
    order = rng.permutation(12)
    np.testing.assert_allclose(context_features(x, keys)[order], context_features(x[order], keys[order]))


@pytest.fixture(scope="module")
def phantom():
    return two_lesion_candidates()


def test_the_phantoms_lesions_against_their_breast_and_exam(phantom):
    """Left: a 10 mm spiculated, rim-enhancing washout lesion (label 1); right: a 4 mm smooth
    persistent one (label 2). The left breast's largest, brightest candidate is not a lesion (blood
    pool inside the region): the malignant lesion is its breast's second-brightest, yet enhances well
    beyond anything of the other breast; the benign one is not even its own breast's brightest."""
    ph, cands = phantom
    assert all(c.context_features is not None and len(c.context_features) == len(CONTEXT_FEATURES) for c in cands)
    labels = sitk.GetArrayFromImage(ph.tumor_labels)

    def on(label):
        c = max(cands, key=lambda c: np.mean(labels[c.box][c.mask] == label))
        assert np.mean(labels[c.box][c.mask] == label) > 0.5
        return c.context_features

    malignant, benign = on(1), on(2)
    assert malignant[C["ctx_p90_over_other_breast"]] > 1.5 > 0.6 > benign[C["ctx_p90_over_other_breast"]]
    assert malignant[C["ctx_p90_over_exam_max"]] > 0.8 > 0.5 > benign[C["ctx_p90_over_exam_max"]]
    assert benign[C["ctx_p90_rank"]] > 0 and benign[C["ctx_volume_rank"]] > 0
    assert max(c.context_features[C["ctx_p90_over_exam_max"]] for c in cands) == pytest.approx(1.0)
    n_right = sum(c.side == "right" for c in cands)
    assert malignant[C["ctx_log_n_other_breast"]] == pytest.approx(np.log1p(n_right))
    assert benign[C["ctx_log_n_candidates"]] == pytest.approx(np.log(n_right))


def test_the_trainers_cached_route_gives_the_run_time_context(tmp_path):
    from BreastTumorSegLib.training.classify_mip import mip_record, with_mip
    from BreastTumorSegLib.training.phantom.malignancy import make_class_exam

    rec = with_mip(mip_record("malignancy", 101, tmp_path), context=True)
    _, _, cands, _, _ = exam_candidates(make_class_exam("malignancy", 101).exam, register=False)
    assert rec["x"].shape == (len(cands), len(WITH_CONTEXT)) and len(cands) > 0
    np.testing.assert_allclose(rec["x"][:, -len(CONTEXT_FEATURES):], np.stack([c.context_features for c in cands]))


def test_a_card_with_the_context_features_loads_and_reads_them(tmp_path, phantom):
    rng = np.random.default_rng(0)
    n = 400
    x = rng.normal(size=(n, len(WITH_CONTEXT)))
    y = (x[:, len(WITH_CONTEXT) - len(CONTEXT_FEATURES) + C["ctx_p90_rank"]] + rng.normal(0, 0.3, n) < 0).astype(int)
    keys = np.array([f"case{i // 4}:{'LR'[i % 2]}" for i in range(n)])
    d = {"x": x, "y": y, "keys": keys, "truth": {k: int(y[keys == k].max()) for k in np.unique(keys)}}
    spec = next(m for m in CANDIDATE_MODELS if m[0] == "trees" and m[1] == "no-mask+ctx")
    model = _pipeline(*spec).fit(x, y)
    card = json.loads(save(model, spec, d, tmp_path, "cls-ctx-test", {"data": "synthetic test data"}, 0.01, "5").read_text())
    assert card["features"] == list(WITH_CONTEXT) and card["feature_importances"]["ctx_p90_rank"] > 0.1
    clf = load_classifier("cls-ctx-test", [tmp_path])
    assert clf.feature_names == WITH_CONTEXT
    ph, _ = phantom
    res = classify_exam(ph.exam, clf, register=False)
    cands = [c for s in res.candidates.values() for c in s]
    xr = np.stack([np.concatenate([c.features, c.mip_features, c.context_features]) for c in cands])
    np.testing.assert_allclose([c.probability for c in cands], clf.probability(xr))
    assert "ctx_p90_rank" in res.as_dict()["breasts"]["L"]["candidates"][0]["features"]
