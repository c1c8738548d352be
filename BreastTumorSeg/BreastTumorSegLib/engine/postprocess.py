"""From a probability map to lesions: thresholding, connected components, the lesion table.

Threshold modes
---------------
``absolute``: tumor where p ≥ threshold.
``relative``: Hirsch et al. 2022 — in every slice (along the acquisition's slice axis), tumor
where p ≥ fraction × (maximum of p in that slice), and only in slices whose maximum reaches
``threshold`` (so that a slice of pure background is not forced to contain tumor).
Then connected components (26-connectivity) smaller than ``min_lesion_ml`` are dropped. With a
breast mask, a component is kept whole when at least ``min_breast_fraction`` of it lies inside
the mask, and dropped otherwise: the heart, mediastinum and arms go, while a tumor at the chest
wall that the coarse classical mask cuts is not truncated.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

from ..core.imageutil import voxel_volume_ml
from ..core.results import Lesion


@dataclass
class PostprocessSettings:
    threshold: float = 0.5
    mode: str = "absolute"  # or "relative"
    relative_fraction: float = 0.6
    min_lesion_ml: float = 0.05
    restrict_to_breast: bool = True
    min_breast_fraction: float = 0.25

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def threshold_probability(prob: np.ndarray, settings: PostprocessSettings) -> np.ndarray:
    if settings.mode == "absolute":
        return prob >= settings.threshold
    if settings.mode == "relative":
        slice_max = prob.reshape(prob.shape[0], -1).max(axis=1)
        level = np.maximum(settings.relative_fraction * slice_max, 1e-6)[:, None, None]
        keep = (slice_max >= settings.threshold)[:, None, None]
        return (prob >= level) & keep
    raise ValueError(f"unknown threshold mode {settings.mode!r} (use 'absolute' or 'relative')")


def _keep_breast_components(cc: sitk.Image, breast_mask: sitk.Image, min_fraction: float) -> sitk.Image:
    labels = sitk.GetArrayViewFromImage(cc).ravel()
    where = np.flatnonzero(labels)  # lesion voxels only: a few thousand of 32 M
    if where.size == 0:
        return cc
    lab = labels[where]
    n = int(lab.max())
    total = np.bincount(lab, minlength=n + 1)
    in_breast = np.bincount(lab[sitk.GetArrayViewFromImage(breast_mask).ravel()[where] > 0], minlength=n + 1)
    keep = in_breast >= min_fraction * np.maximum(total, 1)
    dropped = [int(v) for v in np.nonzero(~keep[1:])[0] + 1 if total[v] > 0]
    if not dropped:
        return cc
    return sitk.ChangeLabel(cc, changeMap={float(v): 0.0 for v in dropped})


def midline_x(breast_mask: sitk.Image | None) -> float | None:
    """Left-right position (LPS x, mm) of the middle between the breasts."""
    if breast_mask is None:
        return None
    stats = sitk.LabelShapeStatisticsImageFilter()
    stats.Execute(sitk.Cast(breast_mask > 0, sitk.sitkUInt8))
    if not stats.HasLabel(1):
        return None
    bb = stats.GetBoundingBox(1)  # index space
    lo = breast_mask.TransformIndexToPhysicalPoint(bb[:3])
    hi = breast_mask.TransformIndexToPhysicalPoint([b + s - 1 for b, s in zip(bb[:3], bb[3:])])
    return 0.5 * (lo[0] + hi[0])


def postprocess(prob: sitk.Image, settings: PostprocessSettings | None = None,
                breast_mask: sitk.Image | None = None, return_components: bool = False,
                layout: dict | None = None):
    """Label map (uint8, 1 = tumor) and lesion table from a probability map.

    With ``return_components`` also the component image whose labels are the lesions' ``label``
    (1 = largest). ``layout`` (from :func:`~BreastTumorSegLib.preprocess.breast_region.breast_layout`)
    gives each lesion its side in patient coordinates: every lesion of a unilateral exam gets that
    breast's side, otherwise the side of the body midline; without it the middle of the breast
    mask's bounding box is the midline.
    """
    settings = settings or PostprocessSettings()
    p = sitk.GetArrayViewFromImage(prob)
    binary = threshold_probability(np.asarray(p), settings)
    bin_img = sitk.GetImageFromArray(binary.astype(np.uint8))
    bin_img.CopyInformation(prob)
    cc = sitk.ConnectedComponent(bin_img, True)
    if breast_mask is not None and settings.restrict_to_breast:
        cc = _keep_breast_components(cc, breast_mask, settings.min_breast_fraction)
    min_vox = int(np.ceil(settings.min_lesion_ml / voxel_volume_ml(prob))) if settings.min_lesion_ml > 0 else 0
    cc = sitk.RelabelComponent(cc, minimumObjectSize=max(min_vox, 1), sortByObjectSize=True)
    if layout and layout.get("unilateral_side"):
        lesions = lesion_table(cc, prob, side=layout["unilateral_side"])
    elif layout and layout.get("midline_x") is not None:
        lesions = lesion_table(cc, prob, float(layout["midline_x"]))
    else:
        lesions = lesion_table(cc, prob, midline_x(breast_mask))
    label = sitk.Cast(cc > 0, sitk.sitkUInt8)
    if return_components:
        return label, lesions, cc
    return label, lesions


def raw_lesions(label: sitk.Image, prob: sitk.Image | None = None, layout: dict | None = None) -> list[Lesion]:
    """Every connected component of *label* as a lesion (largest first), nothing dropped: the
    lesion table of a model's own label map (``--raw``)."""
    cc = sitk.RelabelComponent(sitk.ConnectedComponent(sitk.Cast(label > 0, sitk.sitkUInt8), True), sortByObjectSize=True)
    layout = layout or {}
    return lesion_table(cc, prob, layout.get("midline_x"), layout.get("unilateral_side"))


