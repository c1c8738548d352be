"""Follow-up (issue 31) when the segmentation is not the same at every visit: a tumor the baseline's
segmentation missed is looked for there (followup/lookback.py), not called new; a tumor segmented
whole at one visit and only its core at another is measured by one outline rule at every visit
(followup/measure.py); the visits of one patient share one fat-suppression decision."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from BreastTumorSegLib.followup.lookback import LOOKBACK_FLAG, look_back
from BreastTumorSegLib.followup.measure import MeasureSettings
from BreastTumorSegLib.followup.prior import PriorSettings
from BreastTumorSegLib.followup.run import follow_segmented, run_followup, series_fat_suppression
from BreastTumorSegLib.followup.second_look import SecondLookSettings
from BreastTumorSegLib.training.phantom.series import make_visit_series

SMALL = dict(size=(128, 96, 40), spacing=(2.4, 2.4, 4.0))  # as test_followup: seconds per visit


@pytest.fixture(scope="module")
def stable():
    """The held-out ellipse family (seed 5000: one 2.5 mL tumor), the tumor stable at visit 2."""
    series = make_visit_series("ellipse", 5000, n_visits=2, fates=["stable"], **SMALL)
    res = run_followup([v.exam for v in series.visits], dates=series.dates, model="ftv", register=False)
    assert len(res.tracks) == 1 and res.tracks[0].first_visit == 0 and 1 in res.tracks[0].members
    return series, res


def _again(series, res, results, **kw):
    return follow_segmented([v.exam for v in series.visits], series.dates, results,
                            [v.registration for v in res.visits], **kw)


def _with_label(result, keep: np.ndarray):
    out = copy.copy(result)
    lab = sitk.GetImageFromArray(keep.astype(np.uint8))
    lab.CopyInformation(result.label)
    out.label = lab
    return out


def test_look_back_finds_a_tumor_the_baseline_segmentation_missed(stable):
    series, res = stable
    results = [v.result for v in res.visits]
    missed = _with_label(results[0], np.zeros(sitk.GetArrayViewFromImage(results[0].label).shape, bool))
    visits, tracks, table, _, _ = _again(series, res, [missed, results[1]])
    assert len(tracks) == 1 and tracks[0].first_visit == 0  # matched from the baseline on, not new
    les = visits[0].lesions[tracks[0].members[0][0] - 1]
    assert LOOKBACK_FLAG in les.flags
    truth = sitk.GetArrayViewFromImage(series.visits[0].tumor_labels) > 0
    found = sitk.GetArrayViewFromImage(visits[0].components) > 0
    assert (found & truth).sum() / truth.sum() > 0.5
    assert table["exams"][1]["new_tracks"] == [] and table["exams"][1]["recist"] == "SD"
    assert table["targets"] == []  # not measured when the baseline was read: a non-target lesion
    # without the look-back (nor the second look, which looks back too) the same tumor is a new lesion at visit 2,
    # and 10 mm or more: progression
    _, tracks_off, table_off, _, _ = _again(series, res, [missed, results[1]], prior=PriorSettings(look_back=False),
                                            second_look=SecondLookSettings(enabled=False))
    assert [t.first_visit for t in tracks_off] == [1] and table_off["exams"][1]["recist"] == "PD"
    # the second look alone (on by default since fu14) finds it at the baseline too: matched from the baseline on
    _, tracks_look, _, _, _ = _again(series, res, [missed, results[1]], prior=PriorSettings(look_back=False))
    assert [t.first_visit for t in tracks_look] == [0]


def test_look_back_leaves_a_truly_new_lesion_new():
    """Enhancing tissue at the baseline where the later lesion is: added; none: nothing added."""
    spacing = (2.0, 1.0, 1.0)
    comp0 = np.zeros((12, 40, 40), np.int32)
    comp0[4:8, 30:36, 30:36] = 1  # a lesion the baseline segmented
    enhancing = comp0 > 0
    enhancing[4:8, 5:11, 5:11] = True  # tissue the baseline segmentation left out
    enhancing[5, 20, 5] = True  # one voxel: noise
    later_there = np.zeros(comp0.shape, bool)
    later_there[4:8, 6:10, 6:10] = True
    later_new = np.zeros(comp0.shape, bool)
    later_new[4:8, 18:22, 18:22] = True
    labels, added = look_back([later_there, later_new], comp0, enhancing, spacing, PriorSettings())
    assert added == 1
    assert (labels == 2).sum() == 4 * 6 * 6 and labels[6, 8, 8] == 2
    assert (labels == 1).sum() == 4 * 6 * 6 and labels[5, 20, 5] == 0 and not labels[:, 18:22, 18:22].any()


def test_a_tumor_segmented_whole_then_only_its_core_is_measured_the_same(stable):
    series, res = stable
    results = [v.result for v in res.visits]
    whole = sitk.GetArrayFromImage(results[1].label) > 0
    core = ndimage.binary_erosion(whole, np.ones((1, 3, 3), bool))  # one voxel (2.4 mm) less all round in plane
    assert 0.1 < core.sum() / whole.sum() < 0.7
    swung = [results[0], _with_label(results[1], core)]

    def change(results, **kw):
        row = [r for r in _again(series, res, results, **kw)[2]["lesions"] if r["visit"] == 2][0]
        return np.array([row["volume_ml_percent_from_baseline"], row["longest_diameter_mm_percent_from_baseline"]])

    off = MeasureSettings(enabled=False)
    swing_off = change(swung, measure=off) - change(results, measure=off)
    assert swing_off[0] < -40  # the segmentation's swing read as a response
    swing = change(swung) - change(results)  # one outline rule at both visits: the volume
    assert abs(swing[0]) < 10
    assert swing[1] < -20  # the diameters stay the segmented lesions' by default (measure.py) ...
    both = MeasureSettings(diameters=True)
    swing = change(swung, measure=both) - change(results, measure=both)
    assert abs(swing[0]) < 10 and abs(swing[1]) < 10  # ... and follow the outline on request


def test_one_fat_suppression_decision_per_patient():
    assert series_fat_suppression([False, False, False]) is None  # they agree: nothing to change
    assert series_fat_suppression([None, None]) is None  # not an FTV-rule model
    assert series_fat_suppression([True, False]) is False  # a tie keeps every enhancing voxel
    assert series_fat_suppression([True, False, True]) is True
    assert series_fat_suppression([False, True, False]) is False


def test_look_back_needs_enhancement_where_the_later_lesion_is():
    """Background enhancement beside a new lesion's place (within the 5 mm search) but not on it does not
    make the lesion old: less than ``lookback_min_cover`` (30 %) of its place enhances at the baseline."""
    spacing = (2.0, 1.0, 1.0)
    comp0 = np.zeros((12, 40, 40), np.int32)
    enhancing = np.zeros(comp0.shape, bool)
    enhancing[4:8, 10:30, 14:17] = True  # a band of enhancing tissue 2 mm beside the later lesion
    later = np.zeros(comp0.shape, bool)
    later[4:8, 16:22, 19:25] = True
    labels, added = look_back([later], comp0, enhancing, spacing, PriorSettings())
    assert added == 0 and not labels.any()
    # the old rule (any enhancing tissue within 5 mm): the band became a baseline lesion, the new lesion old
    labels, added = look_back([later], comp0, enhancing, spacing, PriorSettings(lookback_min_cover=0.0))
    assert added == 1 and labels[6, 20, 15] == 1
    # a tumor the baseline left out, where the later lesion is: found (and the band beside it with it)
    enhancing[4:8, 15:23, 18:26] = True
    labels, added = look_back([later], comp0, enhancing, spacing, PriorSettings())
    assert added == 2 and labels[6, 19, 22] > 0 and (labels[later] > 0).all()
