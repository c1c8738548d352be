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
7002: 47 -> 96 false-positive lesions). Those background islands barely pass the PE threshold; a
tumor's strong part enhances markedly. :func:`marked_islands` therefore keeps a compact island as
an outline seed only when it holds at least ``OUTLINE_MIN_CORE_ML`` (an outline grows from no
smaller core) and the ``ISLAND_PE_PERCENTILE`` (90th) percentile of its PE reaches
``outline_island_min_pe``. The false-positive reduction (``engine/fpreduce.py``) judges the
resulting lesion like any other.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

from .outline import FULL26, OUTLINE_MIN_CORE_ML

ISLAND_PE_PERCENTILE = 90.0


def marked_islands(islands: np.ndarray, pe: np.ndarray, spacing_zyx, min_pe: float,
                   notes: list | None = None) -> np.ndarray:
    """The 26-connected components of *islands* of at least ``OUTLINE_MIN_CORE_ML`` whose
    ``ISLAND_PE_PERCENTILE`` percentile of *pe* reaches *min_pe* (module docstring)."""
    labels, n = ndimage.label(islands, structure=FULL26)
    keep = np.zeros(n + 1, bool)
    vox_ml = float(np.prod(np.asarray(spacing_zyx, float))) / 1000.0
    for lab, sl in enumerate(ndimage.find_objects(labels), start=1):
        if sl is None:
            continue
        values = pe[sl][labels[sl] == lab]
        keep[lab] = values.size * vox_ml >= OUTLINE_MIN_CORE_ML and \
            float(np.percentile(values, ISLAND_PE_PERCENTILE)) >= min_pe
    out = keep[labels]
    if notes is not None:
        notes.append(f"{int(keep.sum())} of {n} compact islands kept as outline seeds: >= {OUTLINE_MIN_CORE_ML:g} mL "
                     f"with p{ISLAND_PE_PERCENTILE:g} PE >= {min_pe:g} % (outline_island_min_pe)")
    return out
