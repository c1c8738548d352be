"""engine/kept_reach.py: more rounds of the kept-lesion growth, each from the grown lesion (issue 25, KEPT_REACH)."""
from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from BreastTumorSegLib.engine import kept_reach
from dev_exams import motion_free


def test_off_by_default_until_its_rule_passes():
    assert kept_reach.KEPT_REACH is False and kept_reach.REACH_ROUNDS == 2


def test_a_homogeneous_lesion_and_an_empty_map_are_unchanged():
    """A strongly enhancing homogeneous sphere (no moderate parts) is its own edge: no round grows it."""
    shape = (24, 40, 40)
    zz, yy, xx = np.indices(shape)
    sphere = (zz - 12) ** 2 + (yy - 20) ** 2 + (xx - 20) ** 2 <= 36
    pe = np.where(sphere, 150.0, 5.0).astype(np.float32)
    valid = np.ones(shape, bool)
    pre = np.full(shape, 100.0, np.float32)
    labels = sphere.astype(np.int32)
    out, added = kept_reach.reach_labels(labels, pe, valid, pre, (1.0, 1.0, 1.0))
    assert added == {} and np.array_equal(out, labels)
    out, added = kept_reach.reach_labels(np.zeros(shape, np.int32), pe, valid, pre, (1.0, 1.0, 1.0))
    assert added == {} and not out.any()


def test_the_pipeline_reaches_further_into_a_development_irregular_tumor(monkeypatch):
    """segment_exam on development irregular 7024 (ftv-outline, motion removed; a seed of the set the step was chosen
    on, 7010-7039): with the step on the found tumors' voxel recall rises by >= 0.05 and Dice does not fall; the
    lesions and FP lesions are the same in number and every table row matches the label map."""
    from BreastTumorSegLib.engine.pipeline import SegmentSettings, segment_exam
    from BreastTumorSegLib.evaluation.lesions import lesion_level
    from BreastTumorSegLib.evaluation.metrics import dice
    from BreastTumorSegLib.training.phantom.families import FAMILIES

    ph = FAMILIES["irregular"](7024)
    exam = motion_free(ph)
    runs = {}
    for on in (False, True):
        monkeypatch.setattr(kept_reach, "KEPT_REACH", on)
        runs[on] = segment_exam(exam, model="ftv-outline", device="cpu", settings=SegmentSettings(registration="none"))
    off, on = (lesion_level(runs[k].label, ph.tumor_labels, 0.1, ref_is_labels=True) for k in (False, True))
    assert on.n_found == off.n_found >= 1 and on.n_false_positive == off.n_false_positive
    assert on.voxel_recall >= off.voxel_recall + 0.05
    truth = sitk.Cast(ph.tumor_labels > 0, sitk.sitkUInt8)
    assert dice(runs[True].label, truth) >= dice(runs[False].label, truth)
    assert len(runs[True].lesions) == len(runs[False].lesions)
    arr = sitk.GetArrayFromImage(runs[True].label) > 0
    assert sum(les.voxels for les in runs[True].lesions) == np.count_nonzero(arr)
    assert any("engine/kept_reach.py" in n for les in runs[True].lesions for n in les.notes)


def _lobed_tumor():
    """A constructed irregular heterogeneous tumor: a strongly enhancing core (PE 150) with a moderate lobe (PE 55)
    reaching 20 mm out of it; the outline found the core and the lobe's first 9 mm. (labels, pe, valid, pre, truth)"""
    rng = np.random.default_rng(0)
    shape = (24, 48, 64)
    zz, yy, xx = np.indices(shape)
    core = (zz - 12) ** 2 + (yy - 24) ** 2 + (xx - 20) ** 2 <= 25
    lobe = ((zz - 12) ** 2 + (yy - 24) ** 2 <= 9) & (xx >= 20) & (xx <= 40)
    pe = (np.where(core, 150.0, np.where(lobe, 55.0, 5.0)) + rng.normal(0, 3, shape)).astype(np.float32)
    found = core | (lobe & (xx <= 29))
    return found.astype(np.int32), pe, np.ones(shape, bool), np.full(shape, 100.0, np.float32), core | lobe


