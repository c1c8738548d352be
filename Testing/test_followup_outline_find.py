"""Issue 31, fu21 (docs/decisions/followup-outline-find-issue31.md): find and match with ``ftv-outline``, measure
each matched lesion's volume from its voxels in the plain FTV mask (``MeasureSettings(ftv_seeds=True)``)."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from BreastTumorSegLib.followup import FOLLOWUP_MODEL, OUTLINE_FIND
from BreastTumorSegLib.followup.match import Track
from BreastTumorSegLib.followup.measure import MeasureSettings, whole_tracks
from BreastTumorSegLib.followup.run import follow, segment_visits
from BreastTumorSegLib.training.phantom.series import make_visit_series

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import bench_followup  # noqa: E402

FTV_MEASURE = MeasureSettings(ftv_seeds=True)


def test_off_by_default_the_follow_up_segments_with_ftv():
    assert OUTLINE_FIND is False and FOLLOWUP_MODEL == "ftv"
    assert MeasureSettings().ftv_seeds is False and MeasureSettings().ftv_diameters is False


def test_a_track_without_ftv_voxels_at_one_visit_is_measured_whole_at_every_visit():
    """het 7122 (development): a lesion outlined at the baseline holds no FTV voxel; grown from its FTV voxels at
    visit 2 (0.06 mL) and from its whole outline at the baseline (0.57 mL) it read -90 % for a tumor that shrank
    42 %: such a track is measured from its whole lesions at every visit."""

    class V:
        def __init__(self, comp):
            self.components = sitk.GetImageFromArray(comp.astype(np.int32))

    class F:
        def __init__(self, mask):
            self.mask = sitk.GetImageFromArray(mask.astype(np.uint8))

    comp0, comp1 = np.zeros((4, 4, 4), int), np.zeros((4, 4, 4), int)
    comp0[0, 0, :2], comp0[3, 3, :2] = 1, 2
    comp1[0, 0, :2], comp1[3, 3, :2] = 1, 2
    ftv0, ftv1 = np.zeros((4, 4, 4), bool), np.zeros((4, 4, 4), bool)
    ftv0[0, 0, 0] = ftv1[0, 0, 0] = True  # track 1 has FTV voxels at both visits
    ftv1[3, 3, 0] = True  # track 2 only at visit 2
    tracks = [Track(1, 0, {0: [1], 1: [1]}, centroid=np.zeros(3)), Track(2, 0, {0: [2], 1: [2]}, centroid=np.zeros(3))]
    assert whole_tracks(tracks, [V(comp0), V(comp1)], [F(ftv0), F(ftv1)]) == frozenset({2})


@pytest.fixture(scope="module")
def ellipse_7120():
    """Ellipse development series 7120 as bench_followup makes it (index 0: two visits, no new lesion): one tumor
    shrinking to a third of its volume by visit 2, whose longest diameter falls 20-30 % (truth SD)."""
    series = make_visit_series("ellipse", 7120, n_visits=2, new_lesion_at=None)
    exams = [v.exam for v in series.visits]
    seg = segment_visits(exams, dates=series.dates, model="ftv-outline", register=False, device="cpu")
    return series, seg


def test_found_with_ftv_outline_measured_in_ftv_the_category_and_volume_change_are_right(ellipse_7120):
    """With the switch's settings the tumor is matched, the visit reads SD as the truth does (with the follow-up's
    default model ``ftv`` it read PR on development: /work/runs/het20/fu_dev_ftv.json), and the volume change is
    within 10 points of the truth's."""
    series, seg = ellipse_7120
    res = follow(seg, measure=FTV_MEASURE)
    ev = bench_followup.evaluate(series, res)
    assert ev["decisions"] and all(d["correct"] for d in ev["decisions"])
    truth = bench_followup.truth_recist(series)
    assert truth[1] == "SD" and res.table["exams"][1]["recist"] == truth[1]
    assert ev["volume_errors_pp"] and max(ev["volume_errors_pp"]) <= 10.0
    assert res.settings["measure"]["ftv_seeds"] is True


@pytest.fixture(scope="module")
def ellipse_7126():
    """Ellipse development series 7126 as bench_followup makes it (index 6: two visits, no new lesion): one stable
    tumor."""
    series = make_visit_series("ellipse", 7126, n_visits=2, new_lesion_at=None)
    exams = [v.exam for v in series.visits]
    seg = segment_visits(exams, dates=series.dates, model="ftv-outline", register=False, device="cpu")
    return series, seg


def test_the_volume_change_of_an_outlined_tumor_is_measured_from_its_ftv_voxels(ellipse_7126):
    """The stable tumor outlined by ``ftv-outline``: grown from its whole outline the change table's volume change
    is more than 10 points from the truth's (12.1 on development); grown from its FTV voxels (the switch) it is
    within 10, the match and the category (SD) right either way."""
    series, seg = ellipse_7126
    truth = bench_followup.truth_recist(series)
    plain = bench_followup.evaluate(series, follow(seg))
    res = follow(seg, measure=FTV_MEASURE)
    ev = bench_followup.evaluate(series, res)
    assert len(ev["volume_errors_pp"]) == len(plain["volume_errors_pp"]) == 1
    assert plain["volume_errors_pp"][0] > 10.0 >= ev["volume_errors_pp"][0]
    assert all(d["correct"] for d in ev["decisions"]) and res.table["exams"][1]["recist"] == truth[1] == "SD"
