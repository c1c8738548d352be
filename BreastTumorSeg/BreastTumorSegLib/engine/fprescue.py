"""A second look at a component the vessel classifier rejects: is there a tumor under the vessel?

:mod:`.fpreduce` cuts a vessel off a lesion only when the lesion has a part ``split_radius_mm``
(3 mm) deep. A small tumor (under about 1 mL) with a vessel leaving it has no such part: tumor and
vessel are one elongated component, which the classifier rejects as a whole, deleting the tumor
(issue 25; development seed ``heterogeneous`` 7000: a 0.44 mL tumor, Dice 0 -> 0.68 with this step).

:func:`rescue_part` opens the rejected component by a ball of ``rescue_radius_mm`` (on distance
maps, like :func:`~.fpreduce.split_component`; the hole-filled depth, so a ring is as thick as its
outline): a vessel is thinner than that ball and disappears, a tumor's body stays with its own
outline. The largest opened part is a candidate of its own when it

* holds at least ``rescue_min_ml``,
* is compact: principal-axis elongation at most ``rescue_max_elongation`` (a thick vessel or a
  vessel bend is long, a tumor body is not),
* and the same classifier, given the part alone, calls it a tumor.

Then the part is kept (flag ``vessel_part_removed``, the rest of the component reported as
removed) instead of the whole component going. On for "ftv-outline" (its card's ``postprocess``
says ``"fp_rescue": true``; :func:`rescue_radius`), off with ``SegmentSettings(fp_rescue=False)``
and for the other models unless ``fp_rescue=True``. Nothing else changes: a component the classifier
keeps is never touched, and a rejected one without such a part is removed as before.
"""
from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from ..core.imageutil import from_array, voxel_volume_ml
from .shape import depth_mm, distance_from_mm, elongation_flatness

RESCUE_RADIUS_MM = 2.0  # the vessel ball of FTV's core (SEGMENTER_VESSEL_RADIUS_MM): a vessel is thinner


def rescue_radius(card: dict, chosen: bool | None) -> float:
    """``FPReduceSettings.rescue_radius_mm`` for a run: ``RESCUE_RADIUS_MM`` when *chosen*
    (``SegmentSettings.fp_rescue``) is True, or is None and the model card's ``postprocess`` says
    ``"fp_rescue": true`` ("ftv-outline"); else 0 (off)."""
    on = bool((card.get("postprocess") or {}).get("fp_rescue", False)) if chosen is None else bool(chosen)
    return RESCUE_RADIUS_MM if on else 0.0


def rescue_part(mask: np.ndarray, like: sitk.Image, radius_mm: float, min_ml: float,
                max_elongation: float) -> np.ndarray | None:
    """The largest part of *mask* (boolean, on *like*'s grid) left by an opening with a ball of
    *radius_mm*, when it holds >= *min_ml* and its elongation is <= *max_elongation*; else None.
    The classifier's check is the caller's (:func:`~.fpreduce.reduce_false_positives`)."""
    depth = depth_mm(from_array(mask.astype(np.uint8), like))
    core = depth >= radius_mm
    if not core.any():
        return None
    opened = mask & (distance_from_mm(core, like) <= radius_mm + 1e-3)
    if not opened.any() or np.array_equal(opened, mask):
        return None
    cc = sitk.RelabelComponent(sitk.ConnectedComponent(from_array(opened.astype(np.uint8), like), True),
                               sortByObjectSize=True)
    part = sitk.GetArrayFromImage(cc) == 1
    if float(np.count_nonzero(part)) * voxel_volume_ml(like) < min_ml:
        return None
    if elongation_flatness(part, like)[0] > max_elongation:
        return None
    return part
