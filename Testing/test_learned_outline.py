"""engine/learned_outline.py: a learned band classifier outlines each found lesion (issue 25, LEARNED_OUTLINE)."""
from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from BreastTumorSegLib.engine import learned_outline
from dev_exams import motion_free


def test_off_by_default_until_its_rule_passes():
    assert learned_outline.LEARNED_OUTLINE is False


def test_the_shipped_model_matches_its_card_and_features():
    """The band classifier loads (weights verified against the card's SHA-256) with the engine's feature list."""
    model = learned_outline.get_model()
    assert model.card["task"] == learned_outline.MODEL_TASK
    assert tuple(model.card["features"]) == learned_outline.FEATURES
    assert 0.0 < model.threshold < 1.0
    p = model.probability(np.zeros((3, len(learned_outline.FEATURES)), np.float32))
    assert p.shape == (3,) and np.all((p >= 0) & (p <= 1))


def test_the_v4_card_is_a_new_version_with_its_own_weights():
    """v4 (edge and vesselness features) ships under its own name with version 4 and the SHA-256 of its own weights;
    v2's card name (``outlineband-demo``, 17 features) is not reused for other weights."""
    import hashlib
    import json

    from BreastTumorSegLib.models.cards import BUNDLED_MODELS_DIR

    card = json.loads((BUNDLED_MODELS_DIR / "outlineband-v4.json").read_text(encoding="utf-8"))
    assert learned_outline.MODEL_NAME == card["name"] == "outlineband-v4" and card["version"] == "4"
    blob = (BUNDLED_MODELS_DIR / card["weights"]).read_bytes()
    assert card["weights"] == "outlineband-v4.safetensors" and hashlib.sha256(blob).hexdigest() == card["sha256"]
    for name in ("edge_out_over_in", "edge_sharp_share", "pe_over_edge", "vesselness", "core_vesselness"):
        assert name in card["features"] and name in card["feature_importances"]
    assert not (BUNDLED_MODELS_DIR / "outlineband-demo.safetensors").exists()
    assert all(int(s.split(":")[1].split("-")[0]) >= 7000 for s in card["training"]["data"].split(","))


def _features_of(labels, pe, pre=None, prob=None):
    pre = np.full(labels.shape, 100.0, np.float32) if pre is None else pre
    prob = np.zeros(labels.shape, np.float32) if prob is None else prob
    box = tuple(slice(0, n) for n in labels.shape)
    band, x = learned_outline.band_features(labels, 1, box, pe, np.ones(labels.shape, bool), pre, None, prob,
                                            np.ones(3))
    return band, {name: x[:, k] for k, name in enumerate(learned_outline.FEATURES)}


def test_the_edge_features_tell_a_lesion_outlined_to_its_edge_from_one_with_a_moderate_rim_left():
    """A homogeneous lesion labelled to its edge (PE 150, background 6): the first shell outside drops below half the
    edge's PE everywhere; the same core with a moderate rim (PE 90) the outline left: the first shell does not drop."""
    shape = (24, 40, 40)
    zz, yy, xx = np.indices(shape)
    r2 = (zz - 12) ** 2 + (yy - 20) ** 2 + (xx - 20) ** 2
    core = (r2 <= 25).astype(np.int32)
    whole = np.where(r2 <= 25, 150.0, 6.0).astype(np.float32)
    rim = np.where(r2 <= 25, 150.0, np.where(r2 <= 64, 90.0, 6.0)).astype(np.float32)
    _, fw = _features_of(core, whole)
    _, fr = _features_of(core, rim)
    assert fw["edge_sharp_share"][0] == 1.0 and fr["edge_sharp_share"][0] == 0.0
    assert fw["edge_out_over_in"][0] < 0.1 < 0.5 < fr["edge_out_over_in"][0] < 0.7
    # per voxel: a rim voxel at 90 is 0.6 of the edge PE
    d1 = fr["dist_mm"] <= 1.0
    assert np.allclose(fr["pe_over_edge"][d1], 0.6, atol=0.01)


