"""Tumors whose strongly enhancing part the vessel opening removed: compact islands of marked
enhancement as outline seeds (``FTVSettings.outline_island_min_pe``, used by :mod:`.ftv`).

The segmenter opens FTV's core with a 2 mm ball (``vessel_radius_mm``) so that vessels do not seed
the outline. A small tumor, or a rim-enhancing / necrotic one, whose strongly enhancing part is
thinner than that ball loses its whole core and then its whole outline: on development seeds
7000-7009 (``benchmarks/bench_outline_losses.py``) 3 of the 7 lesions that ``ftv-outline`` missed
in the ``vessels`` and ``irregular`` families had no core, and each of them did have PE >= 70 % in
45-60 % of its voxels (vessels 7007: a necrotic 1.0 mL mass, 7009: a necrotic 0.6 mL and a rim
0.5 mL mass); with the opening off their cores come back (77, 77 and 52 voxels).

:mod:`.significance` already has the shape half of a rule for this (``outline_compact_islands``:
the components the opening removed entirely that are compact, not tube-like), off because the
background parenchymal enhancement of our original family is full of such islands (development seed
7002: 47 -> 96 false-positive lesions). Those background islands mostly enhance less than a tumor's
strong part (phantom 7002: PE p90 99-132 %, 12 of 14 islands of >= 0.1 mL under 125 %; the two tumor
islands of vessels 7009: 130 and 135 %). :func:`marked_islands` therefore keeps a compact island as
an outline seed only when it holds at least ``OUTLINE_MIN_CORE_ML`` (an outline grows from no
smaller core) and the ``ISLAND_PE_PERCENTILE`` (90th) percentile of its PE reaches
``outline_island_min_pe``. The false-positive reduction (``engine/fpreduce.py``) judges the
resulting lesion like any other. On in ``ftv-outline`` at 125 % by the rule fixed before the runs
(``docs/decisions/weak-cores-issue25.md``: development 7000-7009 vessels lesions 12 -> 14 of 18, no
family lower; held-out 5004-5007 and 5010-5013 unchanged).

Cost: size and PE are tested first and the opening is done in each remaining component's own box,
not over the breast (on the 448 x 448 x 160 benchmark exam a whole-breast opening added 2-3 s to
FTV's ~6 s). The result is that of :func:`~.significance.compact_islands` (a component the opening
removes entirely and that is compact) with the size and PE conditions added. With
``outline_compact_islands`` on, that option's own rule is used instead.
"""
from __future__ import annotations

import numpy as np

from ..core.imageutil import labels_in_box, padded_components
from .outline import FULL26, OUTLINE_MIN_CORE_ML
from .seeded import open_and_regrow
from .significance import ISLAND_MAX_ELONGATION, ISLAND_MAX_LENGTH_MM, ISLAND_MIN_VOXELS, principal_shapes

ISLAND_PE_PERCENTILE = 90.0


def marked_islands(strong: np.ndarray, pe: np.ndarray, spacing_zyx, radius_mm: float, min_pe: float,
                   notes: list | None = None) -> np.ndarray:
    """The 26-connected components of *strong* (FTV's core before its vessel opening) that hold
    >= ``OUTLINE_MIN_CORE_ML``, whose ``ISLAND_PE_PERCENTILE`` percentile of *pe* reaches
    *min_pe*, that the opening by *radius_mm* removes entirely and that are compact (module docstring)."""
    sp = np.asarray(spacing_zyx, float)
    labels, n = labels_in_box(strong, FULL26)  # in the cores' box: the same labels
    keep = np.zeros(n + 1, bool)
    vox_ml = float(np.prod(sp)) / 1000.0
    pad = int(np.ceil(radius_mm / float(np.min(sp)))) + 2
    tried = 0
    for lab, sl, comp in padded_components(labels):
        if np.count_nonzero(comp) * vox_ml < OUTLINE_MIN_CORE_ML or \
                float(np.percentile(pe[sl][comp], ISLAND_PE_PERCENTILE)) < min_pe:
            continue
        tried += 1
        box = tuple(slice(max(b.start - pad, 0), min(b.stop + pad, m)) for b, m in zip(sl, strong.shape))
        alone = labels[box] == lab
        if open_and_regrow(alone, sp, radius_mm).any():
            continue  # a thick part survives the opening: not an island
        for _, voxels, elong, length in principal_shapes(alone.astype(np.uint8), sp):
            keep[lab] = voxels >= ISLAND_MIN_VOXELS and elong <= ISLAND_MAX_ELONGATION and length <= ISLAND_MAX_LENGTH_MM
    out = keep[labels]
    if notes is not None:
        notes.append(f"{int(keep.sum())} compact islands removed by the vessel opening kept as outline seeds "
                     f"(of {tried} of >= {OUTLINE_MIN_CORE_ML:g} mL with p{ISLAND_PE_PERCENTILE:g} PE >= {min_pe:g} %; "
                     "outline_island_min_pe)")
    return out
