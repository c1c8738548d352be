"""Follow-up (issue 31, fu16): a baseline with no lesion at all read again (followup/empty_baseline.py).

A tumor darker before contrast than the FTV rule's background floor (every phase of it scaled down: its
enhancement, PE, unchanged) is not segmented at any visit; the plain follow-up then reads "complete response"
at every later visit. With the step on, the baseline is read again with the relaxed rule (probability or the
FTV rule's PE/SER thresholds without the pre-contrast floor, inside the breast region): the tumor is found on
its own place, followed to visit 2 (shrunk) and the visit reads stable disease, as its truth; a tumor that is
gone at visit 2 stays gone (CR); a baseline the segmentation found a lesion in is left alone."""
from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from BreastTumorSegLib.followup.empty_baseline import EMPTY_BASELINE_FLAG, EmptyBaselineSettings, largest
from BreastTumorSegLib.followup.run import follow, segment_visits
from BreastTumorSegLib.training.phantom.series import make_visit_series

SMALL = dict(size=(128, 96, 40), spacing=(2.4, 2.4, 4.0))  # as test_followup: seconds per visit
SEED = 6000  # a development seed
ON = EmptyBaselineSettings(enabled=True)


def _darkened(exam, tumor: np.ndarray, factor: float):
    """*exam* with every phase of the *tumor* voxels scaled by *factor* (darker before contrast, same PE)."""
    out = []
    for p in exam.phases:
        a = sitk.GetArrayFromImage(p).astype(np.float32)
        a[tumor] *= np.float32(factor)
        img = sitk.GetImageFromArray(a)
        img.CopyInformation(p)
        out.append(img)
    return exam.with_phases(out)


def _dark_series(fate: str):
    series = make_visit_series("ellipse", SEED, n_visits=2, fates=[fate], fraction=0.5, **SMALL)
    tumors = [sitk.GetArrayFromImage(v.tumor_labels) > 0 for v in series.visits]
    exams = [_darkened(v.exam, t, 0.25) for v, t in zip(series.visits, tumors)]
    return series, tumors, segment_visits(exams, dates=series.dates, model="ftv", register=False)


@pytest.fixture(scope="module")
def shrinking():
    return _dark_series("shrink")


def test_largest_keeps_the_largest_labels_largest_first():
    lab = np.zeros((4, 10, 10), np.int32)
    lab[0, :2, :2] = 1  # 4 voxels
    lab[1, :5, :5] = 2  # 25
    lab[2, :3, :3] = 3  # 9
    out = largest(lab, 2)
    assert sorted(np.unique(out)) == [0, 1, 2] and (out == 1).sum() == 25 and (out == 2).sum() == 9


def test_an_unsegmented_dark_tumor_is_found_at_the_baseline_and_followed(shrinking):
    series, tumors, seg = shrinking
    off = follow(seg)
    assert not sitk.GetArrayViewFromImage(off.visits[0].components).any()  # the premise: nothing segmented
    assert off.table["exams"][1]["recist"] == "CR"  # ... and the plain follow-up reads a complete response
    on = follow(seg, empty_baseline=ON)
    base = [les for les in on.visits[0].lesions if EMPTY_BASELINE_FLAG in les.flags]
    assert base and on.settings["empty_baseline"]["enabled"] is True
    comp0 = sitk.GetArrayViewFromImage(on.visits[0].components) > 0
    assert (comp0 & tumors[0]).sum() > 0.5 * tumors[0].sum() and (comp0 & ~tumors[0]).sum() < 0.5 * tumors[0].sum()
    comp1 = sitk.GetArrayViewFromImage(on.visits[1].components) > 0
    assert (comp1 & tumors[1]).sum() > 0.5 * tumors[1].sum()
    track = [t for t in on.tracks if t.first_visit == 0 and t.members.get(1)]
    assert track and on.table["targets"] and on.table["exams"][1]["recist"] == "SD"  # truth: shrunk to 50 %, SD


def test_a_dark_tumor_that_is_gone_stays_gone():
    series, tumors, seg = _dark_series("disappear")
    on = follow(seg, empty_baseline=ON)
    assert any(EMPTY_BASELINE_FLAG in les.flags for les in on.visits[0].lesions)
    assert not sitk.GetArrayViewFromImage(on.visits[1].components).any()
    assert on.table["exams"][1]["recist"] == "CR"


def test_a_baseline_with_a_lesion_is_left_alone():
    series = make_visit_series("ellipse", SEED, n_visits=2, fates=["shrink"], fraction=0.5, **SMALL)
    seg = segment_visits([v.exam for v in series.visits], dates=series.dates, model="ftv", register=False)
    off, on = follow(seg), follow(seg, empty_baseline=ON)
    assert off.visits[0].lesions and off.table["exams"] == on.table["exams"]
    assert not any(EMPTY_BASELINE_FLAG in les.flags for v in on.visits for les in v.lesions)
