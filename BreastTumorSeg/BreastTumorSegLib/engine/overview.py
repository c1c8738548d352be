"""The overview picture a radiologist looks at first: where are the lesions, and are they right?

One PNG per exam:

* top left: maximum-intensity projection (head to feet) of the early subtraction (first
  post-contrast minus pre-contrast, motion-corrected), the result's outline projected on it (and,
  when known, the truth's);
* then, for each lesion (the largest first, at most :data:`MAX_LESIONS`), the axial, coronal and
  sagittal slices of the subtraction through its centroid, with the same outlines;
* a table of the lesions (side, volume, longest diameter, centroid in RAS as Slicer shows it).

Views follow the radiological convention on the patient's LPS axes: axial and coronal views show
the patient's right on the viewer's left; anterior is up in axial views, superior up in coronal
and sagittal views. Outlines: the result in yellow, the truth (when given) dashed cyan.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ..core.results import SegmentationResult

MAX_LESIONS = 4
HALF_FIELD_MM = 40.0  # half width of a lesion's close-up


def _lps(img: sitk.Image) -> sitk.Image:
    return sitk.DICOMOrient(img, "LPS")


def _views(vol: np.ndarray, idx: tuple[int, int, int]):
    """(name, 2D slice, which axes it spans) through voxel idx=(z, y, x) of an LPS (z, y, x) array."""
    z, y, x = idx
    return [("axial", vol[z], (1, 2)),                      # rows A->P, columns R->L
            ("coronal", vol[:, y, :][::-1], (0, 2)),        # rows S->I, columns R->L
            ("sagittal", vol[:, :, x][::-1], (0, 1))]       # rows S->I, columns A->P


def _window(arr: np.ndarray) -> tuple[float, float]:
    """Display window: 1st-99.7th percentile, from every 8th voxel (a 448x448x160 volume in 50 ms
    instead of 400; a display window does not need the exact percentile)."""
    vals = arr.ravel()[:: 8 if arr.size > 1_000_000 else 1]
    vals = vals[np.isfinite(vals)]
    if vals.size == 0:
        return 0.0, 1.0
    lo, hi = np.percentile(vals, [1.0, 99.7])
    return float(lo), float(max(hi, lo + 1e-6))


def _crop_box(shape2d, center2d, spacing2d) -> tuple[slice, slice]:
    half = [max(4, int(round(HALF_FIELD_MM / s))) for s in spacing2d]
    return tuple(slice(max(0, c - h), min(n, c + h + 1)) for c, h, n in zip(center2d, half, shape2d))


def render_overview(result: SegmentationResult, path: str | Path, truth: sitk.Image | None = None,
                    title: str | None = None) -> Path:
    """Draw the overview of *result* into *path* (PNG). *truth*: a reference mask on the same grid."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    if result.subtraction is None:
        raise ValueError("the result carries no subtraction image to draw")
    sub = sitk.GetArrayFromImage(_lps(sitk.Cast(result.subtraction, sitk.sitkFloat32)))
    grid = _lps(result.label)
    label = sitk.GetArrayFromImage(grid) > 0
    ref = sitk.GetArrayFromImage(_lps(truth)) > 0 if truth is not None else None
    sx, sy, sz = grid.GetSpacing()
    spacing = {0: sz, 1: sy, 2: sx}
    lo, hi = _window(sub)
    lesions = sorted(result.lesions, key=lambda les: -les.volume_ml)[:MAX_LESIONS]

    rows = 1 + len(lesions)
    fig = plt.figure(figsize=(12, 3.6 * rows + 1.2 + 0.25 * max(1, len(result.lesions))))
    grid_spec = fig.add_gridspec(rows + 1, 3, height_ratios=[3.6] * rows + [0.9 + 0.25 * len(result.lesions)])

    def show(ax, img, axes, mask, truth_mask, heading):
        ax.imshow(img, cmap="gray", vmin=lo, vmax=hi, interpolation="nearest",
                  aspect=spacing[axes[0]] / spacing[axes[1]])
        if truth_mask is not None and truth_mask.any():
            ax.contour(truth_mask.astype(float), levels=[0.5], colors="cyan", linewidths=1.0, linestyles="--")
        if mask is not None and mask.any():
            ax.contour(mask.astype(float), levels=[0.5], colors="yellow", linewidths=1.0)
        ax.set_title(heading, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])

    ax = fig.add_subplot(grid_spec[0, :])
    show(ax, sub.max(axis=0), (1, 2), label.any(axis=0), None if ref is None else ref.any(axis=0),
         "subtraction MIP (axial; patient right on the left, anterior up)")
    for x, letter in ((0.01, "R"), (0.99, "L")):
        ax.text(x, 0.5, letter, transform=ax.transAxes, color="orange", fontsize=12, ha="center", va="center")
    for row, les in enumerate(lesions, start=1):
        xyz = grid.TransformPhysicalPointToIndex([float(c) for c in les.centroid_lps])
        idx = tuple(int(np.clip(v, 0, n - 1)) for v, n in zip(xyz[::-1], sub.shape))
        triples = zip(_views(sub, idx), _views(label, idx), _views(ref, idx) if ref is not None else [None] * 3)
        for col, ((name, img, axes), (_, m, _), t) in enumerate(triples):
            centre = {"axial": (idx[1], idx[2]), "coronal": (sub.shape[0] - 1 - idx[0], idx[2]),
                      "sagittal": (sub.shape[0] - 1 - idx[0], idx[1])}[name]
            box = _crop_box(img.shape, centre, (spacing[axes[0]], spacing[axes[1]]))
            show(fig.add_subplot(grid_spec[row, col]), img[box], axes, m[box], None if t is None else t[1][box],
                 f"lesion {les.label} ({les.side}, {les.volume_ml:.2f} mL): {name}")

    ax = fig.add_subplot(grid_spec[rows, :])
    ax.axis("off")
    lines = [f"{'#':>3}  {'side':<7}{'volume mL':>10}{'diameter mm':>13}   centroid RAS (mm)"]
    for les in result.lesions:
        r = ", ".join(f"{v:.1f}" for v in les.centroid_ras)
        lines.append(f"{les.label:>3}  {les.side:<7}{les.volume_ml:>10.2f}{les.longest_diameter_mm:>13.1f}   ({r})")
    if not result.lesions:
        lines.append("no lesion found")
    legend = "outline: result (yellow)" + ("; truth (dashed cyan)" if truth is not None else "")
    ax.text(0.0, 1.0, "\n".join(lines + ["", legend]), family="monospace", fontsize=9, va="top")
    fig.suptitle(title or f"{result.case_id} - model {result.model_id}", fontsize=11)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=90, format="png")
    plt.close(fig)
    return path
