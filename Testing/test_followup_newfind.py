"""Follow-up (issue 31): a new lesion the later visit's segmentation misses is found where that visit
enhances and no earlier visit did (followup/newfind.py); a visit without one gets nothing added."""
from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from BreastTumorSegLib.followup.guided import GuidedSettings
from BreastTumorSegLib.followup.newfind import NEW_ENHANCEMENT_FLAG, NewEnhancementSettings
from BreastTumorSegLib.training.phantom.series import NEW_LABEL, make_visit_series
from test_followup_guided import _followup, _weakened  # the same scaled-enhancement helper and call

SMALL = dict(size=(128, 96, 40), spacing=(2.4, 2.4, 4.0))  # as test_followup: seconds per visit
SEED = 5000
ON = NewEnhancementSettings(enabled=True)


@pytest.fixture(scope="module")
def weak_new_lesion():
    """A stable tumor, and at visit 2 a new 8 mm-radius lesion enhancing only 50 % (the FTV rule's 70 %
    misses it: the visit's own segmentation has no new lesion)."""
    series = make_visit_series("ellipse", SEED, n_visits=2, fates=["stable"], new_lesion_at=1,
                               new_lesion_radius_mm=8.0, **SMALL)
    new = sitk.GetArrayFromImage(series.visits[1].tumor_labels) == NEW_LABEL
    assert new.sum() > 50
    exams = [series.visits[0].exam, _weakened(series.visits[1].exam, new, 50.0)]
    return series, exams, new


def test_a_weak_new_lesion_is_found_where_no_earlier_visit_enhanced(weak_new_lesion):
    series, exams, new = weak_new_lesion
    res = _followup(exams, series)  # the default: on
    tumor = sitk.GetArrayViewFromImage(series.visits[1].tumor_labels) == 1
    comp = sitk.GetArrayViewFromImage(res.visits[1].components)
    assert not ((sitk.GetArrayViewFromImage(res.visits[1].result.label) > 0) & new).any()  # segmentation missed it
    found = [les for les in res.visits[1].lesions if NEW_ENHANCEMENT_FLAG in les.flags]
    assert len(found) == 1
    mask = comp == found[0].label
    assert (mask & new).sum() / new.sum() > 0.3 and (mask & ~new).sum() < 0.5 * new.sum()  # the lesion, its core
    assert not (mask & tumor).any()
    starts = sorted(t.first_visit for t in res.tracks)
    assert starts == [0, 1]  # the stable tumor's track from the baseline, the new lesion's from visit 2
    assert res.table["exams"][1]["new_tracks"] and res.table["exams"][1]["recist"] == "PD"
    assert res.settings["new_enhancement"]["enabled"] is True
    # off, the same visit reads as stable disease: the missed new lesion leaves no trace
    off = _followup(exams, series, newfind=NewEnhancementSettings(enabled=False))
    assert [t.first_visit for t in off.tracks] == [0] and off.table["exams"][1]["recist"] == "SD"
    assert off.settings["new_enhancement"]["enabled"] is False


def test_the_search_reads_the_guided_rule_and_is_off_with_it(weak_new_lesion):
    series, exams, _ = weak_new_lesion
    res = _followup(exams, series, newfind=ON, guided=GuidedSettings(enabled=False))
    assert res.settings["new_enhancement"]["enabled"] is False
    assert not any(NEW_ENHANCEMENT_FLAG in les.flags for v in res.visits for les in v.lesions)


def test_nothing_is_new_where_every_visit_enhances_alike():
    """A stable tumor and a shrinking one, no new lesion: everything that enhances at visit 2 enhanced at the
    baseline, so nothing is added (no false new lesion, no false PD); a gone tumor adds nothing either."""
    for fates in (["stable"], ["shrink"], ["disappear"]):
        series = make_visit_series("ellipse", SEED, n_visits=2, fates=fates, fraction=0.15, **SMALL)
        res = _followup([v.exam for v in series.visits], series, newfind=ON)
        assert not any(NEW_ENHANCEMENT_FLAG in les.flags for les in res.visits[1].lesions), fates
        assert res.table["exams"][1]["new_tracks"] == []
        # (a shrink to 15 % reads SD on this coarse grid, test_followup: the remnant's diameter; never PD)
        assert res.table["exams"][1]["recist"] == {"stable": "SD", "shrink": "SD", "disappear": "CR"}[fates[0]]


