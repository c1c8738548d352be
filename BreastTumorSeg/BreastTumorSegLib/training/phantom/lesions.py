"""Tumors of the synthetic phantom: lobulated masses and clumped non-mass enhancement.

A *mass* is an ellipsoid whose radius is modulated by a few low-frequency waves over the
sphere of directions (lobulation). A *non-mass* lesion is a segmental region (an elongated
ellipsoid pointing from the chest wall towards the nipple, like a duct system) filled with
clumps of small blobs. Tumors are placed inside a breast, away from skin and chest wall,
mostly in or next to fibroglandular tissue, and never overlapping each other.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .geometry import F32, ellipsoid_sdf, random_rotation, random_unit_vector, rotation_matrix, segment_distance

KINDS = ("mass", "nonmass")
MARGINS = ("smooth", "lobulated", "spiculated")  # a mass's margin (``tumor_margin`` of make_phantom)


@dataclass
class Tumor:
    kind: str
    side: str
    center: np.ndarray  # anatomy frame, mm
    radius_mm: float  # mass: mean radius; non-mass: half-length of the segment
    radii: np.ndarray  # ellipsoid (mass) or segment (non-mass) semi-axes, mm
    rotation: np.ndarray  # columns = shape axes in the anatomy frame
    lobes: list = field(default_factory=list)  # (amplitude, frequency, direction, phase)
    blobs: np.ndarray | None = None  # non-mass: rows (x, y, z, r), anatomy frame
    s0: float = 500.0  # pre-contrast signal
    curve_kind: str = "washout"
    peak: float = 1.5
    spicules: list = field(default_factory=list)  # (tip offset from the centre, radius), anatomy frame, mm
    rim_mm: float = 0.0  # > 0: rim enhancement, the core deeper than this enhances at ``core_fraction``
    core_fraction: float = 1.0

    def modulation(self, ux, uy, uz):
        m = F32(1)
        for amp, freq, w, phase in self.lobes:
            m = m + F32(amp) * np.cos(F32(math.pi * freq) * (F32(w[0]) * ux + F32(w[1]) * uy + F32(w[2]) * uz)
                                      + F32(phase))
        return m

    @property
    def extent(self) -> float:
        """Largest distance from the centre that the tumor can reach, mm."""
        if self.kind == "mass":
            body = float(np.max(self.radii) * (1.0 + sum(abs(l[0]) for l in self.lobes)))
            return max([body] + [float(np.linalg.norm(tip)) + r for tip, r in self.spicules])
        return float(np.max(self.radii)) + 1.0

    def aabb(self, pad: float = 3.0):
        r = self.extent + pad
        return self.center - r, self.center + r

    def sdf(self, x, y, z) -> np.ndarray:
        if self.kind == "mass":
            d = ellipsoid_sdf(x, y, z, self.center, self.radii, self.rotation, self.modulation)
            for tip, r in self.spicules:
                d = np.minimum(d, segment_distance(x, y, z, self.center, self.center + np.asarray(tip)) - F32(r))
            return d
        d = None
        for bx, by, bz, br in self.blobs:
            dx, dy, dz = x - F32(bx), y - F32(by), z - F32(bz)
            db = np.sqrt(dx * dx + dy * dy + dz * dz) - F32(br)
            d = db if d is None else np.minimum(d, db)
        seg = ellipsoid_sdf(x, y, z, self.center, self.radii, self.rotation)
        return np.maximum(d, seg)


def make_mass(rng: np.random.Generator, radius: float) -> dict:
    ratios = rng.uniform(0.75, 1.25, 3)
    ratios /= np.prod(ratios) ** (1 / 3)
    lob = float(rng.uniform(0.05, 0.22))
    n = 5
    amps = rng.uniform(0.3, 1.0, n)
    amps *= lob / amps.sum()
    lobes = [(float(a), float(rng.uniform(1.0, 3.0)), random_unit_vector(rng).tolist(), float(rng.uniform(0, 2 * math.pi)))
             for a in amps]
    return {"radii": radius * ratios, "rotation": random_rotation(rng, 180.0), "lobes": lobes}


def set_margin(rng: np.random.Generator, tumor: Tumor, margin: str) -> None:
    """Give a placed mass the *margin* of :data:`MARGINS` (drawn from *rng*, a stream of its own,
    so that the default phantoms stay bit-identical): ``smooth`` an ellipsoid with lobulation of at
    most 3 %, ``lobulated`` as drawn, ``spiculated`` 6-12 thin spicules 1.3-2.2 radii long."""
    if margin not in MARGINS:
        raise ValueError(f"margin must be one of {MARGINS}, got {margin!r}")
    if margin == "smooth":
        tumor.lobes = [(a * 0.03 / max(sum(l[0] for l in tumor.lobes), 1e-6), f, w, p) for a, f, w, p in tumor.lobes]
    elif margin == "spiculated":
        tumor.spicules = [((random_unit_vector(rng) * tumor.radius_mm * rng.uniform(1.3, 2.2)).tolist(),
                           float(rng.uniform(0.5, 1.0))) for _ in range(int(rng.integers(6, 13)))]


def make_nonmass(rng: np.random.Generator, half_length: float, center: np.ndarray, towards: np.ndarray,
                 voxel_mm: float) -> dict:
    axis = towards - center
    axis = axis / max(np.linalg.norm(axis), 1e-6)
    # rotation taking the x axis onto the duct direction, then a random roll about it
    x = np.array([1.0, 0.0, 0.0])
    c = float(np.clip(x @ axis, -1, 1))
    v = np.cross(x, axis)
    rot = rotation_matrix(v, math.acos(c)) if np.linalg.norm(v) > 1e-6 else np.eye(3)
    rot = rot @ rotation_matrix(x, float(rng.uniform(0, 2 * math.pi)))
    width = half_length * float(rng.uniform(0.35, 0.6))
    radii = np.array([half_length, width, width * float(rng.uniform(0.7, 1.0))])
    blob_r = (max(1.8, 1.1 * voxel_mm), max(3.5, 1.9 * voxel_mm))
    blobs = []
    # clumps along the segment: their number grows with its volume
    n_clumps = max(3, int(round(float(rng.uniform(0.6, 1.4)) * np.prod(radii) / 250.0)))
    for _ in range(n_clumps):
        u = random_unit_vector(rng) * rng.uniform(0, 1) ** (1 / 3)
        cc = center + rot @ (u * radii * 0.85)
        for _ in range(int(rng.integers(3, 9))):
            blobs.append([*(cc + rng.normal(0, 2.5, 3)), float(rng.uniform(*blob_r))])
    return {"radii": radii, "rotation": rot, "blobs": np.array(blobs)}
