"""A patient's series of visits with known truth: ``make_visit_series(family, seed)``.

The baseline is an exam of any family (:mod:`.families`, unchanged). Each later visit is made from
the baseline's images, so the anatomy is the same patient's:

1. **treatment response** per baseline tumor (``fates``): ``shrink`` (the tumor is eroded from its
   surface to a known volume fraction), ``fragment`` (shrunk, to at least :data:`MIN_FRAGMENTED`, then
   cut in two by a slab through its centre, at most a quarter of its length thick), ``disappear`` (nothing left), ``stable`` (fraction 1). Tissue that stops being tumor
   stops enhancing: its post-contrast signal becomes its pre-contrast signal (residual fibrosis);
   what stays tumor keeps the tumor's enhancement pattern scaled towards its centre (a rim-enhancing
   tumor keeps an enhancing rim, a necrotic one its necrotic core: ``concentric``);
2. an optional **new lesion** (a ball of ``new_lesion_radius_mm`` in breast tissue, inside the
   engine's classical breast region too, away from every tumor, enhancing like the baseline's
   largest tumor);
3. **new positioning**: a known affine transform (rotation, translation, and a scale/shear of at
   most ``max_affine``) resamples every phase, and the truth labels (nearest neighbour);
4. **new noise**: fresh Gaussian noise (``noise_fraction`` x the 99th percentile of the pre-contrast
   signal) on every phase.

Truth (:class:`VisitSeries`): ``to_baseline[k]`` maps baseline points to visit-*k* points (what an
ideal registration with the baseline fixed and visit *k* moving returns, as
:attr:`~.Phantom.motion`); each visit's :class:`~.Phantom` has its labels in its own frame: baseline
tumor *i* keeps label *i* + 1 in every visit (both fragments of a fragmented tumor too), a new
lesion gets label :data:`NEW_LABEL` + *j*; ``tumors`` of each visit lists label, volume and longest
diameter measured on those labels.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from ...core.errors import InputError
from ...core.exam import DCEExam
from ...core.imageutil import voxel_volume_ml
from ...preprocess.breast_region import breast_region
from . import Phantom
from .families import make_exam

FATES = ("shrink", "fragment", "disappear", "stable")
# A fragmenting tumor keeps at least this volume fraction, and the cut is at most a quarter of its length,
# so that each piece is still a lesion of a few mm (at 0.15 of a 0.65 mL tumor and a 5 mm cut the
# pieces were 1-2 mm slivers that no segmentation keeps).
MIN_FRAGMENTED = 0.5
NEW_LABEL = 100


@dataclass
class VisitSeries:
    """A baseline and its later visits, with the truth of every change."""

    visits: list[Phantom]
    to_baseline: list[sitk.Transform]  # visit k: baseline point -> visit-k point (identity for the baseline)
    fates: list[str]  # per baseline tumor
    fractions: list[list[float]]  # [visit][tumor] volume fraction left (baseline = 1)
    new_lesions: list[list[int]]  # [visit] labels of the lesions new at that visit
    dates: list[str]

    def truth(self) -> dict:
        return {"fates": self.fates, "fractions": self.fractions, "new_lesions": self.new_lesions,
                "dates": self.dates,
                "visits": [[{k: t[k] for k in ("label", "volume_ml", "longest_diameter_mm")} for t in v.tumors]
                           for v in self.visits]}


def _measure(labels: np.ndarray, like: sitk.Image) -> list[dict]:
    """Label, volume and longest (Feret) diameter of every label in *labels* (its own frame)."""
    img = sitk.GetImageFromArray(labels.astype(np.uint8))
    img.CopyInformation(like)
    stats = sitk.LabelShapeStatisticsImageFilter()
    stats.ComputeFeretDiameterOn()
    stats.Execute(img)
    return [{"label": int(lab), "volume_ml": stats.GetPhysicalSize(lab) / 1000.0,
             "longest_diameter_mm": float(stats.GetFeretDiameter(lab)),
             "centroid_lps": [float(c) for c in stats.GetCentroid(lab)]} for lab in stats.GetLabels()]


def _erode_to(mask: np.ndarray, fraction: float, spacing_zyx) -> np.ndarray:
    """*mask* eroded from its surface (distance transform) to about *fraction* of its voxels."""
    if fraction >= 1:
        return mask.copy()
    n = int(round(fraction * mask.sum()))
    out = np.zeros_like(mask)
    if n <= 0:
        return out
    box = tuple(slice(max(s.start - 1, 0), s.stop + 1) for s in ndimage.find_objects(mask.astype(np.uint8))[0])
    depth = ndimage.distance_transform_edt(mask[box], sampling=spacing_zyx)
    inside = np.argwhere(mask[box])
    deepest = inside[np.argsort(-depth[mask[box]], kind="stable")[:n]]  # exactly n voxels, ties in index order
    sub = np.zeros(depth.shape, bool)
    sub[tuple(deepest.T)] = True
    out[box] = sub
    return out


def _concentric_sources(mask: np.ndarray, kept: np.ndarray, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """Flat indices (kept voxels, their source voxels in *mask*): a tumor shrinking to *kept* keeps its
    enhancement pattern scaled towards its centre (a rim-enhancing tumor keeps an enhancing rim, a
    necrotic one a necrotic core), so each kept voxel takes the enhancement of the original voxel at
    the same place of the tumor scaled by 1 / *scale* from its centroid (the nearest tumor voxel where
    that falls outside a lobulated tumor)."""
    dst = np.argwhere(kept)
    if not dst.size or scale >= 1:
        return np.ravel_multi_index(dst.T, mask.shape), np.ravel_multi_index(dst.T, mask.shape)
    centre = np.argwhere(mask).mean(0)
    src = np.clip(np.rint(centre + (dst - centre) / max(scale, 1e-3)).astype(int), 0, np.asarray(mask.shape) - 1)
    nearest = ndimage.distance_transform_edt(~mask, return_distances=False, return_indices=True)
    src = np.stack([nearest[a][tuple(src.T)] for a in range(3)], axis=1)
    return np.ravel_multi_index(dst.T, mask.shape), np.ravel_multi_index(src.T, mask.shape)


def _cut(mask: np.ndarray, spacing_zyx, gap_mm: float) -> np.ndarray:
    """*mask* cut in two by a slab *gap_mm* thick (at most a quarter of its length) through its centre,
    across its longest axis."""
    pts = np.argwhere(mask) * np.asarray(spacing_zyx)
    centre = pts.mean(0)
    axis = np.linalg.svd(pts - centre, full_matrices=False)[2][0]
    out = mask.copy()
    idx = np.argwhere(mask)
    along = (idx * np.asarray(spacing_zyx) - centre) @ axis
    gap_mm = min(gap_mm, 0.25 * float(np.ptp(along)))
    gone = np.abs(along) < gap_mm / 2
    out[tuple(idx[gone].T)] = False
    return out


def _positioning(rng, centre, max_rotation_deg, max_translation_mm, max_affine) -> sitk.AffineTransform:
    """A random affine about *centre*: rotation, translation, and scale/shear within *max_affine*."""
    axis = rng.normal(size=3)
    axis /= np.linalg.norm(axis)
    angle = np.deg2rad(rng.uniform(-max_rotation_deg, max_rotation_deg))
    rot = sitk.VersorTransform(tuple(axis), float(angle))
    m = np.asarray(rot.GetMatrix()).reshape(3, 3)
    m = m @ (np.eye(3) + rng.uniform(-max_affine, max_affine, (3, 3)) * (np.eye(3) + 0.5 * (1 - np.eye(3))))
    tx = sitk.AffineTransform(3)
    tx.SetCenter(tuple(float(c) for c in centre))
    tx.SetMatrix(tuple(float(v) for v in m.ravel()))
    tx.SetTranslation(tuple(float(v) for v in rng.uniform(-max_translation_mm, max_translation_mm, 3)))
    return tx


def _new_lesion_centre(rng, breast: np.ndarray, tumors: np.ndarray, spacing_zyx, radius_mm: float):
    """A voxel (z, y, x) deep in breast tissue, at least 3 radii from every tumor (None: no room);
    searched on a grid of about 4 mm (a distance transform of the whole exam takes seconds)."""
    step = [max(1, int(round(4.0 / s))) for s in spacing_zyx]
    sub = tuple(slice(None, None, st) for st in step)
    sp = np.asarray(spacing_zyx) * step
    inside = ndimage.distance_transform_edt(breast[sub], sampling=sp)
    t = tumors[sub]
    away = ndimage.distance_transform_edt(t == 0, sampling=sp) if t.any() else np.full(t.shape, np.inf)
    ok = np.argwhere((inside > 2.5 * radius_mm) & (away > 3 * radius_mm))
    return None if ok.size == 0 else ok[int(rng.integers(len(ok)))] * step


def make_visit_series(family: str, seed: int, n_visits: int = 2, fates: list[str] | None = None,
                      fraction: float | None = None, new_lesion_at: int | None = None,
                      new_lesion_radius_mm: float = 6.0, max_rotation_deg: float = 4.0,
                      max_translation_mm: float = 8.0, max_affine: float = 0.02, noise_fraction: float = 0.01,
                      fragment_gap_mm: float = 5.0, interval_days: int = 42, concentric: bool = True,
                      **family_overrides) -> VisitSeries:
    """Baseline ``make_exam(family, seed)`` and ``n_visits - 1`` later visits (module docstring).

    ``fates``: one per baseline tumor (default: drawn from :data:`FATES`, ``disappear`` and ``stable``
    rarer). ``fraction``: the volume fraction left at the *last* visit of a shrinking or fragmenting
    tumor (default drawn 0.1-0.8); intermediate visits shrink geometrically towards it.
    ``new_lesion_at``: the visit (>= 1) where a new lesion appears and stays (default: none).
    ``concentric``: a shrinking tumor keeps its enhancement pattern scaled towards its centre
    (:func:`_concentric_sources`); False: the eroded tumor keeps the signal of the voxels left, so a
    rim-enhancing or necrotic tumor becomes its weak or non-enhancing interior (before Dec 6: the
    truth then called "tumor present" what no longer enhances like tumor).
    """
    if n_visits < 2:
        raise InputError(f"n_visits={n_visits}", "make_visit_series", "a series needs at least 2 visits")
    rng = np.random.default_rng([int(seed), 31])
    base = make_exam(family, seed, **family_overrides)
    ref = base.exam.reference
    spacing_zyx = np.asarray(ref.GetSpacing())[::-1]
    labels0 = sitk.GetArrayFromImage(base.tumor_labels).astype(np.uint8)
    breast = sitk.GetArrayViewFromImage(base.breast_mask) > 0
    n_t = int(labels0.max())
    if fates is None:
        fates = [str(rng.choice(FATES, p=[0.5, 0.2, 0.15, 0.15])) for _ in range(n_t)]
    if len(fates) != n_t or any(f not in FATES for f in fates):
        raise InputError(f"fates {fates} for {n_t} tumor(s)", "make_visit_series",
                         f"give one of {', '.join(FATES)} per tumor")
    final = float(rng.uniform(0.1, 0.8)) if fraction is None else float(fraction)
    pre = sitk.GetArrayFromImage(base.exam.pre)
    posts = [sitk.GetArrayFromImage(p) for p in base.exam.post]
    # the enhancement of the largest tumor, phase by phase: the new lesion's
    sizes = np.bincount(labels0.ravel(), minlength=n_t + 1)[1:]
    if n_t:
        big = labels0 == int(np.argmax(sizes)) + 1
        gain = [float(np.mean(p[big]) / max(np.mean(pre[big]), 1e-6)) for p in posts]
    else:
        gain = [2.0] * len(posts)
    noise = noise_fraction * float(np.percentile(pre, 99))
    body = np.argwhere(breast).mean(0) if breast.any() else np.asarray(labels0.shape) / 2
    centre = ref.TransformContinuousIndexToPhysicalPoint([float(v) for v in body[::-1]])
    vox_ml = voxel_volume_ml(ref)
    visits, to_base, fractions, new_labels = [base], [sitk.AffineTransform(3)], [[1.0] * n_t], [[]]
    base.tumors = [dict(t, **m) for t, m in zip(base.tumors, _measure(labels0, ref))] if n_t else []
    new_centre = None
    for k in range(1, n_visits):
        f_k = final ** (k / (n_visits - 1))
        labels = np.zeros_like(labels0)
        fr, moved = [], []
        for i, fate in enumerate(fates):
            m = labels0 == i + 1
            f = {"stable": 1.0, "disappear": 0.0, "fragment": max(f_k, MIN_FRAGMENTED)}.get(fate, f_k)
            kept = _erode_to(m, f, spacing_zyx)
            scale = (float(kept.sum()) / max(int(m.sum()), 1)) ** (1 / 3)
            if fate == "fragment" and kept.any():
                kept = _cut(kept, spacing_zyx, fragment_gap_mm)
            labels[kept] = i + 1
            fr.append(float(kept.sum()) / max(int(m.sum()), 1))
            if concentric and 0 < scale < 1:
                moved.append(_concentric_sources(m, kept, scale))
        new_k = []
        if new_lesion_at is not None and k >= new_lesion_at:
            if new_centre is None:  # where the engine's own breast region agrees that it is breast
                engine_breast = sitk.GetArrayViewFromImage(breast_region(ref)[0]) > 0
                new_centre = _new_lesion_centre(rng, breast & engine_breast, labels0, spacing_zyx,
                                                new_lesion_radius_mm)
            if new_centre is not None:
                zz, yy, xx = np.ogrid[tuple(slice(0, n) for n in labels0.shape)]
                d2 = sum(((g - c) * s) ** 2 for g, c, s in zip((zz, yy, xx), new_centre, spacing_zyx))
                labels[(d2 <= new_lesion_radius_mm ** 2) & breast & (labels == 0)] = NEW_LABEL
                new_k = [NEW_LABEL]
        # signals: no uptake where tumor was and is no more, uptake in the new lesion
        gone = (labels0 > 0) & (labels == 0)
        phases = [pre.copy()]
        for p, g in zip(posts, gain):
            q = p.copy()
            q[gone] = pre[gone]
            for dst, src in moved:  # the shrunk tumor keeps its enhancement pattern (rim, core)
                q.flat[dst] = pre.flat[dst] + (p.flat[src] - pre.flat[src])
            q[labels == NEW_LABEL] = pre[labels == NEW_LABEL] * g
            phases.append(q)
        tx = _positioning(rng, centre, max_rotation_deg, max_translation_mm, max_affine)
        # visit(p) = changed baseline(tx(p)): tx maps visit points to baseline points
        nrng = np.random.default_rng([int(seed), 31, k])
        images = []
        for arr in phases:
            img = sitk.GetImageFromArray(arr.astype(np.float32))
            img.CopyInformation(ref)
            moved = sitk.GetArrayFromImage(sitk.Resample(img, ref, tx, sitk.sitkLinear, 0.0, sitk.sitkFloat32))
            moved += nrng.normal(0, noise, moved.shape).astype(np.float32)
            out = sitk.GetImageFromArray(moved)
            out.CopyInformation(ref)
            images.append(out)
        lab_img = sitk.GetImageFromArray(labels)
        lab_img.CopyInformation(ref)
        lab_v = sitk.Resample(lab_img, ref, tx, sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
        breast_v = sitk.Resample(base.breast_mask, ref, tx, sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
        case_id = f"{base.case_id}_v{k}"
        exam = DCEExam(images, list(base.exam.times_min) if base.exam.times_min else None, case_id,
                       [f"{case_id}_{i:04d}" for i in range(len(images))],
                       dict(base.exam.metadata, visit=k, resampled_phases=[]))
        lab_arr = sitk.GetArrayViewFromImage(lab_v)
        tumors = _measure(np.asarray(lab_arr), ref)
        for t in tumors:
            t["new"] = t["label"] >= NEW_LABEL
        visits.append(Phantom(exam, sitk.Cast(lab_v > 0, sitk.sitkUInt8), lab_v, breast_v, tumors,
                              [sitk.Euler3DTransform() for _ in images],
                              {"family": family, "seed": int(seed), "visit": k, "voxel_ml": vox_ml}))
        to_base.append(tx.GetInverse())
        fractions.append(fr)
        new_labels.append(new_k)
    dates = [str(np.datetime64("2024-01-08") + np.timedelta64(interval_days * k, "D")) for k in range(n_visits)]
    return VisitSeries(visits, to_base, list(fates), fractions, new_labels, dates)