def test_the_stop_keeps_the_rounds_that_follow_a_moderate_lobe():
    """With the stop (REACH_FADE, REACH_BG as shipped) the rounds still follow the moderate lobe of an irregular
    heterogeneous tumor: after the growth of kept_grow the tumor's voxel recall is 0.684; the rounds raise it above
    0.72, adding no voxel outside the tumor."""
    from BreastTumorSegLib.engine import kept_grow

    labels, pe, valid, pre, truth = _lobed_tumor()
    grown, _ = kept_grow.grow_labels(labels, pe, valid, pre, (1.0, 1.0, 1.0))
    assert kept_reach.REACH_FADE > 0 and kept_reach.REACH_BG > 0
    before = np.count_nonzero((grown > 0) & truth) / np.count_nonzero(truth)
    out, added = kept_reach.reach_labels(grown, pe, valid, pre, (1.0, 1.0, 1.0))
    after = np.count_nonzero((out > 0) & truth) / np.count_nonzero(truth)
    assert before < 0.70 and after > 0.72 and added
    assert not np.any((out > 0) & ~truth)


def _peanut_in_background():
    """A homogeneous strongly enhancing tumor (PE 200, two overlapping spheres) outlined with its one-voxel
    partial-volume edge (PE 80), and background enhancement (PE 33, over the growth's 25 % floor) filling the bay
    between its lobes, inside the outline's per-plane hull. (labels, pe, valid, pre, tumor, bay)"""
    from scipy import ndimage

    from BreastTumorSegLib.engine import kept_grow

    rng = np.random.default_rng(1)
    shape = (32, 44, 72)
    zz, yy, xx = np.indices(shape)
    tum = (((zz - 14) ** 2 + (yy - 20) ** 2 + (xx - 24) ** 2 <= 81)
           | ((zz - 14) ** 2 + (yy - 20) ** 2 + (xx - 42) ** 2 <= 81))
    edge = ndimage.binary_dilation(tum) & ~tum
    les = tum | edge
    bay = kept_grow._plane_hulls(les) & ~les & (np.abs(zz - 14) <= 2)
    pe = np.full(shape, 5.0, np.float32)
    pe[bay], pe[edge], pe[tum] = 33.0, 80.0, 200.0
    pe += rng.normal(0, 2, shape).astype(np.float32)
    return les.astype(np.int32), pe, np.ones(shape, bool), np.full(shape, 100.0, np.float32), tum, bay


def test_the_stop_keeps_a_homogeneous_tumor_out_of_background_enhancement(monkeypatch):
    """A homogeneous tumor in background enhancement: the growth of kept_grow takes the bay's first 2.5 mm (as
    shipped); the rounds without the stop (irr17's step: REACH_FADE = REACH_BG = 0) go on into the bay (>= 40 more
    background voxels); with the stop their layer (PE ~33, under 0.8 x the lesion's own PE 10th percentile ~80) is
    taken back and nothing is added."""
    from BreastTumorSegLib.engine import kept_grow

    labels, pe, valid, pre, tum, bay = _peanut_in_background()
    grown, _ = kept_grow.grow_labels(labels, pe, valid, pre, (1.0, 1.0, 1.0))
    out, added = kept_reach.reach_labels(grown, pe, valid, pre, (1.0, 1.0, 1.0))
    assert added == {} and np.array_equal(out, grown)
    monkeypatch.setattr(kept_reach, "REACH_FADE", 0.0)
    monkeypatch.setattr(kept_reach, "REACH_BG", 0.0)
    out0, added0 = kept_reach.reach_labels(grown, pe, valid, pre, (1.0, 1.0, 1.0))
    assert np.count_nonzero((out0 > 0) & bay) >= np.count_nonzero((grown > 0) & bay) + 40


def test_no_rounds_on_thick_slices():
    """Slices thicker than REACH_MAX_SLICE_MM (2.5 mm): the rounds would move in-plane only, where a thick slice's
    partial volume smears the enhancement past the outline (development hybrid-sagittal-irregular, 3 mm): nothing
    is added; the same tumor on 2 mm slices grows."""
    labels, pe, valid, pre, truth = _lobed_tumor()
    out, added = kept_reach.reach_labels(labels, pe, valid, pre, (3.0, 0.94, 0.94))
    assert added == {} and np.array_equal(out, labels)
    out, added = kept_reach.reach_labels(labels, pe, valid, pre, (2.0, 1.0, 1.0))
    assert added
