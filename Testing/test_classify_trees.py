"""Gradient-boosted trees of the per-breast malignancy model: exported from scikit-learn, applied with
numpy (no scikit-learn at run time), loaded by its card with the SHA-256 check, and the shipped
model separating a clear malignant from a clear benign breast of a small phantom."""
from __future__ import annotations

import json

import numpy as np
import pytest

from BreastTumorSegLib.core.errors import InputError, ModelError
from BreastTumorSegLib.engine.classify import classify_exam
from BreastTumorSegLib.models.cards import BUNDLED_MODELS_DIR
from BreastTumorSegLib.models.classifier import (DEFAULT_CLASSIFIER, FEATURES, BreastTreeClassifier,
                                                 load_classifier)
from BreastTumorSegLib.models.trees import TreeEnsemble, fitted_trees
from BreastTumorSegLib.training.classify import CANDIDATE_MODELS, _pipeline, operating_point, parse_data, save
from BreastTumorSegLib.training.phantom.malignancy import held_out_seed
from classify_fixtures import two_lesion_phantom


def _data(n=400, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, len(FEATURES))) * rng.uniform(0.1, 10, len(FEATURES))
    y = ((x[:, 0] / np.std(x[:, 0]) + x[:, 7] * x[:, 9] / np.std(x[:, 7] * x[:, 9])
          + rng.normal(0, 0.5, n)) > 0).astype(int)
    keys = np.array([f"case{i // 4}:{'LR'[i % 2]}" for i in range(n)])
    return {"x": x, "y": y, "keys": keys, "truth": {k: int(y[keys == k].max()) for k in np.unique(keys)}}


def test_numpy_trees_give_scikit_learns_decision_function():
    from sklearn.ensemble import GradientBoostingClassifier

    d = _data()
    gbc = GradientBoostingClassifier(n_estimators=40, max_depth=3, learning_rate=0.1, random_state=0).fit(d["x"], d["y"])
    trees = TreeEnsemble(fitted_trees(gbc))
    x_new = _data(200, seed=1)["x"]
    np.testing.assert_allclose(trees.logit(x_new), gbc.decision_function(x_new), atol=1e-9)
    np.testing.assert_allclose(trees.probability(x_new), gbc.predict_proba(x_new)[:, 1], atol=1e-9)


def test_inconsistent_node_arrays_are_refused():
    from sklearn.ensemble import GradientBoostingClassifier

    d = _data()
    state = fitted_trees(GradientBoostingClassifier(n_estimators=3, max_depth=2, random_state=0).fit(d["x"], d["y"]))
    bad = dict(state, left=state["left"].copy())
    bad["left"][0] = 0  # a node that is its own child: the walk would never end
    with pytest.raises(ModelError, match="inconsistent node arrays"):
        TreeEnsemble(bad)
    with pytest.raises(ModelError, match="without roots"):
        TreeEnsemble({k: v for k, v in state.items() if k != "roots"})


def test_trained_tree_card_loads_with_its_hash_and_gives_probabilities(tmp_path):
    d = _data()
    spec = next(m for m in CANDIDATE_MODELS if m[0] == "trees" and m[1] == "no-mask")
    model = _pipeline(*spec).fit(d["x"], d["y"])
    card_path = save(model, spec, d, tmp_path, "cls-test", {"data": "synthetic test data"}, 0.01)
    card = json.loads(card_path.read_text())
    assert card["architecture"]["type"] == "candidate_gradient_boosted_trees" and card["n_features"] == len(FEATURES)
    assert "breast_mask_fraction" not in card["architecture"]["features_used"]
    clf = load_classifier("cls-test", [tmp_path])
    assert isinstance(clf, BreastTreeClassifier)
    p = clf.probability(_data(100, seed=2)["x"])
    assert p.shape == (100,) and np.all((p >= 0) & (p <= 1))
    np.testing.assert_allclose(clf.logit(d["x"]), model.decision_function(d["x"]), atol=1e-9)
    blob = bytearray((tmp_path / "cls-test.safetensors").read_bytes())
    blob[-1] ^= 1
    (tmp_path / "cls-test.safetensors").write_bytes(bytes(blob))
    with pytest.raises(ModelError, match="SHA-256 mismatch"):
        load_classifier("cls-test", [tmp_path])


