"""Heterogeneous tumors and enhancing vessels, inserted into a lesion-free exam of another family.

The three families here start from a domain-randomised exam without lesions and without motion
(:func:`~.randomized.make_randomized` with ``n_lesions=0, motion_mm=0, nonrigid_mm=0``; its own
anatomy, heart, aorta and small vessels stay) and insert, in patient (LPS) coordinates:

* **tumors** of a *shape model* (signed distance in mm, negative inside):

  - ``harmonic``: a sphere whose radius is modulated by real spherical harmonics of degree 2-5
    (``scipy.special.sph_harm_y``) on a random ellipsoid: irregular, lobulated masses;
  - ``randomwalk`` (held out, evaluation only): a union of balls along 4-8 random walks from
    the centre (multi-lobed) plus 3-8 thin spicules;

* **heterogeneous enhancement** (early percentage enhancement PE per voxel), one pattern per
  tumor: ``mixed`` (a smooth random field splits the tumor into strongly enhancing parts,
  PE 100-200 %, and moderately enhancing ones, PE 40-70 %), ``rim`` (an outer shell of 2-3.5 mm
  enhancing strongly around a moderate interior) or ``necrotic`` (``mixed`` around a
  non-enhancing core, PE 0-8 %). The truth is the reader's outline: the whole tumor, moderate
  and necrotic parts included. Each tumor follows a persistent / plateau / washout curve
  (:func:`~.kinetics.design_tumor_curve`) scaled so that the early phase has the voxel's PE;
* **enhancing vessels**: random-walk tubes 1-4 mm wide running 20-100 mm through the breast with
  a blood-pool curve (PE 100-300 %); in ``vessels`` about half the tumors are touched by one
  (it starts inside the tumor's edge and runs away from it).

Partial volume: a voxel whose centre lies within half a voxel of a surface mixes the inserted
signal with the exam's own (linear in the signed distance); the truth is ``distance <= 0``.
Noise of the exam's own level (estimated in the breast) is added to the inserted signal.

Families (registered in :mod:`.families`): ``heterogeneous`` (1-2 harmonic tumors, 2-4 vessels),
``vessels`` (1-2 harmonic tumors, 6-12 vessels, half of the tumors touched by one), and
``irregular`` (evaluation only: random-walk tumors, 3-6 vessels). ``Phantom.vessel_mask`` holds
the inserted vessels; ``Phantom.tumors[i]`` its shape, pattern, PE range and whether a vessel
touches it. Deterministic per seed.
"""
from __future__ import annotations


import numpy as np
import SimpleITK as sitk
from scipy import ndimage

try:
    from scipy.special import sph_harm_y  # scipy >= 1.15 (sph_harm is gone in 1.17)
except ImportError:  # scipy 1.13, what Slicer 5.8 and 5.10 ship: the same function, other argument order
    from scipy.special import sph_harm

    def sph_harm_y(n, m, theta, phi):
        """Y_n^m at polar angle *theta* and azimuth *phi*, as scipy >= 1.15's ``sph_harm_y``."""
        return sph_harm(m, n, phi, theta)

from ...core.exam import DCEExam
from ...core.imageutil import voxel_volume_ml
from . import Phantom, _jsonable
from .geometry import random_rotation, random_unit_vector
from .kinetics import CURVE_TYPES, design_curve_for_times, early_late_phases, normalised_fast_curve
from .randomized import FGT, make_randomized

SHAPES = ("harmonic", "randomwalk")
PATTERNS = ("mixed", "rim", "necrotic")
FAMILY_SETTINGS = {  # shape model, tumors, vessels, chance that a vessel touches a tumor
    "heterogeneous": {"shape": "harmonic", "n_tumors": (1, 2), "n_vessels": (2, 4), "touch": 0.25, "code": 1},
    "vessels": {"shape": "harmonic", "n_tumors": (1, 2), "n_vessels": (6, 12), "touch": 0.5, "code": 2},
    "irregular": {"shape": "randomwalk", "n_tumors": (1, 2), "n_vessels": (3, 6), "touch": 0.3, "code": 3},
}


