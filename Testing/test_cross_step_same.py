"""CPU time of the whole default pipeline (issue 25, docs/decisions/cpu-time-issue25.md, fourth pass): work repeated
across steps is done once, sparse masks are labelled in their box, the subtraction noise is taken in place -- each
giving the very outputs of what it replaces (no time is asserted).

Each check is a function returning the first case where a candidate differs from the reference (None when none
does); every test runs it on the shipped code (no difference) and on a deliberately broken variant (a difference
found), so a check that cannot see a difference fails too.
"""
from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from BreastTumorSegLib.core import memo
from BreastTumorSegLib.core.imageutil import labels_in_box
from BreastTumorSegLib.core.memo import remember_last
from BreastTumorSegLib.kinetics import deep_band
from BreastTumorSegLib.kinetics.beside_region import band_around
from BreastTumorSegLib.kinetics.outline import FULL26
from BreastTumorSegLib.kinetics.outline_shells import body_of
from BreastTumorSegLib.kinetics.significance import difference_noise


def _blobs(rng, shape, p=None):
    """Random specks and blobs, sometimes confined to a corner of the array or touching its border."""
    p = rng.uniform(0.0005, 0.2) if p is None else p
    m = ndimage.binary_dilation(rng.random(shape) < p, structure=FULL26, iterations=int(rng.integers(0, 3)))
    if rng.random() < 0.5:
        keep = np.zeros(shape, bool)
        lo = [int(rng.integers(0, s)) for s in shape]
        keep[tuple(slice(a, int(rng.integers(a + 1, s + 1))) for a, s in zip(lo, shape))] = True
        m &= keep
    return m


def _same(a, b) -> bool:
    if isinstance(a, tuple):
        return isinstance(b, tuple) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, np.ndarray):
        return isinstance(b, np.ndarray) and a.dtype == b.dtype and np.array_equal(a, b)
    return type(a) is type(b) and a == b


# --- labels in the mask's box --------------------------------------------------------------------------------------

def _labels_differ(candidate, n_cases=200):
    rng = np.random.default_rng(19)
    for i in range(n_cases):
        shape = tuple(int(v) for v in rng.integers(1, 40, 3))
        mask = _blobs(rng, shape) if i % 10 else np.zeros(shape, bool)
        mask = mask.astype(np.uint8) if i % 3 == 0 else mask
        structure = FULL26 if i % 2 else None
        if not _same(candidate(mask, structure), ndimage.label(mask, structure=structure)):
            return i
    return None


def _labels_box_one_short(mask, structure=None):
    """Broken: the box ends one voxel early on each axis."""
    box = []
    for axis in range(mask.ndim):
        nz = np.flatnonzero(np.any(mask, axis=tuple(a for a in range(mask.ndim) if a != axis)))
        if nz.size == 0:
            return ndimage.label(mask, structure=structure)
        box.append(slice(int(nz[0]), max(int(nz[-1]), int(nz[0]) + 1)))
    part, n = ndimage.label(mask[tuple(box)], structure=structure)
    labels = np.zeros(mask.shape, part.dtype)
    labels[tuple(box)] = part
    return labels, n


def test_labels_in_the_masks_box_are_the_whole_array_labels():
    assert _labels_differ(lambda m, s: labels_in_box(m, s)) is None
    assert _labels_differ(_labels_box_one_short) is not None


# --- calls remembered across steps ---------------------------------------------------------------------------------

def _calls(rng):
    """A sequence of band_around calls as steps make them: repeats of an equal region (a fresh array), a region
    with one voxel changed, another width, spacing or dtype; arrays given back are changed by the caller."""
    shape = tuple(int(v) for v in rng.integers(4, 30, 3))
    roi = _blobs(rng, shape, p=0.05)
    sp = rng.choice([0.6, 1.0, 2.0, 3.0], 3)
    out = [(roi, sp, 20.0), (roi.copy(), sp.copy(), 20.0)]
    flip = roi.copy()
    flip[tuple(int(rng.integers(0, s)) for s in shape)] ^= True
    out += [(flip, sp, 20.0), (roi.copy(), sp, 20.0), (roi, sp, 10.0), (roi, sp * 1.5, 10.0),
            (roi.astype(np.uint8), sp * 1.5, 10.0), (roi, sp, 20.0)]
    return out


