"""Domain-randomised synthetic DCE-MRI exams (in the spirit of SynthSeg).

``make_randomized(seed)`` draws a random patient as a *label map* on the acquisition grid and
turns it into a DCE exam with random contrast, so that a model trained on it cannot memorise
one look. Per exam everything below is random:

* anatomy: torso (elliptic with an irregular outline, random size), subcutaneous fat, chest-wall
  muscle, lungs, a heart inside the chest, the aorta and small vessels (internal mammary and
  lateral thoracic), axillary lymph nodes, breasts of random size, shape and ptosis (bilateral
  or a unilateral field of view), a fibroglandular pattern (smooth noise thresholded), an
  implant or none, skin and nipples, 0-3 lesions (lobulated / spiculated / rim-enhancing
  masses, non-mass clumps) inside the breasts;
* contrast: one pre-contrast signal per tissue (fat-suppressed: fat dark; or not: fat bright),
  a smooth texture, a smooth multiplicative bias field, Rician or Gaussian noise, a scanner
  scale between 1 and 1e6 (log-uniform) and optional integer storage;
* acquisition: axial, sagittal or coronal (the direction matrix follows, so the anatomy stays
  where it belongs in LPS patient space), in-plane spacing 0.6-3 mm with thicker slices, a
  random field of view, 2-8 phases at random times;
* kinetics: a strongly enhancing blood pool (heart, aorta, vessels), nodes, skin and nipple,
  background parenchymal enhancement, slowly enhancing muscle, and per lesion a persistent /
  plateau / washout curve designed for the exam's times (:func:`.kinetics.design_curve_for_times`: a
  plateau where the times cannot show the drawn kind);
* motion: rigid plus smooth non-rigid motion between phases.

Ground truth follows :class:`~.Phantom` (same fields as ``make_phantom``). ``motion[k]`` is
the transform that *corrects* phase k: ``sitk.Resample(exam.phases[k], exam.reference,
motion[k])`` puts phase k back on phase 0 (an ``Euler3DTransform`` for rigid motion, a
``DisplacementFieldTransform`` on a coarse grid when non-rigid motion is present).

Anatomy frame: LPS axes with the origin at the front of the chest wall between the breasts;
the patient lies prone, so the breasts hang towards -y (anterior). ``physical = anatomy +
offset``. Deterministic: one ``numpy`` generator per concern, seeded with ``[seed, stream]``.
"""
from __future__ import annotations

import math

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from ...core.errors import InputError
from ...core.exam import MAX_PHASES, MIN_PHASES, DCEExam
from ...core.imageutil import voxel_volume_ml
from . import Phantom, _jsonable, _transform_dict
from .geometry import F32, direction_matrix, make_grid, random_rotation, random_unit_vector
from .kinetics import (CURVE_TYPES, design_curve_for_times, early_late_phases, normalised_fast_curve,
                       normalised_slow_curve)

FAMILY = "randomized"
ORIENTATIONS = ("axial", "sagittal", "coronal")
MAX_VOXELS = 3_300_000
MAX_LESIONS = 3

# label map values
AIR, FAT, MUSCLE, LUNG, HEART, VESSEL, NODE, FGT, IMPLANT, SKIN, NIPPLE, LESION = range(12)
TISSUES = ("air", "fat", "muscle", "lung", "heart", "vessel", "node", "fgt", "implant", "skin", "nipple",
           "lesion")
_STREAMS = {"anatomy": 21, "breasts": 22, "fgt": 23, "lesions": 24, "contrast": 25, "acquisition": 26,
            "times": 27, "kinetics": 28, "motion": 29, "noise": 30, "bias": 31}


def _rng(seed: int, stream: str) -> np.random.Generator:
    return np.random.default_rng([seed, _STREAMS[stream]])


def _check(cond: bool, problem: str, fix: str | None = None) -> None:
    if not cond:
        raise InputError(problem, "make_randomized", fix)


