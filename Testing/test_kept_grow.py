"""The growth of each kept lesion just outside its outline (engine/kept_grow.py, ``KEPT_GROW``): on phantoms with known
truth a tumor outlined without its moderate lobe gets the lobe, a tumor in strongly enhancing background does not
leak into it, a homogeneous lesion is left as it was, two nearby lesions stay two, and a tumor-free exam (or the step
off) is unchanged."""
from __future__ import annotations

from functools import partial

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from BreastTumorSegLib.engine import kept_grow
from BreastTumorSegLib.engine.kept_grow import add_kept_grow, grow_kept
from BreastTumorSegLib.engine.postprocess import lesion_table
from kept_fixtures import OutliningSegmenter

FULL26 = np.ones((3, 3, 3), bool)
SHAPE = (32, 48, 64)  # z, y, x; 1 mm voxels


def _image(a, dtype=np.uint32) -> sitk.Image:
    im = sitk.GetImageFromArray(np.asarray(a, dtype))
    im.SetOrigin((-20.0, 5.0, 3.0))
    return im


def _kept(components: np.ndarray):
    comps = _image(components)
    prob = _image(np.where(components > 0, 0.95, 0.02), np.float32)
    return comps, lesion_table(comps, prob), prob


class _exam_of_pre_100:
    """An exam stub whose pre-contrast phase is 100 everywhere."""
    phases = [_image(np.full(SHAPE, 100.0), np.float32)]


def lobed_tumor(centre=(16, 24, 24), radius=8.0):
    """(truth sphere, strong core (r <= radius - 1), its moderate outer layer outside the lobe, the moderate lobe: a
    slot three voxels wide into the tumor's side that the outline left out)."""
    zz, yy, xx = np.indices(SHAPE)
    r = np.sqrt((zz - centre[0]) ** 2 + (yy - centre[1]) ** 2 + (xx - centre[2]) ** 2)
    truth = r <= radius
    lobe = truth & (np.abs(yy - centre[1]) <= 1) & (xx > centre[2] - 4)
    core = truth & (r <= radius - 1) & ~lobe
    return truth, core, truth & ~core & ~lobe, lobe


def _scene(background_pe=5.0, noise=0.0, seed=0):
    truth, core, layer, lobe = lobed_tumor()
    rng = np.random.default_rng(seed)
    pe = np.full(SHAPE, background_pe, np.float32) + rng.normal(0.0, noise, SHAPE).astype(np.float32)
    pe[ndimage.binary_dilation(truth, FULL26) & ~truth] = max(background_pe, 30.0)  # partial-volume edge outside
    pe[core], pe[layer], pe[lobe] = 150.0, 50.0, 50.0
    return truth, core, layer, lobe, pe


def _recall_precision(out, truth):
    tp = np.count_nonzero(out & truth)
    return tp / np.count_nonzero(truth), tp / np.count_nonzero(out)


def test_a_tumor_outlined_without_its_moderate_lobe_gets_the_lobe():
    truth, core, layer, lobe, pe = _scene()
    before = core | layer
    comps, lesions, prob = _kept(before.astype(np.uint32))
    label, table, new = grow_kept(comps, lesions, prob, pe, np.ones(SHAPE, bool), np.full(SHAPE, 100.0, np.float32))
    out = sitk.GetArrayFromImage(label) > 0
    assert _recall_precision(before, truth)[0] < 0.85
    recall, precision = _recall_precision(out, truth)
    assert recall >= 0.85 and precision >= 0.95
    assert out[lobe].mean() >= 0.9 and out[before].all()
    assert len(table) == 1 and table[0].label == 1 and ndimage.label(out, FULL26)[1] == 1
    assert table[0].voxels == np.count_nonzero(out)
    assert table[0].volume_ml == pytest.approx(np.count_nonzero(out) / 1000.0)
    assert "engine/kept_grow.py" in table[0].notes[-1]
    assert np.array_equal(sitk.GetArrayFromImage(new) > 0, out)