def test_the_vesselness_of_a_band_voxel_is_high_in_a_vessel_and_low_in_a_round_lobe():
    """Band voxels on the axis of an enhancing tube (radius 1.5 voxels) beside the lesion are far more vessel-like
    than the centre of a round enhancing lobe (radius 3 voxels) of the same PE at the same place (measured: about 0.86
    against 0.12)."""
    shape = (30, 48, 48)
    zz, yy, xx = np.indices(shape)
    r2 = (zz - 15) ** 2 + (yy - 24) ** 2 + (xx - 16) ** 2
    core = (r2 <= 25).astype(np.int32)
    axis2 = (yy - 24) ** 2 + (xx - 26) ** 2
    centre2 = (zz - 15) ** 2 + axis2
    base = np.where(r2 <= 25, 150.0, 6.0)
    band_t, ft = _features_of(core, np.where(axis2 <= 2.25, 150.0, base).astype(np.float32))
    band_l, fl = _features_of(core, np.where(centre2 <= 9, 150.0, base).astype(np.float32))
    on_axis = (axis2 == 0)[np.nonzero(band_t)]
    at_centre = (centre2 <= 1)[np.nonzero(band_l)]
    assert on_axis.sum() >= 10 and at_centre.sum() >= 5
    assert np.median(ft["vesselness"][on_axis]) > 0.5
    assert np.median(ft["vesselness"][on_axis]) > 4 * np.median(fl["vesselness"][at_centre])


def _rim_lesion():
    """A lesion drawn to its bright rim (outer layer PE 200, inside 80: a ring-enhancing mass) in moderately enhancing
    tissue (PE 70 for 3 voxels around it, then 6). (labels, pe)"""
    rng = np.random.default_rng(2)
    shape = (30, 48, 48)
    zz, yy, xx = np.indices(shape)
    r2 = (zz - 15) ** 2 + (yy - 24) ** 2 + (xx - 24) ** 2
    lesion = r2 <= 36
    pe = np.where(r2 <= 16, 80.0, np.where(lesion, 200.0, np.where(r2 <= 81, 70.0, 6.0))) + rng.normal(0, 3, shape)
    return lesion.astype(np.int32), pe.astype(np.float32)


def test_a_lesion_drawn_to_its_bright_rim_is_not_grown(monkeypatch):
    """The per-lesion decision before the per-voxel one (RIM_STOP): a lesion whose outer layer enhances more than its
    inside (edge over interior 2.5 here) is left as drawn; with the stop off the band model grows it into the moderate
    tissue around it."""
    labels, pe = _rim_lesion()
    assert learned_outline.edge_over_interior(labels == 1, np.ones(labels.shape, bool), pe) > 2.0
    args = (labels, pe, np.ones(labels.shape, bool), np.full(labels.shape, 100.0, np.float32), None,
            np.where(labels > 0, 0.9, 0.0).astype(np.float32), (1.0, 1.0, 1.0), learned_outline.get_model())
    out, added = learned_outline.outline_labels(*args)
    assert added == {} and np.array_equal(out, labels)
    monkeypatch.setattr(learned_outline, "RIM_STOP", 0.0)
    monkeypatch.setattr(learned_outline, "MAX_TAKEN_SHARE", 0.0)
    out_off, added_off = learned_outline.outline_labels(*args)
    assert added_off.get(1, 0) > 0


def _lesion_beside_vessel():
    """A found lesion (PE 150, radius 5 voxels) with a moderate rim the outline left (PE 60, 2 voxels) and a strongly
    enhancing vessel 2 voxels beyond that rim, which the segmenter outlined and the FP reduction removed (probability
    0.9, no label). (labels, pe, valid, pre, prob, truth, vessel)"""
    rng = np.random.default_rng(1)
    shape = (30, 48, 48)
    zz, yy, xx = np.indices(shape)
    r2 = (zz - 15) ** 2 + (yy - 24) ** 2 + (xx - 20) ** 2
    core, tumor = r2 <= 25, r2 <= 49
    vessel = ((yy - 24) ** 2 + (xx - 30) ** 2 <= 4)
    pe = np.where(core, 150.0, np.where(tumor, 60.0, 6.0))
    pe = np.where(vessel, 200.0, pe) + rng.normal(0, 3, shape)
    prob = np.where(core | vessel, 0.9, 0.0).astype(np.float32)
    return (core.astype(np.int32), pe.astype(np.float32), np.ones(shape, bool), np.full(shape, 100.0, np.float32),
            prob, tumor, vessel)