# ------------------------------------------------------------------------------ anatomy (parameters)
def sample_patient(rng: np.random.Generator, brng: np.random.Generator, implants=None) -> dict:
    """Random anatomy parameters (mm, anatomy frame)."""
    ax, ay = rng.uniform(125, 190), rng.uniform(85, 135)
    fat = rng.uniform(4, 25)
    muscle = rng.uniform(7, 18)
    p = {"torso_ax": ax, "torso_ay": ay, "torso_harmonics": rng.normal(0, 0.012, (3, 2)).tolist(),
         "torso_phase": rng.uniform(0, 2 * math.pi, 3).tolist(),
         "fat_mm": fat, "muscle_mm": muscle, "skin_mm": rng.uniform(1.2, 3.0)}
    inner = fat + muscle  # depth of the thoracic cavity below the front of the body
    p["heart"] = {"center": [rng.uniform(5, 35), inner + rng.uniform(35, 55), rng.uniform(-40, 10)],
                  "radii": [rng.uniform(45, 65), rng.uniform(35, 50), rng.uniform(40, 60)]}
    p["aorta"] = {"x": rng.uniform(-5, 25), "y": inner + rng.uniform(70, 100), "r": rng.uniform(9, 15)}
    p["lung"] = {"dx": rng.uniform(0.4, 0.5) * ax, "radii": [0.33 * ax, 0.45 * ay, 110.0]}
    # breasts
    x0 = rng.uniform(55, 95)
    implant = bool(brng.uniform() < 0.12) if implants is None else bool(implants)
    breasts = []
    for side, sign in (("left", 1.0), ("right", -1.0)):
        size = float(brng.uniform(0.6, 1.4))
        bx = sign * (x0 + brng.uniform(-8, 8))
        front = ay * (1 - math.sqrt(max(1 - (bx / ax) ** 2, 0.0)))  # the torso surface behind the breast
        b = {"side": side, "center": [bx, front, brng.uniform(-15, 15)],
             "radii": [size * brng.uniform(45, 65), size * brng.uniform(30, 70), size * brng.uniform(42, 60)],
             "ptosis": float(brng.uniform(0, 0.5)), "lateral": float(brng.uniform(-0.15, 0.3)),
             "wobble": brng.normal(0, 0.06, 3).tolist(), "wobble_dir": [random_unit_vector(brng).tolist()
                                                                        for _ in range(3)],
             "nipple_mm": [brng.uniform(4, 8), brng.uniform(3, 9)]}
        if implant:
            b["implant"] = {"radii": [b["radii"][0] * 0.6, b["radii"][1] * brng.uniform(0.35, 0.5),
                                      b["radii"][2] * 0.6]}
        breasts.append(b)
    p["breasts"] = breasts
    p["fgt_fraction"] = float(brng.uniform(0.08, 0.6))
    # small vessels: internal mammary (behind the chest wall) and lateral thoracic (in the breasts)
    vessels = [{"a": [s * rng.uniform(25, 40), inner + 3, -90.0], "b": [s * rng.uniform(25, 40), inner + 3, 90.0],
                "r": rng.uniform(1.2, 2.5)} for s in (1, -1)]
    for b in breasts:
        for _ in range(int(rng.integers(1, 4))):
            c = np.asarray(b["center"])
            a = c + [math.copysign(b["radii"][0] * 0.9, c[0]), rng.uniform(-5, 20), rng.uniform(-20, 30)]
            e = c + [rng.uniform(-25, 25), -b["radii"][1] * rng.uniform(0.3, 0.8), rng.uniform(-25, 25)]
            vessels.append({"a": a.tolist(), "b": e.tolist(), "r": rng.uniform(0.8, 1.8)})
    p["vessels"] = vessels
    p["nodes"] = [{"center": [s * rng.uniform(0.6, 0.85) * ax, rng.uniform(10, 45), rng.uniform(20, 70)],
                   "radii": rng.uniform(3, 8, 3).tolist()}
                  for s in (1, -1) for _ in range(int(rng.integers(0, 3)))]
    return p


# ------------------------------------------------------------------------------ label map
class _Coords:
    """Anatomy-frame coordinates of every voxel of a grid (float32, numpy (z, y, x) order)."""

    def __init__(self, grid: sitk.Image, offset):
        d = np.asarray(grid.GetDirection(), float).reshape(3, 3)
        sp = np.asarray(grid.GetSpacing(), float)
        base = np.asarray(grid.GetOrigin(), float) - np.asarray(offset, float)
        nx, ny, nz = grid.GetSize()
        i = (np.arange(nx) * sp[0]).astype(F32)[None, None, :]
        j = (np.arange(ny) * sp[1]).astype(F32)[None, :, None]
        k = (np.arange(nz) * sp[2]).astype(F32)[:, None, None]
        self.xyz = [F32(base[c]) + F32(d[c, 0]) * i + F32(d[c, 1]) * j + F32(d[c, 2]) * k for c in range(3)]
        self.shape = (nz, ny, nx)

    def full(self, c: int) -> np.ndarray:
        return np.broadcast_to(self.xyz[c], self.shape)


def _ellipsoid(c: _Coords, center, radii, rot=None) -> np.ndarray:
    """Normalised radius (< 1 inside) of an (optionally rotated) ellipsoid."""
    p = [c.xyz[a] - F32(center[a]) for a in range(3)]
    if rot is not None:
        r = np.asarray(rot, float)
        p = [F32(r[0, a]) * p[0] + F32(r[1, a]) * p[1] + F32(r[2, a]) * p[2] for a in range(3)]
    return np.sqrt(sum((p[a] * F32(1 / radii[a])) ** 2 for a in range(3)))


def _tube(c: _Coords, a, b) -> np.ndarray:
    a, ab = np.asarray(a, float), np.asarray(b, float) - np.asarray(a, float)
    p = [c.xyz[k] - F32(a[k]) for k in range(3)]
    t = np.clip(sum(p[k] * F32(ab[k]) for k in range(3)) * F32(1 / float(ab @ ab)), F32(0), F32(1))
    return np.sqrt(sum((p[k] - t * F32(ab[k])) ** 2 for k in range(3)))