def test_a_tumor_in_strongly_enhancing_background_does_not_leak():
    """Background parenchymal enhancement around the tumor (PE 60 +- 15, over the lobe's 50 %): the lobe cannot be
    told from it, and nothing of the background joins."""
    truth, core, layer, lobe, pe = _scene(background_pe=60.0, noise=15.0)
    pe[core], pe[layer], pe[lobe] = 150.0, 50.0, 50.0
    before = core | layer
    comps, lesions, prob = _kept(before.astype(np.uint32))
    label, table, _ = grow_kept(comps, lesions, prob, pe, np.ones(SHAPE, bool), np.full(SHAPE, 100.0, np.float32))
    out = sitk.GetArrayFromImage(label) > 0
    assert _recall_precision(out, truth)[1] >= 0.8
    assert np.count_nonzero(out & ~truth) <= 0.02 * np.count_nonzero(before)
    assert len(table) == 1


def test_tissue_unlike_the_tumor_before_contrast_stays_out():
    """The lobe is bright before contrast like the tumor; fat-like tissue in the slot (dark where the tumor is bright,
    like the tissue around it) stays out although it enhances as much."""
    truth, core, layer, lobe, pe = _scene()
    pre = np.full(SHAPE, 300.0, np.float32)
    pre[truth] = 100.0
    half = lobe & (np.indices(SHAPE)[2] > 27)
    pre[half] = 300.0  # the outer part of the slot is tissue like the background, not tumor
    comps, lesions, prob = _kept((core | layer).astype(np.uint32))
    out = sitk.GetArrayFromImage(grow_kept(comps, lesions, prob, pe, np.ones(SHAPE, bool), pre)[0]) > 0
    assert out[lobe & ~half].mean() >= 0.9 and not out[half].any()


def test_a_homogeneous_lesion_is_left_as_it_was():
    """A strongly enhancing lesion with no moderate parts of its own (the original phantom's tumors) does not grow
    into the enhancing edge around it."""
    truth, core, layer, lobe, pe = _scene()
    pe[layer] = 150.0
    comps, lesions, prob = _kept((core | layer).astype(np.uint32))
    label, table, new = grow_kept(comps, lesions, prob, pe, np.ones(SHAPE, bool), np.full(SHAPE, 100.0, np.float32))
    assert table is lesions and new is comps


def test_two_nearby_lesions_stay_two_and_a_removed_component_is_not_revived():
    """Two lobed tumors 3 mm apart with moderately enhancing tissue between them, and a component the false-positive
    reduction removed (in the map, not in the table): each lesion grows, neither reaches the other, the removed one
    neither grows nor joins."""
    a_truth, a_core, a_layer, a_lobe = lobed_tumor(centre=(16, 24, 13))
    b_truth, b_core, b_layer, b_lobe = lobed_tumor(centre=(16, 24, 32))
    removed = np.zeros(SHAPE, bool)
    removed[14:18, 40:44, 50:60] = True
    pe = np.full(SHAPE, 5.0, np.float32)
    pe[:, 20:29, 20:26] = 45.0  # between the two tumors
    pe[a_core | b_core] = 150.0
    pe[a_layer | a_lobe | b_layer | b_lobe] = 50.0
    pe[ndimage.binary_dilation(removed, FULL26, 2)] = 60.0
    comps_arr = (a_core | a_layer).astype(np.uint32) + 2 * (b_core | b_layer).astype(np.uint32) + 3 * removed
    comps, lesions, prob = _kept(comps_arr)
    lesions = lesions[:2]  # the third component is not a kept lesion
    label, table, new = grow_kept(comps, lesions, prob, pe, np.ones(SHAPE, bool), np.full(SHAPE, 100.0, np.float32))
    lab = sitk.GetArrayFromImage(new)
    assert [les.label for les in table] == [1, 2]
    assert (lab[a_lobe] == 1).mean() >= 0.9 and (lab[b_lobe] == 2).mean() >= 0.9
    assert not (ndimage.binary_dilation(lab == 1, FULL26) & (lab == 2)).any()
    assert np.array_equal(lab == 3, removed)
    assert ndimage.label(sitk.GetArrayFromImage(label) > 0, FULL26)[1] == 3