def test_a_lesion_beside_a_vessel_is_not_grown_into_it():
    labels, pe, valid, pre, prob, tumor, vessel = _lesion_beside_vessel()
    model = learned_outline.get_model()
    out, added = learned_outline.outline_labels(labels, pe, valid, pre, None, prob, (1.0, 1.0, 1.0), model)
    assert not np.any((out > 0) & vessel)
    assert set(np.unique(out)) <= {0, 1}
    # the vessel's neighbour voxels are not taken either (one voxel around a removed component)
    from scipy import ndimage
    near = ndimage.binary_dilation(vessel, structure=np.ones((3, 3, 3), bool))
    assert not np.any((out > 0) & (labels == 0) & near)


def test_an_empty_map_is_unchanged():
    labels, pe, valid, pre, prob, _, _ = _lesion_beside_vessel()
    empty = np.zeros_like(labels)
    out, added = learned_outline.outline_labels(empty, pe, valid, pre, None, prob, (1.0, 1.0, 1.0),
                                                learned_outline.get_model())
    assert added == {} and not out.any()


def _run_both(monkeypatch, exam):
    from BreastTumorSegLib.engine.pipeline import SegmentSettings, segment_exam

    runs = {}
    for on in (False, True):
        monkeypatch.setattr(learned_outline, "LEARNED_OUTLINE", on)
        runs[on] = segment_exam(exam, model="ftv-outline", device="cpu", settings=SegmentSettings(registration="none"))
    return runs


def test_a_tumor_free_exam_with_vessels_is_not_grown_into_them(monkeypatch):
    """segment_exam on a tumor-free development exam of the vessels family (seed 7003, n_tumors=0, 6-12 enhancing
    vessels): with the step on no voxel is added inside or touching an inserted vessel, and no false-positive
    lesion is added."""
    from BreastTumorSegLib.evaluation.lesions import lesion_level
    from BreastTumorSegLib.training.phantom.families import FAMILIES

    ph = FAMILIES["vessels"](7003, n_tumors=0)
    runs = _run_both(monkeypatch, motion_free(ph))
    off, on = (sitk.GetArrayFromImage(runs[k].label) > 0 for k in (False, True))
    vessel = sitk.GetArrayFromImage(ph.vessel_mask) > 0
    assert not np.any(on & ~off & vessel)
    assert len(runs[True].lesions) == len(runs[False].lesions)
    lo, ln = (lesion_level(runs[k].label, ph.tumor_labels, 0.1, ref_is_labels=True) for k in (False, True))
    assert ln.n_false_positive == lo.n_false_positive


@pytest.mark.xfail(strict=True, reason="v4 still grows phantom 6011 into its halo (cached map: 64 voxels added, "
                                      "2 tumor, Dice 0.746 -> 0.721): the gap its development gate failed on (9.2)")
def test_a_whole_homogeneous_lesion_is_not_grown_into_its_partial_volume_halo(monkeypatch):
    """segment_exam on development phantom 6011 (homogeneous lesions, found whole): with the step on, no more than
    HALO_MAX voxels outside the truth are added and Dice does not fall (v3, v2's 17 features at 0.40: 87 voxels added,
    none of them tumor, Dice -0.02; docs/decisions/learned-outline-issue25.md section 8)."""
    from BreastTumorSegLib.evaluation.metrics import dice
    from BreastTumorSegLib.training.phantom.families import FAMILIES

    ph = FAMILIES["phantom"](6011)
    runs = _run_both(monkeypatch, motion_free(ph))
    off, on = (sitk.GetArrayFromImage(runs[k].label) > 0 for k in (False, True))
    truth = sitk.GetArrayFromImage(ph.tumor_labels) > 0
    assert truth.any() and np.count_nonzero(off & truth) >= 0.9 * np.count_nonzero(truth)  # found whole
    assert np.count_nonzero(on & ~off & ~truth) <= HALO_MAX
    t_img = sitk.Cast(ph.tumor_labels > 0, sitk.sitkUInt8)
    assert dice(runs[True].label, t_img) >= dice(runs[False].label, t_img) - 0.002
    assert len(runs[True].lesions) == len(runs[False].lesions)


