"""The per-breast classifier's body out to the skin line (issue 29, ``docs/decisions/classify-v7-body.md``).

The body mask of the breast-region context (:func:`~..preprocess.body.body_mask_lps`: the smoothed
pre-contrast image above half of its Otsu threshold) is the one the segmentation pipeline uses and
stays as it is. On exams whose inner organs are far brighter than the breast before contrast (the
domain-randomised family draws each tissue's contrast: lungs, heart and vessels 3-8 times the
breast's fat and glandular tissue), Otsu's threshold splits the bright organs from everything else and
half of it lies above the whole breast: the body is the chest, the breast with its lesion is "air", and
the classifier never looks there (on the training seeds 6000-6139 of that family, 6 of 105 malignant
breasts lie outside the body: 6072 both, 6117 left, 6091 right, 6129 both; with this module 4 of them
become candidates; 6129's lesion is below the kinetic maps' floor).

With :data:`BODY_TO_SKIN` the classifier's region (:mod:`.classify_region`) starts from a wider body:
the context's body plus the body found at the air/tissue threshold (Otsu on log intensity, the skin
line's rule of :func:`~..preprocess.body.air_tissue_threshold`, but bounded below by only
:data:`OTSU_FLOOR` of Otsu's threshold instead of the skin line's 0.3), on the work grid shrunk to 4 mm
(:func:`coarse`), with the same depth limit behind (the chest-wall level + margins). The wider body is
used only where the context's body failed: where, in front of the chest wall (the chest-wall level +
margins, where the region can reach), it adds at least :data:`MIN_ADDED_SHARE` of the context's body
(a skin rim, a little dark fat or dark lungs behind the chest wall change nothing: every other exam
keeps main's region, its candidates and each breast's statistics exactly). A guard keeps the
context's body where what the wider one adds looks like noise, not tissue (:func:`local_cv` above
:data:`MAX_NOISE_CV`: noise in the air above the threshold, e.g. inside a zero-filled reconstruction
circle). Air added to the region (a rim at the skin, from the 4 mm grid) makes no candidate: the
kinetic maps are 0 where the pre-contrast signal is below their floor (``valid``).

Off: measured once on the fourth evaluation set with the lungs' region (rule 2 failed; the decision
record).
"""
from __future__ import annotations

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from ..core.imageutil import resample_to
from ..preprocess.body import _otsu, air_tissue_threshold, body_mask_lps

# Off until the rule of docs/decisions/classify-v7-body.md decides (issue 29).
BODY_TO_SKIN = False
OTSU_FLOOR = 0.1  # the air/tissue threshold never below this fraction of Otsu's (the skin line's: 0.3)
MAX_NOISE_CV = 0.35  # ... and where what it adds is not noise: median local coefficient of variation
MIN_ADDED_SHARE = 0.25  # ... and is used only where it adds at least this share of the context's body in front
FRONT_MARGIN_MM = 10.0  # "in front": no deeper than the chest-wall level + its margin + this (classify_region's)
COARSE_SHRINK = 2  # the wider body (and the lungs' limit, classify_region) on the work grid shrunk this much


def coarse(context: dict) -> tuple[sitk.Image, np.ndarray, list[int]]:
    """(the context's work image shrunk by :data:`COARSE_SHRINK` (block means; a thin slab's slice
    axis is kept), the context's body on it (at least half of each block), the shrink factors x, y,
    z); computed once per context (``context["coarse"]``): the body and lung steps of the classifier's
    region read the exam at 4 mm instead of 2 mm, at an eighth of the cost."""
    if "coarse" not in context:
        work, slab = context["work"], context.get("slab")
        f = [COARSE_SHRINK] * 3
        if slab is not None:
            f[2 - slab] = 1
        body = sitk.GetImageFromArray(context["body"].astype(np.float32))
        body.CopyInformation(work)
        context["coarse"] = (sitk.BinShrink(work, f), sitk.GetArrayFromImage(sitk.BinShrink(body, f)) >= 0.5, f)
    return context["coarse"]


def local_cv(work: sitk.Image, where: np.ndarray) -> float:
    """Median over the voxels *where* of the local coefficient of variation of *work* (3 x 3 x 3
    voxels: standard deviation / mean). Tissue is smooth at that scale (0.05-0.19 on the randomised
    training exams whose body failed); noise in air is not (Rayleigh: 0.52)."""
    if not where.any():
        return 0.0
    arr = sitk.GetArrayFromImage(work).astype(np.float64)
    mean = ndimage.uniform_filter(arr, 3)
    var = np.maximum(ndimage.uniform_filter(arr * arr, 3) - mean * mean, 0.0)
    return float(np.median(np.sqrt(var[where]) / np.maximum(np.abs(mean[where]), 1e-6)))


def on_work_grid(mask: np.ndarray, small: sitk.Image, work: sitk.Image) -> np.ndarray:
    """Bool (z, y, x) on *work*: a mask of the shrunk grid *small* (nearest neighbour)."""
    img = sitk.GetImageFromArray(mask.astype(np.uint8))
    img.CopyInformation(small)
    return sitk.GetArrayFromImage(resample_to(img, work, sitk.sitkNearestNeighbor)) > 0


def skin_body(context: dict) -> np.ndarray | None:
    """Bool (z, y, x) on the context's work grid: its body plus the body out to the skin line
    (module docstring); the context's body alone where the guard refuses the wider one or it adds
    little; None without a body. Found on the shrunk grid of :func:`coarse`; computed once per
    context (kept as ``context["classify_body"]``)."""
    if "classify_body" in context:
        return context["classify_body"]
    body, work = context.get("body"), context.get("work")
    if body is None or work is None:
        return body
    small, body_small, _ = coarse(context)

    def threshold(smooth: sitk.Image, arr: np.ndarray) -> float:
        """The air/tissue threshold (Otsu on log intensity), at least OTSU_FLOOR of Otsu's."""
        return max(air_tissue_threshold(arr), OTSU_FLOOR * _otsu(smooth))

    wide_small = body_mask_lps(small, slab=context.get("slab"), threshold=threshold) & ~body_small
    added = on_work_grid(wide_small, small, work) & ~body
    front = np.ones(body.shape, bool)
    level = context.get("level")
    if level is not None:  # what the region can take: in front of the chest-wall level + margins
        rows = np.arange(body.shape[1])[None, :, None]
        front = rows <= (level + (context.get("chest_margin_mm", 0.0) + FRONT_MARGIN_MM) / work.GetSpacing()[1])[:, None, :]
    gain = float((added & front).sum()) / max(int((body & front).sum()), 1)
    noise = local_cv(work, added) if gain >= MIN_ADDED_SHARE else float("nan")
    use = gain >= MIN_ADDED_SHARE and noise <= MAX_NOISE_CV
    out = body | added if use else body
    context["classify_body"] = out
    context["classify_body_info"] = {"added_share": round(gain, 3), "noise_cv": round(noise, 3), "used": bool(use)}
    return out
