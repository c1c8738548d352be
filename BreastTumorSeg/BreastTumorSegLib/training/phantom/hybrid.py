"""Hybrid phantoms: real breast anatomy with synthetic contrast-enhancing lesions.

``make_hybrid(seed, anatomy="axial" | "sagittal")`` takes one of the real, single-phase T1
volumes of ``shared/data/real-anatomy`` (no contrast, no tumor, no fat suppression) as the
pre-contrast phase and builds the post-contrast phases:

* **Field of view**: the volume is binned (``sitk.BinShrink``; default 2 x 2 x 2 for the axial,
  2 x 2 x 1 in-plane for the sagittal volume) for speed, geometry kept (origin, direction,
  spacing follow the binning). ``unilateral`` (default for the sagittal volume) keeps one
  breast (``side``, else chosen by the seed): the index axis that runs along patient x is cut
  ``midline_margin_mm`` past the body midline found by
  :func:`~BreastTumorSegLib.preprocess.breast_region.breast_layout`.
* **Breast truth** (``Phantom.breast_mask``): the classical whole-breast mask of the full
  (bilateral) volume, i.e. body voxels anterior to the skin over the sternum + 12 mm
  (:func:`~BreastTumorSegLib.preprocess.breast_region.breast_region` without its lateral wrap),
  cut like the image.
* **Tissue**: in the breast mask, fat = brighter than the Otsu threshold of the breast voxels
  (T1 without fat suppression: fat is bright), fibroglandular tissue (FGT) = darker tissue
  above 25 % of that threshold. ``fat_suppressed`` darkens fat with a smooth weight (fat to
  ~15 % of its signal) so that FGT becomes the brightest breast tissue; ``fat_suppressed="smooth"``
  subtracts a smoothed fat estimate instead (85 % of the fat signal blurred over ``5 mm``): fat is
  suppressed unevenly and tissue next to fat is darkened too, as with a real spectral fat saturation.
* **Thin slab** (``slab_slices``, e.g. 1, 5 or 12): after the breast is chosen, only that many
  slices along the acquisition's slice axis (the index axis with the largest spacing: patient x
  for the sagittal volume, 3 mm slices) are kept, centred by the seed on a slice through the
  breast (one whose breast area is at least half the largest); the lesions are placed in the slab
  and the truth is what of them lies in it.
* **Lesions** (``n_lesions``, default 1; ``None``: 1-3 by seed): lobulated masses of 0.5-10 mL
  (a main ellipsoid plus 2-4 lobes), placed in patient (LPS) coordinates at least ``r + 4`` mm
  inside the breast mask and clipped to it; pre-contrast signal = the FGT level; early PE
  80-250 %, curve persistent / plateau / washout (late change +25 / 0 / -20 %), a third
  rim-enhancing (core enhancing at 35 % of the rim).
* **Background parenchymal enhancement**: FGT enhances 3-10 %, linearly in time.
* **Noise**: Gaussian, ``noise`` x p95 of the body, independently in every phase.
* ``scale`` multiplies every intensity; ``zero_background`` sets everything outside the body
  to exactly 0 (scanner zero filling).

``Phantom.tissue_labels`` codes fat, FGT and air as the randomised family does, so that
:func:`~.heterogeneous.make_heterogeneous` can insert its tumors into this anatomy
(``make_hybrid(seed, n_lesions=0)`` as its ``base``).

Deterministic per seed. Motion is identity. ``Phantom.params["laterality"]`` is the breast
kept ("left", "right" or "both"); it is not written into the exam's metadata.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from ...core.exam import DCEExam
from ...core.imageutil import voxel_volume_ml
from ...preprocess.body import body_mask
from ...preprocess.breast_region import breast_region

ANATOMY_FILES = {"axial": "AX_T1_BILAT.nii.gz", "sagittal": "SAG_T1_3D_BILAT.nii.gz"}
DEFAULT_SHRINK = {"axial": (2, 2, 2), "sagittal": (2, 2, 1)}
DEFAULT_TIMES = (0.0, 1.6, 3.3, 6.6)
CURVE_LATE_CHANGE = {"persistent": 0.25, "plateau": 0.0, "washout": -0.20}


def real_anatomy_dir() -> Path:
    """``$BREASTTUMORSEG_REAL_ANATOMY`` or ``shared/data/real-anatomy`` beside the checkout."""
    env = os.environ.get("BREASTTUMORSEG_REAL_ANATOMY")
    return Path(env) if env else Path(__file__).resolve().parents[4].parent / "shared" / "data" / "real-anatomy"


def _x_axis(img: sitk.Image) -> int:
    """Index axis (0, 1, 2) running most nearly along patient x."""
    d = np.asarray(img.GetDirection()).reshape(3, 3)
    return int(np.argmax(np.abs(d[0])))


def _crop_one_breast(img: sitk.Image, mask: sitk.Image, midline_x: float, side: str, margin_mm: float):
    axis = _x_axis(img)
    n = img.GetSize()[axis]
    idx = [0, 0, 0]
    xs = []
    for k in range(n):
        idx[axis] = k
        xs.append(img.TransformIndexToPhysicalPoint(idx)[0])
    xs = np.asarray(xs)
    keep = np.nonzero(xs > midline_x - margin_mm if side == "left" else xs < midline_x + margin_mm)[0]
    sl = [slice(None)] * 3
    sl[axis] = slice(int(keep.min()), int(keep.max()) + 1)
    return img[tuple(sl)], mask[tuple(sl)]


def _cut_slab(img: sitk.Image, mask: sitk.Image, n_slices: int, rng):
    """*n_slices* slices of *img* and *mask* along the slice axis (largest spacing), centred by *rng*
    on a slice through the breast (*mask* area >= half its largest)."""
    axis = int(np.argmax(img.GetSpacing()))
    area = sitk.GetArrayViewFromImage(mask).sum(axis=tuple(a for a in range(3) if a != 2 - axis))
    good = np.nonzero(area >= 0.5 * area.max())[0]
    n = img.GetSize()[axis]
    centre = int(good[rng.integers(good.size)])
    lo = int(np.clip(centre - n_slices // 2, 0, max(n - n_slices, 0)))
    sl = [slice(None)] * 3
    sl[axis] = slice(lo, min(n, lo + n_slices))
    return img[tuple(sl)], mask[tuple(sl)]


def _physical_points(img: sitk.Image, lo, hi) -> np.ndarray:
    """(z, y, x, 3) LPS coordinates of the voxels in index box [lo, hi) (lo, hi as (i, j, k))."""
    m = np.asarray(img.GetDirection()).reshape(3, 3) * np.asarray(img.GetSpacing())
    k, j, i = np.meshgrid(*(np.arange(a, b) for a, b in zip(lo[::-1], hi[::-1])), indexing="ij")
    ijk = np.stack([i, j, k], axis=-1).astype(np.float64)
    return ijk @ m.T + np.asarray(img.GetOrigin())


def _lesion_shape(rng, img: sitk.Image, center, volume_ml: float, margin: str = "lobulated",
                  spicule_rng=None) -> tuple[np.ndarray, tuple, np.ndarray]:
    """Lobulated mass around *center* (LPS mm): boolean mask in an index box, the box slices and
    the normalised depth (0 at the border, 1 at the centre) of every voxel. ``margin="smooth"``
    leaves the lobes out (the main ellipsoid only); ``"spiculated"`` adds 6-12 thin spicules
    1.3-2.2 radii long, drawn from *spicule_rng*."""
    r = (3 * volume_ml * 1000 / (4 * np.pi)) ** (1 / 3)
    axes = r * rng.uniform(0.8, 1.25, 3)
    axes *= r / np.prod(axes) ** (1 / 3)
    rot, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    lobes = [(rng.normal(size=3), rng.uniform(0.35, 0.6) * r) for _ in range(int(rng.integers(2, 5)))]
    spicules = []
    if margin == "spiculated":
        spicules = [(spicule_rng.normal(size=3), spicule_rng.uniform(1.3, 2.2) * r, spicule_rng.uniform(0.6, 1.1))
                    for _ in range(int(spicule_rng.integers(6, 13)))]
    reach = max([1.6 * r] + [length + 1.0 for _, length, _ in spicules])
    c_idx = np.asarray(img.TransformPhysicalPointToContinuousIndex(tuple(map(float, center))))
    half = np.ceil(reach / np.asarray(img.GetSpacing())).astype(int) + 1
    size = np.asarray(img.GetSize())
    lo = np.clip(np.floor(c_idx).astype(int) - half, 0, size)
    hi = np.clip(np.floor(c_idx).astype(int) + half + 1, 0, size)
    p = _physical_points(img, lo, hi) - np.asarray(center)
    q = p @ rot
    level = np.sqrt(((q / axes) ** 2).sum(-1))  # < 1 inside the main ellipsoid
    depth = 1 - level
    for direction, radius in lobes if margin != "smooth" else []:
        offset = direction / np.linalg.norm(direction) * 0.75 * r
        d = 1 - np.linalg.norm(p - offset, axis=-1) / radius
        depth = np.maximum(depth, d)
    for direction, length, width in spicules:
        u = direction / np.linalg.norm(direction)
        along = np.clip(p @ u, 0, length)
        dist = np.linalg.norm(p - along[..., None] * u, axis=-1)
        depth = np.maximum(depth, 0.15 * (1 - dist / width))
    box = tuple(slice(int(a), int(b)) for a, b in zip(lo[::-1], hi[::-1]))
    return depth > 0, box, np.clip(depth, 0, 1)


def _curve(pe_early: float, kind: str, times: np.ndarray, t_early: float) -> np.ndarray:
    """PE (%) at each time: rise to *pe_early* at *t_early*, then the late change of *kind*."""
    t = np.asarray(times, float)
    up = (1 - np.exp(-t / 0.5)) / (1 - np.exp(-t_early / 0.5))
    t_last = max(float(t.max()), t_early + 1e-6)
    late = 1 + CURVE_LATE_CHANGE[kind] * np.clip((t - t_early) / (t_last - t_early), 0, None)
    return np.where(t <= t_early, pe_early * up, pe_early * late)


def make_hybrid(seed: int, anatomy: str = "axial", scale: float = 1.0, n_phases: int | None = None,
                times_min=None, fat_suppressed: bool = False, zero_background: bool = False,
                n_lesions: int | None = 1, unilateral: bool | None = None, side: str | None = None,
                shrink=None, noise: float = 0.01, midline_margin_mm: float = 15.0, data_dir=None,
                slab_slices: int | None = None, lesions: list[dict] | None = None, bpe_percent: float | None = None):
    """A :class:`~BreastTumorSegLib.training.phantom.Phantom` from real anatomy (module docstring).

    ``lesions`` (used by :mod:`.malignancy`) replaces ``n_lesions``: one dict per lesion whose keys
    override the draw: ``side`` ("left"/"right": its centre in that breast; none placed when that
    breast is not in the field of view), ``volume_ml``, ``curve``, ``rim`` (bool), ``pe_early``
    (%), ``margin`` ("smooth", "lobulated", "spiculated"); each tumor dict records its
    ``request`` (index in *lesions*). ``bpe_percent`` replaces the drawn BPE (3-10 %)."""
    from . import Phantom

    if anatomy not in ANATOMY_FILES:
        raise ValueError(f"anatomy must be one of {sorted(ANATOMY_FILES)}")
    rng = np.random.default_rng([int(seed), 7919])
    if times_min is not None:
        times = [float(t) for t in times_min][:n_phases or None]
    elif n_phases in (None, len(DEFAULT_TIMES)):
        times = list(DEFAULT_TIMES)
    else:
        times = [0.0] + [1.6 * k for k in range(1, n_phases)]
    times = np.asarray(times, float)
    img = sitk.ReadImage(str(Path(data_dir or real_anatomy_dir()) / ANATOMY_FILES[anatomy]), sitk.sitkFloat32)
    img = sitk.BinShrink(img, [int(v) for v in (shrink or DEFAULT_SHRINK[anatomy])])
    truth, ctx = breast_region(img, lateral_wrap_mm=0)  # the reference: anterior to the sternum level only
    if unilateral is None:
        unilateral = anatomy == "sagittal"
    laterality = "both"
    if unilateral:
        side = side or ("left" if rng.random() < 0.5 else "right")
        img, truth = _crop_one_breast(img, truth, ctx["layout"]["midline_x"] or 0.0, side, midline_margin_mm)
        laterality = side
    if slab_slices:
        img, truth = _cut_slab(img, truth, int(slab_slices), rng)
    pre = sitk.GetArrayFromImage(img).astype(np.float32)
    breast = sitk.GetArrayFromImage(truth) > 0
    body = sitk.GetArrayFromImage(body_mask(img, 2.0)) > 0
    p95 = float(np.percentile(pre[body], 95))

    # Tissue classes inside the breast (T1 without fat suppression: fat bright).
    otsu = sitk.OtsuThresholdImageFilter()
    vals = sitk.GetImageFromArray(pre[breast].reshape(-1, 1, 1))
    otsu.Execute(vals)
    thr = float(otsu.GetThreshold())
    fgt = breast & (pre < thr) & (pre > 0.25 * thr)
    fgt_level = float(np.median(pre[fgt])) if fgt.any() else 0.5 * thr
    if fat_suppressed:
        fat_w = 1 / (1 + np.exp(-(pre - thr) / (0.1 * thr)))
        if fat_suppressed == "smooth":
            sigma = 5.0 / np.asarray(img.GetSpacing())[::-1]
            fat_estimate = ndimage.gaussian_filter((fat_w * pre).astype(np.float32), sigma)
            pre = np.clip(pre - 0.85 * fat_estimate, 0, None).astype(np.float32)
        else:
            pre = pre * (1 - 0.85 * fat_w).astype(np.float32)

    spacing_zyx = np.asarray(img.GetSpacing())[::-1]
    inner = ndimage.distance_transform_edt(breast, sampling=spacing_zyx)
    t_early = float(times[np.argmin(np.abs(times[1:] - 2.0)) + 1]) if len(times) > 1 else 2.0
    n_les = int(rng.integers(1, 4)) if n_lesions is None else int(n_lesions)
    if lesions is not None:
        n_les = len(lesions)
        spicule_rng = np.random.default_rng([int(seed), 7920])
        midline = ctx["layout"]["midline_x"] or 0.0
        m = np.asarray(img.GetDirection()).reshape(3, 3) * np.asarray(img.GetSpacing())
        kk, jj, ii = np.meshgrid(*(np.arange(n) for n in pre.shape), indexing="ij", sparse=True)
        x_lps = img.GetOrigin()[0] + m[0, 0] * ii + m[0, 1] * jj + m[0, 2] * kk  # patient x of every voxel
    labels = np.zeros(pre.shape, np.uint8)
    pe_maps = np.zeros((len(times),) + pre.shape, np.float32)
    les_pre = np.zeros(pre.shape, bool)
    tumors = []
    for i in range(n_les):
        want = lesions[i] if lesions is not None else {}
        volume = float(np.exp(rng.uniform(np.log(0.5), np.log(10.0))))
        volume = float(want.get("volume_ml", volume))
        r = (3 * volume * 1000 / (4 * np.pi)) ** (1 / 3)
        ok = (inner >= r + 4.0) & (labels == 0)
        if want.get("side"):
            ok &= (x_lps > midline) if want["side"] == "left" else (x_lps <= midline)
        if labels.any():
            ok &= ndimage.distance_transform_edt(labels == 0, sampling=spacing_zyx) > 2 * r + 5
        cand = np.flatnonzero(ok)
        if cand.size == 0:
            if lesions is not None:
                continue
            break
        zyx = np.unravel_index(int(cand[rng.integers(cand.size)]), pre.shape)
        center = img.TransformIndexToPhysicalPoint(tuple(int(v) for v in zyx[::-1]))
        shape, box, depth = _lesion_shape(rng, img, center, volume, want.get("margin", "lobulated"),
                                          spicule_rng if lesions is not None else None)
        shape &= breast[box] & (labels[box] == 0)
        kind = str(want.get("curve", rng.choice(list(CURVE_LATE_CHANGE))))
        pe_early = float(want.get("pe_early", rng.uniform(80, 250)))
        rim = bool(want.get("rim", rng.random() < 1 / 3))
        weight = np.where(shape, 1.0, 0.0).astype(np.float32)
        if rim:
            weight = np.where(shape & (depth > 0.5), 0.35, weight).astype(np.float32)
        curve = _curve(pe_early, kind, times, t_early)
        for k in range(len(times)):
            pe_maps[k][box] = np.where(shape, curve[k] * weight, pe_maps[k][box])
        labels[box][shape] = i + 1
        les_pre[box] |= shape
        tumors.append({"label": i + 1, "center_lps": [round(float(c), 2) for c in center],
                       "volume_ml": round(float(np.count_nonzero(shape)) * voxel_volume_ml(img), 4),
                       "pe_early": round(pe_early, 1), "curve": kind, "rim_enhancing": rim,
                       **({"request": i, "margin": want.get("margin", "lobulated")} if lesions is not None else {}),
                       "side": "left" if center[0] > (ctx["layout"]["midline_x"] or 0.0) else "right"})
    pre[les_pre] = np.float32(fgt_level) * rng.uniform(0.9, 1.1)
    bpe = float(rng.uniform(3, 10))
    bpe = bpe if bpe_percent is None else float(bpe_percent)
    t_last = max(float(times.max()), 1e-6)
    phases = []
    for k, t in enumerate(times):
        pe = pe_maps[k] + np.where(fgt & ~les_pre, np.float32(bpe * t / t_last), np.float32(0))
        ph = pre * (1 + pe / 100) + rng.normal(0, noise * p95, pre.shape).astype(np.float32)
        ph = np.clip(ph, 0, None) * np.float32(scale)
        if zero_background:
            ph[~body] = 0
        out = sitk.GetImageFromArray(ph.astype(np.float32))
        out.CopyInformation(img)
        phases.append(out)
    exam = DCEExam(phases, [float(t) for t in times], case_id=f"hybrid-{anatomy}-{seed}" + (f"-slab{slab_slices}" if slab_slices else ""),
                   metadata={"hybrid": anatomy})
    lab_img = sitk.GetImageFromArray(labels)
    lab_img.CopyInformation(img)
    truth = sitk.Cast(truth > 0, sitk.sitkUInt8)
    params = {"anatomy": anatomy, "scale": scale, "fat_suppressed": fat_suppressed, "slab_slices": slab_slices,
              "zero_background": zero_background, "laterality": laterality, "bpe_percent": round(bpe, 2),
              "fgt_level": fgt_level, "fat_threshold": thr}
    ph = Phantom(exam, sitk.Cast(lab_img > 0, sitk.sitkUInt8), lab_img, truth, tumors,
                 [sitk.Transform(3, sitk.sitkIdentity) for _ in times], params)
    ph.tissue_labels = _tissue_labels(img, body, breast, fgt)
    return ph


def _tissue_labels(grid: sitk.Image, body, breast, fgt) -> sitk.Image:
    """The randomised family's tissue codes where this volume knows them: fat (body), FGT (breast
    tissue darker than the fat threshold), air elsewhere; what :mod:`.heterogeneous` reads."""
    from .randomized import AIR, FAT, FGT

    lab = np.full(body.shape, AIR, np.uint8)
    lab[body | breast] = FAT
    lab[fgt] = FGT
    out = sitk.GetImageFromArray(lab)
    out.CopyInformation(grid)
    return out