def smooth_noise(rng: np.random.Generator, shape, spacing, scale_mm: float) -> np.ndarray:
    """Zero-mean, unit-sd smooth random field on a grid (correlation length about *scale_mm*)."""
    coarse = [max(3, int(math.ceil(n * s / scale_mm)) + 2) for n, s in zip(shape, spacing)]
    g = ndimage.gaussian_filter(rng.standard_normal(coarse).astype(F32), 0.7)
    out = ndimage.zoom(g, [n / m for n, m in zip(shape, coarse)], order=1, grid_mode=True, mode="nearest")
    out = out[: shape[0], : shape[1], : shape[2]]
    return (out - out.mean()) / max(float(out.std()), 1e-6)


def label_anatomy(c: _Coords, p: dict, frng: np.random.Generator, spacing_zyx) -> tuple[np.ndarray, np.ndarray]:
    """Label map (uint8) and the true whole-breast mask (bool) of patient *p* on the grid."""
    x, y, z = c.xyz
    ax, ay = p["torso_ax"], p["torso_ay"]
    # torso: irregular elliptic cylinder, front at y = 0
    ang = np.arctan2((y - F32(ay)) * F32(ax / ay), x)
    mod = np.ones_like(ang)
    for n, ((ca, cb), ph) in enumerate(zip(p["torso_harmonics"], p["torso_phase"]), start=2):
        mod = mod + F32(ca) * np.cos(n * ang + F32(ph)) + F32(cb) * np.sin(n * ang)
    rho = np.sqrt((x * F32(1 / ax)) ** 2 + ((y - F32(ay)) * F32(1 / ay)) ** 2) / mod
    depth = (F32(1) - rho) * F32(min(ax, ay))  # approx. distance below the torso surface, mm
    # breasts: ellipsoids hanging anteriorly, sagging inferiorly (ptosis) and wobbly
    breast_g = np.full(c.shape, np.inf, F32)
    for b in p["breasts"]:
        cx, cy, cz = b["center"]
        r = b["radii"]
        yl = np.minimum(y - F32(cy), F32(0))  # the dome in front, a cylinder back into the torso
        t = np.clip(-yl * F32(1 / r[1]), F32(0), F32(1))  # 0 at the chest wall, 1 at the tip
        zz = z + F32(b["ptosis"] * r[2]) * t * t
        xx = x - F32(math.copysign(b["lateral"] * r[0], cx)) * t * t
        g = np.sqrt(((xx - F32(cx)) * F32(1 / r[0])) ** 2 + (yl * F32(1 / r[1])) ** 2
                    + ((zz - F32(cz)) * F32(1 / r[2])) ** 2)
        for w, d in zip(b["wobble"], b["wobble_dir"]):
            g = g * (F32(1) + F32(w) * np.sin((x * F32(d[0]) + y * F32(d[1]) + z * F32(d[2])) * F32(0.05)))
        np.minimum(breast_g, g, out=breast_g)
    breast_depth = np.where(y < F32(min(b["center"][1] for b in p["breasts"]) + 5), (F32(1) - breast_g) * F32(40.0),
                            F32(-1))
    body = np.maximum(depth, breast_depth)
    lab = np.zeros(c.shape, np.uint8)
    lab[body > 0] = FAT
    fat, mus = p["fat_mm"], p["muscle_mm"]
    lab[(depth > fat) & (depth <= fat + mus)] = MUSCLE
    cavity = depth > fat + mus
    lab[cavity] = FAT  # mediastinal fat
    for s in (1, -1):
        lung = _ellipsoid(c, [s * p["lung"]["dx"], ay * 1.05, 0.0], p["lung"]["radii"]) < 1
        lab[lung & cavity] = LUNG
    lab[(_ellipsoid(c, p["heart"]["center"], p["heart"]["radii"]) < 1) & cavity] = HEART
    a = p["aorta"]
    lab[(np.hypot(x - F32(a["x"]), y - F32(a["y"])) < F32(a["r"])) & cavity] = VESSEL
    # breasts: everything of the body in front of the chest-wall muscle inside a breast dome
    breast = (breast_g < 1) & (body > 0) & (depth <= F32(fat)) & (y < F32(ay))
    fgt_field = smooth_noise(frng, c.shape, spacing_zyx, float(frng.uniform(6, 18)))
    fgt_field += F32(2.0) * np.clip(breast_g, 0, 1) ** 2 * F32(-1)  # denser centrally
    inside = fgt_field[breast]
    thr = np.quantile(inside, 1 - p["fgt_fraction"]) if inside.size else np.inf
    lab[breast & (fgt_field > thr) & (breast_g < F32(0.92))] = FGT
    for b in p["breasts"]:
        if "implant" in b:
            ctr = [b["center"][0], b["center"][1] - 0.25 * b["radii"][1], b["center"][2]]
            lab[(_ellipsoid(c, ctr, b["implant"]["radii"]) < 1) & breast] = IMPLANT
    for v in p["vessels"]:
        lab[(_tube(c, v["a"], v["b"]) < F32(v["r"])) & (body > 0)] = VESSEL
    for n in p["nodes"]:
        lab[(_ellipsoid(c, n["center"], n["radii"]) < 1) & (body > 0)] = NODE
    lab[(body > 0) & (body <= F32(p["skin_mm"]))] = SKIN
    for b in p["breasts"]:
        r = b["radii"]
        tip = [b["center"][0] + math.copysign(b["lateral"] * r[0], b["center"][0]), b["center"][1] - r[1],
               b["center"][2] - b["ptosis"] * r[2]]
        ln, rad = b["nipple_mm"]
        nip = _ellipsoid(c, [tip[0], tip[1] - ln / 2, tip[2]], [rad, ln, rad]) < 1
        lab[nip] = NIPPLE
        breast |= nip
    return lab, breast


