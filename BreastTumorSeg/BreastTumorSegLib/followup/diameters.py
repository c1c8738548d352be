"""A track's longest diameter at a visit taken over all its lesions there together (on by default fu12-fu16; off since fu17).

RECIST 1.1 adds the longest diameters of a lesion's fragments, and the change table does so for the
lesions of one track at a visit (:mod:`.response`). But the segmentation of a heterogeneous tumor can
cut one tumor into pieces that the tumor itself never broke into (parts enhancing below the PE
threshold): three pieces of a 14 mm tumor measured 13 + 10 + 6 = 29 mm on development (heterogeneous
6015), a response read as stable disease. With :class:`DiameterSettings` ``union``, a track's longest
diameter at a visit is the longest (Feret) diameter of the union of its lesions there, as a reader
measures one tumor across its whole extent; with ``MeasureSettings(diameters=True)`` (:mod:`.measure`),
the union of the track's outline at that visit instead of its pieces' sum.

A tumor that truly broke up under treatment is then measured across its pieces, not as their sum (the
synthetic truth adds the pieces' diameters, as RECIST's letter asks): the cost of this setting, measured
with it on the development series (``docs/decisions/followup-consistency-issue31.md``). On fresh development and
held-out series that cost was larger than its gain (``docs/decisions/followup-recist-issue31.md``, fu17): the
setting is off by default since fu17, the pieces' diameters added.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

from ..core.imageutil import from_array


@dataclass(frozen=True)
class DiameterSettings:
    # On from fu12 (docs/decisions/followup-consistency-issue31.md: heterogeneous development 6000-6029 RECIST
    # 34 -> 36/45; held-out 5030-5049 unchanged) to fu17; off since fu17 (docs/decisions/followup-recist-issue31.md):
    # on 40 fresh development series (ellipse 6010-6029, heterogeneous 6030-6049) 7 of 16 wrong categories were
    # tumors cut in two by treatment, whose pieces RECIST 1.1 adds; the pieces added took RECIST 44 -> 47/60 there
    # and 16 -> 18/30 on held-out ellipse + heterogeneous 5110-5119 (matching 38/50, volume median 5.33 points,
    # unchanged). False: the pieces' diameters added (RECIST's fragment rule); True: their union, one tumor.
    union: bool = False


def union_diameter(mask: np.ndarray, like: sitk.Image) -> float:
    """The longest (Feret) diameter, in mm, of *mask* (z, y, x bool on *like*'s grid) taken as one object."""
    if not mask.any():
        return 0.0
    img = from_array(mask.astype(np.uint8), like)
    stats = sitk.LabelShapeStatisticsImageFilter()
    stats.ComputeFeretDiameterOn()
    stats.Execute(img)
    return float(stats.GetFeretDiameter(1))


def union_diameters(tracks, visits, measured: dict, s: DiameterSettings | None = None) -> dict:
    """*measured* ((track id, visit) -> measures, :func:`.measure.measure_tracks`) with, when ``s.union``,
    the longest diameter of every track holding two or more lesions at a visit, and no diameter measured
    there yet, taken over the union of those lesions (*visits*: the follow-up's, components on their grids)."""
    s = s or DiameterSettings()
    if not s.union:
        return measured
    out = {key: dict(m) for key, m in measured.items()}
    for t in tracks:
        for k, labs in t.members.items():
            if len(labs) < 2 or "longest_diameter_mm" in out.get((t.track_id, k), {}):
                continue
            comp = sitk.GetArrayViewFromImage(visits[k].components)
            out.setdefault((t.track_id, k), {})["longest_diameter_mm"] = union_diameter(
                np.isin(comp, labs), visits[k].components)
    return out