# ------------------------------------------------------------------------------ boxes in LPS
class _Box:
    """An index box of *grid* covering a physical AABB, with the LPS coordinates of its voxels."""

    def __init__(self, grid: sitk.Image, lo, hi):
        corners = [[lo[0] if a else hi[0], lo[1] if b else hi[1], lo[2] if c else hi[2]]
                   for a in (0, 1) for b in (0, 1) for c in (0, 1)]
        idx = np.array([grid.TransformPhysicalPointToContinuousIndex([float(v) for v in p]) for p in corners])
        size = np.asarray(grid.GetSize())
        i0 = np.clip(np.floor(idx.min(0)).astype(int), 0, size)
        i1 = np.clip(np.ceil(idx.max(0)).astype(int) + 1, 0, size)
        self.empty = bool(np.any(i1 <= i0))
        self.slices = tuple(slice(int(i0[a]), int(i1[a])) for a in (2, 1, 0))  # numpy (z, y, x)
        d = np.asarray(grid.GetDirection()).reshape(3, 3) * np.asarray(grid.GetSpacing())
        k, j, i = np.meshgrid(*(np.arange(i0[a], max(i1[a], i0[a])) for a in (2, 1, 0)), indexing="ij")
        o = np.asarray(grid.GetOrigin())
        self.xyz = [(o[c] + d[c, 0] * i + d[c, 1] * j + d[c, 2] * k).astype(np.float32) for c in range(3)]


def _segment_distance(box: _Box, a, b) -> np.ndarray:
    a, ab = np.asarray(a, float), np.asarray(b, float) - np.asarray(a, float)
    p = [box.xyz[k] - np.float32(a[k]) for k in range(3)]
    t = np.clip(sum(p[k] * np.float32(ab[k]) for k in range(3)) / np.float32(max(float(ab @ ab), 1e-9)), 0, 1)
    return np.sqrt(sum((p[k] - t * np.float32(ab[k])) ** 2 for k in range(3)))


def _polyline_sdf(box: _Box, points, radius: float) -> np.ndarray:
    d = None
    for a, b in zip(points[:-1], points[1:]):
        s = _segment_distance(box, a, b)
        d = s if d is None else np.minimum(d, s)
    return d - np.float32(radius)


# ------------------------------------------------------------------------------ tumor shapes
def harmonic_shape(rng: np.random.Generator, radius: float) -> dict:
    """Parameters of a spherical-harmonic tumor of mean radius *radius* (mm)."""
    coeffs = []
    for deg in range(2, 6):
        sd = float(rng.uniform(0.06, 0.16)) / deg ** 0.8
        coeffs += [(deg, m, float(rng.normal(0, sd))) for m in range(-deg, deg + 1)]
    ratios = rng.uniform(0.75, 1.3, 3)
    return {"shape": "harmonic", "radius_mm": radius, "coeffs": coeffs,
            "ratios": (ratios / np.prod(ratios) ** (1 / 3)).tolist(), "rotation": random_rotation(rng, 180.0).tolist()}


def randomwalk_shape(rng: np.random.Generator, radius: float) -> dict:
    """Parameters of a random-walk (multi-lobed, spiculated) tumor of about *radius* mm."""
    balls = [([0.0, 0.0, 0.0], 0.6 * radius)]
    for _ in range(int(rng.integers(4, 9))):
        pos, step_dir, r = np.zeros(3), random_unit_vector(rng), radius * float(rng.uniform(0.4, 0.65))
        for _ in range(int(rng.integers(3, 7))):
            step_dir = step_dir + 0.7 * random_unit_vector(rng)
            step_dir /= np.linalg.norm(step_dir)
            pos = pos + step_dir * 0.45 * r
            if np.linalg.norm(pos) + r > 1.6 * radius:
                break
            balls.append((pos.tolist(), r))
            r *= float(rng.uniform(0.8, 0.97))
    spicules = [((random_unit_vector(rng) * radius * float(rng.uniform(1.3, 2.0))).tolist(),
                 float(rng.uniform(0.5, 1.0))) for _ in range(int(rng.integers(3, 9)))]
    return {"shape": "randomwalk", "radius_mm": radius, "balls": balls, "spicules": spicules}


