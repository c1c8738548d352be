"""Geometry helpers of the synthetic phantom: sampling grids and implicit shapes.

Shapes are described by approximate signed distance functions (SDF, mm; negative inside) in
the *anatomy frame*: LPS axes (x to the patient's left, y posterior, z superior) with the origin
at the front of the chest wall between the breasts. The anatomy frame is the physical frame
shifted by the patient's position on the table (``offset``): ``physical = anatomy + offset``.
Voxels get a partial-volume fraction from the SDF (:func:`soft`), so edges look like those of
a real acquisition at any spacing and orientation.

All arrays are float32; scalar parameters are Python floats so that numpy keeps float32.
"""
from __future__ import annotations

import math

import numpy as np
import SimpleITK as sitk

F32 = np.float32
_TINY = 1e-6

# Direction matrices (columns = directions of the index axes i, j, k in LPS).
_BASE_DIRECTIONS = {
    "axial": ((1, 0, 0), (0, 1, 0), (0, 0, 1)),
    "sagittal": ((0, 1, 0), (0, 0, -1), (1, 0, 0)),
    "coronal": ((1, 0, 0), (0, 0, -1), (0, 1, 0)),
}
ORIENTATIONS = ("axial", "sagittal", "coronal", "oblique")


def rotation_matrix(axis, angle_rad: float) -> np.ndarray:
    """Rotation by *angle_rad* about the unit vector *axis* (Rodrigues)."""
    a = np.asarray(axis, dtype=float)
    a = a / np.linalg.norm(a)
    k = np.array([[0, -a[2], a[1]], [a[2], 0, -a[0]], [-a[1], a[0], 0]])
    return np.eye(3) + math.sin(angle_rad) * k + (1 - math.cos(angle_rad)) * (k @ k)


def random_unit_vector(rng: np.random.Generator) -> np.ndarray:
    v = rng.standard_normal(3)
    return v / max(np.linalg.norm(v), _TINY)


def random_rotation(rng: np.random.Generator, max_deg: float) -> np.ndarray:
    return rotation_matrix(random_unit_vector(rng), math.radians(float(rng.uniform(0, max_deg))))