def _remembered_differs(candidate, n_cases=40):
    """First case where the remembered *candidate* (band_around's signature) gives other arrays than a fresh
    band_around, when the caller changes every array it gets back (as a step may)."""
    rng = np.random.default_rng(25)
    for i in range(n_cases):
        for k, (roi, sp, mm) in enumerate(_calls(rng)):
            got = candidate(roi, sp, mm)
            if not _same(got, band_around.uncached(roi, sp, mm)):
                return i, k
            for a in got:
                a[...] = ~a.astype(bool)  # the caller's own copy
    return None


def _key_without_width(fn):
    return remember_last(lambda roi, sp, mm: (roi, np.asarray(sp, float)))(fn)


def _shape_only_key(fn):
    """Broken: keys compared by shape only."""
    box = [None]

    def call(roi, sp, mm):
        if box[0] is not None and box[0][0] == roi.shape:
            return tuple(a.copy() for a in box[0][1])
        got = fn(roi, sp, mm)
        box[0] = (roi.shape, tuple(a.copy() for a in got))
        return got
    return call


def _no_copies(fn):
    """Broken: the remembered arrays themselves given out (a caller's change reaches the next caller)."""
    box = [None]

    def call(roi, sp, mm):
        key = (roi.copy(), np.asarray(sp, float).copy(), float(mm))
        if box[0] is not None and memo.same_key(box[0][0], key):
            return box[0][1]
        box[0] = (key, fn(roi, sp, mm))
        return box[0][1]
    return call


def test_the_remembered_band_beside_the_region_is_a_fresh_calls_band():
    memo.forget_all()
    assert _remembered_differs(band_around) is None
    for broken in (_key_without_width, _shape_only_key, _no_copies):
        assert _remembered_differs(broken(band_around.uncached)) is not None, broken.__name__


def test_a_remembered_call_is_answered_when_its_key_is_equal_and_computed_when_not():
    made = []

    @remember_last(lambda a, b: (a, b))
    def f(a, b):
        made.append(1)
        return a * b, [a.sum()]

    x = np.arange(6).reshape(2, 3)
    first = f(x, 2)
    assert len(made) == 1
    first[0][...] = -1  # the caller's copy
    again = f(x.copy(), 2)
    assert len(made) == 1 and np.array_equal(again[0], x * 2)
    x[0, 0] = 7  # a change of the caller's array after the call is not seen as the remembered key
    assert np.array_equal(f(x, 2)[0], x * 2) and len(made) == 2
    f(x, 2.0)  # another type of the same value: computed
    f(x.astype(np.int32), 2.0)  # another dtype: computed
    assert len(made) == 4
    memo.forget_all()
    f(x.astype(np.int32), 2.0)
    assert len(made) == 5


def _grid(size, origin, spacing):
    img = sitk.Image([int(v) for v in size], sitk.sitkUInt8)
    img.SetOrigin([float(v) for v in origin])
    img.SetSpacing([float(v) for v in spacing])
    return img


def _pairs_differ(candidate, n_cases=30):
    """First case where the band's pair on the exam grid from *candidate* differs from a fresh resampling, over calls
    with the same band, another work or exam grid, another band."""
    rng = np.random.default_rng(31)
    for i in range(n_cases):
        shape = tuple(int(v) for v in rng.integers(4, 16, 3))
        band, rim = _blobs(rng, shape, p=0.1), _blobs(rng, shape, p=0.05)
        work = _grid(shape[::-1], rng.uniform(-5, 5, 3), rng.uniform(1.0, 2.0, 3))
        ref = _grid(rng.integers(4, 20, 3), rng.uniform(-5, 5, 3), rng.uniform(0.5, 1.5, 3))
        moved_work = _grid(shape[::-1], np.asarray(work.GetOrigin()) + 1.0, work.GetSpacing())
        finer_ref = _grid(ref.GetSize(), ref.GetOrigin(), np.asarray(ref.GetSpacing()) * 0.7)
        for k, args in enumerate([(band, rim, work, ref), (band.copy(), rim.copy(), work, ref),
                                  (band, rim, moved_work, ref), (band, rim, work, finer_ref),
                                  (rim, band, work, ref), (band, rim, work, ref)]):
            if not _same(candidate(*args), deep_band._pair_on_exam.uncached(*args)):
                return i, k
    return None


