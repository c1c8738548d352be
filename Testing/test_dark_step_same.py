"""CPU time of the dark-before-contrast step (issue 25, docs/decisions/cpu-time-issue25.md, third pass): the cheaper
forms give the very outputs of the whole-array computations they replace (no time is asserted). The vessel opening
in boxes around the mask's components, the dark step's seeds with labels in a box and the touch test per component,
and the band beside the region compared per block: each against the whole-array computation, on random inputs."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from BreastTumorSegLib.kinetics.beside_region import BAND_GRID_MM, band_around, elongation
from BreastTumorSegLib.kinetics.dark_lesions import DARK_MAX_ELONGATION, DARK_MIN_SHARE, dark_seeds
from BreastTumorSegLib.kinetics.ftv import drop_skin_components
from BreastTumorSegLib.kinetics.outline import FULL26, OUTLINE_MIN_CORE_ML
from BreastTumorSegLib.kinetics.seeded import _ellipsoid, open_and_regrow


def _blobs(rng, shape, dense=False):
    """Random specks, blobs and tubes, sometimes confined to a corner of the array or touching its border."""
    p = rng.uniform(0.02, 0.3) if dense else rng.uniform(0.0005, 0.02)
    m = ndimage.binary_dilation(rng.random(shape) < p, structure=FULL26, iterations=int(rng.integers(0, 3)))
    if rng.random() < 0.3:
        lo = [int(rng.integers(0, s)) for s in shape]
        keep = np.zeros(shape, bool)
        keep[tuple(slice(a, int(rng.integers(a + 1, s + 1))) for a, s in zip(lo, shape))] = True
        m &= keep
    return m


def _opened_whole(mask, spacing, radius):
    """The vessel opening over the whole array (what ``open_and_regrow`` computed before its boxes)."""
    ball = _ellipsoid(radius, np.asarray(spacing, float))
    if ball.size == 1 or not mask.any():
        return mask.copy()
    return ndimage.binary_dilation(ndimage.binary_opening(mask, structure=ball), structure=ball) & mask


@pytest.mark.parametrize("dtype", [bool, np.uint8])
def test_the_vessel_opening_in_boxes_around_components_is_the_whole_array_opening(dtype):
    rng = np.random.default_rng(25)
    for i in range(150):
        shape = tuple(int(v) for v in rng.integers(4, 40, 3))
        mask = _blobs(rng, shape, dense=i % 4 == 0).astype(dtype)
        spacing = rng.choice([0.5, 0.8, 1.0, 1.5, 3.0], 3)
        radius = float(rng.choice([0.4, 1.0, 1.5, 2.0, 3.0]))
        whole = _opened_whole(mask, spacing, radius)
        got = open_and_regrow(mask, spacing, radius)
        assert got.dtype == whole.dtype and np.array_equal(got, whole), (i, shape, spacing, radius)


@pytest.mark.parametrize("gap", range(1, 12))
def test_the_vessel_opening_regrows_into_a_neighbour_across_a_gap_as_the_whole_array_does(gap):
    """A thick body and a speck *gap* voxels beside it: the whole-array regrowth reaches voxels of the speck that lie
    within one ball of the body's opened part, so the groups must hold both while they are that close (three radii)."""
    shape, sp, radius = (30, 30, 60), np.array([0.5, 0.5, 0.5]), 3.0  # the ball is 6 voxels wide each way
    zz, yy, xx = np.meshgrid(*(np.arange(n) for n in shape), indexing="ij")
    body = (zz - 15) ** 2 + (yy - 15) ** 2 + (xx - 20) ** 2 <= 9 ** 2
    mask = body | ((abs(zz - 15) <= 1) & (abs(yy - 15) <= 1) & (xx >= 30 + gap) & (xx <= 31 + gap))
    whole = _opened_whole(mask, sp, radius)
    got = open_and_regrow(mask, sp, radius)
    assert got.dtype == whole.dtype and np.array_equal(got, whole)


