"""A learned voxel classifier decides the outline of each found lesion in a band around it (issue 25, ``LEARNED_OUTLINE``, off until proven).

The shipped outline is precise but draws only the strong core of an irregular or heterogeneous tumor; the rest of the
tumor is attached to it (1-3 mm out, PE 25-60 %), while the tissue around it enhances as much (missed-voxels-issue25.md),
so hand-set thresholds either stop early or follow the halo and the background (kept-reach: as many non-tumor voxels as
tumor). This step lets a small learned model (gradient-boosted trees, ``models/shipped/outlineband-v4``, applied with
numpy by :class:`..models.trees.TreeEnsemble`) decide, per voxel of a band around each kept lesion, whether a reader
would draw it as part of the tumor (docs/decisions/learned-outline-issue25.md).

Per lesion, alone, in its box on the exam's grid:

* the **band**: voxels within :data:`BAND_MM` of the lesion, ``valid`` (inside the body), not another lesion nor
  touching one (or what an earlier lesion gained), and not in or beside (one voxel) a component the segmenter
  outlined but the pipeline removed (probability >= :data:`REMOVED_P` with no label: the FP classifier's vessel-like
  components, the gate's and the size floor's removals);
* :data:`FEATURES` per band voxel, all scale-free (:func:`band_features`);
* a band voxel joins when the model's P(tumor) >= the card's threshold and it is 26-connected to the lesion through
  joining voxels. The number of lesions never changes; the table is measured again on the final map.

Used only with a segmenter that outlines the whole tumor and has kinetic maps (``ftv-outline``), never for a reader's
seed or ROI. CPU: 0.04 s median, 0.18 s max per exam on development 6004-6007 (the step alone, one thread).

**Off**: four versions failed their development gates, so the held-out run (5184-5191) was not made and those seeds
are unspent. v4 (card ``outlineband-v4``, version 4: 22 features, the five new ones being the lesion's PE drop across
its own edge -- ``edge_out_over_in``, ``edge_sharp_share``, ``pe_over_edge`` -- and the Hessian vesselness of the band
voxel and of the lesion; 56 development exams; the card's threshold 0.50; a per-lesion stop before the per-voxel
decision, :data:`RIM_STOP`: a lesion whose outer layer enhances more than its inside is left as drawn), fresh
6012-6019: recall irregular +0.058, hybrid-axial-irregular +0.072, hybrid-sagittal-irregular +0.038 (Dice up on all
three), but phantom Dice -0.029: homogeneous lesions found whole still grow into their partial-volume halo. v3 (v2's
17-feature weights at 0.40, share stop 0.05), fresh 6008-6011: recall +0.06 to +0.075 on four rows, Dice irregular
-0.012, vessels -0.012, phantom -0.020. v1 / v2: recall +0.03 on two of six rows
(docs/decisions/learned-outline-issue25.md).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from ..kinetics.outline import FULL26
from .fpreduce import VESSEL_MAX_VOXELS, _vesselness
from .kept_hull import _near_others, remeasured, step_maps

LEARNED_OUTLINE = False  # off: v1-v4 failed their development gates; held-out never run (learned-outline-issue25.md)
MODEL_NAME = "outlineband-v4"  # v4: edge and vesselness features (v2's card "outlineband-demo" had 17 features)
MODEL_VERSION = "4"
MODEL_TASK = "outline_band_voxel"
BAND_MM = 8.0  # band of candidate voxels: at most this far (mm) from the lesion
SHELL_MM = 4.0  # the tissue's level: a shell this wide beyond the band
MAX_TAKEN_SHARE = 0.05  # > 0: a lesion whose band the model takes more than this share of is left as it was (a leak)
THRESHOLD = None  # P(tumor) a band voxel needs (None: the card's, 0.50); v4: the card's, chosen on development 6000-6011
RIM_STOP = 1.1  # > 0: a lesion whose outer layer's median PE is above this times its interior's is not grown (v4)
REMOVED_P = 0.5  # probability of what the segmenter outlined (a removed component keeps it; the band avoids it)

FEATURES = ("dist_mm", "pe_over_core", "pe_over_p10", "local1_over_core", "local2_over_core", "pe_over_tissue",
            "ser", "ser_minus_core", "has_late", "pre_over_core", "pre_place", "sub_noise_sd", "probability",
            "core_p10_over_median", "tissue_over_core", "log_volume_ml", "max_spacing_mm",
            # v4: is the lesion already outlined to its edge (per lesion), and is the band voxel a vessel (per voxel)
            "edge_out_over_in", "edge_sharp_share", "pe_over_edge", "vesselness", "core_vesselness")
EDGE_SHARP = 0.5  # a first-shell voxel is a "sharp" edge when its PE is below this share of the lesion's edge PE


def _box(mask_box: tuple, shape, pad) -> tuple:
    return tuple(slice(max(s.start - p, 0), min(s.stop + p, n)) for s, p, n in zip(mask_box, pad, shape))


def band_features(labels: np.ndarray, lab: int, box: tuple, pe: np.ndarray, valid: np.ndarray, pre: np.ndarray,
                  ser: np.ndarray | None, prob: np.ndarray, sp: np.ndarray):
    """(band, X) of lesion *lab* in *box*: the band (bool, box-shaped; module docstring) and the features
    (:data:`FEATURES`, float32, one row per band voxel in ``np.nonzero(band)`` order); (None, None) when the lesion
    has no valid voxel or no band. All arrays are (z, y, x) on one grid with spacing *sp* (z, y, x)."""
    lb = labels[box]
    comp = lb == lab
    v = np.asarray(valid[box], bool)
    p_e = np.asarray(pe[box], np.float32)
    core = comp & v
    if not core.any():
        return None, None
    dist = ndimage.distance_transform_edt(~comp, sampling=sp)
    free = lb == 0
    removed = (np.asarray(prob[box]) >= REMOVED_P) & free
    if removed.any():
        removed = ndimage.binary_dilation(removed, structure=FULL26)
    band = (dist > 0) & (dist <= BAND_MM) & v & free & ~removed & ~_near_others(labels, box, lab)
    if not band.any():
        return None, None
    pc = p_e[core]
    med, p10 = max(float(np.median(pc)), 1.0), max(float(np.percentile(pc, 10)), 1.0)
    shell = (dist > BAND_MM) & (dist <= BAND_MM + SHELL_MM) & v & free
    if np.count_nonzero(shell) < 10:
        shell = (dist > 0) & v & free
    tissue = max(float(np.percentile(p_e[shell], 90)), 1.0) if shell.any() else 1.0
    pre_b = np.asarray(pre[box], np.float32)
    pre_core = max(float(np.median(pre_b[core])), 1e-6)
    around = v & free
    q20, q80 = (np.percentile(pre_b[around], (20, 80)) if around.any() else (0.0, pre_core))
    sub = p_e * pre_b / 100.0  # the early subtraction where valid
    if shell.any():
        s_med = float(np.median(sub[shell]))
        s_sd = 1.4826 * float(np.median(np.abs(sub[shell] - s_med)))
    else:
        s_med, s_sd = 0.0, 0.0
    s_sd = max(s_sd, 1e-3 * max(pre_core, 1e-6))
    sig1 = 1.0 / sp
    sig2 = 2.5 / sp
    local1 = ndimage.gaussian_filter(p_e, sig1, mode="nearest")
    local2 = ndimage.gaussian_filter(p_e, sig2, mode="nearest")
    idx = np.nonzero(band)
    n = len(idx[0])
    x = np.empty((n, len(FEATURES)), np.float32)
    pe_b = p_e[idx]
    x[:, 0] = dist[idx]
    x[:, 1] = pe_b / med
    x[:, 2] = pe_b / p10
    x[:, 3] = local1[idx] / med
    x[:, 4] = local2[idx] / med
    x[:, 5] = pe_b / tissue
    if ser is not None:
        s_b = np.asarray(ser[box], np.float32)
        x[:, 6] = s_b[idx]
        x[:, 7] = s_b[idx] - float(np.median(s_b[core]))
        x[:, 8] = 1.0
    else:
        x[:, 6:9] = 0.0
    x[:, 9] = pre_b[idx] / pre_core
    x[:, 10] = (pre_b[idx] - q20) / max(float(q80 - q20), 1e-3 * pre_core)
    x[:, 11] = (sub[idx] - s_med) / s_sd
    x[:, 12] = np.asarray(prob[box], np.float32)[idx]
    x[:, 13] = p10 / med
    x[:, 14] = tissue / med
    x[:, 15] = np.log(max(np.count_nonzero(comp) * float(np.prod(sp)) / 1000.0, 1e-4))
    x[:, 16] = float(np.max(sp))
    # already outlined to its edge: the PE drop across the label's boundary (the lesion's own outer layer against
    # the first shell of free valid voxels outside it) and the share of that shell below half the edge's PE
    inner = comp & ~ndimage.binary_erosion(comp, structure=FULL26)
    outer1 = (dist > 0) & (dist <= float(np.max(sp)) * 1.01) & v & free
    edge = max(float(np.median(p_e[inner & v])) if np.any(inner & v) else med, 1.0)
    if outer1.any():
        po = p_e[outer1]
        x[:, 17] = float(np.median(po)) / edge
        x[:, 18] = float(np.mean(po < EDGE_SHARP * edge))
    else:
        x[:, 17], x[:, 18] = 0.0, 1.0
    x[:, 19] = pe_b / edge
    ves = _band_vesselness(sub, core, sp)
    x[:, 20] = ves[idx]
    x[:, 21] = float(np.median(ves[core]))
    return band, x


def _band_vesselness(sub: np.ndarray, core: np.ndarray, sp: np.ndarray) -> np.ndarray:
    """Tubular objectness (the FP classifier's :func:`.fpreduce._vesselness`: Hessian, bright 1-D objects at 1 and 2
    mm) of the early subtraction in the box, over the lesion core's median subtraction (scale-free)."""
    level = float(np.median(sub[core]))
    img = sitk.GetImageFromArray((sub / (abs(level) if abs(level) > 0 else 1.0)).astype(np.float32))
    img.SetSpacing(tuple(float(s) for s in sp[::-1]))
    shrink = int(np.ceil((sub.size / VESSEL_MAX_VOXELS) ** (1 / 3)))
    if shrink <= 1:
        return _vesselness(img)
    small = _vesselness(sitk.BinShrink(img, [shrink] * 3))  # a large box: on a coarser copy (time bound)
    for axis in range(3):
        small = np.repeat(small, shrink, axis=axis)
    pad = [(0, max(n - m, 0)) for n, m in zip(sub.shape, small.shape)]
    return np.pad(small, pad, mode="edge")[tuple(slice(0, n) for n in sub.shape)]