# ------------------------------------------------------------------------------ lesions
def place_lesions(rng: np.random.Generator, c: _Coords, lab: np.ndarray, breast: np.ndarray, n: int,
                  kinds=None, curves=None, radii=None, sides=None) -> tuple[np.ndarray, np.ndarray, list[dict]]:
    """Carve 0-3 lesions into the breast; returns (lesion labels, rim-core mask, specs).

    *sides* ("left" / "right" per lesion; anatomy x > 0 is the patient's left) keeps a lesion's
    centre in that breast; a side not in the field of view gets no lesion."""
    labels = np.zeros(lab.shape, np.uint8)
    core = np.zeros(lab.shape, bool)
    allowed = breast & (lab != SKIN) & (lab != IMPLANT) & (lab != NIPPLE)
    # keep lesion centres away from the skin
    eroded = ndimage.binary_erosion(allowed, iterations=2)
    cand = np.flatnonzero(eroded if eroded.any() else allowed)
    all_cand = cand
    specs: list[dict] = []
    for i in range(n):
        if sides is not None:
            x = c.full(0).ravel()[all_cand]
            cand = all_cand[x > 0] if sides[i] == "left" else all_cand[x <= 0]
        if cand.size == 0:
            if sides is not None:
                continue
            break
        kind = rng.choice(["lobulated", "spiculated", "rim", "nonmass"], p=[0.35, 0.25, 0.15, 0.25])
        kind = str(kinds[i]) if kinds is not None else str(kind)
        curve = str(curves[i]) if curves is not None else str(rng.choice(CURVE_TYPES, p=[0.3, 0.3, 0.4]))
        radius = float(radii[i]) if radii is not None else float(np.exp(rng.uniform(np.log(3.0), np.log(18.0))))
        ctr_idx = np.unravel_index(int(cand[rng.integers(cand.size)]), lab.shape)
        ctr = [float(c.full(a)[ctr_idx]) for a in range(3)]
        rot = random_rotation(rng, 180.0)
        r3 = radius * rng.uniform(0.7, 1.3, 3)
        g = _ellipsoid(c, ctr, r3, rot)
        if kind == "nonmass":  # clumped enhancement: thresholded noise in an elongated region
            region = _ellipsoid(c, ctr, [radius * 2.0, radius * 0.8, radius * 0.8], rot) < 1
            sp = [radius / 3] * 3
            m = region & (smooth_noise(rng, lab.shape, sp, 1.0) > 0.3)
        else:
            if kind in ("lobulated", "spiculated", "rim"):
                dirs = [random_unit_vector(rng) for _ in range(5)]
                amp = rng.uniform(0.05, 0.2, 5)
                p = [c.xyz[a] - F32(ctr[a]) for a in range(3)]
                nrm = np.sqrt(sum(q * q for q in p)) + F32(1e-3)
                lob = sum(F32(amp[k]) * (sum(p[a] * F32(dirs[k][a]) for a in range(3)) / nrm) ** 2
                          for k in range(5))
                g = g / (F32(1) + lob)
            m = g < 1
            if kind == "spiculated":
                for _ in range(int(rng.integers(5, 12))):
                    tip = np.asarray(ctr) + random_unit_vector(rng) * radius * rng.uniform(1.5, 2.6)
                    m |= _tube(c, ctr, tip) < F32(rng.uniform(0.6, 1.2))
            if kind == "rim":
                core |= (g < F32(rng.uniform(0.45, 0.7))) & allowed & (labels == 0)
        m &= allowed & (labels == 0)
        if not m.any():
            continue
        labels[m] = len(specs) + 1
        specs.append({"kind": kind, "curve": curve, "radius_mm": radius, "center": ctr, "request": i,
                      "peak": float(rng.uniform(0.8, 2.5)), "s0_factor": float(rng.uniform(0.8, 1.2))})
    return labels, core, specs


