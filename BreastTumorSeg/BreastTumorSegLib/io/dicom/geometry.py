"""Slice geometry of DICOM frames: positions along the slice normal and a volume's regular grid.

Frames of one volume must share matrix size, pixel spacing and orientation, sit at distinct
positions along their common normal, evenly spaced (a gap of whole multiples means missing slices)
and stacked straight (no gantry tilt or shear). :func:`volume_geometry` checks all of that and
gives the grid in SimpleITK terms; every refusal is an :class:`InputError` naming the series.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ...core.errors import InputError
from ..images import SPACING_RANGE_MM
from .headers import Frame

# Two slice positions closer than this along the normal are the same position (mm).
POSITION_TOLERANCE_MM = 0.01
# Slices shifted sideways by more than this are not a straight stack (gantry tilt, shear) (mm).
SHEAR_TOLERANCE_MM = 0.05
# Fewest slices a DCE phase can have.
MIN_SLICES = 3


@dataclass
class Geometry:
    """A regular 3D grid in SimpleITK terms (x = DICOM columns, y = rows, z = slices)."""

    size: tuple[int, int, int]
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float]
    direction: tuple[float, ...]  # 3x3 row-major; columns are the x, y, z axes in LPS

    def same_as(self, other: Geometry, tol: float = 1e-3) -> bool:
        return (self.size == other.size and np.allclose(self.spacing, other.spacing, atol=tol)
                and np.allclose(self.origin, other.origin, atol=tol)
                and np.allclose(self.direction, other.direction, atol=tol))


def frame_axes(f: Frame, where: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Orthonormal row direction, column direction and slice normal of a frame (LPS)."""
    row = np.asarray(f.iop[:3], dtype=float)
    col = np.asarray(f.iop[3:], dtype=float)
    if abs(np.linalg.norm(row) - 1) > 1e-3 or abs(np.linalg.norm(col) - 1) > 1e-3 or abs(row @ col) > 1e-3:
        raise InputError(f"ImageOrientationPatient {list(f.iop)} is not two unit vectors at right angles",
                         where, "re-export the series; the scanner's orientation tag is damaged")
    row /= np.linalg.norm(row)
    col = col - (col @ row) * row
    col /= np.linalg.norm(col)
    return row, col, np.cross(row, col)


def position_clusters(frames: Sequence[Frame]) -> tuple[np.ndarray, list[float]]:
    """Distance of each frame along its slice normal, and the distinct positions (sorted)."""
    f0 = frames[0]
    if f0.iop is None or any(f.ipp is None for f in frames):
        return np.zeros(len(frames)), [0.0]
    n = np.cross(np.asarray(f0.iop[:3]), np.asarray(f0.iop[3:]))
    n = n / max(np.linalg.norm(n), 1e-12)
    d = np.array([np.dot(f.ipp, n) for f in frames])
    uniq: list[float] = []
    for v in np.sort(d):
        if not uniq or v - uniq[-1] > POSITION_TOLERANCE_MM:
            uniq.append(float(v))
    return d, uniq


def cluster_index(d: np.ndarray, uniq: list[float]) -> np.ndarray:
    """For each distance along the normal, the index of the nearest distinct position in *uniq*."""
    u = np.asarray(uniq)
    return np.argmin(np.abs(d[:, None] - u[None, :]), axis=1)


