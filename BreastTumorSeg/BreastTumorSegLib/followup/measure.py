"""Every track measured with one outline rule at every visit, inside the track's own region.

A segmentation can take a tumor whole at one visit and only its strongly enhancing core at another
(a heterogeneous tumor near the PE threshold, a rim whose inside enhances moderately): the volume
change and the RECIST sum would then follow the segmentation's swing, not the tumor. So the
change table measures each track's lesion at every visit the same way, as a reader outlines the
same lesion on each exam:

* the track's **region**: its lesions at every visit, in the baseline frame, grown by
  ``region_margin_mm`` (each voxel to the nearest track: :func:`.prior.neighbourhoods`), brought
  into the visit by the registration;
* its **outline** at the visit: the track's segmented lesions there plus the tissue connected to them
  within ``margin_mm`` that enhances at least ``outline_pe`` (and above the visit's background
  parenchymal enhancement, with SER >= the FTV rule's minimum; the hysteresis of
  :func:`..kinetics.outline.whole_tumor_outline`, with no minimum core size, cavities filled), kept
  inside the region;
* volume = the outline's volume; with ``diameters`` (off by default, see :class:`MeasureSettings`)
  also the longest diameter = the sum of the longest diameters of its connected pieces (RECIST:
  fragments add up). FTV stays the I-SPY FTV of the segmented lesions, the diameters by default
  the segmented lesions'.

A track with no lesion at a visit stays absent there: the outline never brings a lesion back.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from ..core.imageutil import from_array
from ..kinetics.ftv import roi_array
from ..kinetics.outline import outline_growth, whole_tumor_outline
from . import OUTLINE_FIND
from .diameters import union_diameter
from .prior import neighbourhoods, to_visit_grid


@dataclass(frozen=True)
class MeasureSettings:
    enabled: bool = True
    outline_pe: float = 40.0  # moderately enhancing tissue next to the lesion is part of it
    margin_mm: float = 8.0  # ... at most this far from the segmented lesion
    region_margin_mm: float = 5.0  # the track's region: its masks at every visit grown by this much
    edge_fraction: float = 0.35  # one-voxel-thin additions: at least this fraction of the nearest lesion PE
    # The outline's diameters replace the segmented lesions' too (RECIST). Off: on seeds 6000-6009 (ellipse,
    # heterogeneous) they got 24/30 RECIST categories right against 25/30 with the segmented diameters
    # (a small remnant's outline is longer than the remnant, a 9 mm finding outlined to 10 mm became an
    # unequivocal new lesion), while the outline's volumes cut the volume-change error (median 10.4 -> 7.2
    # points, p90 31 -> 21).
    diameters: bool = False
    # Issue 31, fu21 (docs/decisions/followup-outline-find-issue31.md; off unless ``followup.OUTLINE_FIND``): grow
    # each lesion's outline from its voxels inside the visit's plain I-SPY FTV mask (PE >= 70 %, the same rule
    # at every visit) instead of from the whole segmented lesion: a segmenter that outlines (``ftv-outline``)
    # finds and matches, the volume is measured as from the FTV rule's lesions. A lesion with no FTV voxel
    # grows from itself. ``ftv_diameters``: the longest diameter = the sum of the Feret diameters of those
    # FTV pieces (RECIST on the FTV mask) instead of the segmented lesion's.
    ftv_seeds: bool = OUTLINE_FIND
    ftv_diameters: bool = False


def _pieces_diameter(mask: np.ndarray, like: sitk.Image) -> float:
    """The sum of the longest (Feret) diameters of the 26-connected pieces of *mask*."""
    labels, n = ndimage.label(mask, structure=np.ones((3, 3, 3), bool))
    if not n:
        return 0.0
    img = from_array(labels.astype(np.uint32), like)
    stats = sitk.LabelShapeStatisticsImageFilter()
    stats.ComputeFeretDiameterOn()
    stats.Execute(img)
    return float(sum(stats.GetFeretDiameter(lab) for lab in stats.GetLabels()))


def track_regions(tracks, components_baseline: list[np.ndarray], spacing_zyx, margin_mm: float) -> np.ndarray:
    """Track id per voxel of the baseline grid: every track's lesions at every visit, grown (module docstring)."""
    seen = np.zeros(components_baseline[0].shape, np.int32)
    for t in tracks:
        for k, labs in t.members.items():
            seen[np.isin(components_baseline[k], labs) & (seen == 0)] = t.track_id
    return neighbourhoods(seen, spacing_zyx, margin_mm)