def direction_matrix(orientation: str, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """Direction matrix for a named acquisition orientation, with random axis flips.

    Axial exams come either as DICOM stores them (identity) or as NIfTI converters store
    them (x and y flipped); sagittal and coronal exams get a random slice-axis sign; oblique
    exams are axial ones tilted by up to 20 degrees about a random axis.
    """
    info: dict = {}
    if orientation == "oblique":
        base = np.eye(3)
        axis = random_unit_vector(rng)
        angle = float(rng.uniform(5.0, 20.0))
        info.update(oblique_axis=axis.tolist(), oblique_deg=angle)
        d = rotation_matrix(axis, math.radians(angle)) @ base
    elif orientation in _BASE_DIRECTIONS:
        d = np.array(_BASE_DIRECTIONS[orientation], dtype=float).T
        if orientation == "axial":
            if rng.uniform() < 0.5:
                d = d @ np.diag([-1.0, -1.0, 1.0])
                info["flips"] = "RAS-stored (i, j flipped)"
        elif rng.uniform() < 0.5:
            d = d @ np.diag([1.0, 1.0, -1.0])
            info["flips"] = "slice axis flipped"
    else:
        raise ValueError(f"orientation must be one of {ORIENTATIONS} or a 3x3 direction, got {orientation!r}")
    return d, info


def make_grid(center, extent_lps, direction: np.ndarray, spacing, size=None) -> sitk.Image:
    """An empty uint8 image centred on *center* (physical mm) covering *extent_lps*.

    The box is acquired along the grid axes: each index axis spans the extent of the patient
    axis it is closest to (an oblique box is the axis-aligned one, tilted).
    """
    d = np.asarray(direction, dtype=float).reshape(3, 3)
    spacing = np.asarray(spacing, dtype=float)
    if size is None:
        ext = np.array([extent_lps[int(np.argmax(np.abs(d[:, a])))] for a in range(3)], dtype=float)
        size = np.maximum(2, np.ceil(ext / spacing)).astype(int)
    size = np.asarray(size, dtype=int)
    origin = np.asarray(center, dtype=float) - d @ (spacing * (size - 1) / 2.0)
    img = sitk.Image([int(s) for s in size], sitk.sitkUInt8)
    img.SetSpacing([float(s) for s in spacing])
    img.SetDirection([float(v) for v in d.ravel()])
    img.SetOrigin([float(o) for o in origin])
    return img


class VoxelGrid:
    """Anatomy-frame coordinates of the voxels of a grid image, by sub-box."""

    def __init__(self, image: sitk.Image, offset):
        self.image = image
        self.size = np.asarray(image.GetSize(), dtype=int)  # (i, j, k)
        self.shape = tuple(int(s) for s in self.size[::-1])  # numpy (z, y, x)
        self.spacing = np.asarray(image.GetSpacing(), dtype=float)
        self.origin = np.asarray(image.GetOrigin(), dtype=float)
        self.direction = np.asarray(image.GetDirection(), dtype=float).reshape(3, 3)
        self.offset = np.asarray(offset, dtype=float)
        self.voxel_mm = float(np.prod(self.spacing) ** (1.0 / 3.0))

    def box(self, lo, hi, within: tuple[slice, slice, slice] | None = None):
        """Numpy slices of the voxels whose centres may lie in the anatomy-frame box [lo, hi].

        Returns None when the box misses the grid (or the *within* sub-box).
        """
        lo, hi = np.asarray(lo, float), np.asarray(hi, float)
        corners = np.array([[a, b, c] for a in (lo[0], hi[0]) for b in (lo[1], hi[1]) for c in (lo[2], hi[2])])
        idx = (corners + self.offset - self.origin) @ self.direction / self.spacing  # continuous (i, j, k)
        i0 = np.maximum(np.floor(idx.min(0)).astype(int) - 1, 0)
        i1 = np.minimum(np.ceil(idx.max(0)).astype(int) + 2, self.size)
        sl = [slice(int(i0[a]), int(i1[a])) for a in (2, 1, 0)]
        if within is not None:
            sl = [slice(max(s.start, w.start or 0), min(s.stop, w.stop if w.stop is not None else n))
                  for s, w, n in zip(sl, within, self.shape)]
        if any(s.stop <= s.start for s in sl):
            return None
        return tuple(sl)

    def coords(self, sl: tuple[slice, slice, slice]):
        """Anatomy-frame (x, y, z) float32 arrays for the voxels of sub-box *sl*."""
        k = np.arange(sl[0].start, sl[0].stop, dtype=float) * self.spacing[2]
        j = np.arange(sl[1].start, sl[1].stop, dtype=float) * self.spacing[1]
        i = np.arange(sl[2].start, sl[2].stop, dtype=float) * self.spacing[0]
        base = self.origin - self.offset
        out = []
        for c in range(3):
            d = self.direction[c]
            out.append((F32(base[c]) + (d[0] * i).astype(F32)[None, None, :]
                        + (d[1] * j).astype(F32)[None, :, None] + (d[2] * k).astype(F32)[:, None, None]))
        return tuple(out)

    def resample_onto(self, image: sitk.Image, sl: tuple[slice, slice, slice], default: float = 0.0) -> np.ndarray:
        """Linear resampling of *image* onto the voxels of sub-box *sl*; a (z, y, x[, c]) array."""
        start = np.array([sl[2].start, sl[1].start, sl[0].start], dtype=float)
        f = sitk.ResampleImageFilter()
        f.SetSize([int(sl[a].stop - sl[a].start) for a in (2, 1, 0)])
        f.SetOutputSpacing(self.image.GetSpacing())
        f.SetOutputDirection(self.image.GetDirection())
        f.SetOutputOrigin([float(v) for v in self.origin + self.direction @ (start * self.spacing)])
        f.SetInterpolator(sitk.sitkLinear)
        f.SetDefaultPixelValue(default)
        return sitk.GetArrayFromImage(f.Execute(image))


def relative(inner: tuple[slice, ...], outer: tuple[slice, ...]) -> tuple[slice, ...]:
    """Slices of *inner* relative to the start of *outer* (both absolute)."""
    return tuple(slice(i.start - o.start, i.stop - o.start) for i, o in zip(inner, outer))


# ------------------------------------------------------------------------------ SDF helpers
def soft(d: np.ndarray, width: float) -> np.ndarray:
    """Partial-volume fraction from a signed distance: 1 inside, 0 outside, linear over *width*."""
    return np.clip(F32(0.5) - d * F32(1.0 / width), F32(0.0), F32(1.0))


def smooth_min(a: np.ndarray, b: np.ndarray, k: float) -> np.ndarray:
    """Polynomial smooth minimum (a rounded union of two shapes; *k* = fillet size in mm)."""
    h = np.clip(F32(0.5) + F32(0.5 / k) * (b - a), F32(0), F32(1))
    return b + h * (a - b) - F32(k) * h * (F32(1) - h)


def ellipse_cylinder_sdf(x, y, cx: float, cy: float, ax: float, ay: float) -> np.ndarray:
    """Approximate SDF of an elliptic cylinder along z (exact on circles, first order near the surface)."""
    u = (x - F32(cx)) * F32(1 / ax)
    v = (y - F32(cy)) * F32(1 / ay)
    g = np.sqrt(u * u + v * v)
    grad = np.sqrt((u * F32(1 / ax)) ** 2 + (v * F32(1 / ay)) ** 2)
    return (g - F32(1)) * g / np.maximum(grad, F32(_TINY))


def ellipsoid_sdf(x, y, z, center, radii, rotation=None, modulation=None) -> np.ndarray:
    """Approximate SDF of a (rotated) ellipsoid; *modulation(u)* scales the radii per direction.

    *rotation* columns are the ellipsoid's axes in the anatomy frame. *modulation* receives the
    unit direction (three arrays, ellipsoid frame) and returns a radius factor (lobulation).
    """
    px, py, pz = x - F32(center[0]), y - F32(center[1]), z - F32(center[2])
    if rotation is not None:
        r = np.asarray(rotation, dtype=float)
        qx = F32(r[0, 0]) * px + F32(r[1, 0]) * py + F32(r[2, 0]) * pz
        qy = F32(r[0, 1]) * px + F32(r[1, 1]) * py + F32(r[2, 1]) * pz
        qz = F32(r[0, 2]) * px + F32(r[1, 2]) * py + F32(r[2, 2]) * pz
    else:
        qx, qy, qz = px, py, pz
    if modulation is not None:
        n = np.sqrt(qx * qx + qy * qy + qz * qz) + F32(_TINY)
        m = modulation(qx / n, qy / n, qz / n)
    else:
        m = F32(1)
    u = qx / (F32(radii[0]) * m)
    v = qy / (F32(radii[1]) * m)
    w = qz / (F32(radii[2]) * m)
    g = np.sqrt(u * u + v * v + w * w)
    grad = np.sqrt((u / (F32(radii[0]) * m)) ** 2 + (v / (F32(radii[1]) * m)) ** 2 + (w / (F32(radii[2]) * m)) ** 2)
    return (g - F32(1)) * g / np.maximum(grad, F32(_TINY))


def segment_distance(x, y, z, a, b) -> np.ndarray:
    """Distance (mm) from each point to the segment a-b."""
    a = np.asarray(a, dtype=float)
    ab = np.asarray(b, dtype=float) - a
    L2 = float(ab @ ab) or _TINY
    px, py, pz = x - F32(a[0]), y - F32(a[1]), z - F32(a[2])
    t = np.clip((px * F32(ab[0]) + py * F32(ab[1]) + pz * F32(ab[2])) * F32(1 / L2), F32(0), F32(1))
    dx, dy, dz = px - t * F32(ab[0]), py - t * F32(ab[1]), pz - t * F32(ab[2])
    return np.sqrt(dx * dx + dy * dy + dz * dz)


def bezier(p0, p1, p2, n: int) -> np.ndarray:
    """n+1 points on the quadratic Bezier curve p0-p1-p2."""
    t = np.linspace(0.0, 1.0, n + 1)[:, None]
    p0, p1, p2 = (np.asarray(p, dtype=float) for p in (p0, p1, p2))
    return (1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t ** 2 * p2


# ------------------------------------------------------------------------------ rasters
def raster_image(array_zyx: np.ndarray, lo_anatomy, spacing: float, offset) -> sitk.Image:
    """An axis-aligned (identity direction) image in the physical frame from an anatomy-frame raster."""
    img = sitk.GetImageFromArray(np.ascontiguousarray(array_zyx, dtype=F32), isVector=array_zyx.ndim == 4)
    img.SetSpacing([float(spacing)] * 3)
    img.SetOrigin([float(v) for v in np.asarray(lo_anatomy, float) + np.asarray(offset, float)])
    return img


def raster_coords(lo, shape_zyx, spacing: float):
    """Anatomy-frame (x, y, z) float32 arrays of a raster starting at *lo*."""
    nz, ny, nx = shape_zyx
    x = (F32(lo[0]) + np.arange(nx, dtype=F32) * F32(spacing))[None, None, :]
    y = (F32(lo[1]) + np.arange(ny, dtype=F32) * F32(spacing))[None, :, None]
    z = (F32(lo[2]) + np.arange(nz, dtype=F32) * F32(spacing))[:, None, None]
    return np.broadcast_to(x, shape_zyx), np.broadcast_to(y, shape_zyx), np.broadcast_to(z, shape_zyx)