def test_a_tumor_free_exam_and_the_step_off_change_nothing():
    pe = np.full(SHAPE, 60.0, np.float32)
    comps, lesions, prob = _kept(np.zeros(SHAPE, np.uint32))
    label, table, new = grow_kept(comps, lesions, prob, pe, np.ones(SHAPE, bool), np.ones(SHAPE, np.float32))
    assert table == [] and not sitk.GetArrayFromImage(label).any() and new is comps

    truth, core, layer, lobe, pe = _scene()

    Seg = partial(OutliningSegmenter, pe)
    Exam = _exam_of_pre_100
    comps, lesions, prob = _kept((core | layer).astype(np.uint32))
    label = sitk.Cast(comps > 0, sitk.sitkUInt8)
    assert kept_grow.KEPT_GROW is True  # on: its second held-out run passed (docs/decisions/kept-recall-retry-issue25.md)
    assert (kept_grow.GROW_MODERATE, kept_grow.GROW_HULL_MM, kept_grow.GROW_HULL_OWN) == (0.7, 1.5, 1.0)
    assert add_kept_grow(Seg(), Exam(), label, lesions, comps, prob, {}, enabled=False)[1] is lesions
    assert add_kept_grow(Seg(), Exam(), label, lesions, comps, prob, {"seed_lps": (0, 0, 0)}, enabled=True)[1] is lesions
    assert add_kept_grow(object(), Exam(), label, lesions, comps, prob, {}, enabled=True)[1] is lesions
    on = add_kept_grow(Seg(), Exam(), label, lesions, comps, prob, {}, enabled=True)
    assert (sitk.GetArrayFromImage(on[0]) > 0)[lobe].mean() >= 0.9 and len(on[1]) == 1
    with pytest.raises(ValueError, match="one grid"):
        grow_kept(comps, lesions, prob, pe[:-1], np.ones(SHAPE, bool), np.ones(SHAPE, np.float32))


def test_the_pipeline_grows_the_kept_lesions_of_a_development_exam(monkeypatch):
    """segment_exam on development heterogeneous 7002 (ftv-outline, motion removed): with the step on the found
    tumor's voxel recall rises, the lesions and FP lesions are the same in number and every table row matches the
    label map."""
    from BreastTumorSegLib.engine.pipeline import SegmentSettings, segment_exam
    from BreastTumorSegLib.evaluation.lesions import lesion_level
    from BreastTumorSegLib.training.phantom.families import FAMILIES

    ph = FAMILIES["heterogeneous"](7002)
    ref = ph.exam.reference
    exam = ph.exam.with_phases([p if k == 0 else sitk.Resample(p, ref, ph.motion[k], sitk.sitkLinear, 0.0)
                                for k, p in enumerate(ph.exam.phases)])
    runs = {}
    for on in (False, True):
        monkeypatch.setattr(kept_grow, "KEPT_GROW", on)
        runs[on] = segment_exam(exam, model="ftv-outline", device="cpu", settings=SegmentSettings(registration="none"))
    off, on = (lesion_level(runs[k].label, ph.tumor_labels, 0.1, ref_is_labels=True) for k in (False, True))
    assert on.n_found == off.n_found >= 1 and on.n_false_positive == off.n_false_positive
    assert on.voxel_recall >= off.voxel_recall + 0.05
    assert len(runs[True].lesions) == len(runs[False].lesions)
    arr = sitk.GetArrayFromImage(runs[True].label) > 0
    assert sum(les.voxels for les in runs[True].lesions) == np.count_nonzero(arr)
    assert any("engine/kept_grow.py" in n for les in runs[True].lesions for n in les.notes)