# ------------------------------------------------------------------------------ contrast
def sample_contrast(rng: np.random.Generator, fatsat=None) -> dict:
    """Pre-contrast signal per tissue (fat-relative), and the enhancement of every tissue."""
    fs = bool(rng.uniform() < 0.5) if fatsat is None else bool(fatsat)
    j = lambda lo, hi: float(rng.uniform(lo, hi))  # noqa: E731
    s = {"air": j(0, 0.02), "fat": j(0.08, 0.3) if fs else 1.0, "muscle": j(0.25, 0.6), "lung": j(0.02, 0.12),
         "heart": j(0.15, 0.8), "vessel": j(0.15, 0.7), "node": j(0.3, 0.7), "fgt": j(0.3, 0.9),
         "implant": j(0.2, 1.3), "skin": j(0.3, 0.9), "nipple": j(0.3, 0.8)}
    if rng.uniform() < 0.15:  # fully random contrast now and then (SynthSeg style)
        s.update({k: j(0.02, 1.2) for k in s if k not in ("air", "fat")})
    e = {"heart": j(1.5, 6.0), "vessel": j(1.2, 5.0), "node": j(0.4, 1.6), "fgt": j(0.0, 0.9) ** 1.5,
         "skin": j(0.1, 1.0), "nipple": j(0.2, 1.4), "muscle": j(0.05, 0.5), "fat": j(0.0, 0.08)}
    return {"fatsat": fs, "signal": s, "enhancement": e, "texture": j(0.0, 0.12),
            "tau_fast": j(0.15, 0.5), "k_fast": j(0.02, 0.2), "tau_slow": j(1.5, 6.0)}


# ------------------------------------------------------------------------------ acquisition
def _grid(rng: np.random.Generator, orng: np.random.Generator, p: dict, orientation, spacing, fov, side,
          max_voxels: int) -> tuple[sitk.Image, np.ndarray, dict]:
    name = orientation or str(orng.choice(ORIENTATIONS, p=[0.6, 0.25, 0.15]))
    _check(name in ORIENTATIONS, f"orientation {name!r}", f"use one of {', '.join(ORIENTATIONS)}")
    direction, info = direction_matrix(name, orng)
    inplane = float(np.exp(rng.uniform(np.log(0.6), np.log(3.0))))
    thick = min(inplane * float(rng.uniform(1.0, 3.0)), 6.0)
    sp = np.array([inplane, inplane, thick]) if spacing is None else np.broadcast_to(
        np.asarray(spacing, float), (3,)).copy()
    _check(bool(np.all((sp >= 0.2) & (sp <= 10))), f"spacing {sp.tolist()} mm is outside 0.2-10 mm")
    fov = fov or ("bilateral" if rng.uniform() < 0.75 else "unilateral")
    _check(fov in ("bilateral", "unilateral"), f"fov {fov!r}", "use bilateral or unilateral")
    side = side or ("left" if rng.uniform() < 0.5 else "right")
    tip = min(b["center"][1] - b["radii"][1] - b["nipple_mm"][1] for b in p["breasts"])
    front, back = tip - rng.uniform(5, 25), rng.uniform(0.6, 1.6) * p["torso_ay"] + 40
    zs = [b["center"][2] for b in p["breasts"]]
    height = float(rng.uniform(130, 210))
    if fov == "bilateral":
        half = p["torso_ax"] + rng.uniform(-25, 15)
        xlo, xhi = -half, half
    else:  # one breast: from just across the midline to beyond the side of the chest
        b = next(b for b in p["breasts"] if b["side"] == side)
        other = next(o for o in p["breasts"] if o["side"] != side)
        limit = abs(other["center"][0]) - other["radii"][0] * 1.4 - 5  # stop short of the other breast
        span = sorted([-math.copysign(1.0, b["center"][0]) * min(rng.uniform(-10, 15), limit),
                       math.copysign(abs(b["center"][0]) + b["radii"][0] * 1.6 + rng.uniform(0, 30), b["center"][0])])
        xlo, xhi = span
    lo, hi = np.array([xlo, front, np.mean(zs) - height / 2]), np.array([xhi, back, np.mean(zs) + height / 2])
    offset = rng.uniform([-30, -60, -150], [30, 60, 150])
    ext = hi - lo
    n = np.prod([ext[int(np.argmax(np.abs(direction[:, a])))] / sp[a] for a in range(3)])
    if spacing is None and n > max_voxels:
        sp = sp * (n / max_voxels) ** (1 / 3)
    grid = make_grid((lo + hi) / 2 + offset, ext, direction, sp)
    acq = {"orientation": name, "direction": direction.ravel().round(8).tolist(), **info, "fov": fov,
           "fov_side": side if fov == "unilateral" else None, "spacing": [float(v) for v in sp],
           "grid_size": list(grid.GetSize()), "origin": list(grid.GetOrigin()), "patient_offset_mm": offset.tolist(),
           "fov_lo_mm": lo.tolist(), "fov_hi_mm": hi.tolist()}
    return grid, offset, acq


