"""Functional tumor volume (FTV) as in the I-SPY trials (the registry method "ftv" wraps it: models.ftv_segmenter).

FTV rule (UCSF / I-SPY, as in the Slicer extension Breast_DCEMRI_FTV): inside a region of
interest, a voxel is tumor when

1. its pre-contrast signal is at least ``background_fraction`` (0.6) x the ``background_percentile``
   (95th) percentile of the pre-contrast signal inside the ROI (removes fat-suppressed fat, air
   and noise, where PE is meaningless). See "Fat suppression" below for exams without it;
2. PE at the early phase >= ``pe_threshold`` (70 %);
3. at least ``min_neighbors`` (4) of its 26 neighbours in 3D also pass 1 and 2 (removes isolated
   noise voxels; the neighbours are counted inside the ROI);
4. SER >= ``ser_min`` (0). With a single post-contrast phase SER does not exist and this
   condition is skipped (``FTVResult.ser_used`` is False and a note says so).

FTV is the voxel count x voxel volume, in mL (= cc), split into SER bands (< 0.9, 0.9-1.3,
> 1.3 by default; the low edge is inclusive in the middle band).

Fat suppression
---------------
I-SPY acquisitions are fat-suppressed: fat is dark and the 95th percentile of the pre-contrast
signal is fibroglandular tissue, so 0.6 x p95 separates parenchyma from fat. Without fat
suppression (many T1 protocols, the project's phantoms) fat is the brightest tissue and
fibroglandular tissue and tumors sit at 30-70 % of it, so the same rule deletes the tumors.
``fat_suppressed=None`` (default) decides from the data: fat does not take up contrast, so when
the brightest pre-contrast tenth of the ROI barely enhances (median PE on the late phase, or the
early one without a late phase, below ``fat_max_pe`` = 8 %), that bright tissue is fat, the exam
is taken as not fat-suppressed and the background fraction becomes
``background_fraction_no_fat_sat`` (0.2: removes air, lung and noise, keeps tissue at >= 30 %
of fat). Enhancement alone cannot tell a fat-suppressed exam with faint background parenchymal
enhancement from one without suppression, so the exam counts as fat-suppressed also when the
bright tenth enhances at least ``fat_sat_min_pe_gap`` (1) percentage point more than the
mid-signal tissue (30th-70th percentile) and itself by at least twice that: without suppression the bright tissue is fat, which
enhances less than the darker parenchyma; with it, the bright tissue is parenchyma. Without fat suppression the threshold is raised where needed so that PE's
noise at the threshold signal is at most ``pe_threshold / noise_z`` (z = 3):
``S_pre >= noise_z * 100 * sd(S_early - S_pre) / pe_threshold``, the SD a median absolute
deviation over the ROI's voxels that are non-zero in both phases (zero-filled air cannot fool
it, and it scales with the data, so the mask does not depend on the intensity scale). The decision and its evidence are in :attr:`FTVResult.fat_suppression`; pass
``fat_suppressed=True`` for the plain I-SPY rule. An exam without contrast uptake (or a fat-
suppressed exam whose bright tissue does not enhance at all) is taken as not fat-suppressed;
the lower threshold then only admits more unenhanced voxels, which the PE rule rejects.

The region of interest is a mask image (e.g. the whole-breast mask), a :class:`Box` in
physical LPS millimetres, or the whole volume. Maps are computed once by
:func:`~BreastTumorSegLib.kinetics.compute_kinetic_maps` and can be passed in.

Beyond I-SPY (off by default, on in the "ftv" segmenter)
--------------------------------------------------------
I-SPY readers draw a box around the tumor; an automatic run over the whole breast also meets
the enhancing nipple, skin and vessels. ``vessel_radius_mm`` (segmenter: 2 mm) removes
structures thinner than twice the radius by an opening and a one-ball regrowth; and
``skin_margin_mm`` (segmenter: 8 mm) drops components lying entirely within that distance of
the air (nipple, skin). Both are recorded in the notes. Through-plane spacing above the radius
leaves the opening in-plane only, so vessels running across thick slices survive it.

Whole-tumor outline (off by default, on in the "ftv-outline" segmenter)
---------------------------------------------------------------
FTV counts the strongly enhancing voxels; a reader outlines the whole tumor, whose other parts
may enhance only moderately (PE 40-70 %), or not at all (a necrotic core, the inside of a rim).
With ``outline_pe`` > 0 ("ftv-outline": 40 %) :attr:`FTVResult.outline` is the FTV core plus the
voxels that pass the background and SER conditions with PE >= ``outline_pe`` and above the exam's
own background parenchymal enhancement (BPE: the ``outline_bpe_percentile`` (95th) percentile of PE
over enhancing tissue (PE > 10 %) more than 15 mm from every core; capped at ``pe_threshold``), are
connected to the core and lie at most ``outline_margin_mm`` (8 mm) from it, with the cavities this
encloses filled; where the addition is one voxel thin in the acquisition plane (the partial-volume
edge of a strongly enhancing core, which has moderate PE too) a voxel counts only at
``outline_edge_fraction`` (0.35) of the PE of the nearest core voxel or more. The outline is not
opened by the vessel ball (the core is): on the tuning exams (seeds 5000-5003 of the heterogeneous,
vessel and irregular families) that opening and a half-maximum edge rule cut off the thin lobes,
spicules and moderately enhancing rims a reader outlines (voxel recall 0.5-0.6), while vessels
touching a tumor are split off by the false-positive reduction (``engine/fpreduce.py``). A
hysteresis threshold: moderate enhancement counts only next to a tumor and only where it stands out
from the background, so BPE away from tumors does not count, and with marked BPE (which a reader
cannot tell from a moderately enhancing tumor part either) the outline stays close to the core.
``ftv_ml`` stays the I-SPY volume of the core. The outline's steps live in :mod:`.outline`, with two
options, both off by default (measured there): ``outline_half_maximum`` adds one partial-volume
layer where PE reaches half-way between the tumor's and its surroundings'; ``outline_thick_regions``
also grows from the core before its vessel opening and keeps the thick regions (patchy strong parts).
Two more outline options live in :mod:`.significance`: ``outline_significance`` (on in "ftv-outline")
seeds the outline below the noise floor by a local-mean significance test (its noise figures are in
``fat_suppression["significance"]``), ``outline_compact_islands`` (off) keeps compact strong islands.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from ..core.errors import InputError
from ..core.exam import DCEExam
from ..core.imageutil import from_array, resample_to, same_grid, voxel_volume_ml
from .maps import (
    CURVE_NAMES,
    KineticMaps,
    KineticSettings,
    compute_kinetic_maps,
    mean_curve_kinetics,
    robust_percentile,
)
from ..core.progress import Reporter
from .seeded import open_and_regrow
from .outline import bbox as _bbox, outline_growth, whole_tumor_outline
from .outline_beyond import growth_beyond_roi
from .outline_concave import fill_concavities
from .outline_edge import trim_partial_volume_shell
from .outline_islands import marked_islands
from .outline_local import below_level_growth
from .fat_sat_floor import background_ok
from .significance import difference_noise, island_seeds, significant_seeds

# ----------------------------------------------------------------------------- settings / ROI


@dataclass(frozen=True)
class FTVSettings:
    """Thresholds of the FTV rule (defaults: I-SPY)."""

    background_fraction: float = 0.6
    background_percentile: float = 95.0
    fat_suppressed: bool | None = None  # None: decide from the data (module docstring)
    background_fraction_no_fat_sat: float = 0.2
    fat_max_pe: float = 8.0
    fat_sat_min_pe_gap: float = 1.0  # bright tissue enhancing this much more than mid-signal tissue: fat-suppressed
    noise_z: float = 3.0
    pe_threshold: float = 70.0
    ser_min: float = 0.0
    min_neighbors: int = 4
    ser_bands: tuple[float, float] = (0.9, 1.3)
    skin_margin_mm: float = 0.0  # > 0: drop components lying entirely this close to the body surface
    vessel_radius_mm: float = 0.0  # > 0: opening + one-ball regrowth removing thinner structures
    outline_pe: float = 0.0  # > 0: the outline also takes moderately enhancing tissue next to the FTV core
    outline_margin_mm: float = 8.0  # ... at most this far from the core
    outline_bpe_percentile: float = 95.0  # ... and enhancing more than this percentile of the exam's BPE
    outline_edge_fraction: float = 0.35  # one-voxel-thin additions: at least this fraction of the nearest core PE
    outline_edge_over_level: float = 1.15  # ... and this factor above the outline's PE level
    outline_thick_regions: bool = False  # also add thick regions grown from the unopened core (kinetics/outline.py)
    outline_half_maximum: bool = False  # add the partial-volume edge layer at half maximum (kinetics/outline.py)
    outline_significance: bool = False  # outline seeds below the noise floor by a local-mean test (significance.py)
    outline_compact_islands: bool = False  # compact strong islands the vessel opening removed seed the outline
    outline_seed_max_elongation: float = 0.0  # > 0: new significance seeds more elongated than this (tubes) dropped
    outline_close_mm: float = 0.0  # > 0: enhancing tissue in the outline's bays (closing by this ball) added (outline_concave.py)
    outline_close_pe: float = 40.0  # ... at this PE or more (the outline's own lowest level, outline_pe)
    beside_region_mm: float = 0.0  # > 0 (segmenters): whole lesions within this band beside the breast ROI (beside_region.py)
    beside_region_strict: bool = True  # ... only components not touching the first outline, and with
    beside_region_max_elongation: float = 0.0  # > 0: sqrt(largest / second principal moment) at most this
    outline_beyond_roi: bool = False  # the outline may grow past the ROI's edge by its own rules (outline_beyond.py)
    outline_edge_trim: float = 0.0  # > 0: partial-volume surface voxels below this subtraction fraction removed (outline_edge.py)
    outline_island_min_pe: float = 0.0  # > 0: compact islands the vessel opening removed seed at this p90 PE (outline_islands.py)
    fat_sat_post_floor: bool = False  # fat-suppressed exams: dark tissue bright after contrast passes (fat_sat_floor.py)
    outline_kinetic_tol: float = 0.0  # > 0: tissue under the BPE level whose SER matches its core's (outline_kinetic.py)
    outline_local: str = "off"  # "level"/"edge": growth above the level of the tissue around each outline component (outline_local.py)
    outline_shell_min_pe: float = 0.0  # > 0: rim / necrotic tumors' strong shells the vessel opening removed seed the outline (outline_shells.py)
    dark_lesion_min_pe: float = 0.0  # > 0: compact tumors dark before contrast enhancing this much seed the outline (dark_lesions.py)
    outline_hull_mm: float = 0.0  # > 0: what each outline component's closing by this ball encloses joins it (outline_hull.py)

    def __post_init__(self):
        for name in ("background_fraction", "background_fraction_no_fat_sat"):
            if not 0 <= getattr(self, name) < 10:
                raise InputError(f"{name} {getattr(self, name)} is out of range", fix="use a fraction such as 0.6")
        if not 0 < self.background_percentile <= 100:
            raise InputError(f"background percentile {self.background_percentile} is out of range (0, 100]")
        if not 0 <= self.min_neighbors <= 26:
            raise InputError(f"min_neighbors {self.min_neighbors} must be between 0 and 26")
        if not self.ser_bands[0] < self.ser_bands[1]:
            raise InputError(f"SER band edges {self.ser_bands} must increase")
        if self.outline_pe < 0 or (self.outline_pe > 0 and self.outline_pe > self.pe_threshold):
            raise InputError(f"outline_pe {self.outline_pe} must be 0 (off) or between 0 and pe_threshold "
                             f"({self.pe_threshold})", fix="use e.g. 40")
        if self.outline_margin_mm < 0 or self.beside_region_mm < 0:
            raise InputError(f"outline_margin_mm {self.outline_margin_mm} and beside_region_mm {self.beside_region_mm} must be >= 0")
        if not 0 <= self.outline_edge_fraction <= 1:
            raise InputError(f"outline_edge_fraction {self.outline_edge_fraction} must be between 0 and 1",
                             fix="use e.g. 0.35")


@dataclass(frozen=True)
class Box:
    """An axis-aligned box in physical LPS millimetres (two opposite corners, any order).

    Slicer shows RAS coordinates: use :meth:`from_ras` for a box read off Slicer's views.
    """

    corner_a: tuple[float, float, float]
    corner_b: tuple[float, float, float]

    @classmethod
    def from_ras(cls, corner_a, corner_b) -> Box:
        flip = np.array([-1.0, -1.0, 1.0])
        return cls(tuple(np.asarray(corner_a, float) * flip), tuple(np.asarray(corner_b, float) * flip))

    @property
    def lps_min(self) -> np.ndarray:
        return np.minimum(self.corner_a, self.corner_b)

    @property
    def lps_max(self) -> np.ndarray:
        return np.maximum(self.corner_a, self.corner_b)


def box_mask(box: Box, reference: sitk.Image) -> np.ndarray:
    """Boolean (z, y, x) mask of the voxels of *reference* whose centres lie inside *box*.

    Works for oblique grids: the box's corners bound an index range, and only the voxels in
    that range are tested in physical space, one slice at a time.
    """
    lo, hi = box.lps_min, box.lps_max
    corners = np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])
    idx = np.array([reference.TransformPhysicalPointToContinuousIndex(tuple(map(float, c))) for c in corners])
    size = np.array(reference.GetSize())
    i0 = np.clip(np.floor(idx.min(axis=0)).astype(int), 0, size - 1)
    i1 = np.clip(np.ceil(idx.max(axis=0)).astype(int), 0, size - 1)
    mask = np.zeros(size[::-1], bool)
    direction = np.asarray(reference.GetDirection()).reshape(3, 3)
    m = direction * np.asarray(reference.GetSpacing())  # index (i, j, k) -> physical offset
    origin = np.asarray(reference.GetOrigin())
    ii, jj = np.meshgrid(np.arange(i0[0], i1[0] + 1), np.arange(i0[1], i1[1] + 1), indexing="xy")
    plane = ii[..., None] * m[:, 0] + jj[..., None] * m[:, 1]  # (nj, ni, 3)
    tol = 1e-6
    for k in range(i0[2], i1[2] + 1):
        p = plane + origin + k * m[:, 2]
        inside = np.all((p >= lo - tol) & (p <= hi + tol), axis=-1)
        mask[k, i0[1]:i1[1] + 1, i0[0]:i1[0] + 1] = inside
    return mask


def roi_array(roi, reference: sitk.Image) -> tuple[np.ndarray, str]:
    """The ROI as a boolean (z, y, x) array on *reference*'s grid and a short description.

    *roi*: None (whole volume), a mask ``sitk.Image`` (non-zero = inside; resampled nearest
    neighbour onto the exam grid when it is on another grid) or a :class:`Box`.
    """
    if roi is None:
        return np.ones(reference.GetSize()[::-1], bool), "whole volume"
    if isinstance(roi, Box):
        mask = box_mask(roi, reference)
        if not mask.any():
            raise InputError(f"the ROI box {roi.lps_min.round(1).tolist()}-{roi.lps_max.round(1).tolist()} "
                             "(LPS mm) does not overlap the exam",
                             fix="give the corners in LPS millimetres with --box, or the RAS coordinates Slicer shows with --box-ras")
        return mask, f"box LPS {roi.lps_min.round(1).tolist()} to {roi.lps_max.round(1).tolist()} mm"
    if isinstance(roi, sitk.Image):
        if roi.GetDimension() != 3:
            raise InputError(f"the ROI mask must be 3D, got {roi.GetDimension()}D")
        if not same_grid(roi, reference):
            roi = resample_to(roi, reference, sitk.sitkNearestNeighbor)
        mask = sitk.GetArrayViewFromImage(roi) > 0
        if not mask.any():
            raise InputError("the ROI mask is empty on the exam grid",
                             fix="check that the mask belongs to this exam (same patient position)")
        return np.asarray(mask), "mask"
    raise InputError(f"unsupported ROI of type {type(roi).__name__}", fix="pass a mask image or a Box")


# ----------------------------------------------------------------------------- the FTV rule
@dataclass
class FTVResult:
    mask: sitk.Image  # uint8 on the exam grid, 1 = functional tumor
    ftv_ml: float
    band_volumes_ml: dict[str, float] | None  # None when SER cannot be computed
    background_threshold: float
    fat_suppression: dict  # {"fat_suppressed": bool, "decided_by": ..., "bright_tissue_pe": ...}
    ser_used: bool
    roi: str
    maps: KineticMaps
    settings: FTVSettings
    notes: list[str] = field(default_factory=list)
    outline: sitk.Image | None = None  # whole-tumor outline (settings.outline_pe > 0), uint8
    outline_ml: float | None = None
    outline_level: float | None = None  # the outline's PE level (reused by kinetics/beside_region.py)

    def summary(self) -> dict:
        return {
            "ftv_ml": round(self.ftv_ml, 4),
            "outline_ml": None if self.outline_ml is None else round(self.outline_ml, 4),
            "ser_band_volumes_ml": None if self.band_volumes_ml is None
            else {k: round(v, 4) for k, v in self.band_volumes_ml.items()},
            "background_threshold": round(float(self.background_threshold), 4),
            "fat_suppression": self.fat_suppression,
            "ser_condition_used": self.ser_used,
            "roi": self.roi,
            "settings": asdict(self.settings),
            "kinetics": self.maps.info(),
            "notes": list(self.notes),
        }


def band_names(edges: tuple[float, float]) -> tuple[str, str, str]:
    lo, hi = edges
    return (f"ser<{lo:g}", f"{lo:g}<=ser<={hi:g}", f"ser>{hi:g}")


def ser_band_codes(ser: np.ndarray, mask: np.ndarray, edges: tuple[float, float]) -> np.ndarray:
    """uint8 array: 0 outside *mask*, 1 SER < lo, 2 lo <= SER <= hi, 3 SER > hi."""
    codes = np.full(ser.shape, 2, np.uint8)
    codes -= (ser < np.float32(edges[0])).view(np.uint8)
    codes += (ser > np.float32(edges[1])).view(np.uint8)
    codes *= np.asarray(mask, bool).view(np.uint8)
    return codes


def count_neighbors(mask: np.ndarray) -> np.ndarray:
    """Number (uint8) of set voxels among the 26 neighbours of every voxel (outside = empty)."""
    m = mask.astype(np.uint8)
    box = m
    for axis in range(3):
        box = ndimage.correlate1d(box, np.ones(3, np.uint8), axis=axis, mode="constant", cval=0)
    box -= m
    return box


def detect_fat_suppression(pre: np.ndarray, maps: KineticMaps, roi_mask: np.ndarray,
                           settings: FTVSettings | None = None) -> dict:
    """Is fat suppressed? Decided from how much the brightest pre-contrast tenth of the ROI enhances.

    Returns ``{"fat_suppressed", "decided_by", "bright_tissue_pe"}``; see the module docstring.
    """
    s = settings or FTVSettings()
    if s.fat_suppressed is not None:
        return {"fat_suppressed": bool(s.fat_suppressed), "decided_by": "user", "bright_tissue_pe": None}
    valid = maps.array("valid") > 0
    region = roi_mask & valid
    p90 = robust_percentile(pre, 90.0, region)
    pe = maps.array("pe_late") if maps.ser_available else maps.array("pe_early")
    bright = region & (pre >= np.float32(p90))
    if not bright.any():
        return {"fat_suppressed": True, "decided_by": "default (no bright tissue in the ROI)",
                "bright_tissue_pe": None}
    values = pe[bright]
    level = float(np.median(values))
    lo, hi = (robust_percentile(pre, q, region) for q in (30.0, 70.0))
    mid = region & (pre >= np.float32(lo)) & (pre <= np.float32(hi))
    mid_level = float(np.median(pe[mid])) if mid.any() else level
    # Fat never enhances. Without suppression the brightest tissue is fat and enhances less than
    # the darker (fibroglandular) tissue; with suppression it is parenchyma and enhances more.
    gap = level - mid_level
    suppressed = level >= s.fat_max_pe or (gap >= s.fat_sat_min_pe_gap and level >= 2 * s.fat_sat_min_pe_gap)
    why = (f"median PE of the brightest pre-contrast tenth of the ROI ({'late' if maps.ser_available else 'early'} "
           f"phase) vs {s.fat_max_pe:g} %, or its excess over the mid-signal tissue's vs {s.fat_sat_min_pe_gap:g} %")
    return {"fat_suppressed": bool(suppressed), "decided_by": why, "bright_tissue_pe": round(level, 3),
            "bright_minus_mid_pe": round(gap, 3),
            "bright_tissue_pe_sd": round(1.4826 * float(np.median(np.abs(values - level))), 3),
            "bright_tissue_pre": float(np.median(pre[bright]))}


def drop_skin_components(mask: np.ndarray, body: np.ndarray, spacing_zyx: np.ndarray, margin_mm: float) -> int:
    """Remove (in place) the 26-connected components of *mask* whose deepest voxel is less than
    *margin_mm* inside *body* (voxels with tissue signal; outside = air); returns how many.

    This removes the enhancing nipple and skin, which I-SPY readers leave out with their ROI box;
    a tumor reaching the skin keeps all its voxels as long as part of it lies deeper than the
    margin. The depth is measured from the air, not from an ROI mask, so a breast mask that cuts a
    tumor at the chest wall does not make the tumor look superficial.
    """
    box = _bbox(mask)
    if box is None:
        return 0
    labels, _ = ndimage.label(mask[box], structure=np.ones((3, 3, 3), bool))
    pad = np.ceil(margin_mm / spacing_zyx).astype(int) + 1
    removed = 0
    for lab, sl in enumerate(ndimage.find_objects(labels), start=1):
        if sl is None:
            continue
        lo = [max(0, b.start + s.start - p) for b, s, p in zip(box, sl, pad)]
        hi = [min(n_, b.start + s.stop + p) for b, s, p, n_ in zip(box, sl, pad, mask.shape)]
        crop = tuple(slice(a, b) for a, b in zip(lo, hi))
        inside = body[crop]
        if inside.all():
            continue  # no air within the margin of this component
        depth = ndimage.distance_transform_edt(inside, sampling=spacing_zyx)
        comp = np.zeros(inside.shape, bool)
        off = [b.start + s.start - a for b, s, a in zip(box, sl, lo)]
        comp[tuple(slice(o, o + s.stop - s.start) for o, s in zip(off, sl))] = labels[sl] == lab
        if depth[comp].max() < margin_mm:
            mask[crop] &= ~comp
            removed += 1
    return removed


def functional_tumor_volume(exam: DCEExam, roi=None, settings: FTVSettings | None = None,
                            maps: KineticMaps | None = None, kinetic_settings: KineticSettings | None = None,
                            reporter: Reporter | None = None) -> FTVResult:
    """Apply the FTV rule of the module docstring to *exam* inside *roi*."""
    s = settings or FTVSettings()
    if maps is None:
        maps = compute_kinetic_maps(exam, kinetic_settings, reporter)
    ref = exam.reference
    roi_mask, roi_desc = roi_array(roi, ref)
    pre = sitk.GetArrayViewFromImage(exam.pre).astype(np.float32, copy=False)
    fat = detect_fat_suppression(pre, maps, roi_mask, s)
    fraction = s.background_fraction if fat["fat_suppressed"] else s.background_fraction_no_fat_sat
    base_bg = fraction * robust_percentile(pre, s.background_percentile, roi_mask)  # without the noise floor
    bg = base_bg
    pe = maps.array("pe_early")
    valid = maps.array("valid") > 0
    if not fat["fat_suppressed"]:
        early = sitk.GetArrayViewFromImage(exam.phases[maps.phases.early])
        sd = difference_noise(pre, early, roi_mask & valid)
        if sd is not None:
            # PE's noise at signal S is 100 * sd / S: at most pe_threshold / noise_z above the floor.
            noise_floor = s.noise_z * 100.0 * sd / max(s.pe_threshold, 1e-6)
            fat["noise_floor"] = float(f"{noise_floor:.6g}")
            bg = max(bg, noise_floor)

    bg_ok = background_ok(pre, bg, exam, maps, roi_mask & valid, fat, s)
    cand = roi_mask & valid & bg_ok
    cand &= pe >= np.float32(s.pe_threshold)
    tumor = _neighbours_rule(cand, s.min_neighbors)
    notes = list(maps.notes)
    if not fat["fat_suppressed"]:
        notes.append(f"fat is not suppressed ({fat['decided_by']}: {fat['bright_tissue_pe']}); background "
                     f"threshold max({fraction:g} x p{s.background_percentile:g}, noise floor) = {bg:.4g} instead "
                     f"of the I-SPY {s.background_fraction:g} x p{s.background_percentile:g}; pass "
                     "--fat-suppressed yes (Python: fat_suppressed=True) to force the I-SPY rule")
    ser_used = maps.ser_available
    bands = None
    vox_ml = voxel_volume_ml(ref)
    if ser_used:
        ser = maps.array("ser")
        tumor &= ser >= np.float32(s.ser_min)
    strong = tumor.copy() if s.outline_pe > 0 and s.outline_thick_regions else tumor
    cand_strong = tumor.copy() if s.outline_pe > 0 and (s.outline_compact_islands or s.outline_island_min_pe > 0) else None
    if s.vessel_radius_mm > 0:
        box = _bbox(tumor)
        if box is not None:
            before = int(np.count_nonzero(tumor))
            tumor[box] = open_and_regrow(tumor[box], np.asarray(ref.GetSpacing())[::-1], s.vessel_radius_mm)
            notes.append(f"structures thinner than {2 * s.vessel_radius_mm:g} mm (vessels) removed: "
                         f"{before - int(np.count_nonzero(tumor))} voxels (vessel_radius_mm)")
    if s.skin_margin_mm > 0:
        dropped = drop_skin_components(tumor, valid, np.asarray(ref.GetSpacing())[::-1], s.skin_margin_mm)
        if dropped:
            notes.append(f"{dropped} enhancing component(s) lying within {s.skin_margin_mm:g} mm of the body "
                         "surface (nipple, skin) left out (skin_margin_mm)")
    outline = outline_ml = None
    if s.outline_pe > 0:
        spacing_zyx = np.asarray(ref.GetSpacing())[::-1]
        tissue = roi_mask & valid & bg_ok
        grow, level, bpe = outline_growth(pe, tissue, strong, ser if ser_used else None, spacing_zyx, s)
        seeds = tumor
        if s.outline_significance and not fat["fat_suppressed"] and bg > base_bg:
            early = sitk.GetArrayViewFromImage(exam.phases[maps.phases.early])
            seeds, grow = significant_seeds(
                pre, early, pe, cand, roi_mask & valid, tissue, seeds, grow, level, base_bg, ser if ser_used else None,
                spacing_zyx, s, fat, notes, lambda c: _core_rules(c, valid, ser if ser_used else None, spacing_zyx, s))
        if s.outline_beyond_roi:
            grow = grow | growth_beyond_roi(seeds, roi_mask, valid, pre, pe, bg, level, ser if ser_used else None,
                                            s.ser_min, spacing_zyx, s.outline_margin_mm, s.skin_margin_mm)
        if (s.outline_compact_islands or s.outline_island_min_pe > 0) and s.vessel_radius_mm > 0:
            islands = island_seeds(cand_strong, seeds, spacing_zyx, s.vessel_radius_mm, notes) if s.outline_compact_islands \
                else marked_islands(cand_strong, pe, spacing_zyx, s.vessel_radius_mm, s.outline_island_min_pe, notes)
            if s.skin_margin_mm > 0:
                drop_skin_components(islands, valid, spacing_zyx, s.skin_margin_mm)
            seeds = seeds | islands
        thick = s.outline_thick_regions and s.vessel_radius_mm > 0
        edge_ok = (roi_mask & valid & (pre >= np.float32(0.5 * bg))) if s.outline_half_maximum else None
        out = whole_tumor_outline(seeds, grow, pe, spacing_zyx, s.outline_margin_mm,
                                  edge_fraction=s.outline_edge_fraction,
                                  edge_min_pe=s.outline_edge_over_level * level, strong=strong if thick else None,
                                  thick_radius_mm=s.vessel_radius_mm if thick else 0.0, edge_allowed=edge_ok,
                                  edge_below_pe=s.pe_threshold,
                                  seeds_per_region=s.outline_compact_islands and s.vessel_radius_mm > 0)
        if thick and s.skin_margin_mm > 0:
            drop_skin_components(out, valid, spacing_zyx, s.skin_margin_mm)
        out = below_level_growth(out | seeds, seeds, tissue, pe, ser if ser_used else None, spacing_zyx, s, level, notes)
        if s.outline_close_mm > 0:
            out, n_bay = fill_concavities(out, tissue & (pe >= np.float32(s.outline_close_pe)), spacing_zyx,
                                          s.outline_close_mm)
            notes.append(f"{n_bay} voxels enhancing >= {s.outline_close_pe:g} % in the outline's bays (closing by a "
                         f"{s.outline_close_mm:g} mm ball) added (outline_close_mm)")
        if s.outline_edge_trim > 0:
            out, n_trim = trim_partial_volume_shell(out, pre, sitk.GetArrayViewFromImage(exam.phases[maps.phases.early]),
                                                    tissue, spacing_zyx, s.outline_edge_trim)
            notes.append(f"{n_trim} partial-volume surface voxels removed (outline_edge_trim {s.outline_edge_trim:g})")
        outline_ml = float(np.count_nonzero(out)) * vox_ml
        outline = from_array(out.astype(np.uint8), ref)
        bpe_text = "no enhancing background tissue" if bpe is None else \
            f"p{s.outline_bpe_percentile:g} of the background parenchymal enhancement {bpe:.1f} %"
        notes.append(f"whole-tumor outline: FTV core plus connected tissue with PE >= {level:.1f} % (the larger "
                     f"of outline_pe {s.outline_pe:g} % and the {bpe_text}) within {s.outline_margin_mm:g} mm of "
                     "the core, enclosed cavities filled")
    if ser_used:
        codes = ser_band_codes(ser, tumor, s.ser_bands)
        counts = np.bincount(codes.ravel(), minlength=4)
        bands = {name: float(counts[i + 1]) * vox_ml for i, name in enumerate(band_names(s.ser_bands))}
    else:
        notes.append("SER >= 0 condition skipped: the exam has a single post-contrast phase")
    ftv = float(np.count_nonzero(tumor)) * vox_ml
    return FTVResult(from_array(tumor.astype(np.uint8), ref), ftv, bands, bg, fat, ser_used, roi_desc,
                     maps, s, notes, outline, outline_ml, level if outline is not None else None)


def _neighbours_rule(cand: np.ndarray, min_neighbors: int) -> np.ndarray:
    """*cand* where at least *min_neighbors* of the 26 neighbours are set too (rule 3)."""
    tumor = np.zeros(cand.shape, bool)
    box = _bbox(cand)
    if box is not None:
        c = cand[box]
        tumor[box] = c & (count_neighbors(c) >= min_neighbors)
    return tumor


def _core_rules(cand: np.ndarray, valid: np.ndarray, ser: np.ndarray | None, spacing_zyx: np.ndarray,
                s: FTVSettings) -> np.ndarray:
    """Rules 3-4 and the segmenter's vessel opening and skin rule (when set) on candidates *cand*."""
    core = _neighbours_rule(cand, s.min_neighbors)
    if ser is not None:
        core &= ser >= np.float32(s.ser_min)
    box = _bbox(core)
    if box is not None and s.vessel_radius_mm > 0:
        core[box] = open_and_regrow(core[box], spacing_zyx, s.vessel_radius_mm)
    if s.skin_margin_mm > 0:
        drop_skin_components(core, valid, spacing_zyx, s.skin_margin_mm)
    return core


