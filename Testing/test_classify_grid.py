"""Grid-relative margin features of the classifier's candidates (engine/classify_grid.py): a smooth
ball looks ragged on a coarse anisotropic grid and its excess over the grid's own sphere is ~0, a
lobulated one keeps a clear excess on any grid; the exam's voxel sides are recovered from a cached
record; the trainer's cached route gives the run-time values; a card that reads them loads."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from BreastTumorSegLib.engine.classify import classify_exam, exam_candidates
from BreastTumorSegLib.engine.classify_grid import (REFERENCE_SPACING_MM, card_harmonises, grid_features, harmonised,
                                                    radial_cv, spacing_from_record, sphere_reference)
from BreastTumorSegLib.models.classifier import FEATURES, GRID_FEATURES, WITH_GRID, load_classifier
from BreastTumorSegLib.training.classify import CANDIDATE_MODELS, FEATURE_SETS, _pipeline, save
from classify_fixtures import two_lesion_candidates

G = {f: i for i, f in enumerate(GRID_FEATURES)}
VOL, RCV, NVOX = FEATURES.index("log_volume_ml"), FEATURES.index("radial_cv"), FEATURES.index("log_n_voxels")


def _draw(radius_mm, spacing, lobes=0.0, offset=(0.3, 0.1, 0.2)):
    """A ball (or, with *lobes*, a ball whose radius swings by that fraction with 6 lobes around
    the axis) of *radius_mm* on *spacing* (mm, z y x); its mask and its log volume in mL."""
    sp = np.asarray(spacing, float)
    half = np.ceil(radius_mm * (1 + lobes) / sp).astype(int) + 2
    zz, yy, xx = np.meshgrid(*[(np.arange(-h, h + 1) - o) * s for h, o, s in zip(half, offset, sp)], indexing="ij")
    r = np.sqrt(zz ** 2 + yy ** 2 + xx ** 2)
    limit = radius_mm * (1 + lobes * np.cos(6 * np.arctan2(yy, xx)))
    mask = r <= limit
    return mask, math.log(mask.sum() * float(np.prod(sp)) / 1000.0)


def test_a_smooth_ball_on_a_coarse_anisotropic_grid_has_no_excess_a_lobulated_one_has():
    fine, coarse = (0.8, 0.8, 0.8), (5.0, 1.4, 1.4)  # slices 5 mm thick, as on many randomised exams
    smooth_c, v_sc = _draw(4.0, coarse)
    lobed_f, v_lf = _draw(8.0, fine, lobes=0.35)
    lobed_c, v_lc = _draw(8.0, coarse, lobes=0.35)
    raw = {k: radial_cv(m, s) for k, (m, s) in {"smooth coarse": (smooth_c, coarse), "lobed fine": (lobed_f, fine),
                                                  "lobed coarse": (lobed_c, coarse)}.items()}
    excess = {k: raw[k] - sphere_reference(v, s)[0] for k, v, s in (("smooth coarse", v_sc, coarse),
                                                                    ("lobed fine", v_lf, fine),
                                                                    ("lobed coarse", v_lc, coarse))}
    # the raw measure calls the small smooth ball on the coarse grid as irregular as a lobulated lesion
    assert raw["smooth coarse"] > 0.8 * raw["lobed coarse"]
    # against the grid's own sphere it is smooth, and the lobulated lesion is not, on either grid
    assert abs(excess["smooth coarse"]) < 0.04
    assert excess["lobed fine"] > 0.1 and excess["lobed coarse"] > excess["smooth coarse"] + 0.05


def test_the_spheres_reference_follows_the_grid_not_the_axis_order():
    v = math.log(0.3)
    iso, thick = sphere_reference(v, (1.0, 1.0, 1.0)), sphere_reference(v, (4.0, 0.7, 0.7))
    assert thick[0] > iso[0] > 0  # a coarse slice makes a smooth outline look ragged
    assert sphere_reference(v, (0.7, 4.0, 0.7)) == thick  # a sphere: any axis order
    radius = (3 * 300 / (4 * math.pi)) ** (1 / 3)
    assert iso[1] == pytest.approx(math.log(radius / 1.0), abs=0.03) and thick[1] == pytest.approx(math.log(radius / 4.0), abs=0.03)
    big_drawn = sphere_reference(math.log(4 / 3 * math.pi * 12 ** 3 / 1000), (1.0, 1.0, 1.0))[0]
    bigger = sphere_reference(math.log(4 / 3 * math.pi * 24 ** 3 / 1000), (1.0, 1.0, 1.0))[0]
    assert bigger == pytest.approx(big_drawn / 2, rel=0.05)  # beyond 12 voxels: scaled, not drawn
    with pytest.raises(ValueError, match="positive"):
        sphere_reference(v, (0.0, 1.0, 1.0))


def test_grid_features_and_the_voxel_sides_of_a_cached_record():
    spacing = (2.5, 0.9, 0.9)
    x = np.zeros((3, len(FEATURES)))
    n_vox = np.array([20, 200, 900])
    x[:, NVOX] = np.log(n_vox)
    x[:, VOL] = np.log(n_vox * np.prod(spacing) / 1000)
    x[:, RCV] = [0.4, 0.2, 0.1]
    assert sorted(spacing_from_record(x, (0.9, 0.9))) == pytest.approx(sorted(spacing))
    f = grid_features(x, spacing)
    assert f.shape == (3, len(GRID_FEATURES))
    for row, out in zip(x, f):
        ref, log_r = sphere_reference(row[VOL], spacing)
        assert out[G["grid_radial_cv_excess"]] == pytest.approx(row[RCV] - ref)
        assert out[G["grid_log_voxels_per_radius"]] == pytest.approx(log_r)
    assert grid_features(np.zeros((0, len(FEATURES))), spacing).shape == (0, len(GRID_FEATURES))
    with pytest.raises(ValueError, match="without candidates"):
        spacing_from_record(np.zeros((0, len(FEATURES))), (1.0, 1.0))


def test_a_smooth_ball_on_a_coarse_grid_reads_as_on_the_reference_grid():
    coarse, ref = (5.0, 1.4, 1.4), REFERENCE_SPACING_MM[::-1]
    ball_c, v_c = _draw(4.0, coarse)
    ball_r, v_r = _draw(4.0, ref)
    x = np.zeros((1, len(FEATURES) + 3))
    x[0, VOL], x[0, RCV], x[0, NVOX] = v_c, radial_cv(ball_c, coarse), math.log(ball_c.sum())
    x[0, -3:] = [7.0, 8.0, 9.0]  # columns after FEATURES are kept
    h = harmonised(x, coarse)
    assert x[0, RCV] > radial_cv(ball_r, ref) + 0.05  # raw: the coarse grid makes it look ragged
    assert h[0, RCV] == pytest.approx(radial_cv(ball_r, ref), abs=0.03)  # harmonised: as on the reference grid
    assert h[0, NVOX] == pytest.approx(math.log(ball_r.sum()), abs=0.15)  # counted in reference voxels
    assert h[0, VOL] == x[0, VOL] and list(h[0, -3:]) == [7.0, 8.0, 9.0]
    assert harmonised(x, ref)[0, RCV] == pytest.approx(x[0, RCV])  # on the reference grid: unchanged
    assert harmonised(np.zeros((0, len(FEATURES))), coarse).shape == (0, len(FEATURES))


def test_only_a_card_that_asks_for_it_is_harmonised():
    v3, v4 = load_classifier("breastcls-demo"), load_classifier("breastcls-grid")
    assert card_harmonises(v3.card) is None and v4.card["version"] == "4"
    assert card_harmonises(v4.card) == REFERENCE_SPACING_MM and v4.card["sha256"] == v3.card["sha256"]
    with pytest.raises(ValueError, match="must name the features"):
        card_harmonises({"name": "x", "grid_harmonisation": {"features": ["roundness"], "reference_spacing_mm": [1, 1, 1]}})


def test_the_trainers_cached_route_gives_the_run_time_grid_features(tmp_path):
    from BreastTumorSegLib.training.classify_mip import mip_record, with_mip
    from BreastTumorSegLib.training.phantom.malignancy import make_class_exam

    rec = with_mip(mip_record("malignancy", 101, tmp_path), grid=True)
    ph = make_class_exam("malignancy", 101)
    _, _, cands, _, _ = exam_candidates(ph.exam, register=False)
    assert rec["x"].shape == (len(cands), len(WITH_GRID)) and len(cands) > 0
    run_time = grid_features(np.stack([c.features for c in cands]), ph.exam.pre.GetSpacing())
    np.testing.assert_allclose(rec["x"][:, -len(GRID_FEATURES):], run_time, atol=1e-9)
    # the benchmark's route to version 4's inputs (the spacing from the record) is the run time's
    raw = mip_record("malignancy", 101, tmp_path)
    x = rec["x"][:, :len(FEATURES)]
    np.testing.assert_allclose(harmonised(x, spacing_from_record(x, raw["spacing2d"])),
                               harmonised(np.stack([c.features for c in cands]), ph.exam.pre.GetSpacing()), atol=1e-9)


def test_version_4_scores_the_harmonised_rows_with_version_3s_trees():
    ph, _ = two_lesion_candidates()
    clf = load_classifier("breastcls-grid")
    res = classify_exam(ph.exam, clf, register=False)
    cands = [c for s in res.candidates.values() for c in s]
    x = np.stack([c.features for c in cands])
    expected = load_classifier("breastcls-demo").probability(harmonised(x, ph.exam.pre.GetSpacing()))
    np.testing.assert_allclose([c.probability for c in cands], expected)
    assert res.model_id == "breastcls-grid@" + clf.card["sha256"][:8]


def test_a_card_with_the_grid_features_loads_and_reads_them(tmp_path):
    rng = np.random.default_rng(0)
    n = 400
    x = rng.normal(size=(n, len(WITH_GRID)))
    col = len(WITH_GRID) - len(GRID_FEATURES) + G["grid_radial_cv_excess"]
    y = (x[:, col] + rng.normal(0, 0.3, n) > 0).astype(int)
    keys = np.array([f"case{i // 4}:{'LR'[i % 2]}" for i in range(n)])
    d = {"x": x, "y": y, "keys": keys, "truth": {k: int(y[keys == k].max()) for k in np.unique(keys)}}
    spec = next(m for m in CANDIDATE_MODELS if m[0] == "trees" and m[1] == "no-mask-grid")
    assert FEATURES.index("radial_cv") not in FEATURE_SETS["no-mask-grid"] and col in FEATURE_SETS["no-mask-grid"]
    model = _pipeline(*spec).fit(x, y)
    card = json.loads(save(model, spec, d, tmp_path, "cls-grid-test", {"data": "synthetic test data"}, 0.01, "8").read_text())
    assert card["features"] == list(WITH_GRID) and card["feature_importances"]["grid_radial_cv_excess"] > 0.1
    assert card["feature_importances"]["radial_cv"] == 0.0
    clf = load_classifier("cls-grid-test", [tmp_path])
    assert clf.feature_names == WITH_GRID
    ph, _ = two_lesion_candidates()
    res = classify_exam(ph.exam, clf, register=False)
    cands = [c for s in res.candidates.values() for c in s]
    assert cands and all(c.grid_features is not None for c in cands)
    xr = np.stack([np.concatenate([c.features, c.mip_features, c.context_features, c.grid_features]) for c in cands])
    np.testing.assert_allclose([c.probability for c in cands], clf.probability(xr))
    np.testing.assert_allclose(xr[:, -len(GRID_FEATURES):],
                               grid_features(xr[:, :len(FEATURES)], ph.exam.pre.GetSpacing()))
    assert "grid_radial_cv_excess" in res.as_dict()["breasts"]["L"]["candidates"][0]["features"]