def volume_geometry(frames: list[Frame], where: str) -> tuple[list[Frame], Geometry]:
    """Sort one volume's frames along the normal and check they form a regular grid."""
    f0 = frames[0]
    sizes = Counter((f.rows, f.cols) for f in frames)
    if len(sizes) > 1:
        desc = ", ".join(f"{c}x{r} ({n} slices)" for (r, c), n in sizes.most_common())
        raise InputError(f"slices of different matrix sizes in one volume: {desc}", where,
                         "re-export the series; if two acquisitions were merged, select one with --series")
    spacings = Counter(tuple(round(v, 4) for v in f.pixel_spacing) for f in frames)
    if len(spacings) > 1:
        raise InputError(f"slices with different pixel spacings in one volume: {sorted(spacings)}", where,
                         "re-export the series; if two acquisitions were merged, select one with --series")
    lo, hi = SPACING_RANGE_MM
    if not all(lo <= v <= hi for v in f0.pixel_spacing):  # also when chosen by --series: ITK takes no zero spacing
        raise InputError(f"PixelSpacing {[float(v) for v in f0.pixel_spacing]} mm of {f0.label()} is outside "
                         f"{lo:g}-{hi:g} mm", where, "re-export the series with its true PixelSpacing (in mm)")
    for f in frames:
        if f.iop is None or np.max(np.abs(np.subtract(f.iop, f0.iop))) > 1e-4:
            raise InputError(f"slices with different orientations in one volume ({f.label()})", where,
                             "re-export the series, or select a single stack with --series")
    row, col, normal = frame_axes(f0, where)
    d = np.array([np.dot(f.ipp, normal) for f in frames])
    order = np.argsort(d, kind="stable")
    frames = [frames[i] for i in order]
    d = d[order]
    if len(frames) < MIN_SLICES:
        raise InputError(f"a volume with {len(frames)} slice(s) is not a 3D phase", where,
                         "select a 3D series with --series")
    gaps = np.diff(d)
    if np.any(gaps <= POSITION_TOLERANCE_MM):
        i = int(np.argmax(gaps <= POSITION_TOLERANCE_MM))
        raise InputError(f"two different slices at the same position ({frames[i].label()} and "
                         f"{frames[i + 1].label()})", where,
                         "remove the extra copy, or select the wanted series with --series")
    med = float(np.median(gaps))
    tol = max(0.02, 0.01 * med)
    bad = np.flatnonzero(np.abs(gaps - med) > tol)
    if bad.size:
        i = int(bad[0])
        multiples = gaps[bad] / med
        if np.all(np.abs(multiples - np.round(multiples)) < 0.05) and np.all(np.round(multiples) >= 2):
            missing = int(np.sum(np.round(multiples) - 1))
            raise InputError(
                f"{missing} slice(s) missing: a gap of {gaps[i]:.3g} mm between {frames[i].label()} and "
                f"{frames[i + 1].label()} where slices are {med:.3g} mm apart", where,
                "re-send the complete series from the scanner or PACS (an interrupted copy drops files)")
        raise InputError(
            f"inconsistent slice spacing: {gaps.min():.3g} to {gaps.max():.3g} mm (e.g. {gaps[i]:.3g} mm between "
            f"{frames[i].label()} and {frames[i + 1].label()})", where,
            "re-export the series with uniform slice spacing, or select another series with --series")
    origin = np.asarray(frames[0].ipp, dtype=float)
    shifts = [float(np.linalg.norm((np.asarray(f.ipp) - origin) - ((np.asarray(f.ipp) - origin) @ normal) * normal))
              for f in frames]
    shear = max(shifts)
    if shear > SHEAR_TOLERANCE_MM:
        worst = frames[int(np.argmax(shifts))]
        raise InputError(f"slices are not stacked along their normal (sideways shift up to {shear:.2f} mm, e.g. "
                         f"{worst.label()} against {frames[0].label()}; gantry tilt or sheared acquisition)", where,
                         "resample the series to a regular grid (e.g. dcm2niix) and load the NIfTI files")
    dz = float((d[-1] - d[0]) / (len(d) - 1))
    direction = np.column_stack([row, col, normal])
    geom = Geometry(size=(f0.cols, f0.rows, len(frames)),
                    spacing=(float(f0.pixel_spacing[1]), float(f0.pixel_spacing[0]), dz),
                    origin=tuple(float(v) for v in origin),
                    direction=tuple(float(v) for v in direction.ravel()))
    return frames, geom