def measure_visit(tracks, k: int, components: sitk.Image, pre: np.ndarray, ftv, roi, region_visit: np.ndarray,
                  s: MeasureSettings, union: bool = False, whole: frozenset = frozenset()) -> dict[int, dict]:
    """Track id -> {volume_ml[, longest_diameter_mm]} of every track with a lesion at visit *k*.

    *components*: the visit's lesion labels (its grid), *pre* its pre-contrast signal (z, y, x), *ftv*: its :class:`~..kinetics.ftv.FTVResult`
    (maps, background threshold, settings), *roi* its breast mask, *region_visit*: the track regions on
    the visit's grid; *union*: the outline's diameter taken over all its pieces together (:mod:`.diameters`);
    *whole*: with ``s.ftv_seeds``, the tracks measured from their whole lesions (:func:`whole_tracks`)."""
    comp = sitk.GetArrayFromImage(components)
    ref = components
    spacing_zyx = np.asarray(ref.GetSpacing())[::-1]
    enhancing = sitk.GetArrayViewFromImage(ftv.mask) > 0 if (s.ftv_seeds or s.ftv_diameters) else None
    seeds_of = {}
    for t in tracks:
        labs = t.members.get(k)
        if labs:
            lesion = np.isin(comp, labs)
            seeds_of[t.track_id] = (lesion, lesion & enhancing if enhancing is not None and t.track_id not in whole
                                    else lesion)
    all_seeds = comp > 0
    if s.ftv_seeds and seeds_of:
        all_seeds = np.logical_or.reduce([seeds for _, seeds in seeds_of.values()])
    grow, pe, level = _growth(all_seeds, pre, ftv, roi, ref, s)
    vox_ml = float(np.prod(spacing_zyx)) / 1000.0
    out = {}
    for tid, (lesion, cores) in seeds_of.items():
        seeds = cores if s.ftv_seeds else lesion
        inside = (region_visit == tid) | lesion
        mask = whole_tumor_outline(seeds, grow & inside, pe, spacing_zyx, s.margin_mm,
                                   edge_fraction=s.edge_fraction, edge_min_pe=1.15 * level, min_core_ml=0.0)
        mask &= inside
        out[tid] = {"volume_ml": float(np.count_nonzero(mask)) * vox_ml}
        if s.diameters:
            out[tid]["longest_diameter_mm"] = union_diameter(mask, ref) if union else _pieces_diameter(mask, ref)
        if s.ftv_diameters:
            out[tid]["longest_diameter_mm"] = _pieces_diameter(cores, ref)
    return out


def whole_tracks(tracks, visits, ftvs) -> frozenset:
    """The tracks whose lesions hold no voxel of the visit's FTV mask at some visit: with
    ``MeasureSettings.ftv_seeds`` they are measured from their whole lesions at every visit, one rule
    for the track (a track grown from its FTV voxels at one visit and from its whole outline at another
    would measure the segmentation's swing, not the tumor)."""
    out = set()
    for k, (v, ftv) in enumerate(zip(visits, ftvs)):
        comp = sitk.GetArrayViewFromImage(v.components)
        cored = set(np.unique(comp[sitk.GetArrayViewFromImage(ftv.mask) > 0]).tolist())
        out |= {t.track_id for t in tracks if t.members.get(k) and not cored & set(t.members[k])}
    return frozenset(out)


def _growth(lesions: np.ndarray, pre: np.ndarray, ftv, roi, ref: sitk.Image, s: MeasureSettings):
    """(where an outline may grow, the PE map, the outline level) of a visit (:func:`measure_visit`)."""
    maps, fs = ftv.maps, ftv.settings
    pe = maps.array("pe_early")
    roi_mask, _ = roi_array(roi, ref)
    tissue = roi_mask & (maps.array("valid") > 0) & (pre >= np.float32(ftv.background_threshold))
    grow, level, _ = outline_growth(pe, tissue, lesions, maps.array("ser") if ftv.ser_used else None,
                                    np.asarray(ref.GetSpacing())[::-1], _with_outline(fs, s))
    return grow, pe, level


def visit_outline(components: sitk.Image, pre: np.ndarray, ftv, roi, margin_mm: float,
                  s: MeasureSettings | None = None) -> np.ndarray:
    """The whole-tumor outline (bool, the visit's grid) grown from all of a visit's lesions by the rule
    of :func:`measure_visit` with *margin_mm* (:mod:`.fragments`: the pieces it joins are one lesion)."""
    s = s or MeasureSettings()
    lesions = sitk.GetArrayFromImage(components) > 0
    spacing_zyx = np.asarray(components.GetSpacing())[::-1]
    grow, pe, level = _growth(lesions, pre, ftv, roi, components, s)
    return whole_tumor_outline(lesions, grow, pe, spacing_zyx, margin_mm, edge_fraction=s.edge_fraction,
                               edge_min_pe=1.15 * level, min_core_ml=0.0)


def _with_outline(fs, s: MeasureSettings):
    return replace(fs, outline_pe=s.outline_pe)


def measure_tracks(tracks, visits, ftvs, base_ref: sitk.Image, s: MeasureSettings | None = None,
                   union: bool = False) -> dict:
    """(track id, visit index) -> {volume_ml[, longest_diameter_mm]} for every track and visit it has a
    lesion at ({} when ``s.enabled`` is False). *visits*: the follow-up's visits (components, result,
    registration), *ftvs* their FTV results."""
    s = s or MeasureSettings()
    if not s.enabled or not tracks:
        return {}
    spacing_zyx = np.asarray(base_ref.GetSpacing())[::-1]
    regions = track_regions(tracks, [v.in_baseline.components_baseline for v in visits], spacing_zyx,
                            s.region_margin_mm)
    whole = whole_tracks(tracks, visits, ftvs) if (s.ftv_seeds or s.ftv_diameters) else frozenset()
    out = {}
    for k, (v, ftv) in enumerate(zip(visits, ftvs)):
        reg = v.registration.transform if v.registration else None
        region_visit = regions if reg is None else to_visit_grid(regions, base_ref, v.exam.reference, reg)
        for tid, m in measure_visit(tracks, k, v.components, sitk.GetArrayFromImage(v.exam.pre), ftv,
                                     v.result.breast_mask, region_visit, s, union, whole).items():
            out[(tid, k)] = m
    return out