def edge_over_interior(comp: np.ndarray, valid: np.ndarray, pe: np.ndarray) -> float:
    """Median PE of the lesion's outer layer (the label minus its 26-erosion) over the median PE of its interior (the
    label eroded twice; the whole lesion when that is empty), valid voxels only; 1.0 when either is empty."""
    v = np.asarray(valid, bool)
    p_e = np.asarray(pe, np.float32)
    inner = comp & ~ndimage.binary_erosion(comp, structure=FULL26) & v
    deep = ndimage.binary_erosion(comp, structure=FULL26, iterations=2) & v
    if not deep.any():
        deep = comp & v
    if not inner.any() or not deep.any():
        return 1.0
    return float(np.median(p_e[inner])) / max(float(np.median(p_e[deep])), 1.0)


def outline_labels(labels: np.ndarray, pe: np.ndarray, valid: np.ndarray, pre: np.ndarray, ser, prob: np.ndarray,
                   spacing_zyx, model, only: set | None = None) -> tuple[np.ndarray, dict]:
    """(*labels* with each lesion's band voxels the *model* (``probability(X)``, ``threshold``) takes joined to it,
    {label: voxels added}); arrays (z, y, x) on one grid; *only*: the labels that may grow (all if None)."""
    sp = np.asarray(spacing_zyx, float)
    if not labels.any():
        return labels, {}
    pad = np.ceil((BAND_MM + SHELL_MM) / sp).astype(int) + 1
    out, added = labels.copy(), {}
    boxes = ndimage.find_objects(labels)
    for lab, mbox in enumerate(boxes, start=1):
        if mbox is None or (only is not None and lab not in only):
            continue
        box = _box(mbox, labels.shape, pad)
        band, x = band_features(out, lab, box, pe, valid, pre, ser, prob, sp)
        if band is None:
            continue
        if RIM_STOP > 0 and edge_over_interior(out[box] == lab, valid[box], pe[box]) > RIM_STOP:
            continue  # its outer layer enhances more than its inside: outlined to its bright rim already
        take = np.zeros_like(band)
        take[band] = model.probability(x) >= (model.threshold if THRESHOLD is None else THRESHOLD)
        if not take.any() or (MAX_TAKEN_SHARE > 0 and np.count_nonzero(take) > MAX_TAKEN_SHARE * len(x)):
            continue
        comp = out[box] == lab
        parts, _ = ndimage.label(comp | take, structure=FULL26)
        keep = np.unique(parts[comp])
        joined = take & np.isin(parts, keep[keep > 0])
        n = int(np.count_nonzero(joined))
        if n:
            out[box][joined] = lab
            added[lab] = n
    return out, added


