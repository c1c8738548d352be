"""From a probability map to lesions: thresholding, connected components, the lesion table.

Threshold modes
---------------
``absolute``: tumor where p ≥ threshold.
``relative``: Hirsch et al. 2022 — in every slice (along the acquisition's slice axis), tumor
where p ≥ fraction × (maximum of p in that slice), and only in slices whose maximum reaches
``threshold`` (so that a slice of pure background is not forced to contain tumor).
Then connected components (26-connectivity) smaller than ``min_lesion_ml`` are dropped.

The breast gate (fails safe)
----------------------------
With a breast mask, a component is kept as it is when at least ``min_breast_fraction`` of it lies
inside the mask (a tumor at the chest wall that the coarse mask cuts is kept whole). The mask only
decides what is *reported* as outside the breast; what is *removed* is decided by the body mask
and the chest-wall level of :func:`~BreastTumorSegLib.preprocess.breast_region.breast_region`
(``region``), which do not depend on the breast mask being right:

* mostly (> half) outside the body: removed;
* mostly deeper than the chest-wall level + ``chest_margin_mm`` + ``posterior_margin_mm``
  (heart, mediastinum): removed; except, for a confident component (below), the voxels on the side
  of the chest (:func:`~BreastTumorSegLib.preprocess.breast_region.chest_side`: within
  ``lateral_skin_mm`` of the skin, more than ``mediastinum_half_width_mm`` lateral of the body
  midline, in front of the mid-axillary line) do not count as deep: the chest-wall level is the
  sternum's, and lateral breast tissue wraps around the chest wall deeper than it. A confident
  component is removed as behind the chest wall only when most of it lies deep *and* in the
  mediastinal band or inside the thorax (further than ``lateral_skin_mm`` from the skin) or behind
  the mid-axillary line. ``lateral_skin_mm`` 0 (the default, see the setting): the flat level for
  every component;
* otherwise, when the network is confident (at least ``confident_min_ml`` of the component with
  p >= ``confident_probability``), or when the breast mask is not trustworthy (``mask_trusted``
  False: neither the learned nor the classical mask passed the plausibility check): **kept**,
  with the flag ``outside_breast_mask`` and the reason in ``lesion.notes``;
* otherwise (a doubtful component mostly outside the breast): removed.

Without ``region`` nothing is known about the body or the chest wall: the confident components
outside the mask are kept and flagged. Every decision is appended to ``gate_log`` when given.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from ..core.imageutil import voxel_volume_ml
from ..core.results import Lesion
from ..preprocess.breast_region import chest_side


@dataclass
class PostprocessSettings:
    threshold: float = 0.5
    mode: str = "absolute"  # or "relative"
    relative_fraction: float = 0.6
    min_lesion_ml: float = 0.05
    restrict_to_breast: bool = True
    min_breast_fraction: float = 0.25
    # The breast gate never removes a confident component inside the body in front of the chest wall.
    confident_min_ml: float = 0.2
    confident_probability: float = 0.9
    posterior_margin_mm: float = 10.0  # beyond the breast mask's chest-wall limit: heart, mediastinum
    # A confident component deep to the sternum level but under the skin of the side of the chest
    # (lateral of the mediastinal band) is breast tissue wrapping around the chest wall, not heart.
    # Off by default (0: the flat chest-wall level decides for every component); 30 mm was tried:
    # on development seeds it kept lateral tumors (randomised 6001, st-demo and unet-demo: Dice 0 ->
    # 0.81) but on held-out randomised seeds 5000-5009 (st-demo) it only added two confident false
    # positives (median Dice 0.646 -> 0.585, FP lesions/exam 0.10 -> 0.30), no tumor found.
    lateral_skin_mm: float = 0.0
    mediastinum_half_width_mm: float = 60.0

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


OUTSIDE_BREAST = "outside_breast_mask"


def _work_indices(where: np.ndarray, img: sitk.Image, work: sitk.Image) -> tuple[np.ndarray, ...]:
    """(z, y, x) indices on the grid of *work* of the voxels at flat indices *where* of *img*."""
    zyx = np.stack(np.unravel_index(where, img.GetSize()[::-1]), axis=1)[:, ::-1].astype(np.float64)
    m = np.asarray(img.GetDirection()).reshape(3, 3) * np.asarray(img.GetSpacing())
    lps = zyx @ m.T + np.asarray(img.GetOrigin())
    mw = np.asarray(work.GetDirection()).reshape(3, 3) * np.asarray(work.GetSpacing())
    ijk = np.rint((lps - np.asarray(work.GetOrigin())) @ np.linalg.inv(mw).T).astype(int)
    size = np.asarray(work.GetSize())
    ijk = np.clip(ijk, 0, size - 1)
    return ijk[:, 2], ijk[:, 1], ijk[:, 0]


def _location(where: np.ndarray, lab: np.ndarray, n: int, cc: sitk.Image, region: dict | None,
              settings: PostprocessSettings, confident: np.ndarray):
    """Per label: voxels inside the body, voxels deeper than the chest wall + margins, and (for the
    *confident* labels) voxels deeper than that and not on the side of the chest (None when unknown)."""
    if region is None or region.get("body") is None:
        return None, None, None
    work = region["work"]
    z, y, x = _work_indices(where, cc, work)
    body = ndimage.binary_dilation(region["body"], iterations=1)  # the skin voxel itself counts as body
    in_body = np.bincount(lab[body[z, y, x]], minlength=n + 1)
    level = region.get("level")
    if level is None:
        return in_body, None, None
    limit = level[z, x] + (region.get("chest_margin_mm", 0.0) + settings.posterior_margin_mm) / work.GetSpacing()[1]
    deep = y > limit
    posterior = np.bincount(lab[deep], minlength=n + 1)
    thoracic = posterior
    if settings.lateral_skin_mm > 0 and np.any(confident & (posterior >= 0.5 * np.bincount(lab, minlength=n + 1))):
        side = chest_side(region, settings.lateral_skin_mm, settings.mediastinum_half_width_mm)
        if side is not None:
            thoracic = np.where(confident, np.bincount(lab[deep & ~side[z, y, x]], minlength=n + 1), posterior)
    return in_body, posterior, thoracic


def gate_components(cc: sitk.Image, prob: sitk.Image, breast_mask: sitk.Image, settings: PostprocessSettings,
                    region: dict | None = None, mask_trusted: bool = True,
                    gate_log: list | None = None) -> tuple[sitk.Image, dict[int, str]]:
    """The breast gate (module docstring) on the component image *cc*: the components it keeps,
    and for each kept component flagged ``outside_breast_mask`` (by its label in *cc*) the reason."""
    labels = sitk.GetArrayViewFromImage(cc).ravel()
    where = np.flatnonzero(labels)  # lesion voxels only: a few thousand of 32 M
    if where.size == 0:
        return cc, {}
    lab = labels[where]
    n = int(lab.max())
    total = np.bincount(lab, minlength=n + 1)
    in_breast = np.bincount(lab[sitk.GetArrayViewFromImage(breast_mask).ravel()[where] > 0], minlength=n + 1)
    if np.all(in_breast[total > 0] >= settings.min_breast_fraction * total[total > 0]):
        return cc, {}  # every component mostly in the breast: nothing to decide
    p = sitk.GetArrayViewFromImage(prob).ravel()[where]
    vox_ml = voxel_volume_ml(cc)
    core_ml = np.bincount(lab[p >= settings.confident_probability], minlength=n + 1) * vox_ml
    confident_all = core_ml >= settings.confident_min_ml
    in_body, posterior, thoracic = _location(where, lab, n, cc, region, settings, confident_all)
    dropped, flagged = [], {}
    for v in np.nonzero(total)[0]:
        v = int(v)
        frac = in_breast[v] / total[v]
        if frac >= settings.min_breast_fraction:
            continue
        confident = core_ml[v] >= settings.confident_min_ml
        where_txt = f"{total[v] * vox_ml:.2f} mL, {100 * frac:.0f} % inside the breast mask"
        if in_body is not None and in_body[v] < 0.5 * total[v]:
            decision, why = "removed", "outside the body"
        elif posterior is not None and thoracic[v] >= 0.5 * total[v]:
            deep_mm = region.get("chest_margin_mm", 0.0) + settings.posterior_margin_mm
            decision, why = "removed", f"more than {deep_mm:g} mm behind the chest-wall level (heart, mediastinum)"
        elif posterior is not None and posterior[v] >= 0.5 * total[v]:
            decision, why = "kept", (f"the network is confident ({core_ml[v]:.2f} mL with p >= "
                                     f"{settings.confident_probability:g}); kept: inside the body, deeper than "
                                     f"the sternum level but under the skin of the side of the chest (within "
                                     f"{settings.lateral_skin_mm:g} mm of the skin, lateral of the mediastinum)")
        elif not mask_trusted:
            decision, why = "kept", ("the breast mask is not trustworthy; kept: " +
                                     ("inside the body, in front of the chest wall" if posterior is not None
                                      else "inside the body" if in_body is not None else "location unknown"))
        elif confident:
            decision, why = "kept", (f"the network is confident ({core_ml[v]:.2f} mL with p >= "
                                     f"{settings.confident_probability:g}); kept: " +
                                     ("inside the body, in front of the chest wall" if posterior is not None
                                      else "inside the body" if in_body is not None
                                      else "body and chest wall unknown"))
        else:
            decision, why = "removed", f"mostly outside the breast mask and not confident (core {core_ml[v]:.2f} mL)"
        if decision == "removed":
            dropped.append(v)
        else:
            flagged[v] = f"outside the breast mask ({where_txt}): {why}"
        if gate_log is not None:
            gate_log.append({"voxels": int(total[v]), "volume_ml": round(float(total[v] * vox_ml), 4),
                             "breast_fraction": round(float(frac), 3), "decision": decision, "reason": why})
    if dropped:
        cc = sitk.ChangeLabel(cc, changeMap={float(v): 0.0 for v in dropped})
    # One voxel of each flagged component: its label survives the relabelling that follows.
    anchors = {int(where[np.argmax(lab == v)]): note for v, note in flagged.items()}
    return cc, anchors


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
                layout: dict | None = None, region: dict | None = None, mask_trusted: bool = True,
                gate_log: list | None = None):
    """Label map (uint8, 1 = tumor) and lesion table from a probability map.

    With ``return_components`` also the component image whose labels are the lesions' ``label``
    (1 = largest). ``layout`` (from :func:`~BreastTumorSegLib.preprocess.breast_region.breast_layout`)
    gives each lesion its side in patient coordinates: every lesion of a unilateral exam gets that
    breast's side, otherwise the side of the body midline; without it the middle of the breast
    mask's bounding box is the midline. ``region`` (the context of
    :func:`~BreastTumorSegLib.preprocess.breast_region.breast_region`), ``mask_trusted`` and
    ``gate_log``: the breast gate (module docstring).
    """
    settings = settings or PostprocessSettings()
    p = sitk.GetArrayViewFromImage(prob)
    binary = threshold_probability(np.asarray(p), settings)
    bin_img = sitk.GetImageFromArray(binary.astype(np.uint8))
    bin_img.CopyInformation(prob)
    cc = sitk.ConnectedComponent(bin_img, True)
    anchors = {}
    if breast_mask is not None and settings.restrict_to_breast:
        cc, anchors = gate_components(cc, prob, breast_mask, settings, region, mask_trusted, gate_log)
    min_vox = int(np.ceil(settings.min_lesion_ml / voxel_volume_ml(prob))) if settings.min_lesion_ml > 0 else 0
    cc = sitk.RelabelComponent(cc, minimumObjectSize=max(min_vox, 1), sortByObjectSize=True)
    if layout and layout.get("unilateral_side"):
        lesions = lesion_table(cc, prob, side=layout["unilateral_side"])
    elif layout and layout.get("midline_x") is not None:
        lesions = lesion_table(cc, prob, float(layout["midline_x"]))
    else:
        lesions = lesion_table(cc, prob, midline_x(breast_mask))
    if anchors:
        flat = sitk.GetArrayViewFromImage(cc).ravel()
        by_label = {int(flat[i]): note for i, note in anchors.items() if flat[i] > 0}
        for les in lesions:
            if les.label in by_label:
                les.flags.append(OUTSIDE_BREAST)
                les.notes.append(by_label[les.label])
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
        inten = sitk.LabelStatisticsImageFilter()  # the box cast, not the whole map: the same values
        inten.Execute(sitk.Cast(sitk.RegionOfInterest(prob, **roi), sitk.sitkFloat32),
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
