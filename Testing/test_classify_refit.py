"""Version 9 trial (docs/decisions/classify-v9.md): trees refitted on the features counted in voxels
read as on one reference grid. The trainer's cached route gives exactly the rows the run time
computes for a card with ``grid_harmonisation``; ``classify_mip train --harmonise`` writes such a
card (FEATURES only, the harmonisation named); the run time scores that card's harmonised rows."""
from __future__ import annotations

import json

import numpy as np

from BreastTumorSegLib.engine.classify import classify_exam, exam_candidates
from BreastTumorSegLib.engine.classify_grid import REFERENCE_SPACING_MM, card_harmonises, harmonised
from BreastTumorSegLib.models.classifier import FEATURES, load_classifier
from BreastTumorSegLib.training import classify_mip
from BreastTumorSegLib.training.classify import _pipeline, save
from classify_fixtures import two_lesion_candidates

RCV, NVOX = FEATURES.index("radial_cv"), FEATURES.index("log_n_voxels")


def _synthetic(n=400, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, len(FEATURES)))
    y = (x[:, RCV] + rng.normal(0, 0.3, n) > 0).astype(int)
    keys = np.array([f"case{i // 4}:{'LR'[i % 2]}" for i in range(n)])
    return {"x": x, "y": y, "keys": keys, "truth": {k: int(y[keys == k].max()) for k in np.unique(keys)}}


def test_the_trainers_harmonised_rows_are_the_run_times(tmp_path):
    from BreastTumorSegLib.training.phantom.malignancy import make_class_exam

    data = classify_mip.collect_harmonised([("malignancy", [101])], tmp_path, log=lambda *_: None)
    ph = make_class_exam("malignancy", 101)
    _, _, cands, _, _ = exam_candidates(ph.exam, register=False)
    assert data["x"].shape == (len(cands), len(FEATURES)) and len(cands) > 0
    raw = np.stack([c.features for c in cands])
    run_time = harmonised(raw, ph.exam.pre.GetSpacing(), REFERENCE_SPACING_MM)
    np.testing.assert_allclose(data["x"], run_time, atol=1e-9)
    # the voxel count is the volume in reference voxels, not the exam's count
    assert not np.allclose(data["x"][:, NVOX], raw[:, NVOX])
    # with the grid columns the first FEATURES are the same harmonised ones
    wide = classify_mip.collect_harmonised([("malignancy", [101])], tmp_path, log=lambda *_: None, grid=True)
    np.testing.assert_allclose(wide["x"][:, :len(FEATURES)], data["x"], atol=1e-12)


def test_train_harmonise_writes_a_card_the_run_time_harmonises(tmp_path, monkeypatch):
    d = _synthetic()
    seen = {}

    def fake_collect(spec, cache_dir, **_):
        seen["spec"] = spec
        return d

    monkeypatch.setattr(classify_mip, "collect_harmonised", fake_collect)
    rc = classify_mip.main(["train", "--harmonise", "--data", "malignancy:100-101", "--out", str(tmp_path),
                            "--name", "cls-refit-test", "--model", "trees no-mask 150x depth 3", "--card-version", "5"])
    assert rc == 0 and seen["spec"] == [("malignancy", [100, 101])]
    card = json.loads((tmp_path / "cls-refit-test.json").read_text())
    assert card["features"] == list(FEATURES) and card["version"] == "5"
    assert card["grid_harmonisation"]["features"] == ["radial_cv", "log_n_voxels"]
    assert card_harmonises(card) == REFERENCE_SPACING_MM
    assert card["feature_importances"]["radial_cv"] > 0.1

    clf = load_classifier("cls-refit-test", [tmp_path])
    ph, _ = two_lesion_candidates()
    res = classify_exam(ph.exam, clf, register=False)
    cands = [c for s in res.candidates.values() for c in s]
    assert cands
    x = np.stack([c.features for c in cands])
    np.testing.assert_allclose([c.probability for c in cands],
                               clf.probability(harmonised(x, ph.exam.pre.GetSpacing(), REFERENCE_SPACING_MM)))
    # the same trees on the raw rows score differently: the harmonisation is applied, not ignored
    assert not np.allclose([c.probability for c in cands], clf.probability(x))


def test_a_card_without_the_field_is_not_harmonised(tmp_path):
    d = _synthetic(seed=1)
    spec = ("trees", "no-mask", 150, 3)
    model = _pipeline(*spec).fit(d["x"], d["y"])
    plain = json.loads(save(model, spec, d, tmp_path, "cls-plain", {"data": "synthetic"}, 0.01, "5").read_text())
    assert card_harmonises(plain) is None
    extra = classify_mip.harmonisation_card()
    marked = json.loads(save(model, spec, d, tmp_path, "cls-marked", {"data": "synthetic"}, 0.01, "5", extra).read_text())
    assert card_harmonises(marked) == REFERENCE_SPACING_MM and marked["sha256"] == plain["sha256"]


def test_the_trial_cross_validation_reports_each_training_family():
    rng = np.random.default_rng(2)
    n = 480
    x = rng.normal(size=(n, len(FEATURES)))
    cases = [f"{'randomized' if i % 96 >= 48 else 'phantom'}_{i // 4}" for i in range(n)]
    keys = np.array([f"{c}:{'LR'[i % 2]}" for i, c in enumerate(cases)])
    y_sep = (x[:, RCV] > 0).astype(int)  # the margin decides the class
    y_rnd = rng.integers(0, 2, n)  # nothing decides it
    out = {}
    for name, y in (("separable", y_sep), ("noise", y_rnd)):
        d = {"x": x, "y": y, "keys": keys, "truth": {k: int(y[keys == k].max()) for k in np.unique(keys)}}
        out[name] = classify_mip.cv_by_family({name: (d, ("trees", "no-mask", 150, 3))}, repeats=1)[name]
    assert set(out["separable"]) == {"all", "malignancy", "malignancy-randomized"}
    assert all(isinstance(k, str) for k in out["separable"])
    assert min(out["separable"].values()) > 0.85 and out["noise"]["all"] < 0.7