def capped_tumor(centre=(16, 24, 24), radius=8.0, cap_mm=1.5):
    """(truth, strong core (r <= radius - 1), its moderate outer layer, a moderate cap outside the sphere on its +x
    side: a lobe reaching *cap_mm* beyond the outline, outside the outline's convex hull in every plane)."""
    zz, yy, xx = np.indices(SHAPE)
    r = np.sqrt((zz - centre[0]) ** 2 + (yy - centre[1]) ** 2 + (xx - centre[2]) ** 2)
    sphere = r <= radius
    cap = (r > radius) & (r <= radius + cap_mm) & (xx >= centre[2] + 4)
    return sphere | cap, sphere & (r <= radius - 1), sphere & (r > radius - 1), cap


@pytest.fixture
def widened(monkeypatch):
    """The per-plane hull widened by 1.5 mm for tissue enhancing like the lesion's moderate parts (the settings of
    docs/decisions/kept-recall-retry-issue25.md's candidate)."""
    monkeypatch.setattr(kept_grow, "GROW_HULL_MM", 1.5)
    monkeypatch.setattr(kept_grow, "GROW_HULL_OWN", 1.0)


def _capped_scene(background_pe=5.0, noise=0.0, seed=0):
    truth, core, layer, cap = capped_tumor()
    rng = np.random.default_rng(seed)
    pe = np.full(SHAPE, background_pe, np.float32) + rng.normal(0.0, noise, SHAPE).astype(np.float32)
    edge = ndimage.binary_dilation(truth, FULL26) & ~truth
    pe[edge] = max(background_pe, 30.0)  # the partial-volume edge around the whole tumor
    pe[core], pe[layer], pe[cap] = 150.0, 50.0, 50.0
    return truth, core, layer, cap, edge, pe


def test_a_lobe_beyond_the_outlines_hull_joins_only_with_the_widened_hull(widened, monkeypatch):
    """A moderate cap 1.5 mm thick outside the outline (beyond its convex hull in each plane): the plain hull keeps it
    out, the widened one lets it in; the partial-volume edge around the tumor (PE 30, under the lesion's own moderate
    level) does not join through the widening, the lesion stays one."""
    truth, core, layer, cap, edge, pe = _capped_scene()
    before = core | layer
    comps, lesions, prob = _kept(before.astype(np.uint32))
    args = (pe, np.ones(SHAPE, bool), np.full(SHAPE, 100.0, np.float32))
    label, table, _ = grow_kept(comps, lesions, prob, *args)
    out = sitk.GetArrayFromImage(label) > 0
    with monkeypatch.context() as m:
        m.setattr(kept_grow, "GROW_HULL_MM", 0.0)
        plain = sitk.GetArrayFromImage(grow_kept(comps, lesions, prob, *args)[0]) > 0
    assert plain[cap].mean() <= 0.1
    assert out[cap].mean() >= 0.6 and out[before].all()  # its parts > 1.5 mm from the disc in their plane stay out
    assert not (out & edge & ~plain).any()  # the widening adds none of the edge (the plain hull's corners take a few)
    assert np.count_nonzero(out & ~truth) == np.count_nonzero(plain & ~truth)  # the widening adds no non-tumor voxel
    assert _recall_precision(out, truth)[0] >= _recall_precision(plain, truth)[0] + 0.05
    assert len(table) == 1 and ndimage.label(out, FULL26)[1] == 1 and table[0].voxels == np.count_nonzero(out)


def test_the_widened_hull_does_not_leak_into_strongly_enhancing_background(widened):
    """The capped tumor in background enhancing at PE 60 +- 15 (over the cap's 50 %): nothing of it joins."""
    truth, core, layer, cap, edge, pe = _capped_scene(background_pe=60.0, noise=15.0)
    before = core | layer
    comps, lesions, prob = _kept(before.astype(np.uint32))
    label, table, _ = grow_kept(comps, lesions, prob, pe, np.ones(SHAPE, bool), np.full(SHAPE, 100.0, np.float32))
    out = sitk.GetArrayFromImage(label) > 0
    assert np.count_nonzero(out & ~truth) <= 0.02 * np.count_nonzero(before)
    assert len(table) == 1 and ndimage.label(out, FULL26)[1] == 1