def _times(rng: np.random.Generator, n_phases, times_min) -> list[float]:
    if times_min is not None:
        t = [float(v) for v in times_min]
        _check(MIN_PHASES <= len(t) <= MAX_PHASES and t[0] == 0 and all(b > a for a, b in zip(t, t[1:])),
               f"acquisition times {t}", f"give {MIN_PHASES}-{MAX_PHASES} increasing times, the first 0")
        return t
    n = int(rng.integers(MIN_PHASES, MAX_PHASES + 1)) if n_phases is None else int(n_phases)
    _check(MIN_PHASES <= n <= MAX_PHASES, f"n_phases={n_phases}", f"use {MIN_PHASES}-{MAX_PHASES}")
    first = float(rng.uniform(0.5, 2.5))
    gaps = rng.uniform(0.5, 2.5, n)
    return [0.0] + [round(first + float(v), 4) for v in np.concatenate([[0.0], np.cumsum(gaps[: n - 2])])]


def _motion(rng: np.random.Generator, grid: sitk.Image, n: int, level_mm: float, nonrigid_mm: float,
            center) -> tuple[list[sitk.Transform], list[sitk.Transform | None], list[dict]]:
    """Per phase: the correcting transform (truth) and the one that makes the phase (its inverse)."""
    fix, make, info = [], [], []
    if nonrigid_mm > 0:  # a coarse field covering the grid with a margin (outside it is zero)
        sp = 12.0
        size = np.asarray(grid.GetSize()) * np.asarray(grid.GetSpacing())
        csize = (np.ceil(size / sp) + 5).astype(int)
        d = np.asarray(grid.GetDirection()).reshape(3, 3)
        corigin = np.asarray(grid.GetOrigin()) - d @ np.full(3, 2.5 * sp)
        ref = sitk.Image([int(v) for v in csize], sitk.sitkVectorFloat64, 3)
        ref.SetSpacing([sp] * 3)
        ref.SetOrigin(corigin.tolist())
        ref.SetDirection(grid.GetDirection())
        pts = corigin[:, None, None, None] + np.einsum("ab,bkji->akji", d, np.stack(np.meshgrid(
            *[np.arange(m) * sp for m in csize[::-1]], indexing="ij")[::-1]))  # (3, nz, ny, nx)
    for k in range(n):
        shift = random_unit_vector(rng) * rng.uniform(0, 1) * level_mm
        angles = random_unit_vector(rng) * rng.uniform(0, 1) * math.radians(0.75 * level_mm)
        still = k == 0 or (level_mm == 0 and nonrigid_mm == 0)
        e = sitk.Euler3DTransform()
        e.SetCenter([float(v) for v in center])
        if not still:
            e.SetRotation(*[float(a) for a in angles])
            e.SetTranslation([float(s) for s in shift])
        info.append({"translation_mm": ([0.0] * 3 if still else shift.round(5).tolist()),
                     "angles_deg": ([0.0] * 3 if still else np.degrees(angles).round(5).tolist()),
                     "nonrigid_mm": 0.0 if still else float(nonrigid_mm)})
        if still or nonrigid_mm <= 0:
            fix.append(e)
            make.append(None if still else e.GetInverse())
            continue
        flat = pts.reshape(3, -1).T
        moved = np.array([e.TransformPoint(tuple(q)) for q in flat]).T.reshape(pts.shape)
        smooth = [ndimage.gaussian_filter(rng.standard_normal(pts.shape[1:]), 1.2) for _ in range(3)]
        smooth = np.stack([s / max(float(np.abs(s).max()), 1e-9) * nonrigid_mm for s in smooth])
        disp = np.moveaxis(moved - pts + smooth, 0, -1)  # (nz, ny, nx, 3): ref point -> phase-k point
        field = sitk.GetImageFromArray(disp.astype(np.float64), isVector=True)
        field.CopyInformation(ref)
        inverse = sitk.InvertDisplacementField(field, maximumNumberOfIterations=30, maxErrorToleranceThreshold=0.01,
                                               meanErrorToleranceThreshold=0.001, enforceBoundaryCondition=False)
        fix.append(sitk.DisplacementFieldTransform(sitk.Cast(field, sitk.sitkVectorFloat64)))
        make.append(sitk.DisplacementFieldTransform(sitk.Cast(inverse, sitk.sitkVectorFloat64)))
    return fix, make, info


# ------------------------------------------------------------------------------ the exam
class RandomizedPhantom(Phantom):
    """A :class:`Phantom` whose truth also serialises non-rigid motion (and keeps the tissue labels)."""

    tissue_labels: sitk.Image | None = None

    def truth(self) -> dict:
        motion, self.motion = self.motion, []
        try:
            out = super().truth()
        finally:
            self.motion = motion
        out["motion"] = [motion_dict(t) for t in motion]
        return out


def motion_dict(t: sitk.Transform) -> dict:
    if t.GetName() == "Euler3DTransform":
        return _transform_dict(t)
    f = sitk.DisplacementFieldTransform(t).GetDisplacementField()
    a = sitk.GetArrayViewFromImage(f)
    return {"type": t.GetName(), "field_size": list(f.GetSize()), "field_spacing": list(f.GetSpacing()),
            "max_displacement_mm": float(np.sqrt((a ** 2).sum(-1)).max())}


