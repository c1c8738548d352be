"""A floor that curves with the chest wall, for two-breast views (issue 25, ``CURVED_FLOOR``, off).

The breast region ends at one flat row per axial slice of the LPS work grid (the skin over the sternum + 12 mm).
In a two-breast view the chest wall curves back laterally, so the back of the lateral breast lies behind that
floor: region19's census (docs/decisions/breast-region-reach-issue25.md) found 19 development lesions there (24
with the two-breast views whose midline is the body centre), the true breast's floor a median 31 mm behind the
region's. The behind-floor step (:mod:`.behind_floor`) already looks 100 mm behind the floor, but in a band that
runs into the chest-wall muscle: a lesion lying on the muscle is outlined with the enhancing tissue it touches
and is dropped as "cut" (continuing through the band's deep end) or "elongated" (development randomised 7011,
7030, 7033, 7034, vessels 7004, irregular 7005).

This step traces the chest-wall surface per (z, x) column (:func:`chest_wall_surface`: from the pre-contrast image,
fat-suppressed or not) and hands the zone between the flat floor and that surface to the lesion stage as a band
of its own, judged by the behind-floor step's guards and its component classifier (the same ``judge``):

1. Fat level: the most frequent intensity of the smoothed pre-contrast image inside the breast region
   (:func:`..preprocess.chestwall.fat_level`): the breast is mostly fat, bright without fat suppression and
   dark with it.
2. Chest wall per column: the first row behind the flat floor that starts :data:`MUSCLE_RUN_MM` of tissue that is
   not fat-like (the pectoral muscle sheet, ribs; a vessel crossing the column is thinner).
3. Forward bumps narrower than :data:`BUMP_MM` (a tumor or a glandular island lying on the muscle: they also start
   a run of non-fat tissue) are closed (a grey-level closing of the surface's row over z and x): the surface
   follows the muscle under them.
4. The band: the body behind the flat floor up to :data:`WALL_MM` behind the surface (a tumor lying on the
   muscle does not reach the band's deep end; the muscle does not enhance like a tumor and is not outlined), the
   surface no more than :data:`MAX_DEPTH_MM` behind the floor, only in columns that hold breast region in front (never beside the
   breast: the axilla), only in two-breast views (the layout's ``n_breasts`` 2; a one-breast view has no
   sternum in view and its floor is another problem). The heart, the mediastinum and the lungs lie behind the
   chest wall, out of the band; the band's deep end is its outer layer, so a structure continuing into the
   chest wall is cut there as in the behind-floor band.

Nothing the behind-floor step already added is added twice, the FTV region and its exam-wide statistics are not
touched (the band is outlined with the first run's thresholds), and the gate's level moves as for the
behind-floor step's components.

**Off**: a switch until its rule (docs/decisions/curved-floor-issue25.md) passes.
"""
from __future__ import annotations

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from ..kinetics.deep_band import band_lesions, outer_layer
from ..preprocess.chestwall import FAT_TOLERANCE, fat_level

CURVED_FLOOR = False  # off until docs/decisions/curved-floor-issue25.md passes
MUSCLE_RUN_MM = 6.0  # non-fat tissue at least this deep along the column starts the chest wall
BUMP_MM = 30.0  # forward bumps of the traced surface narrower than this (over z and x) are closed
MAX_DEPTH_MM = 80.0  # the band ends no more than this far behind the flat floor
WALL_MM = 4.0  # the band reaches this far into the chest wall: its deep end (where a structure is cut) lies there
SMOOTH_MM = 1.5  # Gaussian smoothing of the pre-contrast image before the fat decision


def two_breast_view(context: dict) -> bool:
    """Whether *context* (:func:`..preprocess.breast_region.breast_region`) is a volume with a flat floor and two breasts."""
    return (context.get("slab") is None and context.get("level") is not None and context.get("chest_wall_row") is not None
            and int((context.get("layout") or {}).get("n_breasts") or 0) == 2)