def _dark_seeds_whole(strong, dark, keep_out, body, sp, vessel_radius_mm, skin_margin_mm):
    """The dark step's seeds computed over the whole grid (main before 103c74c, without its CPU changes)."""
    sp = np.asarray(sp, float)
    min_vox = OUTLINE_MIN_CORE_ML / (float(np.prod(sp)) / 1000.0)
    cand = _opened_whole(strong, sp, vessel_radius_mm) if vessel_radius_mm > 0 else strong.copy()
    labels, n = ndimage.label(cand, structure=FULL26)
    seeds = np.zeros(strong.shape, bool)
    near = ndimage.binary_dilation(keep_out, structure=FULL26)
    sizes = np.bincount(labels.ravel(), minlength=n + 1)
    n_dark = np.bincount(labels[dark & cand], minlength=n + 1)
    n_near = np.bincount(labels[near & cand], minlength=n + 1)
    pad = np.ceil(skin_margin_mm / sp).astype(int) + 2
    found = 0
    for lab, sl in enumerate(ndimage.find_objects(labels), start=1):
        if sl is None or sizes[lab] < min_vox or n_near[lab] or n_dark[lab] < DARK_MIN_SHARE * sizes[lab]:
            continue
        bx = tuple(slice(max(s.start - p, 0), min(s.stop + p, m)) for s, p, m in zip(sl, pad, strong.shape))
        comp = labels[bx] == lab
        if elongation(comp, sp) > DARK_MAX_ELONGATION:
            continue
        if skin_margin_mm > 0 and drop_skin_components(comp.copy(), body[bx], sp, skin_margin_mm):
            continue
        seeds[bx] |= comp
        found += 1
    return seeds, found


def test_the_dark_seeds_in_the_strong_voxels_box_are_the_whole_grid_seeds():
    rng = np.random.default_rng(7)
    kept = 0
    for i in range(120):
        shape = tuple(int(v) for v in rng.integers(12, 48, 3))
        sp = rng.choice([0.6, 1.0, 1.5, 2.5], 3)
        strong = _blobs(rng, shape, dense=i % 3 == 0)
        dark = rng.random(shape) < rng.uniform(0.2, 1.0)
        keep_out = _blobs(rng, shape) if i % 2 else np.zeros(shape, bool)
        body = ~_blobs(rng, shape, dense=True) if i % 5 else np.ones(shape, bool)
        vessel, skin = float(rng.choice([0.0, 1.0, 2.0])), float(rng.choice([0.0, 3.0, 8.0]))
        want = _dark_seeds_whole(strong, dark, keep_out, body, sp, vessel, skin)
        made = []
        got = dark_seeds(strong, dark, keep_out, lambda: made.append(1) or body, sp, vessel, skin)
        assert got[1] == want[1] and np.array_equal(got[0], want[0]), i
        assert len(made) <= 1  # the body is made once at most
        kept += got[1]
    assert kept > 10  # the comparison saw seeds, not only empty results


def _band_whole(roi, sp, band_mm):
    """``band_around`` with the blocks' distance copied onto every voxel as float64 (before this change)."""
    f = np.maximum(1, np.round(BAND_GRID_MM / sp)).astype(int)
    shape = np.asarray(roi.shape)
    padded = -(-shape // f) * f
    grid = np.zeros(tuple(padded), bool)
    grid[tuple(slice(0, n) for n in shape)] = roi
    blocks = grid.reshape(padded[0] // f[0], f[0], padded[1] // f[1], f[1], padded[2] // f[2], f[2]).any(axis=(1, 3, 5))
    if not blocks.any():
        return np.zeros(roi.shape, bool), np.zeros(roi.shape, bool)
    dist = ndimage.distance_transform_edt(~blocks, sampling=sp * f)
    step = float(np.max(sp * f))
    full = dist[np.ix_(np.arange(shape[0]) // f[0], np.arange(shape[1]) // f[1], np.arange(shape[2]) // f[2])]
    wide = (full <= band_mm) | roi
    return wide, wide & ~roi & (full > band_mm - step)


def test_the_band_beside_the_region_compared_per_block_is_the_per_voxel_band():
    rng = np.random.default_rng(3)
    for i in range(60):
        shape = tuple(int(v) for v in rng.integers(5, 60, 3))
        sp = rng.choice([0.5, 0.8, 1.0, 2.0, 3.0], 3)
        roi = _blobs(rng, shape, dense=True) if i % 9 else np.zeros(shape, bool)
        band = float(rng.choice([3.0, 10.0, 20.0]))
        want, got = _band_whole(roi, sp, band), band_around(roi, sp, band)
        for a, b in zip(got, want):
            assert a.dtype == b.dtype and np.array_equal(a, b), i