def tumor_extent(shape: dict) -> float:
    """Largest distance from the centre the tumor can reach (mm)."""
    if shape["shape"] == "harmonic":
        return shape["radius_mm"] * max(shape["ratios"]) * (1.0 + sum(abs(c) for *_, c in shape["coeffs"]))
    return max([np.linalg.norm(p) + r for p, r in shape["balls"]] + [np.linalg.norm(p) + r for p, r in shape["spicules"]])


def tumor_sdf(box: _Box, center, shape: dict) -> np.ndarray:
    """Approximate signed distance (mm, < 0 inside) of the tumor *shape* centred at *center*."""
    p = [box.xyz[a] - np.float32(center[a]) for a in range(3)]
    if shape["shape"] == "harmonic":
        rot = np.asarray(shape["rotation"])
        q = [sum(np.float32(rot[b, a]) * p[b] for b in range(3)) / np.float32(shape["ratios"][a]) for a in range(3)]
        d = np.sqrt(q[0] ** 2 + q[1] ** 2 + q[2] ** 2) + np.float32(1e-6)
        theta, phi = np.arccos(np.clip(q[2] / d, -1, 1)), np.arctan2(q[1], q[0])
        mod = np.ones_like(d)
        for deg, m, c in shape["coeffs"]:
            y = sph_harm_y(deg, abs(m), theta, phi)
            mod += np.float32(c) * (y.real if m >= 0 else y.imag).astype(np.float32)
        return (d - np.float32(shape["radius_mm"]) * np.maximum(mod, np.float32(0.4))) * np.float32(min(shape["ratios"]))
    d = None
    for c, r in shape["balls"]:
        s = np.sqrt(sum((p[a] - np.float32(c[a])) ** 2 for a in range(3))) - np.float32(r)
        d = s if d is None else np.minimum(d, s)
    for tip, r in shape["spicules"]:
        d = np.minimum(d, _segment_distance(box, center, np.asarray(center) + np.asarray(tip)) - np.float32(r))
    return d


# ------------------------------------------------------------------------------ enhancement
def pe_map(rng: np.random.Generator, sdf: np.ndarray, pattern: str, spacing_zyx) -> np.ndarray:
    """Early PE (fraction) of every voxel of a tumor's box (meaningful where ``sdf <= 0``)."""
    inside = sdf <= 0
    strong, moderate = float(rng.uniform(1.0, 2.0)), float(rng.uniform(0.45, 0.65))
    field = ndimage.gaussian_filter(rng.standard_normal(sdf.shape).astype(np.float32),
                                    [4.0 / s for s in spacing_zyx])
    field = (field - field[inside].mean()) / max(float(field[inside].std()), 1e-6) if inside.any() else field
    jitter = np.float32(1) + np.float32(0.05) * np.clip(field, -2, 2)
    depth = -sdf
    if pattern == "rim":
        rim = float(rng.uniform(2.0, 3.5))
        pe = np.where(depth < rim, strong, moderate)
    else:
        cut = np.quantile(field[inside], float(rng.uniform(0.3, 0.6))) if inside.any() else 0.0
        pe = np.where(field < cut, moderate, strong)
        if pattern == "necrotic" and inside.any():
            core = depth > float(rng.uniform(0.45, 0.6)) * float(depth[inside].max())
            pe = np.where(core, float(rng.uniform(0.0, 0.08)), pe)
    return (pe * jitter).astype(np.float32)


def _noise_sigma(pre: np.ndarray, breast: np.ndarray) -> float:
    """The exam's noise level: robust spread of the pre-contrast minus its smoothed self in the breast."""
    resid = pre - ndimage.uniform_filter(pre, 3)
    r = resid[breast] if breast.any() else resid.ravel()
    return float(1.4826 * np.median(np.abs(r - np.median(r))) * 1.2)


# ------------------------------------------------------------------------------ the family
def _walk(rng, start, direction, length, breast_dist_at, radius):
    """A random-walk polyline from *start*, 5 mm steps, stopping where it leaves the breast."""
    pts, d, travelled = [np.asarray(start, float)], np.asarray(direction, float), 0.0
    while travelled < length:
        d = d + 0.35 * random_unit_vector(rng)
        d /= np.linalg.norm(d)
        nxt = pts[-1] + 5.0 * d
        if breast_dist_at(nxt) < radius + 1.0:
            break
        pts.append(nxt)
        travelled += 5.0
    return pts, travelled


