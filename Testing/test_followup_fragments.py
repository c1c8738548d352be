"""Follow-up (issue 31) when the segmentation cuts one tumor into pieces (followup/fragments.py): the
pieces joined by enhancing tissue are one lesion at every visit, so one track from the baseline,
matched at the later visit, with the whole tumor's longest diameter; pieces of a tumor that broke up
(tissue between them no longer enhances) stay separate lesions of one track."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import SimpleITK as sitk

from BreastTumorSegLib.followup.evidence import EvidenceSettings
from BreastTumorSegLib.followup.fragments import FragmentSettings, fragment_groups, merge_fragments
from BreastTumorSegLib.followup.response import recist_category
from BreastTumorSegLib.followup.run import follow_segmented, run_followup
from BreastTumorSegLib.training.phantom.series import make_visit_series

SMALL = dict(size=(128, 96, 40), spacing=(2.4, 2.4, 4.0))  # as test_followup: seconds per visit
MERGE = FragmentSettings(enabled=True)  # opt-in (fragments.py: FragmentSettings)


@pytest.fixture(scope="module")
def shrunk():
    """The held-out ellipse family (seed 5000: one 2.5 mL tumor), shrunk to 15 % of its volume at visit 2;
    the remnant keeps its own voxels' signal (``concentric=False``, the generator before Dec 6: with the
    default the remnant's segmented diameter on this coarse grid is 0.2 mm above the PR threshold, as in
    test_followup's CLI test)."""
    series = make_visit_series("ellipse", 5000, n_visits=2, fates=["shrink"], fraction=0.15, concentric=False,
                               **SMALL)
    res = run_followup([v.exam for v in series.visits], dates=series.dates, model="ftv", register=False)
    assert [len(v.lesions) for v in res.visits] == [1, 1]
    return series, res


def _cut_in_pieces(result):
    """*result* with its tumor cut in two by a one-voxel slab across x through its centre (tissue the
    segmentation left out: it enhances like the rest of the tumor)."""
    lab = sitk.GetArrayFromImage(result.label)
    xs = np.nonzero(lab.any(axis=(0, 1)))[0]
    cut = lab.copy()
    cut[:, :, int(xs.mean())] = 0
    out = copy.copy(result)
    out.label = sitk.GetImageFromArray(cut)
    out.label.CopyInformation(result.label)
    return out


def test_a_tumor_cut_in_pieces_at_the_baseline_is_one_track_with_the_right_recist(shrunk):
    series, res = shrunk
    results = [v.result for v in res.visits]
    split = [_cut_in_pieces(results[0]), results[1]]
    regs = [v.registration for v in res.visits]
    exams = [v.exam for v in series.visits]
    visits, tracks, table, _, _ = follow_segmented(exams, series.dates, split, regs, fragments=MERGE)
    assert len(visits[0].lesions) == 1 and "merged_fragments" in visits[0].lesions[0].flags
    # the merged lesion's longest diameter is the whole tumor's (as the truth measures it)
    assert abs(visits[0].lesions[0].longest_diameter_mm - res.visits[0].lesions[0].longest_diameter_mm) < 0.5
    assert [(t.first_visit, sorted(t.members)) for t in tracks] == [(0, [0, 1])]  # one track, matched
    truth = [t[0]["longest_diameter_mm"] for t in series.truth()["visits"]]
    want, _ = recist_category(truth, 1, False, True)
    assert want == "PR" and table["exams"][1]["recist"] == want
    assert table["exams"][1]["disappeared_tracks"] == [] and table["targets"] == [1]
    # without the merge (and without the later visit as evidence, followup/evidence.py) the pieces are two
    # baseline tracks: one of them "disappears" at visit 2
    _, tracks_off, table_off, _, _ = follow_segmented(exams, series.dates, split, regs,
                                                      fragments=FragmentSettings(),  # the default: off
                                                      evidence=EvidenceSettings(split=False, join=False))
    assert [t.first_visit for t in tracks_off] == [0, 0] and table_off["exams"][1]["disappeared_tracks"]
    # with the defaults the later visit's one lesion over both pieces joins them (the tumor enhances between)
    visits_d, tracks_d, table_d, _, _ = follow_segmented(exams, series.dates, split, regs)
    assert [(t.first_visit, sorted(t.members)) for t in tracks_d] == [(0, [0, 1])]
    assert "joined_by_later_visit" in visits_d[0].lesions[0].flags and not table_d["exams"][1]["disappeared_tracks"]


def test_pieces_join_through_enhancing_tissue_only():
    spacing = (2.0, 1.0, 1.0)
    comp = np.zeros((8, 30, 60), np.int32)
    comp[2:6, 10:20, 5:15] = 1
    comp[2:6, 10:20, 18:28] = 2  # 3 voxels (3 mm) from piece 1, tumor tissue between them
    comp[2:6, 10:20, 33:43] = 3  # 5 mm from piece 2: the tumor broke up, nothing enhances between them
    comp[2:6, 10:20, 46:48] = 4  # a small piece 3 mm from piece 3
    enhancing = np.zeros(comp.shape, bool)
    enhancing[2:6, 10:20, 5:28] = True
    enhancing[2:6, 10:20, 33:48] = True
    groups = fragment_groups(comp, None, enhancing, spacing, gap_mm=3.0)
    assert groups[1] == groups[2] != groups[3] == groups[4]
    assert groups[1] == 1  # the largest group first
    assert list(fragment_groups(comp, None, enhancing, spacing, gap_mm=0.0)[1:]) == [1, 2, 3, 4]
    outline = np.zeros(comp.shape, bool)
    outline[2:6, 10:20, 5:48] = True  # an outline across everything joins everything
    assert set(fragment_groups(comp, outline, None, spacing, gap_mm=0.0)[1:]) == {1}
    img = sitk.GetImageFromArray(comp.astype(np.uint32))
    img.SetSpacing(spacing[::-1])
    merged, n = merge_fragments(img, None, enhancing, MERGE)
    assert n == 2 and sorted(np.unique(sitk.GetArrayViewFromImage(merged))) == [0, 1, 2]
    assert merge_fragments(img, None, enhancing, FragmentSettings()) == (img, 0)
