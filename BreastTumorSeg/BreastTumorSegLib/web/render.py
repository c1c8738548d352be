"""Axial display of a voxel grid (patient right on screen left, anterior up) and PNG slices.

A grid may be stored in any axis order and direction; :class:`DisplayFrame` permutes and flips
its (k, j, i) array into (S, P, L) order without resampling, so a display pixel is a voxel and a
stroke painted on the screen maps back to voxels exactly.
"""
from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image


@dataclass(frozen=True)
class DisplayFrame:
    axes: tuple[int, int, int]  # array axes that become (slice S, row P, column L)
    flips: tuple[bool, bool, bool]
    spacing: tuple[float, float, float]  # mm along (slice, row, column)

    @classmethod
    def of(cls, direction, spacing) -> "DisplayFrame":
        d = np.asarray(direction, float).reshape(3, 3)  # column n = index axis n in LPS
        axes, flips, sp, used = [], [], [], set()
        for lps in (2, 1, 0):  # S, P, L
            order = np.argsort(-np.abs(d[lps]))
            n = next(int(a) for a in order if int(a) not in used)
            used.add(n)
            axes.append(2 - n)  # numpy axis of index axis n
            flips.append(bool(d[lps, n] < 0))
            sp.append(float(spacing[n]))
        return cls(tuple(axes), tuple(flips), tuple(sp))

    def to_display(self, arr: np.ndarray) -> np.ndarray:
        out = np.transpose(arr, self.axes)
        for ax, f in enumerate(self.flips):
            if f:
                out = np.flip(out, ax)
        return out

    def slab(self, k: int, disp_slice: np.ndarray, shape: tuple[int, int, int]) -> tuple[np.ndarray, tuple]:
        """Display slice *k* of a (k, j, i) array of *shape* as a one-voxel-thick (k, j, i) array and
        its first voxel's (i, j, k) index in the grid."""
        slab = self.from_display(disp_slice[None])
        axis = self.axes[0]  # numpy axis of the display's slice axis
        start = [0, 0, 0]  # numpy (k, j, i) order
        start[axis] = shape[axis] - 1 - k if self.flips[0] else k
        return slab, (start[2], start[1], start[0])

    def from_display(self, disp: np.ndarray) -> np.ndarray:
        out = disp
        for ax, f in enumerate(self.flips):
            if f:
                out = np.flip(out, ax)
        return np.ascontiguousarray(np.transpose(out, np.argsort(self.axes)))


def window_to_uint8(slice2d: np.ndarray, window: float, level: float) -> np.ndarray:
    window = max(float(window), 1e-6)
    lo = level - window / 2.0
    return (np.clip((slice2d.astype(np.float32) - lo) / window, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def slice_png(grey: np.ndarray, mask: np.ndarray | None = None, color=(1.0, 0.8, 0.0), alpha: float = 0.45) -> bytes:
    """A greyscale uint8 slice, with *mask* blended in *color* and its outline drawn opaque."""
    rgb = np.repeat(grey[..., None], 3, axis=2).astype(np.float32)
    if mask is not None and mask.any():
        m = mask.astype(bool)
        c = np.asarray(color, np.float32) * 255.0
        rgb[m] = (1 - alpha) * rgb[m] + alpha * c
        edge = m & ~(np.roll(m, 1, 0) & np.roll(m, -1, 0) & np.roll(m, 1, 1) & np.roll(m, -1, 1))
        rgb[edge] = c
    buf = io.BytesIO()
    Image.fromarray(rgb.astype(np.uint8), "RGB").save(buf, "PNG", compress_level=1)
    return buf.getvalue()


def default_window(arr: np.ndarray, subtraction: bool = False) -> tuple[float, float]:
    """Window/level from the 1st and 99.5th percentiles of the non-zero voxels (a subtraction:
    from 0 to its 99.9th percentile, so enhancement stands out of the noise)."""
    vals = arr[arr != 0] if np.any(arr != 0) else arr.ravel()
    vals = vals[:: max(1, vals.size // 200_000)]
    lo, hi = (0.0, float(np.percentile(vals, 99.9))) if subtraction else np.percentile(vals, [1.0, 99.5])
    hi = hi if hi > lo else lo + 1.0
    return float(hi - lo), float((hi + lo) / 2.0)


def stroke_mask(shape2d: tuple[int, int], points, radius_mm: float, row_mm: float, col_mm: float) -> np.ndarray:
    """The pixels within *radius_mm* of the polyline *points* ((row, col) pixel coordinates)."""
    rows, cols = np.ogrid[: shape2d[0], : shape2d[1]]
    out = np.zeros(shape2d, bool)
    pts = np.asarray(points, float).reshape(-1, 2)
    if len(pts) == 1:
        pts = np.vstack([pts, pts])
    r2 = float(radius_mm) ** 2
    for (r0, c0), (r1, c1) in zip(pts[:-1], pts[1:]):
        # distance in mm from every pixel to the segment (r0,c0)-(r1,c1)
        dr, dc = (r1 - r0) * row_mm, (c1 - c0) * col_mm
        pr, pc = (rows - r0) * row_mm, (cols - c0) * col_mm
        seg2 = dr * dr + dc * dc
        t = np.clip((pr * dr + pc * dc) / seg2, 0.0, 1.0) if seg2 > 0 else 0.0
        out |= (pr - t * dr) ** 2 + (pc - t * dc) ** 2 <= r2
    return out
