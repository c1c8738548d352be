"""Issue 29: the per-breast classifier does not depend on the breast mask. Its region is the body
in front of the chest wall with the breast mask as a hint, its sides come from patient
coordinates, and a lesion mask inside the body is always looked at.

One small phantom (our generator, motion-free): a malignant lesion (washout, spiculated, 10 mm)
in the left breast, a benign one (persistent, smooth, 4 mm) in the right.
"""
from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from BreastTumorSegLib.engine import classify as engine_classify
from BreastTumorSegLib.engine.classify import classify_exam
from BreastTumorSegLib.engine.classify_region import (LEFT, RIGHT, anterior_body, classification_sides,
                                                      lesions_in_body)
from BreastTumorSegLib.preprocess.breast_region import body_on_grid, breast_region
from classify_fixtures import two_lesion_phantom


@pytest.fixture(scope="module")
def phantom():
    return two_lesion_phantom()


@pytest.fixture(scope="module")
def region(phantom):
    return breast_region(phantom.exam.pre)


def _missing_lesions(phantom, region):
    """The breast region with a breast mask that misses both lesions (their voxels, dilated, removed)."""
    mask, context = region
    lesions = sitk.BinaryDilate(sitk.Cast(phantom.tumor_labels > 0, sitk.sitkUInt8), [4, 4, 4])
    wrong = sitk.Mask(mask, sitk.Cast(lesions == 0, sitk.sitkUInt8))
    assert not (sitk.GetArrayViewFromImage(wrong)[sitk.GetArrayViewFromImage(phantom.tumor_labels) > 0]).any()
    return wrong, context


def test_lesions_the_breast_mask_misses_are_still_classified(phantom, region, monkeypatch):
    """A breast mask that misses both lesions: each is still a candidate of its breast (in the
    heatmap); the model discounts a candidate outside the mask (the mask is a soft hint, one
    feature), but a lesion the segmentation found (``lesion_mask``) counts as breast and the
    malignant side is called as with a good mask."""
    wrong = _missing_lesions(phantom, region)
    monkeypatch.setattr(engine_classify, "breast_region", lambda img, laterality=None: wrong)
    lab = sitk.GetArrayViewFromImage(phantom.tumor_labels)
    alone = classify_exam(phantom.exam, register=False)
    heat = sitk.GetArrayViewFromImage(alone.heatmap)
    assert (heat[lab == 1] > 0).mean() > 0.5 and (heat[lab == 2] > 0).mean() > 0.5  # looked at, not invisible
    res = classify_exam(phantom.exam, register=False, lesion_mask=phantom.tumor_labels)
    assert res.probabilities["L"] > 0.5 > res.probabilities["R"]
    heat = sitk.GetArrayViewFromImage(res.heatmap)
    assert heat[lab == 1].max() == pytest.approx(res.probabilities["L"], abs=1e-6)


def test_region_is_body_in_front_of_the_chest_wall_and_sides_follow_patient_x(phantom, region):
    mask, context = region
    pre = phantom.exam.pre
    breast = sitk.GetArrayFromImage(mask) > 0
    sides, info = classification_sides(pre, breast, context)
    assert (sides[breast] > 0).all()  # the breast mask is always inside (a hint)
    anterior = anterior_body(pre, context)
    assert ((sides > 0) == (anterior | breast)).all()
    assert info["sides"].startswith("patient x against the midline")
    body = sitk.GetArrayFromImage(body_on_grid(context, pre))
    assert body.sum() > 0 and (sides > 0).sum() < 0.8 * body.sum()  # not the whole torso
    # left (LPS +x) of the midline is the patient's left
    idx = np.argwhere(sides == LEFT)[::997]
    xs = [pre.TransformIndexToPhysicalPoint([int(i) for i in v[::-1]])[0] for v in idx]
    assert min(xs) > info["midline_x"]
    idx = np.argwhere(sides == RIGHT)[::997]
    xs = [pre.TransformIndexToPhysicalPoint([int(i) for i in v[::-1]])[0] for v in idx]
    assert max(xs) <= info["midline_x"]


def test_a_lesion_mask_counts_in_front_of_the_chest_wall_only(phantom, region):
    """Segmented lesions join the region inside the body in front of the chest wall; a segmented
    voxel deep behind it (heart, mediastinum: the lesion gate's rule) or outside the body never."""
    mask, context = region
    pre = phantom.exam.pre
    breast = sitk.GetArrayFromImage(mask) > 0
    base, _ = classification_sides(pre, breast, context)
    body = sitk.GetArrayFromImage(body_on_grid(context, pre)) > 0
    deep = np.argwhere(body & (base == 0))
    z, y, x = deep[len(deep) // 2]  # inside the body, behind the region
    inside = np.argwhere(breast & (lesions_in_body(pre, context, mask) > 0))[0]
    les = np.zeros(breast.shape, np.uint8)
    les[z, y, x] = les[0, 0, 0] = les[tuple(inside)] = 1  # (0, 0, 0): air, outside the body
    lesion = sitk.GetImageFromArray(les)
    lesion.CopyInformation(pre)
    counted = lesions_in_body(pre, context, lesion)
    assert counted[tuple(inside)] and not counted[z, y, x] and not counted[0, 0, 0]
    sides, info = classification_sides(pre, breast, context, lesion_mask=lesion)
    assert sides[z, y, x] == 0 and sides[0, 0, 0] == 0 and sides[tuple(inside)] > 0
    assert info["lesion_voxels_added"] == 0


def test_without_a_body_the_breast_mask_alone_is_used():
    pre = sitk.Image(8, 6, 4, sitk.sitkFloat32)
    breast = np.zeros((4, 6, 8), bool)
    breast[1:3, 1:4, 1:7] = True
    sides, info = classification_sides(pre, breast, {"body": None, "layout": {}})
    assert ((sides > 0) == breast).all()
    assert set(np.unique(sides[breast])) == {LEFT, RIGHT}  # split at the middle of the mask
