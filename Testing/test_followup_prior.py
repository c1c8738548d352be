"""The earlier visits as a prior (issue 31, followup/prior.py): a known lesion is looked for where it
was; enhancing tissue the segmentation left out there is its remnant, the pieces in its extent are its
fragments, and only what lies outside every extent is new."""
from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from BreastTumorSegLib.core.results import Lesion
from BreastTumorSegLib.followup.match import MatchSettings, VisitLesions, match_visits
from BreastTumorSegLib.followup.prior import PriorSettings, find_remnants, neighbourhoods, to_visit_grid

SPACING_ZYX = (2.0, 1.0, 1.0)


def _image(arr, kind=sitk.sitkUInt32):
    img = sitk.Cast(sitk.GetImageFromArray(arr), kind)
    img.SetSpacing(SPACING_ZYX[::-1])
    return img


def test_neighbourhood_grows_each_lesion_to_the_nearer_one():
    labels = np.zeros((10, 40, 40), np.int32)
    labels[5, 10, 10] = 1
    labels[5, 10, 20] = 2
    grown = neighbourhoods(labels, SPACING_ZYX, 4.0)
    assert grown[5, 10, 14] == 1 and grown[5, 10, 16] == 2  # split half-way
    assert grown[5, 10, 6] == 1 and grown[5, 10, 5] == 0  # 4 mm, not 5
    assert grown[7, 10, 10] == 1 and grown[8, 10, 10] == 0  # 2 mm slices: 4 mm is two slices
    assert grown[5, 30, 30] == 0


def test_enhancing_remnant_in_a_known_lesions_place_is_added_and_nothing_elsewhere():
    comp = np.zeros((10, 40, 40), np.uint32)
    comp[4:7, 5:10, 5:10] = 1  # the lesion the segmentation kept
    enhancing = np.zeros(comp.shape, np.uint8)
    enhancing[4:7, 5:10, 5:10] = 1
    enhancing[4:6, 5:10, 10:12] = 1  # touching the kept lesion: the segmentation's decision stands
    enhancing[4:7, 20:23, 20:23] = 1  # a remnant of 27 voxels = 0.054 mL inside the known extent
    enhancing[4:6, 30:33, 5:8] = 1  # the same outside every extent: not looked for
    enhancing[5, 25, 25] = 1  # one voxel in the extent: noise
    enhancing[8, 14:24, 30:34] = 1  # 40 voxels one slice thick (a rim where the lesion's edge was)
    extent = np.zeros(comp.shape, np.uint16)
    extent[:, :28, :] = 1
    out, added = find_remnants(_image(comp), _image(enhancing, sitk.sitkUInt8), extent, PriorSettings())
    arr = sitk.GetArrayFromImage(out)
    assert added == 1 and arr.max() == 2
    assert (arr == 2).sum() == 27 and arr[5, 21, 21] == 2
    assert (arr == 1).sum() == 75 and arr[5, 31, 6] == 0 and arr[5, 25, 25] == 0
    assert arr[8, 20, 31] == 0
    assert out.GetSpacing() == (1.0, 1.0, 2.0)


def test_baseline_extent_reaches_a_moved_visit():
    base = _image(np.zeros((10, 40, 40), np.uint8), sitk.sitkUInt8)
    extent = np.zeros((10, 40, 40), np.uint16)
    extent[4:6, 10:14, 10:14] = 3
    shift = sitk.TranslationTransform(3, (5.0, 0.0, 0.0))  # baseline point -> visit point: 5 mm along x
    moved = to_visit_grid(extent, base, base, shift)
    assert set(np.argwhere(moved == 3)[:, 2]) == {15, 16, 17, 18}


def _lesions(arr):
    out = []
    for lab in range(1, arr.max() + 1):
        c = np.argwhere(arr == lab).mean(0)[::-1] * np.asarray(SPACING_ZYX[::-1])
        n = int((arr == lab).sum())
        out.append(Lesion(lab, n / 500, 10.0, tuple(c), "left", n, 1.0))
    return VisitLesions(out, arr, [np.asarray(x.centroid_lps) for x in out])


def test_extent_keeps_far_fragments_and_makes_a_close_lesion_of_a_gone_one_new():
    """Lesion 1 breaks into two pieces far apart inside its extent; lesion 2 is gone and a new lesion
    lies next to where it was (outside its 3 mm extent, but within the distance the assignment allows)."""
    shape = (10, 60, 60)
    base = np.zeros(shape, np.int32)
    base[4:6, 5:35, 5:12] = 1
    base[4:6, 45:50, 45:50] = 2
    visit = np.zeros(shape, np.int32)
    visit[4:6, 6:10, 6:11] = 1  # the two ends of lesion 1
    visit[4:6, 30:34, 6:11] = 2
    visit[4:6, 45:50, 55:59] = 3  # 6 mm beside where lesion 2 was
    settings = MatchSettings(max_distance_mm=15.0, extent_margin_mm=3.0)
    tracks = match_visits([_lesions(base), _lesions(visit)], settings, SPACING_ZYX)
    by_id = {t.track_id: t for t in tracks}
    assert by_id[1].members[1] == [1, 2]
    assert 1 not in by_id[2].members
    assert [t.first_visit for t in tracks] == [0, 0, 1]
    # without the extents, the assignment pairs the new lesion with the gone one (its centroid is near)
    old = {t.track_id: t for t in match_visits([_lesions(base), _lesions(visit)], settings)}
    assert old[2].members.get(1) == [3]