_MODEL: dict = {}


def get_model(folder: str | Path | None = None):
    """The shipped band classifier (verified against its card's SHA-256), loaded once."""
    from ..models.trees import TreeEnsemble
    from ..models.cards import BUNDLED_MODELS_DIR

    path = Path(folder or BUNDLED_MODELS_DIR) / f"{MODEL_NAME}.json"
    if path not in _MODEL:
        _MODEL[path] = TreeEnsemble.read(path, MODEL_TASK, FEATURES, "outline band classifier")
    return _MODEL[path]


def learned_kept(components: sitk.Image, lesions: list, prob: sitk.Image, pe: np.ndarray, valid: np.ndarray,
                 pre: np.ndarray, ser, model=None) -> tuple[sitk.Image, list, sitk.Image]:
    """(label, lesions, components) with each kept lesion of *components* (labels = the lesions' ``label``) outlined
    by the band classifier; *pe*, *valid*, *pre*, *ser* (or None) are (z, y, x) arrays on its grid."""
    arr = sitk.GetArrayViewFromImage(components)
    if pe.shape != arr.shape or valid.shape != arr.shape or pre.shape != arr.shape:
        raise ValueError(f"learned_outline: kinetic maps {pe.shape}, pre-contrast {pre.shape} and label map "
                         f"{arr.shape} are not on one grid")
    out, added = outline_labels(arr, pe, valid, pre, ser, sitk.GetArrayViewFromImage(prob),
                                np.asarray(components.GetSpacing(), float)[::-1], model or get_model(),
                                only={les.label for les in lesions})
    if not added:
        return sitk.Cast(components > 0, sitk.sitkUInt8), lesions, components
    return remeasured(components, lesions, prob, out, added,
                      lambda ml: f"outlined further: {ml:.3f} mL added by the learned band classifier "
                                 "(engine/learned_outline.py)")


def add_learned_outline(segmenter, exam, label: sitk.Image, lesions: list, components: sitk.Image, prob: sitk.Image,
                        options: dict, enabled: bool | None = None) -> tuple[sitk.Image, list, sitk.Image]:
    """The pipeline's last step on the kept lesions: (label, lesions, components) with each lesion's band voxels the
    classifier takes joined to it. Unchanged when off (*enabled*, default :data:`LEARNED_OUTLINE`), for a reader's
    ROI or seed, or for a segmenter without kinetic maps or that does not outline the whole tumor."""
    maps = step_maps(segmenter, exam, lesions, options, LEARNED_OUTLINE if enabled is None else enabled)
    if maps is None:
        return label, lesions, components
    pre = sitk.GetArrayViewFromImage(exam.phases[0]).astype(np.float32, copy=False)
    return learned_kept(components, lesions, prob, maps.array("pe_early"), maps.array("valid") > 0, pre,
                        maps.array("ser"))