def test_the_remembered_band_behind_the_floor_on_the_exam_grid_is_a_fresh_resampling():
    memo.forget_all()
    assert _pairs_differ(deep_band._pair_on_exam) is None
    broken = remember_last(lambda band_w, rim_w, work, ref: (band_w, rim_w))(deep_band._pair_on_exam.uncached)
    assert _pairs_differ(broken) is not None  # a key without the grids


def _bodies_differ(candidate, n_cases=40):
    rng = np.random.default_rng(37)
    for i in range(n_cases):
        shape = tuple(int(v) for v in rng.integers(3, 25, 3))
        valid = ~_blobs(rng, shape, p=0.2)
        for k, v in enumerate([valid, valid.copy(), ~valid, valid]):
            got = candidate(v)
            if not _same(got, body_of.uncached(v)):
                return i, k
            got[...] = False  # the caller's own copy
    return None


def test_the_remembered_body_is_a_fresh_body():
    memo.forget_all()
    assert _bodies_differ(body_of) is None
    assert _bodies_differ(remember_last(lambda v: (v.shape,))(body_of.uncached)) is not None  # a key by shape only


# --- the subtraction noise in place --------------------------------------------------------------------------------

def _noise_whole(pre, post, region):
    """``difference_noise`` before this change."""
    sel = region & (pre > 0) & (post > 0)
    if np.count_nonzero(sel) < 50:
        return None
    d = post[sel].astype(np.float64) - pre[sel]
    return 1.4826 * float(np.median(np.abs(d - np.median(d))))


def _noise_differs(candidate, n_cases=300):
    rng = np.random.default_rng(41)
    for i in range(n_cases):
        shape = tuple(int(v) for v in rng.integers(3, 30, 3))
        dtype = [np.float32, np.float64, np.int16, np.uint16][i % 4]
        pre = np.abs(rng.normal(100, 60, shape)) * rng.uniform(0.01, 100)
        post = np.abs(pre + rng.normal(10, 30, shape) * rng.uniform(0.01, 100))
        pre, post = pre.astype(dtype), post.astype(dtype)
        if i % 5 == 0:
            pre[rng.random(shape) < 0.3] = 0
        region = rng.random(shape) < rng.uniform(0.0, 1.0)
        if not _same(candidate(pre, post, region), _noise_whole(pre, post, region)):
            return i
    return None


def _noise_in_float32(pre, post, region):
    """Broken: the differences taken in float32."""
    sel = region & (pre > 0) & (post > 0)
    if np.count_nonzero(sel) < 50:
        return None
    d = (post[sel].astype(np.float32) - pre[sel].astype(np.float32)).astype(np.float64)
    return 1.4826 * float(np.median(np.abs(d - np.median(d))))


def test_the_subtraction_noise_in_place_is_the_noise_of_copies():
    assert _noise_differs(difference_noise) is None
    assert _noise_differs(_noise_in_float32) is not None


# --- the pipeline ---------------------------------------------------------------------------------------------------

def test_the_pipeline_with_remembered_calls_gives_the_outputs_of_fresh_calls(monkeypatch):
    """A development exam where the dark step finds tumors (randomized 7016; dark-before-issue25.md): the default
    pipeline with the calls remembered and with every call computed afresh (every key taken as new) gives the same
    label map, probability map and lesion table; nothing stays remembered after the run."""
    from BreastTumorSegLib.engine.pipeline import SegmentSettings, segment_exam
    from BreastTumorSegLib.training.phantom.families import FAMILIES

    ph = FAMILIES["randomized"](7016)
    ref = ph.exam.reference
    exam = ph.exam.with_phases([p if k == 0 else sitk.Resample(p, ref, ph.motion[k], sitk.sitkLinear, 0.0)
                                for k, p in enumerate(ph.exam.phases)])  # its known motion removed
    settings = SegmentSettings(registration="none")
    remembered = segment_exam(exam, model="ftv-outline", device="cpu", settings=settings)
    assert memo.held() == 0
    monkeypatch.setattr(memo, "same_key", lambda a, b: False)
    fresh = segment_exam(exam, model="ftv-outline", device="cpu", settings=settings)
    for a, b in ((remembered.label, fresh.label), (remembered.probability, fresh.probability)):
        assert np.array_equal(sitk.GetArrayViewFromImage(a), sitk.GetArrayViewFromImage(b))
    assert [repr(les) for les in remembered.lesions] == [repr(les) for les in fresh.lesions]
    assert remembered.lesions  # the exam has lesions to compare
