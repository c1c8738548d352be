"""The inside of each kept lesion (engine/kept_hull.py, ``KEPT_HULL``): on phantoms with known truth a kept rim
tumor's necrotic centre is filled and its table row measured again, a component the false-positive reduction removed
stays removed, two nearby lesions stay two, and a tumor-free exam (or the step off) is unchanged."""
from __future__ import annotations

from functools import partial

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from BreastTumorSegLib.engine import kept_hull
from BreastTumorSegLib.engine.kept_hull import add_kept_hull, fill_kept
from BreastTumorSegLib.engine.postprocess import lesion_table
from kept_fixtures import OutliningSegmenter
from test_fpreduce import run_stage, scene
from test_outline_hull import SHAPE, rim_tumor

FULL26 = np.ones((3, 3, 3), bool)


def _image(a, dtype=np.uint32, spacing=(1.0, 1.0, 1.0)) -> sitk.Image:
    im = sitk.GetImageFromArray(np.asarray(a, dtype))
    im.SetSpacing(spacing)
    im.SetOrigin((-20.0, 5.0, 3.0))
    return im


def _kept(components: np.ndarray, spacing=(1.0, 1.0, 1.0)):
    comps = _image(components, spacing=spacing)
    prob = _image(np.where(components > 0, 0.95, 0.02), np.float32, spacing)
    return comps, lesion_table(comps, prob), prob


def test_a_kept_rim_tumors_necrotic_centre_is_filled_and_measured_again():
    truth, rim, gaps, centre = rim_tumor()
    pe = np.full(SHAPE, 3.0, np.float32)
    pe[rim], pe[gaps], pe[centre] = 150.0, 45.0, 4.0
    comps, lesions, prob = _kept(rim.astype(np.uint32))
    label, table, new = fill_kept(comps, lesions, prob, pe, np.ones(SHAPE, bool), 4.0)
    out = sitk.GetArrayFromImage(label) > 0
    recall = lambda m: np.count_nonzero(m & truth) / np.count_nonzero(truth)  # noqa: E731
    assert recall(rim) < 0.75 and recall(out) >= 0.9
    assert out[centre].mean() >= 0.9
    assert not (out & ~truth).any()  # nothing beyond the tumor
    assert len(table) == 1 and table[0].label == 1
    assert table[0].voxels == np.count_nonzero(out)
    assert table[0].volume_ml == pytest.approx(np.count_nonzero(out) / 1000.0)
    assert table[0].volume_ml > lesions[0].volume_ml and "engine/kept_hull.py" in table[0].notes[-1]
    assert np.array_equal(sitk.GetArrayFromImage(new) > 0, out)


def test_a_component_removed_by_the_fp_reduction_stays_removed():
    """The real false-positive reduction removes an isolated vessel; enhancing tissue all around it (PE 45 %) and
    inside the kept lesion does not bring it back or make anything new."""
    phases, prob, lesion, vessel = scene(4.6, touching=False)
    label, lesions, comps, report = run_stage(phases, prob)
    assert report.removed.get("vessel_like") == 1 and len(lesions) == 1
    around = ndimage.binary_dilation(vessel, iterations=3)
    pe = np.full(lesion.shape, 3.0, np.float32)
    pe[around | ndimage.binary_dilation(lesion, iterations=2)] = 45.0
    new_label, table, _ = fill_kept(comps, lesions, prob, pe, np.ones(lesion.shape, bool), 6.0)
    out = sitk.GetArrayFromImage(new_label) > 0
    assert not out[around].any()
    assert len(table) == 1 and ndimage.label(out, FULL26)[1] == 1
    assert out[lesion].all()


