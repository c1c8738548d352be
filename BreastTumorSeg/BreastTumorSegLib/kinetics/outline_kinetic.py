"""Moderately enhancing tumor parts below the exam's background level, told apart by their kinetic curve
(``FTVSettings.outline_kinetic_tol``, used by :mod:`.ftv` for the whole-tumor outline).

The outline grows from the FTV core into tissue whose PE reaches the outline's level: the larger of
``outline_pe`` (40 %) and the exam's own background parenchymal enhancement (BPE, its 95th
percentile away from every core, :func:`~.outline.background_enhancement`). With marked BPE the
level rises to 50-62 % and the moderately enhancing lobes of a heterogeneous tumor (PE 45-65 %)
fall under it: on development seeds 7000-7009 (``benchmarks/bench_outline_losses.py``) this was the
largest loss inside the breast region of the ``vessels`` and ``irregular`` families after the
region itself (``pe<lvl``: e.g. vessels 7007 at level 62, 224 of 596 tumor voxels; irregular 7003
at level 58, 118 of 1432).

PE alone cannot tell such a lobe from BPE, the shape of the curve can: BPE rises slowly and keeps
rising (a low signal enhancement ratio, SER = early / late enhancement), while a tumor's parts share
its own curve. :func:`kinetic_growth` therefore adds, for each outline component, the tissue with
``outline_pe`` <= PE < the level that

* lies within ``outline_margin_mm`` of the component's core (the outline's own distance bound) and is
  connected to the component through such tissue;
* has a local-mean SER (over the same small neighbourhood as :mod:`.significance`, tissue at PE >=
  ``outline_pe`` only) within ``tol`` of the median SER of the component's core, and nearer to that
  than to the median SER of the exam's BPE (enhancing tissue > 15 mm from every core).

A component whose core's SER is within ``MIN_SER_GAP`` of the BPE's cannot be told from it by its
curve and grows no further (a persistent tumor in persistent BPE). Without SER (one post-contrast
phase) or with the level at ``outline_pe`` nothing changes.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

from ..core.imageutil import padded_components
from .outline import BPE_DISTANCE_MM, BPE_MIN_PE, FULL26
from .significance import neighbourhood

MIN_SER_GAP = 0.15  # a core whose median SER is this close to the BPE's is not grown by its curve
MIN_BPE_VOXELS = 100


def background_ser(ser: np.ndarray, pe: np.ndarray, tissue: np.ndarray, seeds: np.ndarray, spacing_zyx) -> float | None:
    """Median SER of the enhancing tissue (PE > ``BPE_MIN_PE``) farther than ``BPE_DISTANCE_MM``
    from every seed; None with fewer than ``MIN_BPE_VOXELS`` such voxels."""
    sel = tissue & (pe > np.float32(BPE_MIN_PE))
    if seeds.any():
        sel &= ndimage.distance_transform_edt(~seeds, sampling=spacing_zyx) > BPE_DISTANCE_MM
    if np.count_nonzero(sel) < MIN_BPE_VOXELS:
        return None
    return float(np.median(ser[sel]))


def local_ser(ser: np.ndarray, weight: np.ndarray, spacing_zyx) -> np.ndarray:
    """SER averaged over the neighbourhood of :func:`~.significance.neighbourhood`, *weight* voxels only
    (NaN where the neighbourhood holds none)."""
    size = neighbourhood(spacing_zyx)
    w = weight.astype(np.float32)
    num = ndimage.uniform_filter(np.where(weight, ser, 0).astype(np.float32), size=size, mode="nearest")
    den = ndimage.uniform_filter(w, size=size, mode="nearest")
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 1e-6, num / den, np.nan).astype(np.float32)


def kinetic_growth(out: np.ndarray, seeds: np.ndarray, tissue: np.ndarray, pe: np.ndarray, ser: np.ndarray | None,
                   spacing_zyx, outline_pe: float, level: float, margin_mm: float, tol: float,
                   notes: list | None = None) -> np.ndarray:
    """*out* plus the tissue of the module docstring (a new array; *out* itself when nothing is added)."""
    if ser is None or tol <= 0 or level <= outline_pe or not out.any() or not seeds.any():
        return out
    sp = np.asarray(spacing_zyx, float)
    bpe_ser = background_ser(ser, pe, tissue, seeds, sp)
    if bpe_ser is None:
        return out
    band = tissue & (pe >= np.float32(outline_pe)) & (pe < np.float32(level)) & ~out
    if not band.any():
        return out
    result = out.copy()
    labels, _ = ndimage.label(out, structure=FULL26)
    pad = int(np.ceil(margin_mm / float(np.min(sp)))) + 2
    added = 0
    for _lab, box, comp in padded_components(labels, pad):
        core = comp & seeds[box]
        if not core.any():
            continue
        core_ser = float(np.median(ser[box][core]))
        if abs(core_ser - bpe_ser) < MIN_SER_GAP:
            continue
        b = band[box] & (ndimage.distance_transform_edt(~core, sampling=sp) <= margin_mm)
        if not b.any():
            continue
        s_loc = local_ser(ser[box], tissue[box] & (pe[box] >= np.float32(outline_pe)), sp)
        d_core = np.abs(s_loc - np.float32(core_ser))
        b &= (d_core <= np.float32(tol)) & (d_core < np.abs(s_loc - np.float32(bpe_ser)))
        if not b.any():
            continue
        grown, _ = ndimage.label(comp | b, structure=FULL26)
        keep = np.isin(grown, np.unique(grown[comp])) & b
        result[box] |= keep
        added += int(np.count_nonzero(keep))
    if notes is not None:
        notes.append(f"{added} voxels with {outline_pe:g} % <= PE < the outline level {level:.1f} % whose SER "
                     f"matches their core's (within {tol:g}; BPE median SER {bpe_ser:.2f}) added (outline_kinetic_tol)")
    return result if added else out
