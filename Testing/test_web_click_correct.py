"""Click-to-correct on the web station (web/click_correct.py): the engine's refine.py applied to the
reader's segment as it is, one click at a time, in the assisted arm only. A phantom with two known
lesions: a "tumor" click adds the missed one, a "not tumor" click on it takes it out again, the
found lesion is never touched. (The clicks through the browser: Testing/test_web_station.py.)"""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import SimpleITK as sitk

from BreastTumorSegLib.evaluation.metrics import dice
from BreastTumorSegLib.training.phantom import make_phantom
from BreastTumorSegLib.web.click_correct import ClickCorrector, offered
from refine_fixtures import deepest_ras  # noqa: E402


@pytest.fixture(scope="module")
def phantom():
    # Seed 3: two mass lesions (0.35 and 6 mL), no motion so the phases are already aligned.
    return make_phantom(3, motion_mm=0)


def test_tumor_then_not_tumor_clicks_on_the_readers_mask(phantom):
    labels = sitk.GetArrayFromImage(phantom.tumor_labels)
    small, big = labels == 1, labels == 2
    mask = sitk.GetImageFromArray(small.astype(np.uint8))  # the reader kept the small lesion only
    mask.CopyInformation(phantom.exam.pre)
    corrector = ClickCorrector(phantom.exam)
    where = deepest_ras(phantom, big)

    added = corrector.correct(mask, where, positive=True)
    got = sitk.GetArrayFromImage(added) > 0
    assert added.GetOrigin() == mask.GetOrigin() and added.GetSpacing() == mask.GetSpacing()
    assert added.GetDirection() == mask.GetDirection()
    assert dice(got & ~small, big) >= 0.8 and np.array_equal(got & small, small)
    assert corrector.log[-1]["action"] == "added" and corrector.log[-1]["sign"] == "+"

    removed = corrector.correct(added, where, positive=False)  # the same point: not tumor after all
    assert np.array_equal(sitk.GetArrayFromImage(removed) > 0, small)
    assert corrector.log[-1]["action"] == "removed" and corrector.log[-1]["voxels"] == int((got & ~small).sum())


def test_offered_in_the_assisted_arm_before_submission_only():
    assert offered(SimpleNamespace(arm="assisted", locked=False))
    assert not offered(SimpleNamespace(arm="assisted", locked=True))
    assert not offered(SimpleNamespace(arm="unaided", locked=False))