# ----------------------------------------------------------------------------- probability map
def soft_probability(inside: np.ndarray, score: np.ndarray, threshold: float,
                     below: np.ndarray | None = None) -> np.ndarray:
    """Probability-like float32 map from a binary decision and the score that drove it.

    Inside the decision: ``0.6 + 0.4 * clip((score - threshold) / threshold, 0, 1)`` (0.6 at the
    threshold, 1.0 at twice the threshold). Outside it, where *below* is set:
    ``0.45 * clip(score / threshold, 0, 1)`` (a near-miss stays under 0.5). Elsewhere 0.
    So thresholding at 0.5 gives back exactly the decision, and averaging with a network's
    probability (ensembles) stays meaningful.
    """
    t = np.float32(max(threshold, 1e-6))
    prob = np.zeros(score.shape, np.float32)
    over = np.clip((score - t) / t, 0.0, 1.0).astype(np.float32, copy=False)
    np.copyto(prob, np.float32(0.6) + np.float32(0.4) * over, where=inside)
    if below is not None:
        near = below & ~inside
        under = np.clip(score / t, 0.0, 1.0).astype(np.float32, copy=False)
        np.copyto(prob, np.float32(0.45) * under, where=near)
    return prob


# As a segmenter (models.ftv_segmenter) or with an automatic breast ROI, the ROI leaves in the enhancing
# nipple, skin and thin vessels that a reader's box would exclude: these margins remove them.
SEGMENTER_SKIN_MARGIN_MM = 8.0
SEGMENTER_VESSEL_RADIUS_MM = 2.0
# ... and the whole tumor, as a reader outlines it, not only its strongly enhancing FTV core.
SEGMENTER_OUTLINE_PE = 40.0