def make_heterogeneous(seed: int, *, family: str = "heterogeneous", shape: str | None = None,
                       n_tumors: int | None = None, n_vessels: int | None = None, touch: float | None = None,
                       pattern: str | None = None, base: Phantom | None = None, **base_overrides) -> Phantom:
    """An exam of *family* (a key of :data:`FAMILY_SETTINGS`); see the module docstring.

    ``shape`` (harmonic, randomwalk), ``n_tumors``, ``n_vessels``, ``touch`` (chance that a
    tumor gets a vessel touching it), ``pattern`` (mixed, rim, necrotic) override the family's
    draw; ``base_overrides`` go to :func:`~.randomized.make_randomized` (e.g. ``spacing``; default
    0.9-1.4 mm in-plane, 2-3 mm slices, drawn by the seed). ``base``: a lesion-free exam to insert
    into instead (with ``breast_mask`` and ``tissue_labels``, e.g. real anatomy from
    :func:`~.hybrid.make_hybrid` with ``n_lesions=0``: :func:`make_hybrid_heterogeneous`).
    """
    cfg = dict(FAMILY_SETTINGS[family])
    shape = shape or cfg["shape"]
    rng = np.random.default_rng([int(seed), 41, cfg["code"]])
    if base is None:
        if "spacing" not in base_overrides:  # fine enough in-plane for vessels 1-4 mm wide
            ip = float(rng.uniform(0.9, 1.4))
            base_overrides["spacing"] = (ip, ip, float(rng.uniform(2.0, 3.0)))
        base = make_randomized(int(seed), n_lesions=0, motion_mm=0, nonrigid_mm=0, **base_overrides)
    grid = base.exam.reference
    sp_zyx = list(grid.GetSpacing())[::-1]
    h = float(np.prod(grid.GetSpacing())) ** (1 / 3)
    breast = sitk.GetArrayFromImage(base.breast_mask) > 0
    bdist_img = sitk.SignedMaurerDistanceMap(base.breast_mask, insideIsPositive=True, squaredDistance=False,
                                             useImageSpacing=True)
    bdist = sitk.GetArrayFromImage(bdist_img)

    def bdist_at(p) -> float:
        i = grid.TransformPhysicalPointToIndex([float(v) for v in p])
        if any(v < 0 or v >= n for v, n in zip(i, grid.GetSize())):
            return -1.0
        return float(bdist[i[2], i[1], i[0]])

    arrays = base.exam.arrays()  # (phase, z, y, x)
    tissue = sitk.GetArrayViewFromImage(base.tissue_labels)
    fgt = arrays[0][(tissue == FGT) & breast]
    s0_ref = float(np.median(fgt if fgt.size > 50 else arrays[0][breast]))
    sigma = _noise_sigma(arrays[0], breast)
    times = list(base.exam.times_min)
    early, _ = early_late_phases(times)
    t = np.asarray(times)
    labels = np.zeros(breast.shape, np.uint8)
    weight = np.zeros(breast.shape, np.float32)  # inserted fraction per voxel (partial volume)
    signal = np.zeros(arrays.shape, np.float32)  # inserted signal per phase
    vessel = np.zeros(breast.shape, bool)

    def insert(box: _Box, sdf, curves_k: list, s0: float):
        sl = box.slices
        w = np.clip(0.5 - sdf / h, 0, 1) * breast[sl]
        w = np.where(labels[sl] > 0, 0.0, w).astype(np.float32)  # tumors already there win
        take = w > weight[sl]
        weight[sl] = np.where(take, w, weight[sl])
        for k in range(arrays.shape[0]):
            signal[k][sl] = np.where(take, np.float32(s0) * (1 + curves_k[k]), signal[k][sl])
        return (sdf <= 0) & breast[sl] & (labels[sl] == 0)

    n_t = int(rng.integers(cfg["n_tumors"][0], cfg["n_tumors"][1] + 1)) if n_tumors is None else int(n_tumors)
    touch = cfg["touch"] if touch is None else float(touch)
    tumors, vessels_info = [], []
    cand = np.argwhere(bdist > 8.0)
    for i in range(n_t):
        for _ in range(30):
            if cand.size == 0:
                break
            radius = float(np.exp(rng.uniform(np.log(4.5), np.log(13.0))))
            spec = harmonic_shape(rng, radius) if shape == "harmonic" else randomwalk_shape(rng, radius)
            z, y, x = cand[int(rng.integers(len(cand)))]
            center = np.asarray(grid.TransformIndexToPhysicalPoint([int(x), int(y), int(z)]), float)
            ext = tumor_extent(spec)
            if bdist[z, y, x] < min(radius + 3.0, 0.8 * ext):
                continue
            box = _Box(grid, center - ext - 3 * h, center + ext + 3 * h)
            if box.empty or labels[box.slices].any():
                continue
            sdf = tumor_sdf(box, center, spec)
            if not (sdf <= 0).any():
                continue
            pat = pattern or str(rng.choice(PATTERNS, p=[0.45, 0.25, 0.3]))
            pe = pe_map(rng, sdf, pat, sp_zyx)
            kind = str(rng.choice(CURVE_TYPES, p=[0.3, 0.3, 0.4]))
            kind, cv = design_curve_for_times(rng, kind, 1.0, times)  # the kind these times can show
            g = cv(t) / float(cv(t[early]))
            g[0] = 0.0
            s0 = s0_ref * float(rng.uniform(0.85, 1.15))
            m = insert(box, sdf, [pe * np.float32(gk) for gk in g], s0)
            if not m.any():
                continue
            labels[box.slices][m] = len(tumors) + 1
            inside_pe = pe[m]
            tumors.append({"label": len(tumors) + 1, "kind": "mass", "shape": shape, "pattern": pat, "curve": kind,
                           "center_lps": center.tolist(), "radius_mm": radius, "n_voxels": int(m.sum()),
                           "volume_ml": float(m.sum() * voxel_volume_ml(grid)),
                           "pe_range": [float(inside_pe.min()), float(inside_pe.max())],
                           "vessel_touching": False, "extent_mm": float(ext), "shape_params": spec})
            break

    n_v = int(rng.integers(cfg["n_vessels"][0], cfg["n_vessels"][1] + 1)) if n_vessels is None else int(n_vessels)
    touching = [tm for tm in tumors if rng.uniform() < touch]
    vcand = np.argwhere(bdist > 4.0)
    for v in range(n_v + len(touching)):
        radius = float(rng.uniform(0.5, 2.0))
        length = float(rng.uniform(20.0, 100.0))
        for _ in range(20):
            if v < len(touching):
                tm = touching[v]
                out = random_unit_vector(rng)
                start = np.asarray(tm["center_lps"]) + out * 0.6 * tm["radius_mm"]
            elif vcand.size:
                z, y, x = vcand[int(rng.integers(len(vcand)))]
                start = np.asarray(grid.TransformIndexToPhysicalPoint([int(x), int(y), int(z)]), float)
                out = random_unit_vector(rng)
            else:
                break
            pts, travelled = _walk(rng, start, out, length, bdist_at, radius)
            if travelled >= 20.0:
                break
        else:
            continue
        if len(pts) < 2:
            continue
        arr_pts = np.asarray(pts)
        box = _Box(grid, arr_pts.min(0) - radius - 2 * h, arr_pts.max(0) + radius + 2 * h)
        if box.empty:
            continue
        sdf = _polyline_sdf(box, pts, radius)
        fast = normalised_fast_curve(float(rng.uniform(0.15, 0.5)), float(rng.uniform(0.02, 0.2)))
        g = fast(t) / float(fast(t[early]))
        g[0] = 0.0
        pe_v = float(rng.uniform(1.0, 3.0))
        m = insert(box, sdf, [np.float32(pe_v * gk) for gk in g], s0_ref * float(rng.uniform(0.6, 1.0)))
        vessel[box.slices] |= m
        if v < len(touching):
            touching[v]["vessel_touching"] = True
        vessels_info.append({"radius_mm": radius, "length_mm": float(travelled), "pe": pe_v,
                             "touches_tumor": touching[v]["label"] if v < len(touching) else None,
                             "points_lps": arr_pts.round(2).tolist()})

    noise = np.random.default_rng([int(seed), 42, cfg["code"]])
    phases = []
    for k in range(arrays.shape[0]):
        w = weight
        img = (1 - w) * arrays[k] + w * signal[k]
        touched = w > 0
        img[touched] += (w[touched] * sigma * noise.standard_normal(int(touched.sum()))).astype(np.float32)
        out = sitk.GetImageFromArray(img.astype(np.float32))
        out.CopyInformation(grid)
        phases.append(out)
    case_id = f"{family}_{int(seed):04d}" if base.exam.metadata.get("hybrid") is None else \
        f"hybrid-{base.exam.metadata['hybrid']}-{family}-{int(seed)}"
    exam = DCEExam(phases, times, case_id, [f"{case_id}_{i:04d}" for i in range(len(phases))],
                   {"synthetic": True, "family": family, "seed": int(seed), "times_assumed": False,
                    "resampled_phases": []})

    def image(a) -> sitk.Image:
        im = sitk.GetImageFromArray(np.asarray(a, np.uint8))
        im.CopyInformation(grid)
        return im

    for tm in tumors:  # centroids of what was kept
        zz, yy, xx = np.nonzero(labels == tm["label"])
        cen = grid.TransformContinuousIndexToPhysicalPoint([float(xx.mean()), float(yy.mean()), float(zz.mean())])
        tm["centroid_lps"] = [float(c) for c in cen]
        tm["n_voxels"] = int(len(zz))
        tm["volume_ml"] = float(len(zz) * voxel_volume_ml(grid))
    base_name = "randomized (n_lesions=0, no motion)" if base.exam.metadata.get("hybrid") is None else \
        f"real anatomy ({base.exam.metadata['hybrid']}, lesion-free hybrid)"
    params = {"family": family, "seed": int(seed), "base": base_name,
              "shape": shape, "vessels": vessels_info, "noise_sigma": sigma, "s0_tumor_ref": s0_ref,
              "orientation": base.params.get("orientation"), "spacing": base.params.get("spacing"),
              "grid_size": base.params.get("grid_size"), "times_min": times, "n_phases": len(times)}
    ph = Phantom(exam, image(labels > 0), image(labels), base.breast_mask, tumors,
                 [sitk.Euler3DTransform() for _ in times], _jsonable(params))
    ph.vessel_mask = image(vessel & (labels == 0))
    ph.tissue_labels = base.tissue_labels
    return ph