def test_the_widened_hull_keeps_two_lesions_two_and_a_tumor_free_exam_empty(widened):
    """Two capped tumors 4 mm apart, moderate tissue between them: each may grow, neither touches the other, the
    lesion count stays two; a tumor-free exam stays empty."""
    a = capped_tumor(centre=(16, 24, 12))
    b = capped_tumor(centre=(16, 24, 41))
    pe = np.full(SHAPE, 5.0, np.float32)
    pe[:, 18:31, 20:34] = 50.0  # moderate tissue between them
    for truth, core, layer, cap in (a, b):
        pe[core], pe[layer], pe[cap] = 150.0, 50.0, 50.0
    comps_arr = (a[1] | a[2]).astype(np.uint32) + 2 * (b[1] | b[2]).astype(np.uint32)
    comps, lesions, prob = _kept(comps_arr)
    label, table, new = grow_kept(comps, lesions, prob, pe, np.ones(SHAPE, bool), np.full(SHAPE, 100.0, np.float32))
    lab = sitk.GetArrayFromImage(new)
    assert [les.label for les in table] == [1, 2]
    assert not (ndimage.binary_dilation(lab == 1, FULL26) & (lab == 2)).any()
    assert ndimage.label(sitk.GetArrayFromImage(label) > 0, FULL26)[1] == 2
    empty, none, prob0 = _kept(np.zeros(SHAPE, np.uint32))
    label0, table0, new0 = grow_kept(empty, none, prob0, pe, np.ones(SHAPE, bool), np.ones(SHAPE, np.float32))
    assert table0 == [] and not sitk.GetArrayFromImage(label0).any() and new0 is empty


def test_the_benchmarks_combined_step_is_pieces_then_growth():
    """``bench_generalization.py --compare-step kept-pieces-grow``: the pieces step, then the growth on its result (the
    pipeline's order), each switched on; the same label map as calling the two in turn; ``--set`` reaches
    ``KEPT_GROW_MM`` (read when the step runs)."""
    import sys
    from pathlib import Path

    from BreastTumorSegLib.engine.kept_pieces import add_kept_pieces

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from bench_generalization import POST_STEPS, post_step

    truth, core, layer, lobe, pe = _scene()

    Seg = partial(OutliningSegmenter, pe)
    Exam = _exam_of_pre_100
    comps, lesions, prob = _kept((core | layer).astype(np.uint32))
    label = sitk.Cast(comps > 0, sitk.sitkUInt8)
    assert POST_STEPS["kept-pieces-grow"][0] == "kept_pieces+kept_grow"
    both = post_step("kept_pieces+kept_grow")(Seg(), Exam(), label, lesions, comps, prob, {}, enabled=True)
    one = add_kept_pieces(Seg(), Exam(), label, lesions, comps, prob, {}, enabled=True)
    two = add_kept_grow(Seg(), Exam(), *one, prob, {}, enabled=True)
    assert np.array_equal(sitk.GetArrayFromImage(both[2]), sitk.GetArrayFromImage(two[2]))
    assert (sitk.GetArrayFromImage(both[0]) > 0)[lobe].mean() >= 0.9 and len(both[1]) == 1


def test_the_growth_distance_is_read_when_the_step_runs(monkeypatch):
    truth, core, layer, lobe, pe = _scene()
    comps, lesions, prob = _kept((core | layer).astype(np.uint32))
    args = (pe, np.ones(SHAPE, bool), np.full(SHAPE, 100.0, np.float32))
    monkeypatch.setattr(kept_grow, "KEPT_GROW_MM", 0.0)
    assert grow_kept(comps, lesions, prob, *args)[1] is lesions  # no distance: nothing grows
    monkeypatch.setattr(kept_grow, "KEPT_GROW_MM", 2.5)
    assert (sitk.GetArrayFromImage(grow_kept(comps, lesions, prob, *args)[0]) > 0)[lobe].mean() >= 0.9