def lesion_kinetics(exam: DCEExam, label_image: sitk.Image, maps: KineticMaps | None = None,
                    settings: FTVSettings | None = None) -> dict[int, dict]:
    """Kinetic description of each labelled lesion.

    For each label: ``volume_ml``; from the lesion's mean signal-time curve the early/late/peak
    PE, SER, curve type, initial enhancement class and time to peak (``mean_curve_*`` keys);
    voxel-wise ``peak_pe_percent`` (95th percentile of each voxel's maximum PE, a robust peak),
    ``ser_median`` and the fraction of voxels with each curve type; and the lesion's volume in
    each SER band. Values are plain floats/strings (JSON ready).
    """
    s = settings or FTVSettings()
    if maps is None:
        maps = compute_kinetic_maps(exam)
    ref = exam.reference
    if not same_grid(label_image, ref):
        raise InputError("the label image is not on the exam grid",
                         fix="resample the segmentation onto the pre-contrast image first")
    labels = sitk.GetArrayViewFromImage(label_image)
    vox_ml = voxel_volume_ml(ref)
    pe_peak = maps.array("pe_peak")
    curve = maps.array("curve_type")
    ser = maps.array("ser")
    phases = [sitk.GetArrayViewFromImage(p) for p in exam.phases]
    out: dict[int, dict] = {}
    objects = ndimage.find_objects(np.asarray(labels, dtype=np.int64) if labels.dtype.kind not in "iu" else labels)
    for idx, box in enumerate(objects, start=1):
        if box is None:
            continue
        m = labels[box] == idx
        n = int(np.count_nonzero(m))
        if n == 0:
            continue
        mean_sig = [float(np.mean(p[box][m], dtype=np.float64)) for p in phases]
        d = {"volume_ml": n * vox_ml}
        for k, v in mean_curve_kinetics(maps.times_min, mean_sig, maps.phases, maps.settings).items():
            d[f"mean_curve_{k}"] = v
        d["peak_pe_percent"] = float(np.percentile(pe_peak[box][m], 95))
        cv = curve[box][m]
        assessed = max(1, int(np.count_nonzero(cv)))
        for code, name in CURVE_NAMES.items():
            if code:
                d[f"{name}_fraction"] = float(np.count_nonzero(cv == code)) / assessed
        if ser is not None:
            sv = ser[box][m]
            d["ser_median"] = float(np.median(sv))
            codes = ser_band_codes(sv, np.ones(sv.shape, bool), s.ser_bands)
            counts = np.bincount(codes, minlength=4)
            for i, name in enumerate(band_names(s.ser_bands)):
                d[f"volume_ml_{name}"] = float(counts[i + 1]) * vox_ml
        else:
            d["ser_median"] = None
        d["kinetics_notes"] = list(maps.notes)
        out[idx] = d
    return out