def test_a_looked_back_baseline_lesion_is_a_target_only_when_asked():
    """Two baseline lesions of 20 and 14 mm; the second was found by the look-back. Visit 2: the first is
    unchanged, the second grew to 24 mm. As a non-target (default) the target sum is unchanged (SD); as a
    target (``lookback_targets``) the sum grows 34 -> 44 mm, +29 % and +10 mm (PD, as the truth of
    bench_followup, which counts every true baseline tumor >= 10 mm, reads it)."""
    from BreastTumorSegLib.core.results import Lesion
    from BreastTumorSegLib.followup.lookback import LOOKBACK_FLAG
    from BreastTumorSegLib.followup.match import Track, VisitLesions
    from BreastTumorSegLib.followup.response import ResponseSettings, change_table

    def visit(d1, d2):
        les = [Lesion(1, 1.0, d1, (10.0, 0.0, 0.0), "left", 100, 1.0),
               Lesion(2, 0.5, d2, (40.0, 0.0, 0.0), "left", 50, 1.0, flags=[LOOKBACK_FLAG] if d2 == 14 else [])]
        return VisitLesions(les, np.zeros((2, 2, 2), np.int32), [np.asarray(x.centroid_lps) for x in les])

    visits = [visit(20.0, 14.0), visit(20.0, 24.0)]
    tracks = [Track(1, 0, {0: [1], 1: [1]}, centroid=np.zeros(3)), Track(2, 0, {0: [2], 1: [2]}, centroid=np.zeros(3))]
    ftv = [{1: 1.0, 2: 0.5}, {1: 1.0, 2: 0.5}]
    default = change_table(tracks, visits, ftv, [None, None])
    assert default["targets"] == [1] and default["exams"][1]["recist"] == "SD"
    asked = change_table(tracks, visits, ftv, [None, None], ResponseSettings(lookback_targets=True))
    assert asked["targets"] == [1, 2] and asked["exams"][1]["recist"] == "PD"


def _enhancing_at(exam, mask: np.ndarray, pe: float):
    """*exam* with the *mask* voxels enhancing *pe* % in every post-contrast phase."""
    pre = sitk.GetArrayFromImage(exam.pre).astype(np.float32)
    out = [exam.pre]
    for p in exam.phases[1:]:
        arr = sitk.GetArrayFromImage(p).astype(np.float32)
        arr[mask] = pre[mask] * np.float32(1 + pe / 100)
        img = sitk.GetImageFromArray(arr)
        img.CopyInformation(exam.pre)
        out.append(img)
    return exam.with_phases(out)


def test_a_segmented_lesion_where_the_baseline_enhanced_is_no_unequivocal_new_lesion():
    """The new lesion of visit 2 (segmented there) already enhances 50 % at the baseline (below the FTV rule:
    not segmented there; the look-back and the second look off so that the baseline does not take it): with
    ``seen_before_share``
    it is listed as a new track but makes no PD; without it, PD. A new lesion where the baseline did not
    enhance stays PD with it."""
    from BreastTumorSegLib.followup.newfind import SEEN_BEFORE_FLAG
    from BreastTumorSegLib.followup.prior import PriorSettings
    from BreastTumorSegLib.followup.second_look import SecondLookSettings

    series = make_visit_series("ellipse", SEED, n_visits=2, fates=["stable"], new_lesion_at=1, **SMALL)
    base = series.visits[0].exam
    lesion = sitk.Resample(series.visits[1].tumor_labels == NEW_LABEL, base.reference, series.to_baseline[1],
                           sitk.sitkNearestNeighbor, 0)
    mask = sitk.GetArrayFromImage(sitk.BinaryDilate(lesion, [1, 1, 1])) > 0  # its place, one voxel wider
    assert mask.sum() > 50
    prior, on = PriorSettings(look_back=False), NewEnhancementSettings(seen_before_share=0.5)
    seen = [_enhancing_at(base, mask, 50.0), series.visits[1].exam]
    no_look = SecondLookSettings(enabled=False)
    res_on = _followup(seen, series, prior=prior, newfind=on, second_look=no_look)
    new = res_on.table["exams"][1]["new_tracks"]
    assert len(new) == 1 and res_on.table["exams"][1]["recist"] != "PD"
    track = next(t for t in res_on.tracks if t.track_id == new[0])
    assert all(SEEN_BEFORE_FLAG in res_on.visits[1].lesions[lab - 1].flags for lab in track.members[1])
    assert _followup(seen, series, prior=prior, second_look=no_look).table["exams"][1]["recist"] == "PD"
    fresh = _followup([base, series.visits[1].exam], series, newfind=on)
    assert fresh.table["exams"][1]["recist"] == "PD"
