"""Rendering the phantom anatomy onto a voxel grid.

The result is a small set of maps from which every phase follows exactly::

    S(t) = s0 + w_slow * f_slow(t) + w_fast * f_fast(t) + sum_i w_tumor_i * E_i(t)

where ``s0`` is the pre-contrast signal, ``w_slow`` / ``w_fast`` are signal times enhancement
amplitude of the tissues on the slow (parenchyma, fat, muscle) and fast (blood) curves, and
``w_tumor_i`` is tumor i's pre-contrast signal times its partial-volume fraction. Tissues are
painted from the outside in, each covering what lies under it by its partial-volume fraction.

Parenchyma (fibroglandular tissue, FGT) is thresholded, smoothed noise sampled on a fixed
1.5 mm raster in the anatomy frame and resampled onto the grid, so the same seed gives the
same patient at any spacing and orientation. Large grids are rendered in slabs.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from .anatomy import Anatomy, Breast
from .geometry import (F32, VoxelGrid, ellipse_cylinder_sdf, ellipsoid_sdf, raster_coords, raster_image,
                               random_rotation, relative, segment_distance, smooth_min, soft)
from .lesions import Tumor, make_mass, make_nonmass

TEXTURE_SPACING_MM = 1.5
COARSE_SPACING_MM = 4.5
FGT_EDGE = 0.25  # width of the FGT boundary in units of the texture field (std 1)
SLAB_VOXELS = 4_000_000


# ------------------------------------------------------------------------------ textures
@dataclass
class BreastTexture:
    breast: Breast
    lo: np.ndarray
    field: np.ndarray  # FGT field F (z, y, x); FGT where F > threshold
    hetero: np.ndarray  # smooth field (std 1) for BPE heterogeneity
    threshold: float
    clearance: np.ndarray  # mm from each raster voxel to the edge of the tumor-allowed region
    image: sitk.Image | None = None  # (F, H) as a 2-component image in the physical frame


def _smooth_noise(rng, shape, sigma_vox) -> np.ndarray:
    a = ndimage.gaussian_filter(rng.standard_normal(shape, dtype=F32), sigma_vox, mode="wrap", truncate=3.0)
    return a / max(float(a.std()), 1e-6)


def _upsample(coarse: np.ndarray, lo, shape) -> np.ndarray:
    """Linear resampling of a COARSE_SPACING_MM raster (starting at lo) onto the fine raster."""
    src = raster_image(coarse, lo, COARSE_SPACING_MM, (0, 0, 0))
    ref = raster_image(np.zeros(shape, F32), lo, TEXTURE_SPACING_MM, (0, 0, 0))
    out = sitk.Resample(src, ref, sitk.Transform(), sitk.sitkLinear, 0.0, sitk.sitkFloat32, True)
    return sitk.GetArrayFromImage(out)


def breast_region(anat: Anatomy, b: Breast, x, y, z, d_body, d_torso) -> np.ndarray:
    """Whole-breast ground truth: inside the skin outline, anterior of the chest-wall muscle,
    under this breast's footprint (not the torso's sides or back)."""
    return ((d_body <= 0) & (d_torso > F32(-anat.muscle_front)) & (b.footprint(x, z) <= 1)
            & (y <= F32(b.y0 + b.post_depth)))


def make_texture(rng: np.random.Generator, anat: Anatomy, b: Breast, offset) -> BreastTexture:
    fgt = anat.fgt
    lo, hi = b.aabb(pad=6.0)
    shape = tuple(int(n) for n in (np.ceil((hi - lo) / TEXTURE_SPACING_MM).astype(int) + 1)[::-1])
    cshape = tuple(int(n) for n in (np.ceil((hi - lo) / COARSE_SPACING_MM).astype(int) + 2)[::-1])
    # strands: smoother along y, the direction from the chest wall to the nipple (ducts)
    sig = fgt["fine_sigma_mm"] / TEXTURE_SPACING_MM
    fine = _smooth_noise(rng, shape, (sig, sig * fgt["strand_elongation"], sig))
    coarse = _upsample(_smooth_noise(rng, cshape, fgt["coarse_sigma_mm"] / COARSE_SPACING_MM), lo, shape)
    hetero = _upsample(_smooth_noise(rng, cshape, 12.0 / COARSE_SPACING_MM), lo, shape)
    wf = fgt["fine_weight"]
    field = F32(wf) * fine + F32(np.sqrt(1 - wf * wf)) * coarse
    x, y, z = raster_coords(lo, shape, TEXTURE_SPACING_MM)
    bx, u, bz = b.local(x, y, z)
    # parenchyma gathers around the breast axis, between base and nipple
    field -= F32(fgt["central_prior"]) * (bx * bx + bz * bz + F32(1.5) * (u - F32(0.35)) ** 2)
    d_t = anat.torso_sdf(x, y)
    d_b = anat.body_sdf(x, y, z, d_t)
    region = breast_region(anat, b, x, y, z, d_b, d_t)
    elig = (region & (d_b <= F32(-(anat.skin + fgt["subcutaneous_mm"])))
            & (d_t >= F32(-anat.muscle_front + fgt["retromammary_mm"])))
    # density = FGT volume / whole-breast volume
    frac = min(0.95, fgt["density"] * region.sum() / max(int(elig.sum()), 1))
    thr = float(np.quantile(field[elig], 1.0 - frac)) if elig.any() else 1e9
    field = np.where(elig, field, F32(-10.0))
    foot = np.sqrt(b.footprint(x, z))
    clearance = np.minimum.reduce([-d_b - F32(anat.skin), d_t + F32(anat.muscle_front),
                                   (F32(1) - foot) * F32(min(b.rx, b.rz)), F32(b.y0 + b.post_depth) - y])
    tex = BreastTexture(b, lo, field, hetero, thr, clearance.astype(F32))
    tex.image = raster_image(np.stack([field, hetero], axis=-1), lo, TEXTURE_SPACING_MM, offset)
    return tex


# ------------------------------------------------------------------------------ tumors
def place_tumors(rng: np.random.Generator, anat: Anatomy, textures: list[BreastTexture], specs: list[dict],
                 voxel_mm: float) -> list[Tumor]:
    """Place one tumor per spec (kind, radius, side, s0, curve, peak) without overlaps."""
    tumors: list[Tumor] = []
    for spec in specs:
        tex = next(t for t in textures if t.breast.side == spec["side"])
        b = tex.breast
        radius = spec["radius"]
        for attempt in range(120):
            if attempt and attempt % 12 == 0:  # no room (small breast, other tumors): shrink a little
                radius *= 0.92
            if spec["kind"] == "mass":
                shape = make_mass(rng, radius)
                reach = float(np.max(shape["radii"]) * (1 + sum(l[0] for l in shape["lobes"])))
            else:
                reach = radius + 2.0
            ok = tex.clearance >= reach + 1.5
            if rng.uniform() < 0.85:  # mostly in or next to parenchyma
                ok_fgt = ok & (tex.field >= tex.threshold - 0.3)
                ok = ok_fgt if ok_fgt.any() else ok
            flat = np.flatnonzero(ok)
            if flat.size == 0:
                radius *= 0.92
                continue
            zi, yi, xi = np.unravel_index(flat[int(rng.integers(flat.size))], ok.shape)
            center = tex.lo + np.array([xi, yi, zi], float) * TEXTURE_SPACING_MM
            center = center + rng.uniform(-0.5, 0.5, 3) * TEXTURE_SPACING_MM
            if any(np.linalg.norm(center - t.center) < reach + t.extent + 4.0 for t in tumors):
                continue
            if spec["kind"] == "mass":
                tumor = Tumor("mass", b.side, center, radius, shape["radii"], shape["rotation"], shape["lobes"])
            else:
                nm = make_nonmass(rng, radius, center, b.nipple_center, voxel_mm)
                tumor = Tumor("nonmass", b.side, center, radius, nm["radii"], nm["rotation"], blobs=nm["blobs"])
            tumor.s0, tumor.curve_kind, tumor.peak = spec["s0"], spec["curve"], spec["peak"]
            tumors.append(tumor)
            break
        else:
            raise RuntimeError(f"could not place a {spec['kind']} tumor of radius {spec['radius']:.1f} mm "
                               f"in the {spec['side']} breast")
    return tumors


# ------------------------------------------------------------------------------ decoys
@dataclass
class Decoy:
    """A breast finding that is *not* a tumor: a cyst (dark on T1, no enhancement) or an
    intramammary lymph node (kidney-shaped, fatty hilum, moderate fast enhancement)."""

    kind: str  # "cyst" or "lymph node"
    side: str
    center: np.ndarray
    radii: np.ndarray
    rotation: np.ndarray
    s0: float
    a_fast: float  # peak enhancement on the blood-pool curve (0 for cysts)
    hilum: tuple | None = None  # (center, radii) of the fatty hilum

    def aabb(self, pad: float = 3.0):
        r = float(np.max(self.radii)) + pad
        return self.center - r, self.center + r

    def as_dict(self) -> dict:
        return {"kind": self.kind, "side": self.side, "center_anatomy_mm": np.round(self.center, 3).tolist(),
                "semi_axes_mm": np.round(self.radii, 3).tolist(), "s0": self.s0, "peak_enhancement": self.a_fast}


def place_decoys(rng: np.random.Generator, anat: Anatomy, textures: list[BreastTexture], tumors: list[Tumor]) -> list[Decoy]:
    """0-3 cysts and 0-2 lymph nodes per phantom, inside the breasts, away from tumors."""
    tis = anat.tissue
    out: list[Decoy] = []
    wanted = ["cyst"] * int(rng.integers(0, 4)) + ["lymph node"] * int(rng.integers(0, 3))
    for kind in wanted:
        tex = textures[int(rng.integers(len(textures)))]
        radius = float(rng.uniform(3.0, 9.0) if kind == "cyst" else rng.uniform(3.0, 6.0))
        radii = radius * (rng.uniform(0.8, 1.2, 3) if kind == "cyst" else np.array([1.6, 1.0, 0.8]))
        rot = random_rotation(rng, 180.0)
        ok = tex.clearance >= float(np.max(radii)) + 2.0
        if kind == "lymph node":  # nodes sit in fat
            ok &= tex.field < tex.threshold - 0.5
        flat = np.flatnonzero(ok)
        if flat.size == 0:
            continue
        zi, yi, xi = np.unravel_index(flat[int(rng.integers(flat.size))], ok.shape)
        center = tex.lo + np.array([xi, yi, zi], float) * TEXTURE_SPACING_MM
        if any(np.linalg.norm(center - t.center) < np.max(radii) + t.extent + 3 for t in tumors) or any(
                np.linalg.norm(center - d.center) < np.max(radii) + np.max(d.radii) + 2 for d in out):
            continue
        if kind == "cyst":
            out.append(Decoy(kind, tex.breast.side, center, radii, rot, float(rng.uniform(150, 320)), 0.0))
        else:
            hilum = (center + rot @ np.array([0.8 * radii[0], 0, 0]), radii * np.array([0.4, 0.4, 0.4]))
            out.append(Decoy(kind, tex.breast.side, center, radii, rot, tis["s_fgt"] * float(rng.uniform(0.9, 1.2)),
                             float(rng.uniform(0.3, 0.9)), hilum))
    return out


# ------------------------------------------------------------------------------ rendering
@dataclass
class RenderedMaps:
    s0: np.ndarray
    w_slow: np.ndarray
    w_fast: np.ndarray
    tumor_boxes: list  # per tumor: numpy slices of its box in the full grid
    tumor_w: list  # per tumor: s0 x fraction on that box
    tumor_label: np.ndarray  # uint8, tumor i -> i + 1
    breast: np.ndarray  # uint8
    heart_box: tuple | None = None  # numpy slices of the heart's box in the full grid
    heart_alpha: np.ndarray | None = None  # heart fraction on that box (source of pulsation ghosts)


class _Canvas:
    def __init__(self, s0, w_slow, w_fast):
        self.maps = (s0, w_slow, w_fast)

    def paint(self, rel, alpha, s0, a_slow=0.0, a_fast=0.0) -> None:
        """Cover the sub-box *rel* by a tissue with partial-volume fraction *alpha*."""
        rel = rel if rel is not None else (slice(None),) * 3
        for arr, val in zip(self.maps, (s0, s0 * a_slow, s0 * a_fast)):
            view = arr[rel]
            view += alpha * (F32(val) - view) if np.isscalar(val) else alpha * (val.astype(F32) - view)


def render(anat: Anatomy, grid: VoxelGrid, textures: list[BreastTexture], tumors: list[Tumor],
           decoys: list[Decoy] = ()) -> RenderedMaps:
    shape = grid.shape
    maps = RenderedMaps(np.zeros(shape, F32), np.zeros(shape, F32), np.zeros(shape, F32), [], [],
                        np.zeros(shape, np.uint8), np.zeros(shape, np.uint8))
    if anat.heart is not None:
        h = anat.heart
        maps.heart_box = grid.box(np.subtract(h["center"], max(h["radii"]) + 3), np.add(h["center"], max(h["radii"]) + 3))
        if maps.heart_box is not None:
            maps.heart_alpha = np.zeros(tuple(s.stop - s.start for s in maps.heart_box), F32)
    for t in tumors:
        box = grid.box(*t.aabb())
        maps.tumor_boxes.append(box)
        maps.tumor_w.append(None if box is None else np.zeros(tuple(s.stop - s.start for s in box), F32))
    step = max(1, SLAB_VOXELS // (shape[1] * shape[2]))
    for k0 in range(0, shape[0], step):
        slab = (slice(k0, min(shape[0], k0 + step)), slice(0, shape[1]), slice(0, shape[2]))
        _render_slab(anat, grid, slab, maps, textures, tumors, decoys)
    return maps


def _render_slab(anat: Anatomy, grid: VoxelGrid, slab, maps: RenderedMaps, textures, tumors, decoys) -> None:
    x, y, z = grid.coords(slab)
    w = grid.voxel_mm
    tis = anat.tissue
    d_t = anat.torso_sdf(x, y)
    d_b = _body_sdf(anat, grid, slab, x, y, z, d_t)
    cv = _Canvas(maps.s0[slab], maps.w_slow[slab], maps.w_fast[slab])

    # layers of the body wall
    cv.paint(None, soft(d_b, w), tis["s_skin"], tis["a_skin"])
    cv.paint(None, soft(d_b + F32(anat.skin), w), tis["s_fat"], tis["a_fat"])
    cv.paint(None, soft(d_t + F32(anat.muscle_front), w), tis["s_muscle"], tis["a_muscle"])
    cavity = soft(d_t + F32(anat.cavity_depth), w)
    cv.paint(None, cavity, tis["s_lung"], 0.0)

    # thoracic cavity: cylinders along z, evaluated in their own boxes
    m, sp, ao = anat.mediastinum, anat.spine, anat.aorta
    canal_y = sp["y"] + sp["r"] + sp["canal_r"] + 3
    for (cx, cy_, rx, ry), s0, a_slow, a_fast, clip in (
            ((m["x"], m["y"], m["ax"], m["ay"]), tis["s_mediastinum"], tis["a_mediastinum"], 0.0, True),
            ((sp["x"], sp["y"], sp["r"], sp["r"]), tis["s_spine"], tis["a_spine"], 0.0, False),
            ((sp["x"], canal_y, sp["canal_r"], sp["canal_r"]), tis["s_canal"], 0.0, 0.0, False),
            ((ao["x"], ao["y"], ao["r"], ao["r"]), tis["s_blood"], 0.0, tis["peak_blood"], False)):
        csl = grid.box((cx - rx - 2, cy_ - ry - 2, -1e4), (cx + rx + 2, cy_ + ry + 2, 1e4), slab)
        if csl is None:
            continue
        rel = relative(csl, slab)
        alpha = soft(ellipse_cylinder_sdf(x[rel], y[rel], cx, cy_, rx, ry), w)
        if clip:
            alpha *= cavity[rel]
        cv.paint(rel, alpha, s0, a_slow, a_fast)
    if anat.heart is not None:
        h = anat.heart
        hsl = grid.box(np.subtract(h["center"], max(h["radii"]) + 3), np.add(h["center"], max(h["radii"]) + 3), slab)
        if hsl is not None:
            rel = relative(hsl, slab)
            hx, hy, hz = x[rel], y[rel], z[rel]
            d_heart = ellipsoid_sdf(hx, hy, hz, h["center"], h["radii"], h["rotation"])
            a_heart = soft(d_heart, w) * cavity[rel]
            maps.heart_alpha[relative(hsl, maps.heart_box)] = a_heart
            cv.paint(rel, a_heart, tis["s_myocardium"], 0.0, tis["peak_blood"] * tis["myocardium_scale"])
            inner = np.asarray(h["radii"]) - h["wall"]
            d_pool = ellipsoid_sdf(hx, hy, hz, h["center"], inner, h["rotation"])
            cv.paint(rel, soft(d_pool, w) * cavity[rel], tis["s_blood"], 0.0, tis["peak_blood"])

    # breasts: parenchyma and the whole-breast mask
    inside_skin = soft(d_b + F32(anat.skin), w)
    for tex in textures:
        b = tex.breast
        bsl = grid.box(*b.aabb(), within=slab)
        if bsl is None:
            continue
        rel = relative(bsl, slab)
        bx_, by_, bz_ = x[rel], y[rel], z[rel]
        region = breast_region(anat, b, bx_, by_, bz_, d_b[rel], d_t[rel])
        maps.breast[bsl] |= region.astype(np.uint8)
        fh = grid.resample_onto(tex.image, bsl)
        field, hetero = fh[..., 0], fh[..., 1]
        fgt = anat.fgt
        elig = (soft(d_b[rel] + F32(anat.skin + fgt["subcutaneous_mm"]), w)
                * soft(F32(fgt["retromammary_mm"] - anat.muscle_front) - d_t[rel], w)
                * region)
        alpha = elig * np.clip((field - F32(tex.threshold)) * F32(1 / FGT_EDGE) + F32(0.5), F32(0), F32(1))
        bpe_map = F32(tis["bpe"]) * np.clip(F32(1) + F32(tis["bpe_heterogeneity"]) * hetero, F32(0.2), F32(2.5))
        cv.paint(rel, alpha, tis["s_fgt"] * (F32(1) + F32(0.05) * hetero), bpe_map)
        # nipple: skin-like tissue that enhances moderately and fast (a known false positive)
        d_n = b.nipple_sdf(bx_, by_, bz_)
        cv.paint(rel, soft(d_n, w) * soft(d_b[rel], w), tis["s_nipple"], 0.0, tis["peak_blood"] * tis["nipple_scale"])

    # decoys: cysts and lymph nodes (breast findings that are not tumors)
    for dc in decoys:
        dsl = grid.box(*dc.aabb(), within=slab)
        if dsl is None:
            continue
        rel = relative(dsl, slab)
        dx, dy, dz = x[rel], y[rel], z[rel]
        alpha = soft(ellipsoid_sdf(dx, dy, dz, dc.center, dc.radii, dc.rotation), w) * inside_skin[rel]
        cv.paint(rel, alpha, dc.s0, 0.0, dc.a_fast)  # the fast curve peaks at 1
        if dc.hilum is not None:
            h_alpha = soft(ellipsoid_sdf(dx, dy, dz, dc.hilum[0], dc.hilum[1], dc.rotation), w) * alpha
            cv.paint(rel, h_alpha, tis["s_fat"], tis["a_fat"])

    # vessels
    for v in anat.vessels:
        vsl = grid.box(*v.aabb(), within=slab)
        if vsl is None:
            continue
        rel = relative(vsl, slab)
        dist = None
        for a, bpt in zip(v.points[:-1], v.points[1:]):
            ssl = grid.box(np.minimum(a, bpt) - v.radius - 2, np.maximum(a, bpt) + v.radius + 2, vsl)
            if ssl is None:
                continue
            if dist is None:
                dist = np.full(tuple(s.stop - s.start for s in vsl), np.inf, F32)
            srel = relative(ssl, slab)
            sub = relative(ssl, vsl)
            dist[sub] = np.minimum(dist[sub], segment_distance(x[srel], y[srel], z[srel], a, bpt))
        if dist is None:
            continue
        alpha = soft(dist - F32(v.radius), w)
        if v.name != "internal mammary":
            alpha *= inside_skin[rel]
        cv.paint(rel, alpha, tis["s_blood"], 0.0, tis["peak_blood"] * tis["vessel_scale"])

    # tumors last: they replace whatever lies under them
    for i, (t, tbox) in enumerate(zip(tumors, maps.tumor_boxes)):
        if tbox is None:
            continue
        tsl = grid.box(*t.aabb(), within=slab)
        if tsl is None:
            continue
        rel = relative(tsl, slab)
        b = next(bb for bb in anat.breasts if bb.side == t.side)
        tx, ty, tz = x[rel], y[rel], z[rel]
        allowed = (breast_region(anat, b, tx, ty, tz, d_b[rel], d_t[rel]) & (d_b[rel] <= F32(-anat.skin)))
        d = t.sdf(tx, ty, tz)
        alpha = soft(d, w) * allowed
        cv.paint(rel, alpha, t.s0, 0.0, 0.0)  # pre-contrast signal; its enhancement is w_tumor x E_i(t)
        weight = alpha * F32(t.s0)
        if t.rim_mm > 0:  # rim enhancement: the core enhances at a fraction of the rim
            weight = np.where(d < F32(-t.rim_mm), weight * F32(t.core_fraction), weight)
        maps.tumor_w[i][relative(tsl, tbox)] = weight
        lab = maps.tumor_label[tsl]
        lab[(d <= 0) & allowed] = i + 1


def _body_sdf(anat: Anatomy, grid: VoxelGrid, slab, x, y, z, d_torso) -> np.ndarray:
    """:meth:`Anatomy.body_sdf` on a slab, each breast evaluated only inside its (padded) box."""
    d = d_torso.copy()
    for b in anat.breasts:
        bsl = grid.box(*b.aabb(pad=2 * anat.fold + 10), slab)
        if bsl is not None:
            rel = relative(bsl, slab)
            d[rel] = smooth_min(d[rel], b.sdf(x[rel], y[rel], z[rel]), anat.fold)
    for b in anat.breasts:
        bsl = grid.box(*b.aabb(pad=4), slab)
        if bsl is not None:
            rel = relative(bsl, slab)
            d[rel] = np.minimum(d[rel], b.nipple_sdf(x[rel], y[rel], z[rel]))
    return d
