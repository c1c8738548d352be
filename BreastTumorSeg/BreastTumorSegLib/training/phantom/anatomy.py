"""The phantom patient: a prone bilateral breast MRI anatomy described by implicit shapes.

Frame (the *anatomy frame*): LPS millimetres, x to the patient's left, y posterior (anterior is
-y, where the breasts hang in the prone position), z superior. The chest wall's anterior skin
surface is at y = 0 on the midline; z = 0 is the height of the breasts.

Layers from outside in: skin, subcutaneous fat (around the breasts: their fat), chest-wall
muscle (pectoralis, intercostals), then the thoracic cavity with lungs (near-zero signal),
mediastinum, heart (strongly enhancing), spine and descending aorta. Internal mammary arteries
run along the chest wall; thin enhancing vessels cross each breast. Every random parameter is
drawn here, in one fixed order, from the generator it is given.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from .geometry import (F32, bezier, ellipse_cylinder_sdf, ellipsoid_sdf, random_rotation,
                               rotation_matrix, smooth_min)

FAT_SIGNAL = 1000.0  # pre-contrast fat signal before scanner gain (the phantom's unit)


@dataclass
class Breast:
    """One breast: a half super-ellipsoid hanging anteriorly from the chest wall at ``y0``."""

    side: str  # "left" (x > 0) or "right"
    xb: float  # centre of the base, mm
    zb: float
    y0: float  # y of the base plane (the chest-wall skin surface at x = xb)
    rx: float  # half-width of the base (left-right), mm
    rz: float  # half-height of the base (superior-inferior), mm
    depth: float  # anterior protrusion from the base to the tip, mm
    p: float  # shape exponent along the depth: 2 = ellipsoid, larger = more pendulous
    post_depth: float  # how far the breast region reaches behind the base plane (to the muscle)
    shear_x: float  # tip displacement (fraction of rx) - prone breasts sag
    shear_z: float
    nipple_r: float
    nipple_len: float

    def local(self, x, y, z):
        """Normalised breast coordinates (X, U, Z): U = 0 at the base, 1 at the tip."""
        u = (F32(self.y0) - y) * F32(1.0 / self.depth)
        up2 = np.maximum(u, F32(0)) ** 2
        bx = (x - F32(self.xb)) * F32(1.0 / self.rx) - F32(self.shear_x) * up2
        bz = (z - F32(self.zb)) * F32(1.0 / self.rz) - F32(self.shear_z) * up2
        return bx, u, bz

    def sdf(self, x, y, z) -> np.ndarray:
        bx, u, bz = self.local(x, y, z)
        upos = np.maximum(u, F32(0))
        uneg = np.maximum(-u, F32(0)) * F32(self.depth / self.post_depth)
        upow = upos ** F32(self.p)
        f = bx * bx + bz * bz + upow + uneg * uneg
        gy = F32(self.p / self.depth) * upow / np.maximum(upos, F32(1e-6)) + F32(2.0 / self.post_depth) * uneg
        grad = np.sqrt((F32(2.0 / self.rx) * bx) ** 2 + (F32(2.0 / self.rz) * bz) ** 2 + gy * gy)
        sf = np.sqrt(f)
        return (sf - F32(1)) * F32(2) * sf / np.maximum(grad, F32(2.0 / (3 * max(self.rx, self.rz, self.depth))))

    def footprint(self, x, z) -> np.ndarray:
        """Squared normalised distance from the breast axis at the base (<= 1 under the breast)."""
        return ((x - F32(self.xb)) * F32(1 / self.rx)) ** 2 + ((z - F32(self.zb)) * F32(1 / self.rz)) ** 2

    @property
    def tip(self) -> np.ndarray:
        return np.array([self.xb + self.shear_x * self.rx, self.y0 - self.depth, self.zb + self.shear_z * self.rz])

    @property
    def nipple_center(self) -> np.ndarray:
        return self.tip + np.array([0.0, -0.35 * self.nipple_len, 0.0])

    def nipple_sdf(self, x, y, z) -> np.ndarray:
        return ellipsoid_sdf(x, y, z, self.nipple_center, (self.nipple_r, self.nipple_len, self.nipple_r))

    def aabb(self, pad: float = 4.0):
        lo = np.array([self.xb - self.rx, self.y0 - self.depth - self.nipple_len, self.zb - self.rz]) - pad
        hi = np.array([self.xb + self.rx, self.y0 + self.post_depth, self.zb + self.rz]) + pad
        return lo, hi


@dataclass
class Vessel:
    """An enhancing tube along a polyline (anatomy frame, mm)."""

    points: np.ndarray
    radius: float
    name: str = "vessel"

    def aabb(self, pad: float = 3.0):
        return self.points.min(0) - self.radius - pad, self.points.max(0) + self.radius + pad


@dataclass
class Anatomy:
    ax: float  # torso half-width
    ay: float  # torso half-depth (anterior-posterior)
    skin: float
    fat: float  # subcutaneous fat thickness of the torso (retromammary under the breasts)
    muscle: float  # chest-wall thickness (muscle and ribs)
    fold: float  # fillet between breast and chest wall (inframammary fold), mm
    breasts: list[Breast]
    heart: dict | None
    spine: dict
    aorta: dict
    mediastinum: dict
    vessels: list[Vessel]
    tissue: dict  # pre-contrast signals and enhancement amplitudes
    fgt: dict  # parenchyma: density, sub-cutaneous and retromammary fat thickness

    @property
    def cy(self) -> float:
        return self.ay

    def torso_front(self, x: float) -> float:
        """y of the chest-wall skin surface at left-right position *x*."""
        r = min(abs(x) / self.ax, 0.999)
        return self.cy - self.ay * math.sqrt(1.0 - r * r)

    @property
    def muscle_front(self) -> float:
        """Depth below the torso skin surface where the chest-wall muscle starts."""
        return self.skin + self.fat

    @property
    def cavity_depth(self) -> float:
        return self.skin + self.fat + self.muscle

    def torso_sdf(self, x, y) -> np.ndarray:
        return ellipse_cylinder_sdf(x, y, 0.0, self.cy, self.ax, self.ay)

    def body_sdf(self, x, y, z, d_torso=None) -> np.ndarray:
        d = self.torso_sdf(x, y) if d_torso is None else d_torso
        for b in self.breasts:
            d = smooth_min(d, b.sdf(x, y, z), self.fold)
        for b in self.breasts:
            d = np.minimum(d, b.nipple_sdf(x, y, z))
        return d

    def as_dict(self) -> dict:
        d = asdict(self)
        for v in d["vessels"]:
            v["points"] = np.asarray(v["points"]).round(2).tolist()
        return d


def _u(rng, lo, hi) -> float:
    return float(rng.uniform(lo, hi))


def sample_anatomy(rng: np.random.Generator, heart: bool = True, vessels: bool = True) -> Anatomy:
    """Draw one patient. The draw order is fixed, so a seed always gives the same patient."""
    ay = _u(rng, 95, 125)
    half_sep = _u(rng, 60, 100)
    size = _u(rng, 0.0, 1.0)  # overall breast size, shared by both sides
    breasts = []
    for side, sign in (("right", -1.0), ("left", 1.0)):
        xb = sign * half_sep * _u(rng, 0.96, 1.04)
        rx_max = min(75.0, abs(xb) - 8.0)
        rx = 45.0 + (rx_max - 45.0) * min(1.0, max(0.0, size + _u(rng, -0.1, 0.1)))
        rz = (45.0 + 25.0 * size) * _u(rng, 0.93, 1.07)
        depth = (50.0 + 70.0 * size) * _u(rng, 0.9, 1.1)  # prone breasts hang: often deeper than wide
        breasts.append(Breast(
            side=side, xb=xb, zb=_u(rng, -8, 8), y0=0.0, rx=rx, rz=rz, depth=depth, p=_u(rng, 2.2, 4.0),
            post_depth=_u(rng, 25, 40), shear_x=sign * _u(rng, -0.05, 0.2), shear_z=_u(rng, -0.15, 0.08),
            nipple_r=_u(rng, 4, 6), nipple_len=_u(rng, 4, 8)))
    ax = max(_u(rng, 140, 180), max(abs(b.xb) + b.rx for b in breasts) + 15.0)
    skin, fat, muscle = _u(rng, 1.5, 2.5), _u(rng, 5, 18), _u(rng, 12, 22)
    anat = Anatomy(ax=ax, ay=ay, skin=skin, fat=fat, muscle=muscle, fold=_u(rng, 6, 14), breasts=breasts,
                   heart=None, spine={}, aorta={}, mediastinum={}, vessels=[], tissue={}, fgt={})
    for b in breasts:
        b.y0 = anat.torso_front(b.xb)

    cav_front = anat.cavity_depth  # y of the cavity front on the midline
    spine_y = 2 * ay - anat.cavity_depth - _u(rng, 18, 26)
    anat.spine = {"x": 0.0, "y": spine_y, "r": _u(rng, 15, 20), "canal_r": _u(rng, 6, 8)}
    anat.aorta = {"x": _u(rng, 15, 25), "y": spine_y - _u(rng, 26, 34), "r": _u(rng, 10, 13)}
    med_ay = _u(rng, 25, 40)  # anterior mediastinum behind the sternum
    anat.mediastinum = {"x": _u(rng, 0, 10), "y": cav_front + med_ay, "ax": _u(rng, 14, 24), "ay": med_ay}
    hx = _u(rng, 10, 35)
    radii = (_u(rng, 50, 62), _u(rng, 38, 48), _u(rng, 42, 55))
    rot = rotation_matrix((0, 0, 1), math.radians(_u(rng, -40, -15))) @ random_rotation(rng, 15)
    hy = anat.torso_front(hx) + anat.cavity_depth + radii[1] * 0.85 + _u(rng, 0, 6)
    heart_d = {"center": [hx, hy, _u(rng, -75, -35)], "radii": list(radii), "rotation": rot.tolist(),
               "wall": _u(rng, 8, 12)}
    anat.heart = heart_d if heart else None

    vessel_list = []
    for sign in (-1.0, 1.0):  # internal mammary (thoracic) arteries along the chest wall
        x = sign * _u(rng, 22, 32)
        y = anat.torso_front(x) + anat.cavity_depth - _u(rng, 2, 4)
        vessel_list.append(Vessel(np.array([[x, y, -200.0], [x, y, 200.0]]), _u(rng, 1.3, 2.2), "internal mammary"))
    for b in breasts:  # branches crossing each breast from the chest wall towards the nipple
        sgn = 1.0 if b.side == "left" else -1.0
        for _ in range(int(rng.integers(1, 4))):
            p0 = np.array([b.xb + sgn * b.rx * _u(rng, 0.2, 0.7), b.y0 + _u(rng, 0, 6), b.zb + b.rz * _u(rng, -0.6, 0.6)])
            p2 = np.array([b.tip[0] + b.rx * _u(rng, -0.25, 0.25), b.y0 - b.depth * _u(rng, 0.45, 0.8),
                           b.tip[2] + b.rz * _u(rng, -0.25, 0.25)])
            p1 = 0.5 * (p0 + p2) + rng.normal(0, 8, 3)
            vessel_list.append(Vessel(bezier(p0, p1, p2, 10), _u(rng, 0.8, 1.8), f"{b.side} breast"))
    anat.vessels = vessel_list if vessels else []
    return anat


def sample_tissue(rng: np.random.Generator, bpe: float | None = None) -> dict:
    """Pre-contrast signals (fat = 1000) and enhancement amplitudes.

    ``a_*``: relative enhancement at 6 min on the slow (persistent) tissue curve;
    ``peak_*``: peak relative enhancement on the fast blood-pool curve.
    """
    t = {
        "s_fat": FAT_SIGNAL, "s_fgt": _u(rng, 350, 600), "s_muscle": _u(rng, 300, 450),
        "s_skin": _u(rng, 500, 700), "s_lung": _u(rng, 10, 40), "s_blood": _u(rng, 250, 600),
        "s_myocardium": _u(rng, 380, 500), "s_spine": _u(rng, 500, 750), "s_canal": _u(rng, 120, 250),
        "s_mediastinum": _u(rng, 450, 750), "s_nipple": _u(rng, 450, 650),
        "a_fat": _u(rng, 0.02, 0.05), "a_skin": _u(rng, 0.1, 0.25), "a_muscle": _u(rng, 0.1, 0.3),
        "a_spine": _u(rng, 0.1, 0.3), "a_mediastinum": _u(rng, 0.03, 0.1),
        "bpe": _u(rng, 0.05, 0.6), "bpe_heterogeneity": _u(rng, 0.2, 0.6),
        "peak_blood": _u(rng, 1.5, 3.5), "myocardium_scale": _u(rng, 0.3, 0.5),
        "nipple_scale": _u(rng, 0.2, 0.45), "vessel_scale": _u(rng, 0.6, 1.0),
        "tau_slow_min": _u(rng, 2.0, 6.0), "tau_fast_min": _u(rng, 0.1, 0.35), "k_fast_per_min": _u(rng, 0.03, 0.12),
    }
    if bpe is not None:
        t["bpe"] = float(bpe)
    return t


def sample_fgt(rng: np.random.Generator) -> dict:
    return {"density": _u(rng, 0.10, 0.70), "subcutaneous_mm": _u(rng, 3, 8), "retromammary_mm": _u(rng, 2, 6),
            "fine_sigma_mm": _u(rng, 1.8, 3.2), "coarse_sigma_mm": _u(rng, 6, 10),
            "fine_weight": _u(rng, 0.5, 0.9), "central_prior": _u(rng, 0.6, 1.6),
            "strand_elongation": _u(rng, 1.3, 2.8)}