def chest_wall_surface(context: dict) -> np.ndarray | None:
    """Float (z, x) on the work grid: the row of the chest wall's front behind the region's flat floor (module
    docstring, steps 1-3), NaN where none is found within :data:`MAX_DEPTH_MM`; None when no fat level is found."""
    work, body = context["work"], context["body"]
    floor = np.asarray(context["chest_wall_row"], float)
    sy = work.GetSpacing()[1]
    rows = np.arange(body.shape[1])[None, :, None]
    smooth = sitk.GetArrayFromImage(sitk.SmoothingRecursiveGaussian(work, SMOOTH_MM))
    level = fat_level(smooth, body & (rows <= floor[:, None, :]))
    if level is None:
        return None
    nonfat = body & (rows > floor[:, None, :]) & ((smooth < level / (1.0 + FAT_TOLERANCE)) |
                                                  (smooth > level * (1.0 + FAT_TOLERANCE)))
    k = max(1, int(round(MUSCLE_RUN_MM / sy)))
    csum = np.concatenate([np.zeros_like(nonfat[:, :1], dtype=np.int32), np.cumsum(nonfat, axis=1, dtype=np.int32)], axis=1)
    starts = (csum[:, k:, :] - csum[:, :-k, :]) == k  # row r starts k non-fat rows
    found = starts.any(axis=1)
    surf = np.where(found, np.argmax(starts, axis=1), np.nan).astype(float)
    cap = floor + MAX_DEPTH_MM / sy
    surf[surf > cap] = np.nan
    missing = ~np.isfinite(surf)
    if missing.all():
        return surf
    size = (max(1, int(round(BUMP_MM / work.GetSpacing()[2]))) | 1, max(1, int(round(BUMP_MM / work.GetSpacing()[0]))) | 1)
    closed = ndimage.grey_closing(np.where(missing, cap, surf), size=size, mode="nearest")
    closed = np.minimum(closed, cap)
    closed[missing] = np.nan
    return closed


def curved_band(context: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(band, deep end layer, deep end row per (z, x) or -1) on the work grid (module docstring, step 4), or None
    (not a two-breast view, no surface, or an empty band)."""
    if not two_breast_view(context):
        return None
    surf = chest_wall_surface(context)
    if surf is None:
        return None
    body = context["body"]
    floor = np.asarray(context["chest_wall_row"], float)
    rows = np.arange(body.shape[1])[None, :, None]
    region_cols = (body & (rows <= floor[:, None, :])).any(axis=1)
    ok = np.isfinite(surf) & region_cols
    deep = np.where(ok, surf + WALL_MM / context["work"].GetSpacing()[1], -1.0)
    band = body & ok[:, None, :] & (rows > floor[:, None, :]) & (rows <= deep[:, None, :])
    if not band.any():
        return None
    return band, outer_layer(band, body & ok[:, None, :] & (rows > deep[:, None, :])), deep


def curved_floor_lesions(exam, first, settings, maps, context: dict, added: np.ndarray, judge) -> tuple[np.ndarray, list[str]]:
    """(components to add on the exam grid, notes): the components of the curved band (:func:`curved_band`) that
    pass *judge* (the behind-floor step's guards and classifier) and do not meet what that step already *added*."""
    def judge_new(comp, sl, box, labels, pe):
        if added[box][sl][comp].any():
            return "already added"
        return judge(comp, sl, box, labels, pe)

    got = band_lesions(exam, first, settings, maps, context, curved_band(context),
                       ("curved floor: not a two-breast view, or no chest-wall surface", "curved floor: no enhancement",
                        "curved floor (between the flat floor and the chest wall): "),
                       {"added": 0, "joining": 0, "cut": 0, "already added": 0, "small, large or weak": 0, "elongated": 0,
                        "beside the breast": 0, "a piece of a larger enhancing body": 0, "vessel-like": 0}, judge_new)
    return got[0], got[1]