@pytest.mark.xfail(strict=True, reason="v4 still adds voxels inside vessels 6000's inserted vessel (cached map: "
                                      "114 added, 0 tumor, 47 inside the vessel; v3: 682 / 0 / 53): record 9.2")
def test_a_lesion_touching_vessels_is_not_grown_into_them(monkeypatch):
    """segment_exam on development vessels 6000 (a lesion among enhancing vessels): with the step on no voxel is added
    inside an inserted vessel (v3: 53 voxels added inside the vessels, 442 within two voxels of them, none tumor) and
    the lesion and FP counts are unchanged."""
    from BreastTumorSegLib.evaluation.lesions import lesion_level
    from BreastTumorSegLib.training.phantom.families import FAMILIES

    ph = FAMILIES["vessels"](6000)
    runs = _run_both(monkeypatch, motion_free(ph))
    off, on = (sitk.GetArrayFromImage(runs[k].label) > 0 for k in (False, True))
    vessel = sitk.GetArrayFromImage(ph.vessel_mask) > 0
    assert np.count_nonzero(off & vessel) > 0  # the outline touches a vessel: there is something to grow into
    assert not np.any(on & ~off & vessel)
    assert len(runs[True].lesions) == len(runs[False].lesions)
    lo, ln = (lesion_level(runs[k].label, ph.tumor_labels, 0.1, ref_is_labels=True) for k in (False, True))
    assert ln.n_false_positive == lo.n_false_positive


HALO_MAX = 5


def test_the_pipeline_outlines_more_of_a_development_irregular_heterogeneous_tumor(monkeypatch):
    """segment_exam on development irregular 6005 (random-walk heterogeneous tumors; a seed of the development
    comparison, never trained on): with the step on (its settings as shipped: v4, threshold 0.50, leak stop 0.05, rim
    stop 1.1), voxel recall rises by >= RECALL_GAIN (measured on the cached map: v3 0.730 -> 0.838, v4 0.730 ->
    0.813), the label map stays precise (>= 0.8 of it in the truth), Dice does not fall (v4: 0.775 -> 0.812), and the
    lesion and FP counts are unchanged."""
    from BreastTumorSegLib.evaluation.lesions import lesion_level
    from BreastTumorSegLib.evaluation.metrics import dice
    from BreastTumorSegLib.training.phantom.families import FAMILIES

    ph = FAMILIES["irregular"](6005)
    runs = _run_both(monkeypatch, motion_free(ph))
    off, on = (lesion_level(runs[k].label, ph.tumor_labels, 0.1, ref_is_labels=True) for k in (False, True))
    assert on.n_found == off.n_found >= 1 and on.n_false_positive == off.n_false_positive
    assert on.voxel_recall >= off.voxel_recall + RECALL_GAIN
    truth = sitk.GetArrayFromImage(ph.tumor_labels) > 0
    arr = sitk.GetArrayFromImage(runs[True].label) > 0
    assert np.count_nonzero(arr & truth) >= 0.8 * np.count_nonzero(arr)
    t_img = sitk.Cast(ph.tumor_labels > 0, sitk.sitkUInt8)
    assert dice(runs[True].label, t_img) >= dice(runs[False].label, t_img)
    assert len(runs[True].lesions) == len(runs[False].lesions)
    assert sum(les.voxels for les in runs[True].lesions) == np.count_nonzero(arr)
    assert any("engine/learned_outline.py" in n for les in runs[True].lesions for n in les.notes)


RECALL_GAIN = 0.05