def make_heterogeneous_family(seed: int, **overrides) -> Phantom:
    """``heterogeneous``: harmonic tumors with heterogeneous enhancement, a few vessels."""
    return make_heterogeneous(seed, family="heterogeneous", **overrides)


def make_vessel_family(seed: int, **overrides) -> Phantom:
    """``vessels``: harmonic tumors among many enhancing vessels, half of the tumors touched by one."""
    return make_heterogeneous(seed, family="vessels", **overrides)


def make_irregular_family(seed: int, **overrides) -> Phantom:
    """``irregular`` (evaluation only): random-walk / spiculated tumors, a held-out shape model."""
    return make_heterogeneous(seed, family="irregular", **overrides)


def make_hybrid_heterogeneous(seed: int, anatomy: str = "axial", family: str = "irregular", data_dir=None,
                              shrink=None, **overrides) -> Phantom:
    """*family*'s tumors and vessels (``irregular``: random-walk shapes, heterogeneous enhancement)
    inserted into real anatomy: the lesion-free hybrid of *anatomy* (``axial``, ``sagittal``) as the
    base, binned by ``shrink`` (default: :data:`~.hybrid.DEFAULT_SHRINK`; ``(1, 1, 1)`` keeps the
    axial volume's own 1.25 x 1.25 x 1 mm, where these tumors span ten times more voxels than on the
    2.5 x 2.5 x 2 mm default). The closest we have to real tumor shapes in a real breast."""
    from .hybrid import make_hybrid

    return make_heterogeneous(seed, family=family, base=make_hybrid(seed, anatomy=anatomy, n_lesions=0, data_dir=data_dir,
                                                                    shrink=shrink),
                              **overrides)