def test_two_nearby_kept_lesions_stay_two():
    """Two rim tumors 2 mm apart with moderately enhancing tissue between them: each is filled, neither reaches
    the other, the number of lesions and of label-map components is unchanged."""
    a_truth, a_rim, _, a_centre = rim_tumor(centre=(16, 24, 15), radius=7.0)
    b_truth, b_rim, _, b_centre = rim_tumor(centre=(16, 24, 32), radius=7.0)
    pe = np.full(SHAPE, 45.0, np.float32)
    pe[a_rim | b_rim] = 150.0
    comps, lesions, prob = _kept(a_rim.astype(np.uint32) + 2 * b_rim.astype(np.uint32))
    label, table, new = fill_kept(comps, lesions, prob, pe, np.ones(SHAPE, bool), 6.0)
    out = sitk.GetArrayFromImage(label) > 0
    lab = sitk.GetArrayFromImage(new)
    assert len(table) == 2 and ndimage.label(out, FULL26)[1] == 2
    assert (lab[a_centre] == 1).mean() >= 0.9 and (lab[b_centre] == 2).mean() >= 0.9
    assert not (ndimage.binary_dilation(lab == 1, FULL26) & (lab == 2)).any()
    assert [les.label for les in table] == [les.label for les in lesions]
    # a small lesion inside the necrotic centre of a rim tumor (inside its bounding box and its closing): the rim is
    # filled around it, the two are never joined
    truth, rim, _, centre = rim_tumor(radius=9.0)
    inner = truth & (np.sqrt(sum((g - c) ** 2 for g, c in zip(np.indices(SHAPE), (16, 24, 24)))) <= 2.0)
    pe = np.full(SHAPE, 45.0, np.float32)
    pe[rim | inner] = 150.0
    comps, lesions, prob = _kept(rim.astype(np.uint32) + 2 * inner.astype(np.uint32))
    label, table, new = fill_kept(comps, lesions, prob, pe, np.ones(SHAPE, bool), 6.0)
    lab = sitk.GetArrayFromImage(new)
    assert len(table) == 2 and ndimage.label(sitk.GetArrayFromImage(label) > 0, FULL26)[1] == 2
    assert np.array_equal(lab == 2, inner) and (lab[centre & ~ndimage.binary_dilation(inner, FULL26, 2)] == 1).mean() >= 0.9


def test_a_tumor_free_exam_and_the_step_off_change_nothing():
    empty = np.zeros(SHAPE, np.uint32)
    pe = np.full(SHAPE, 60.0, np.float32)
    comps, lesions, prob = _kept(empty)
    label, table, new = fill_kept(comps, lesions, prob, pe, np.ones(SHAPE, bool), 6.0)
    assert table == [] and not sitk.GetArrayFromImage(label).any() and new is comps

    Seg = partial(OutliningSegmenter, pe)

    truth, rim, gaps, centre = rim_tumor()
    comps, lesions, prob = _kept(rim.astype(np.uint32))
    label = sitk.Cast(comps > 0, sitk.sitkUInt8)
    assert kept_hull.KEPT_HULL is True  # on by the rule of docs/decisions/kept-hull-issue25.md
    assert add_kept_hull(Seg(), None, label, lesions, comps, prob, {}, enabled=False)[1] is lesions
    assert add_kept_hull(Seg(), None, label, lesions, comps, prob, {"seed_lps": (0, 0, 0)}, enabled=True)[1] is lesions
    assert add_kept_hull(object(), None, label, lesions, comps, prob, {}, enabled=True)[1] is lesions
    on = add_kept_hull(Seg(), None, label, lesions, comps, prob, {}, enabled=True)
    assert (sitk.GetArrayFromImage(on[0]) > 0)[centre].mean() >= 0.9 and len(on[1]) == 1
    with pytest.raises(ValueError, match="one grid"):
        fill_kept(comps, lesions, prob, pe[:-1], np.ones(SHAPE, bool), 6.0)