def test_unknown_architecture_is_a_one_line_error(tmp_path):
    card = json.loads((BUNDLED_MODELS_DIR / f"{DEFAULT_CLASSIFIER}.json").read_text())
    card["architecture"]["type"] = "transformer"
    (tmp_path / "odd.json").write_text(json.dumps(dict(card, name="odd")))
    with pytest.raises(ModelError, match="unknown classification architecture 'transformer'"):
        load_classifier("odd", [tmp_path])


def test_training_refuses_held_out_families_and_seeds():
    assert parse_data("malignancy:100-101,malignancy-randomized:6000") == [
        ("malignancy", [100, 101]), ("malignancy-randomized", [6000])]
    with pytest.raises(InputError, match="held-out family malignancy-ellipse"):
        parse_data("malignancy-ellipse:100-110")
    with pytest.raises(InputError, match="held-out seeds 5000-5029"):
        parse_data("malignancy:4990-5000")
    with pytest.raises(InputError, match="5100-5129"):  # the fresh evaluation set too
        parse_data("malignancy-randomized:5125-5129")
    with pytest.raises(InputError, match="5200-5229"):  # and the third (Dec 7, classify-v6-region.md)
        parse_data("malignancy:5229")
    with pytest.raises(InputError, match="5300-5329"):  # and the fourth (Dec 7, classify-v7-body.md)
        parse_data("malignancy-randomized:5300")
    with pytest.raises(InputError, match="5400-5429"):  # and the fifth (Dec 7, classify-v8.md)
        parse_data("malignancy:5429")
    with pytest.raises(InputError, match="5500-5529"):  # and the sixth (Dec 7, classify-v9.md)
        parse_data("malignancy-randomized:5500-5510")
    with pytest.raises(InputError, match="5600-5629"):  # and the seventh (Dec 7, classify-v11.md)
        parse_data("malignancy:5629")
    assert held_out_seed(5600) and not held_out_seed(5630)


def test_operating_threshold_maximises_sensitivity_plus_specificity_and_reaches_the_card(tmp_path):
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1], 200)
    p = np.concatenate([rng.uniform(0.0, 0.3, 200), rng.uniform(0.25, 0.9, 200)])  # overlap 0.25-0.3
    op = operating_point(y, p)
    assert 0.25 <= op["threshold"] <= 0.31
    assert op["cv_sensitivity"] + op["cv_specificity"] > op["cv_sensitivity_at_0.5"] + op["cv_specificity_at_0.5"] + 0.2
    d = _data()
    spec = next(m for m in CANDIDATE_MODELS if m[0] == "trees")
    card_path = save(_pipeline(*spec).fit(d["x"], d["y"]), spec, d, tmp_path, "cls-op", {"operating_point": op}, 0.01)
    assert load_classifier("cls-op", [tmp_path]).threshold == op["threshold"]


def test_shipped_model_is_the_tree_model_and_separates_malignant_from_benign():
    clf = load_classifier()
    assert isinstance(clf, BreastTreeClassifier) and clf.n_features == len(FEATURES)
    res = classify_exam(two_lesion_phantom().exam, clf, register=False)
    assert 0.0 <= res.probabilities["R"] < 0.5 < res.probabilities["L"] <= 1.0


def test_tree_entry_with_its_own_rate_and_leaf_size_is_fitted_and_exported_as_such(tmp_path):
    spec = next(m for m in CANDIDATE_MODELS if len(m) > 4)
    d = _data()
    model = _pipeline(*spec).fit(d["x"], d["y"])
    gbc = model[-1]
    assert (gbc.learning_rate, gbc.min_samples_leaf, gbc.max_depth) == (spec[4], spec[5], spec[3])
    card = json.loads(save(model, spec, d, tmp_path, "cls-deep", {}, 0.01).read_text())
    assert card["architecture"]["learning_rate"] == spec[4] and card["architecture"]["min_samples_leaf"] == spec[5]
    np.testing.assert_allclose(load_classifier("cls-deep", [tmp_path]).logit(d["x"]), model.decision_function(d["x"]), atol=1e-9)
