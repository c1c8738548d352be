"""Follow-up (issue 31, fu18): a baseline lesion still missing at a later visit is looked for at its own level
(a share of its own enhancement), below the track-guided search's fixed 40 % (followup/relative.py)."""
from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from BreastTumorSegLib.followup.guided import GUIDED_FLAG, GuidedSettings
from BreastTumorSegLib.followup.relative import RELATIVE_FLAG, lesion_levels
from BreastTumorSegLib.training.phantom.series import make_visit_series
from test_followup_guided import SEED, SMALL, _followup, _weakened  # the same small series, helper and call

RELATIVE = GuidedSettings(relative_share=0.2)


def test_levels_are_a_share_of_each_lesion_s_own_median_with_a_floor():
    labels = np.zeros((4, 4, 4), np.int32)
    labels[0], labels[1] = 1, 2
    pe = np.zeros(labels.shape, np.float32)
    pe[0], pe[1] = 200.0, 50.0
    assert lesion_levels(labels, pe, 0.2, 20.0) == {1: 40.0, 2: 20.0}


@pytest.fixture(scope="module")
def faint_remnant():
    """The baseline tumor enhancing 100 % (segmented: its level 20 %); visit 2: shrunk to 40 % (truth SD) and
    enhancing 30 % (below the FTV rule's 70 % and the guided search's 40 %)."""
    series = make_visit_series("ellipse", SEED, n_visits=2, fates=["shrink"], fraction=0.4, **SMALL)
    base = sitk.GetArrayFromImage(series.visits[0].tumor_labels) > 0
    tumor = sitk.GetArrayFromImage(series.visits[1].tumor_labels) > 0
    return series, [_weakened(series.visits[0].exam, base, 100.0), _weakened(series.visits[1].exam, tumor, 30.0)]


def test_a_faint_remnant_is_found_at_its_lesion_s_own_level_not_called_gone(faint_remnant):
    series, exams = faint_remnant
    off = _followup(exams, series)
    # by default: nothing found at visit 2, the track is empty there and the visit reads CR (truth: SD)
    assert not off.tracks[0].members.get(1) and off.table["exams"][1]["recist"] == "CR"
    assert not [les for les in off.visits[1].lesions if GUIDED_FLAG in les.flags]
    on = _followup(exams, series, guided=RELATIVE)
    found = [les for les in on.visits[1].lesions if RELATIVE_FLAG in les.flags]
    assert found and on.tracks[0].members.get(1) and len(on.tracks) == 1
    truth = sitk.GetArrayViewFromImage(series.visits[1].tumor_labels) > 0
    comp = sitk.GetArrayViewFromImage(on.visits[1].components) > 0
    assert (comp & truth).sum() > 0.3 * truth.sum() and (comp & ~truth).sum() < truth.sum()
    assert on.table["exams"][1]["recist"] == "SD"


def test_a_gone_tumor_leaves_nothing_at_its_own_level():
    series = make_visit_series("ellipse", SEED, n_visits=2, fates=["disappear"], **SMALL)
    on = _followup([v.exam for v in series.visits], series, guided=RELATIVE)
    assert not [les for les in on.visits[1].lesions if RELATIVE_FLAG in les.flags]
    assert not on.tracks[0].members.get(1) and on.table["exams"][1]["recist"] == "CR"