def make_randomized(seed: int, *, orientation=None, spacing=None, fov=None, side=None, n_phases=None,
                    times_min=None, n_lesions=None, lesion_kind=None, curve=None, lesion_radius_mm=None,
                    fatsat=None, implants=None, scale=None, integer=None, noise=None, bias=None, motion_mm=None,
                    nonrigid_mm=None, max_voxels: int = MAX_VOXELS, lesion_side=None, bpe=None):
    """A domain-randomised DCE exam of *seed* (see the module docstring); returns a :class:`Phantom`.

    Overrides replace the random draw: ``orientation`` ("axial", "sagittal", "coronal"),
    ``spacing`` (mm, scalar or (i, j, k)), ``fov`` ("bilateral" / "unilateral") and ``side``
    (of a unilateral exam), ``n_phases`` (2-8) or ``times_min``, ``n_lesions`` (0-3) with
    ``lesion_kind`` ("lobulated", "spiculated", "rim", "nonmass"), ``curve`` and
    ``lesion_radius_mm`` (one value or one per lesion), ``fatsat``, ``implants``, ``scale``
    (scanner scale, 1-1e6 drawn log-uniform), ``integer`` (round and store as integers),
    ``noise`` (sigma as a fraction of the brightest tissue; 0 = none), ``bias`` (bias-field
    amplitude; 0 = flat), ``motion_mm`` (rigid) and ``nonrigid_mm`` (0 = none), ``lesion_side``
    ("left" / "right", one per lesion) and ``bpe`` (background parenchymal enhancement of the
    fibroglandular tissue, relative, at its slow curve's reference time).
    """
    _check(isinstance(seed, (int, np.integer)) and seed >= 0, f"seed must be a non-negative integer, got {seed!r}")
    seed = int(seed)
    arng = _rng(seed, "acquisition")
    p = sample_patient(_rng(seed, "anatomy"), _rng(seed, "breasts"), implants)
    grid, offset, acq = _grid(arng, _rng(seed, "acquisition"), p, orientation, spacing, fov, side, max_voxels)
    coords = _Coords(grid, offset)
    spacing_zyx = list(grid.GetSpacing())[::-1]
    lab, breast = label_anatomy(coords, p, _rng(seed, "fgt"), spacing_zyx)

    lrng = _rng(seed, "lesions")
    n = int(lrng.choice([0, 1, 2, 3], p=[0.15, 0.5, 0.25, 0.1])) if n_lesions is None else int(n_lesions)
    _check(0 <= n <= MAX_LESIONS, f"n_lesions={n_lesions}", f"use 0-{MAX_LESIONS}")
    per = [None if v is None else (list(v) if isinstance(v, (list, tuple)) else [v] * n)
           for v in (lesion_kind, curve, lesion_radius_mm, lesion_side)]
    for v in per:
        _check(v is None or len(v) == n, "give one lesion_kind / curve / lesion_radius_mm per lesion")
    lesion_lab, rim_core, specs = place_lesions(lrng, coords, lab, breast, n, *per)
    lab[lesion_lab > 0] = LESION

    times = _times(_rng(seed, "times"), n_phases, times_min)
    crng = _rng(seed, "contrast")
    con = sample_contrast(crng, fatsat)
    if bpe is not None:
        _check(0.0 <= float(bpe) <= 3.0, f"bpe={bpe}", "use 0-3 (relative enhancement)")
        con["enhancement"]["fgt"] = float(bpe)
    krng = _rng(seed, "kinetics")
    curves = []
    for s in specs:  # the kind the acquired times can show is the truth's kind
        s["curve"], cv = design_curve_for_times(krng, s["curve"], s["peak"], times)
        curves.append(cv)
    fast, slow = normalised_fast_curve(con["tau_fast"], con["k_fast"]), normalised_slow_curve(con["tau_slow"])

    # pre-contrast signal and enhancement weights per voxel
    sig = np.array([con["signal"].get(t, con["signal"]["fgt"]) for t in TISSUES], F32)
    s0 = sig[lab]
    texture = smooth_noise(crng, lab.shape, spacing_zyx, float(crng.uniform(3, 12)))
    s0 *= F32(1) + F32(con["texture"]) * texture
    for i, s in enumerate(specs):
        s0[lesion_lab == i + 1] = F32(con["signal"]["fgt"] * s["s0_factor"])
    groups = []  # (flat indices, weight, curve)
    e = con["enhancement"]
    for tissue, curve_kind in (("heart", "fast"), ("vessel", "fast"), ("node", "fast"), ("fgt", "slow"),
                               ("skin", "slow"), ("nipple", "slow"), ("muscle", "slow"), ("fat", "slow")):
        idx = np.flatnonzero(lab == TISSUES.index(tissue))
        groups.append((idx, s0.ravel()[idx] * F32(e[tissue]), fast if curve_kind == "fast" else slow))
    for i, cv in enumerate(curves):
        m = lesion_lab == i + 1
        w = np.where(rim_core[m], F32(0.15), F32(1.0)) * s0[m]
        groups.append((np.flatnonzero(m), w.astype(F32), cv))

    # acquisition: scanner scale, bias field, noise, motion
    if scale is not None:
        _check(float(scale) > 0, f"scale={scale}", "use a positive scale")
    scale = float(np.exp(crng.uniform(0, np.log(1e6)))) if scale is None else float(scale)
    integer = bool(crng.uniform() < 0.5) if integer is None else bool(integer)
    brng = _rng(seed, "bias")
    bias_amp = float(brng.uniform(0, 0.4)) if bias is None else float(bias)
    bias_field = np.exp(F32(bias_amp) * smooth_noise(brng, lab.shape, spacing_zyx, 120.0)) if bias_amp > 0 else None
    nrng = _rng(seed, "noise")
    rician = bool(nrng.uniform() < 0.7)
    sigma = float(nrng.uniform(0.005, 0.05)) if noise is None else float(noise)
    blur = float(nrng.uniform(0.0, 0.7))
    mrng = _rng(seed, "motion")
    level = float(mrng.uniform(0, 2.5)) if motion_mm is None else float(motion_mm)
    nonrigid = (float(mrng.uniform(0, 2.0)) if mrng.uniform() < 0.5 else 0.0) if nonrigid_mm is None else float(nonrigid_mm)
    center = np.mean([b["center"] for b in p["breasts"]], axis=0) + offset
    fix, make, motion_info = _motion(mrng, grid, len(times), level, nonrigid, center)

    ref_peak = float(max(sig.max(), 1e-3))
    phases = []
    for k, t in enumerate(times):
        img = s0.copy()
        flat = img.ravel()
        for idx, w, cv in groups:
            if idx.size:
                flat[idx] += w * F32(cv(t))
        if blur > 0.05:
            img = ndimage.gaussian_filter(img, blur, truncate=2.0)
        if make[k] is not None:
            im = sitk.GetImageFromArray(img)
            im.CopyInformation(grid)
            img = sitk.GetArrayFromImage(sitk.Resample(im, grid, make[k], sitk.sitkLinear, 0.0, sitk.sitkFloat32))
        if bias_field is not None:
            img *= bias_field
        if sigma > 0:
            sd = F32(sigma * ref_peak)
            if rician:
                img = np.hypot(img + sd * nrng.standard_normal(img.shape, dtype=F32),
                               sd * nrng.standard_normal(img.shape, dtype=F32))
            else:
                img = img + sd * nrng.standard_normal(img.shape, dtype=F32)
        img = img * F32(scale)
        if integer:  # what an integer DICOM/NIfTI store keeps (the exam itself stays float32)
            img = np.rint(np.clip(img, 0 if rician else -2.0 ** 31, 2.0 ** 31 - 1))
        out = sitk.GetImageFromArray(img.astype(F32))
        out.CopyInformation(grid)
        phases.append(out)

    case_id = f"randomized_{seed:04d}"
    exam = DCEExam(phases, times, case_id, [f"{case_id}_{i:04d}" for i in range(len(phases))],
                   {"synthetic": True, "family": FAMILY, "seed": seed, "times_assumed": False, "resampled_phases": []})

    def image(a: np.ndarray) -> sitk.Image:
        im = sitk.GetImageFromArray(a.astype(np.uint8))
        im.CopyInformation(grid)
        return im

    vox_ml = voxel_volume_ml(grid)
    early, late = early_late_phases(times)
    tumors = []
    for i, (s, cv) in enumerate(zip(specs, curves)):
        m = lesion_lab == i + 1
        cen = [float(coords.full(a)[m].mean()) + float(offset[a]) for a in range(3)]
        ev = cv(np.asarray(times))
        ev[0] = 0.0
        tumors.append({"label": i + 1, "kind": s["kind"], "curve": s["curve"], "request": s["request"], "side": "left" if cen[0] > offset[0]
                       else "right", "centroid_lps": cen, "center_lps": (np.asarray(s["center"]) + offset).tolist(),
                       "radius_mm": s["radius_mm"], "n_voxels": int(m.sum()), "volume_ml": float(m.sum() * vox_ml),
                       "curve_params": cv.as_dict(), "enhancement": [float(v) for v in ev],
                       "peak_enhancement": float(ev[1:].max()), "early_phase": early, "late_phase": late})
    params = {"family": FAMILY, "seed": seed, **acq, "times_min": times, "n_phases": len(times),
              "anatomy": p, "contrast": con, "scale": scale, "integer": integer, "noise": sigma,
              "noise_kind": "rician" if rician else "gaussian", "bias": bias_amp, "blur_vox": blur,
              "motion": motion_info, "motion_mm": level, "nonrigid_mm": nonrigid,
              "tissue_labels": {name: i for i, name in enumerate(TISSUES)}}
    ph = RandomizedPhantom(exam, image(lesion_lab > 0), image(lesion_lab), image(breast), tumors, fix,
                           _jsonable(params))
    ph.tissue_labels = image(lab)
    return ph