def test_the_pipeline_fills_the_kept_lesions_of_a_development_exam(monkeypatch):
    """segment_exam on development heterogeneous 7002 (a heterogeneous tumor, ftv-outline): with the step on the
    found tumor's voxel recall rises, the lesions are the same in number and every table row matches the label map."""
    from BreastTumorSegLib.engine.pipeline import SegmentSettings, segment_exam
    from BreastTumorSegLib.evaluation.lesions import lesion_level
    from BreastTumorSegLib.training.phantom.families import FAMILIES

    from BreastTumorSegLib.engine import kept_grow

    ph = FAMILIES["heterogeneous"](7002)
    runs = {}
    monkeypatch.setattr(kept_grow, "KEPT_GROW", False)  # the fill alone (the growth after it, on since grow16, takes
    # most of the same voxels without it: recall 0.786 without the fill, 0.799 with it)
    for on in (False, True):
        monkeypatch.setattr(kept_hull, "KEPT_HULL", on)
        runs[on] = segment_exam(ph.exam, model="ftv-outline", device="cpu", settings=SegmentSettings(registration="none"))
    off, on = (lesion_level(runs[k].label, ph.tumor_labels, 0.1, ref_is_labels=True) for k in (False, True))
    assert on.n_found == off.n_found >= 1 and on.n_false_positive == off.n_false_positive
    assert on.voxel_recall >= off.voxel_recall + 0.02
    assert len(runs[True].lesions) == len(runs[False].lesions)
    arr = sitk.GetArrayFromImage(runs[True].label) > 0
    assert sum(les.voxels for les in runs[True].lesions) == np.count_nonzero(arr)
    assert any("engine/kept_hull.py" in n for les in runs[True].lesions for n in les.notes)


def test_plain_ftv_stays_the_ispy_mask_with_every_kept_lesion_step_on(monkeypatch):
    """"ftv" is the I-SPY FTV mask (PE >= 70 %, README): the fill, the dropped pieces and the growth of kept lesions
    outline whole tumors and are not applied to it (before: development heterogeneous 7002's FTV mask 186 -> 235
    voxels with the fill and growth on), while "ftv-outline" on the same exam is filled (its steps do run)."""
    from BreastTumorSegLib.engine.pipeline import SegmentSettings, segment_exam
    from BreastTumorSegLib.training.phantom.families import FAMILIES

    from BreastTumorSegLib.engine import kept_grow, kept_pieces

    ph = FAMILIES["heterogeneous"](7002)
    run = SegmentSettings(registration="none")
    labels = {}
    for on in (False, True):
        for module, name in ((kept_hull, "KEPT_HULL"), (kept_grow, "KEPT_GROW"), (kept_pieces, "KEPT_PIECES")):
            monkeypatch.setattr(module, name, on)
        res = segment_exam(ph.exam, model="ftv", device="cpu", settings=run)
        labels[on] = sitk.GetArrayFromImage(res.label) > 0
        assert not any("engine/kept_" in n for les in res.lesions for n in les.notes)
    assert labels[True].any() and np.array_equal(labels[True], labels[False])
    outline = segment_exam(ph.exam, model="ftv-outline", device="cpu", settings=run)  # the steps still on
    assert any("engine/kept_hull.py" in n for les in outline.lesions for n in les.notes)


def test_a_threshold_that_keeps_a_lesion_keeps_its_fill():
    """The pipeline stores the probability map and the Slicer panel re-thresholds it: every voxel the fill added
    gets at least the lowest probability of its lesion, so any threshold keeping the lesion keeps its inside; the
    probability elsewhere is unchanged, and nothing changes when nothing was added."""
    truth, rim, gaps, centre = rim_tumor()
    pe = np.full(SHAPE, 3.0, np.float32)
    pe[rim], pe[gaps], pe[centre] = 150.0, 45.0, 4.0
    comps = _image(rim.astype(np.uint32))
    p = np.where(rim, np.float32(0.95), np.float32(0.02)).astype(np.float32)
    p[rim & (np.indices(SHAPE)[2] % 2 == 0)] = 0.7  # the lesion's own probability varies: its lowest is 0.7
    prob = _image(p, np.float32)
    lesions = lesion_table(comps, prob)
    _, _, new = fill_kept(comps, lesions, prob, pe, np.ones(SHAPE, bool), 4.0)
    raised = sitk.GetArrayFromImage(kept_hull.fill_probability(prob, comps, new))
    filled = sitk.GetArrayFromImage(new) > 0
    added = filled & ~rim
    assert added.sum() > 50 and p[added].max() < 0.7  # the fill's own probability was under the lesion's
    assert raised[added].min() == pytest.approx(0.7)
    for t in (0.5, 0.6, 0.7):
        assert np.array_equal(raised >= t, filled)  # thresholded anywhere the lesion survives: lesion and fill
    assert np.array_equal(raised[~added], p[~added])
    assert kept_hull.fill_probability(prob, comps, comps) is prob