def lesion_table(components: sitk.Image, prob: sitk.Image | None = None,
                 midline: float | None = None, side: str | None = None) -> list[Lesion]:
    """One :class:`Lesion` per label of *components* (labels 1..N); *side* (unilateral exam)
    overrides the comparison of the centroid's LPS x with *midline* (+x = patient left)."""
    stats = sitk.LabelShapeStatisticsImageFilter()
    stats.ComputeFeretDiameterOn()
    stats.Execute(components)
    pmax = {}
    if prob is not None and stats.GetNumberOfLabels():
        # Intensity statistics inside the lesions' joint bounding box only (not the whole volume).
        boxes = np.array([stats.GetBoundingBox(lab) for lab in stats.GetLabels()])
        lo = boxes[:, :3].min(0)
        hi = (boxes[:, :3] + boxes[:, 3:]).max(0)
        roi = dict(size=[int(v) for v in hi - lo], index=[int(v) for v in lo])
        inten = sitk.LabelStatisticsImageFilter()
        inten.Execute(sitk.RegionOfInterest(sitk.Cast(prob, sitk.sitkFloat32), **roi),
                      sitk.RegionOfInterest(components, **roi))
        pmax = {lab: inten.GetMaximum(lab) for lab in stats.GetLabels()}
    out = []
    for lab in sorted(stats.GetLabels()):
        c = stats.GetCentroid(lab)
        les_side = side or ("unknown" if midline is None else ("left" if c[0] > midline else "right"))
        out.append(Lesion(
            label=int(lab),
            volume_ml=stats.GetPhysicalSize(lab) / 1000.0,
            longest_diameter_mm=float(stats.GetFeretDiameter(lab)),
            centroid_lps=tuple(float(v) for v in c),
            side=les_side,
            voxels=int(stats.GetNumberOfPixels(lab)),
            max_probability=float(pmax.get(lab, 1.0)),
        ))
    return out
