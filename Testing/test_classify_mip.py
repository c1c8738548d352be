"""Features of the second post-contrast subtraction's MIP (engine/classify_mip.py, after Gong et al.):
known 2D blobs, the malignant-like vs benign-like breast of the small classification phantom, the
trainer's cached route giving the run-time features, and a card that reads them."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import SimpleITK as sitk

from BreastTumorSegLib.core.errors import ModelError
from BreastTumorSegLib.engine.classify import classify_exam, exam_candidates
from BreastTumorSegLib.engine.classify_mip import (BreastMIP, breast_features, brightest_blob, mip_feature_rows,
                                                  projection_axis, second_subtraction_index)
from BreastTumorSegLib.models.classifier import ALL_FEATURES, FEATURES, MIP_FEATURES, load_classifier
from BreastTumorSegLib.training.classify import CANDIDATE_MODELS, _pipeline, save
from classify_fixtures import two_lesion_candidates

F = {f: i for i, f in enumerate(MIP_FEATURES)}


def _mip(blob: np.ndarray | None, level=150.0, background=20.0, seed=0) -> BreastMIP:
    rng = np.random.default_rng(seed)
    mip = (background + rng.normal(0, 3, (80, 80))).astype(np.float32)
    if blob is not None:
        mip[blob] = level
    foot = np.ones(mip.shape, bool)
    return BreastMIP(mip, foot, (1.0, 1.0), mip, foot)


def _disc(r=8.0):
    yy, xx = np.mgrid[:80, :80] - 40.0
    return np.hypot(yy, xx) <= r


def _star(r=8.0, arms=6):
    yy, xx = np.mgrid[:80, :80] - 40.0
    radius = r * (0.55 + 0.45 * np.cos(arms * np.arctan2(yy, xx))) + 1.5
    return np.hypot(yy, xx) <= radius


def test_blob_shape_compactness_and_irregularity_order_as_expected():
    disc, star = (breast_features({"left": _mip(b)}, "left")[0] for b in (_disc(), _star()))
    assert disc[F["mip2_blob_compactness"]] > star[F["mip2_blob_compactness"]] + 0.1
    assert star[F["mip2_blob_radial_cv"]] > disc[F["mip2_blob_radial_cv"]] + 0.1
    area = math.exp(disc[F["mip2_blob_log_area_mm2"]])
    assert area == pytest.approx(math.pi * 8 ** 2, rel=0.15)  # the disc, not the background
    assert brightest_blob(_mip(_disc()))[40, 40] and not brightest_blob(_mip(_disc()))[5, 5]


def test_asymmetry_uses_the_other_breast_as_background():
    mips = {"left": _mip(_disc(), seed=1), "right": _mip(None, seed=2)}
    left, right = breast_features(mips, "left")[0], breast_features(mips, "right")[0]
    assert left[F["mip2_asymmetry"]] > 1.0 > 0.3 > abs(right[F["mip2_asymmetry"]])
    assert left[F["mip2_top_over_bg"]] > 5 * max(right[F["mip2_top_over_bg"]], 1.0)
    assert breast_features({"left": mips["left"]}, "left")[0][F["mip2_asymmetry"]] == 0.0  # one breast: none
    # the candidate over the disc covers the blob and peaks above the background; one elsewhere does not
    far = np.zeros((80, 80), bool)
    far[5:9, 5:9] = True
    rows = mip_feature_rows(mips, ["left", "left", "right"], [_disc(), far, far])
    assert rows[0, F["mip2_cand_blob_share"]] == pytest.approx(1.0) and rows[1, F["mip2_cand_blob_share"]] == 0.0
    assert rows[0, F["mip2_cand_peak_over_bg"]] > 1.0 > 0.5 > abs(rows[1, F["mip2_cand_peak_over_bg"]])


def test_second_subtraction_and_projection_axis():
    assert [second_subtraction_index(n) for n in (2, 3, 6)] == [1, 2, 2]
    img = sitk.Image(4, 5, 6, sitk.sitkFloat32)
    assert projection_axis(img) == 0  # axial: the slices stack along S-I
    img.SetDirection((1, 0, 0, 0, 0, 1, 0, -1, 0))  # coronal: S-I is the second image axis
    assert projection_axis(img) == 1
    img.SetDirection((0, 0, 1, 1, 0, 0, 0, -1, 0))  # sagittal: S-I is the second image axis
    assert projection_axis(img) == 1


@pytest.fixture(scope="module")
def phantom_candidates():
    return two_lesion_candidates()


def test_malignant_like_breast_has_the_brighter_more_asymmetric_mip(phantom_candidates):
    """Left: a 10 mm spiculated, rim-enhancing washout lesion; right: a 4 mm smooth persistent one."""
    ph, cands = phantom_candidates
    by_side = {s: [c for c in cands if c.side == s] for s in ("left", "right")}
    assert all(by_side.values()) and all(c.mip_features is not None for c in cands)
    left, right = by_side["left"][0].mip_features, by_side["right"][0].mip_features
    for name in ("mip2_top_pe", "mip2_top_over_bg", "mip2_asymmetry"):
        assert left[F[name]] > right[F[name]], name
    labels = sitk.GetArrayFromImage(ph.tumor_labels)
    malignant = max(by_side["left"], key=lambda c: np.mean(labels[c.box][c.mask] == 1))
    assert np.mean(labels[malignant.box][malignant.mask] == 1) > 0.5
    # the malignant lesion is the breast's brightest blob, and what it shows
    assert malignant.mip_features[F["mip2_cand_blob_share"]] > 0.8
    assert malignant.mip_features[F["mip2_cand_peak_over_bg"]] > 1.0
    assert left[F["mip2_blob_compactness"]] > right[F["mip2_blob_compactness"]]


def test_the_trainers_cached_route_gives_the_run_time_features(tmp_path):
    from BreastTumorSegLib.training.classify_mip import mip_record, with_mip
    from BreastTumorSegLib.training.phantom.malignancy import make_class_exam

    rec = mip_record("malignancy", 100, tmp_path)
    again = with_mip(mip_record("malignancy", 100, tmp_path))  # from the cache file
    _, _, cands, _, _ = exam_candidates(make_class_exam("malignancy", 100).exam, register=False)
    assert len(cands) == len(rec["y"]) > 0
    np.testing.assert_allclose(again["x"][:, :len(FEATURES)], np.stack([c.features for c in cands]))
    np.testing.assert_allclose(again["x"][:, len(FEATURES):], np.stack([c.mip_features for c in cands]), atol=1e-6)


def _random_data(n=400, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, len(ALL_FEATURES)))
    y = (x[:, len(FEATURES) + F["mip2_cand_blob_share"]] + rng.normal(0, 0.3, n) > 0).astype(int)
    keys = np.array([f"case{i // 4}:{'LR'[i % 2]}" for i in range(n)])
    return {"x": x, "y": y, "keys": keys, "truth": {k: int(y[keys == k].max()) for k in np.unique(keys)}}


def test_a_card_with_the_mip_features_loads_and_reads_them(tmp_path, phantom_candidates):
    d = _random_data()
    spec = next(m for m in CANDIDATE_MODELS if m[0] == "trees" and m[1] == "no-mask+mip2")
    model = _pipeline(*spec).fit(d["x"], d["y"])
    card = json.loads(save(model, spec, d, tmp_path, "cls-mip-test", {"data": "synthetic test data"}, 0.01).read_text())
    assert card["features"] == list(ALL_FEATURES) and card["version"] == "4"
    clf = load_classifier("cls-mip-test", [tmp_path])
    assert clf.feature_names == ALL_FEATURES
    np.testing.assert_allclose(clf.logit(d["x"]), model.decision_function(d["x"]), atol=1e-8)
    ph, cands = phantom_candidates
    res = classify_exam(ph.exam, clf, register=False)
    x = np.stack([np.concatenate([c.features, c.mip_features]) for s in res.candidates.values() for c in s])
    p = np.array([c.probability for s in res.candidates.values() for c in s])
    np.testing.assert_allclose(p, clf.probability(x))
    assert "mip2_cand_blob_share" in res.as_dict()["breasts"]["L"]["candidates"][0]["features"]
    card["features"] = card["features"][:-1]  # a feature list this engine does not compute: refused
    (tmp_path / "cls-mip-test.json").write_text(json.dumps(card))
    with pytest.raises(ModelError, match="not a classification model for this engine's features"):
        load_classifier("cls-mip-test", [tmp_path])
