"""Issue 29, version 7's trial (docs/decisions/classify-v7-body.md): the classifier's body out to the skin
line (``classify_body.BODY_TO_SKIN``) where the body mask of the breast-region context lost the breast
to bright inner organs; and the lungs' limit on the 4 mm grid (``classify_region.LUNG_COARSE``).

Known truth: hand-made volumes (a bright chest behind a dim breast, air with and without noise) and a
domain-randomised training exam (6072, axial: lungs and heart 3-8 times the breast's signal; generator
lesion and tissue labels) whose two malignant lesions lie outside the context's body.
"""
from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from BreastTumorSegLib.core.imageutil import resample_to
from BreastTumorSegLib.engine import classify_body, classify_region
from BreastTumorSegLib.engine.classify import exam_candidates
from BreastTumorSegLib.preprocess.body import body_mask_lps
from BreastTumorSegLib.training.classify import candidate_labels
from BreastTumorSegLib.training.phantom.malignancy import make_class_exam


def _volume(noise_shell: float = 0.0, seed: int = 0):
    """(image, chest, breast): a 2 mm grid, a bright chest (1000) in the back half, a dim breast (100,
    a half ball) in front of it, air (0) elsewhere; with *noise_shell*, a 4 mm shell of noise of that
    mean (uniform, +/-50 %) around the body 8-12 mm from it, with dark air in between (ghosting)."""
    rng = np.random.default_rng(seed)
    z, y, x = np.mgrid[:40, :48, :48]
    chest = (y >= 32) & (y < 46) & (np.abs(x - 24) < 20) & (z >= 4) & (z < 36)
    breast = ((z - 20) ** 2 + (x - 24) ** 2 + (y - 32) ** 2 < 16 ** 2) & (y < 32)
    arr = np.where(chest, 1000.0, np.where(breast, 100.0, 0.0)).astype(np.float32)
    if noise_shell:
        from scipy import ndimage

        near = ndimage.distance_transform_edt(~(chest | breast))
        shell = (near > 4) & (near <= 6)
        arr[shell] = rng.uniform(0.5 * noise_shell, 1.5 * noise_shell, int(shell.sum()))
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing((2.0, 2.0, 2.0))
    return img, chest, breast


def _context(img):
    return {"work": img, "body": body_mask_lps(img), "slab": None}


def test_the_body_reaches_a_breast_darker_than_half_of_otsu():
    img, chest, breast = _volume()
    context = _context(img)
    assert context["body"][breast].mean() < 0.2  # the context's body lost most of the breast (the chest's blurred edge)
    wide = classify_body.skin_body(context)
    assert context["classify_body_info"]["used"]
    assert wide[breast].mean() > 0.8 and (wide >= context["body"]).all()  # (found on the 4 mm grid)
    assert wide[~(chest | breast)].mean() < 0.05  # the air stays air
    assert classify_body.skin_body(context) is wide  # once per context


@pytest.mark.parametrize("level", [150.0, 300.0])
def test_noise_around_the_body_is_refused(level):
    """Noise above the threshold around the body (ghosting): what the wider body would add is noise
    (local coefficient of variation above MAX_NOISE_CV): the context's body is kept."""
    img, chest, breast = _volume(noise_shell=level)
    context = _context(img)
    wide = classify_body.skin_body(context)
    assert context["classify_body_info"]["noise_cv"] > classify_body.MAX_NOISE_CV
    assert not context["classify_body_info"]["used"]
    assert np.array_equal(wide, context["body"])


def test_a_body_that_holds_its_breast_is_left_as_it_is():
    img, chest, breast = _volume()
    arr = sitk.GetArrayFromImage(img)
    arr[breast] = 700.0  # as bright as the chest: the context's body already holds it
    bright = sitk.GetImageFromArray(arr)
    bright.CopyInformation(img)
    context = _context(bright)
    assert context["body"][breast].mean() > 0.9
    assert np.array_equal(classify_body.skin_body(context), context["body"])
    assert not context["classify_body_info"]["used"]


def test_the_segmentation_body_mask_is_unchanged_by_the_new_argument():
    img, _, _ = _volume()
    assert np.array_equal(body_mask_lps(img), body_mask_lps(img, threshold=None))
    assert classify_body.BODY_TO_SKIN is False and classify_region.LUNG_COARSE is False  # off by default


@pytest.fixture(scope="module")
def bright_chest_exam():
    """Randomised training exam 6072 (axial): malignant lesions in both breasts, both outside the
    context's body (lungs 223 k, heart 135 k, glandular tissue 33 k, lesion 36 k, air 4 k)."""
    return make_class_exam("malignancy-randomized", 6072)


def _analysed(ph, monkeypatch, on: bool):
    monkeypatch.setattr(classify_body, "BODY_TO_SKIN", on)
    exam, sides, cands, maps, context = exam_candidates(ph.exam, register=False)
    _, y, _ = candidate_labels(ph, cands)
    return sides, cands, y, context


def test_malignant_lesions_outside_the_context_body_become_candidates(bright_chest_exam, monkeypatch):
    ph = bright_chest_exam
    assert ph.breast_truth == {"left": 1, "right": 1}
    off_sides, off_cands, off_y, _ = _analysed(ph, monkeypatch, False)
    on_sides, on_cands, on_y, context = _analysed(ph, monkeypatch, True)
    assert not any(off_y)  # main's region: neither lesion is a candidate
    assert context["classify_body_info"]["used"]
    for side in ("left", "right"):
        assert any(y for c, y in zip(on_cands, on_y) if c.side == side)
    assert (on_sides[off_sides > 0] > 0).all()  # the region only grows
    # no candidate in the air around the body (generator truth)
    names = ph.params["tissue_labels"]
    tissue = sitk.GetArrayFromImage(resample_to(ph.tissue_labels, ph.exam.pre, sitk.sitkNearestNeighbor))
    air = tissue == names["air"]
    assert all(air[c.box][c.mask].mean() < 0.1 for c in on_cands)
    # what the region gained is tissue and a rim of air at the skin (the 4 mm grid and the region's
    # one-voxel dilation: ~10 % of it on this exam), never air far from the body
    gained = (on_sides > 0) & (off_sides == 0)
    assert air[gained].mean() < 0.15
    from scipy import ndimage

    depth_in_air = ndimage.distance_transform_edt(air, sampling=ph.exam.pre.GetSpacing()[::-1])
    assert depth_in_air[gained & air].max() <= 8.0  # mm from the nearest tissue


def test_the_coarse_lung_limit_keeps_the_deep_lesion(monkeypatch):
    """LUNG_COARSE: version 6's deep lesion (development exam 7005, ~11 mm behind main's region) is
    still found with the lungs' limit from the 4 mm grid."""
    ph = make_class_exam("malignancy-randomized", 7005)
    monkeypatch.setattr(classify_region, "LUNG_REGION", True)
    monkeypatch.setattr(classify_region, "LUNG_KEEPS_STATISTICS", True)
    monkeypatch.setattr(classify_region, "LUNG_COARSE", True)
    exam, sides, cands, maps, context = exam_candidates(ph.exam, register=False)
    _, y, _ = candidate_labels(ph, cands)
    assert ph.breast_truth["left"] == 1
    assert any(v for c, v in zip(cands, y) if c.side == "left")
    assert "coarse" in context  # the shrunk grid was made once and kept
