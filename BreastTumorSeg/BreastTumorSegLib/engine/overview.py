"""The overview picture a radiologist looks at first: where are the lesions, and are they right?

One PNG per exam:

* top: maximum-intensity projection of the early subtraction (first post-contrast minus
  pre-contrast, motion-corrected) along the acquisition's slice axis (:func:`mip_axis`: an axial
  exam gets an axial MIP, a sagittal one a sagittal MIP, never a strip of a few slices), the
  result's outline projected on it (and, when known, the truth's);
* then, for each lesion (the largest first, at most :data:`MAX_LESIONS`), the axial, coronal and
  sagittal slices of the subtraction through its centroid, with the same outlines;
* a table of the lesions (side, volume, longest diameter, centroid in RAS as Slicer shows it).

Views follow the radiological convention on the patient's LPS axes: axial and coronal views show
the patient's right on the viewer's left; anterior is up in axial views, superior up in coronal
and sagittal views. Outlines: the result in yellow, a lesion flagged ``outside_breast_mask`` (kept by the breast
gate although the mask disagrees, :mod:`.postprocess`) in magenta with its reason under the
table, the truth (when given) dashed cyan.
"""
from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ..core.imageutil import cast_once
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


FLAGGED_COLOUR = "magenta"
LINE_IN = 0.19  # height of one table line (inches)
# Projection along each LPS numpy axis: (name, rows/columns description, transform of the 2D MIP, axes it spans).
_MIPS = {0: ("axial", "patient right on the left, anterior up", lambda m: m, (1, 2)),
         1: ("coronal", "patient right on the left, superior up", lambda m: m[::-1], (0, 2)),
         2: ("sagittal", "anterior on the left, superior up", lambda m: m[::-1], (0, 1))}


def mip_axis(img: sitk.Image) -> int:
    """The acquisition's slice axis as a numpy axis of the LPS-oriented (z, y, x) array.

    The image index axis whose spacing is the largest by at least 20 % (thick slices); else the
    one with at most half as many voxels as each other axis (a slab); else the third index axis
    (the slice axis of a volume stacked from DICOM slices).
    """
    spacing, size = np.asarray(img.GetSpacing(), float), np.asarray(img.GetSize(), float)

    def unique(values, ratio):
        k = int(np.argmax(values))
        others = np.delete(values, k)
        return k if (values[k] >= ratio * others).all() else None

    k = unique(spacing, 1.2)
    if k is None:
        k = unique(1.0 / size, 2.0)
    if k is None:
        k = 2
    lps_axis = int(np.argmax(np.abs(np.asarray(img.GetDirection()).reshape(3, 3)[:, k])))  # 0 = x, 1 = y, 2 = z
    return 2 - lps_axis


def _flagged_mask(label: np.ndarray, result: SegmentationResult, grid: sitk.Image) -> np.ndarray:
    """Voxels (LPS array) of the lesions flagged outside the breast mask."""
    from scipy import ndimage

    flagged = [les for les in result.lesions if les.flags]
    out = np.zeros(label.shape, bool)
    if not flagged:
        return out
    comps, _ = ndimage.label(label, structure=np.ones((3, 3, 3)))
    sizes = np.bincount(comps.ravel())
    for les in flagged:
        idx = grid.TransformPhysicalPointToIndex([float(c) for c in les.centroid_lps])[::-1]
        inside = all(0 <= v < n for v, n in zip(idx, label.shape))
        c = comps[idx] if inside else 0
        if c == 0:  # centroid outside a curved lesion: the component of the same size
            same = np.nonzero(sizes == les.voxels)[0]
            c = int(same[same > 0][0]) if (same > 0).any() else 0
        if c:
            out |= comps == c
    return out


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
    sub = sitk.GetArrayFromImage(_lps(cast_once(result.subtraction, sitk.sitkFloat32)))
    grid = _lps(result.label)
    label = sitk.GetArrayFromImage(grid) > 0
    ref = sitk.GetArrayFromImage(_lps(truth)) > 0 if truth is not None else None
    sx, sy, sz = grid.GetSpacing()
    spacing = {0: sz, 1: sy, 2: sx}
    lo, hi = _window(sub)
    lesions = sorted(result.lesions, key=lambda les: -les.volume_ml)[:MAX_LESIONS]

    rows = 1 + len(lesions)
    notes = [(les, part) for les in result.lesions for note in les.notes
             for part in textwrap.wrap(f"{les.label:>3}: {note}", 140, subsequent_indent="     ")]
    n_lines = 4 + max(1, len(result.lesions)) + len(notes)
    table_in = 0.2 + LINE_IN * n_lines
    fig = plt.figure(figsize=(12, 3.6 * rows + 0.6 + table_in))
    grid_spec = fig.add_gridspec(rows + 1, 3, height_ratios=[3.6] * rows + [table_in])

    flagged = _flagged_mask(label, result, grid)

    def show(ax, img, axes, mask, truth_mask, heading, flag_mask=None):
        ax.imshow(img, cmap="gray", vmin=lo, vmax=hi, interpolation="nearest",
                  aspect=spacing[axes[0]] / spacing[axes[1]])
        if truth_mask is not None and truth_mask.any():
            ax.contour(truth_mask.astype(float), levels=[0.5], colors="cyan", linewidths=1.0, linestyles="--")
        if mask is not None and flag_mask is not None and flag_mask.any():
            mask = mask & ~flag_mask
            ax.contour(flag_mask.astype(float), levels=[0.5], colors=FLAGGED_COLOUR, linewidths=1.2)
        if mask is not None and mask.any():
            ax.contour(mask.astype(float), levels=[0.5], colors="yellow", linewidths=1.0)
        ax.set_title(heading, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])

    axis = mip_axis(result.label)
    name, how, orient, axes = _MIPS[axis]
    ax = fig.add_subplot(grid_spec[0, :])
    show(ax, orient(sub.max(axis=axis)), axes, orient(label.any(axis=axis)),
         None if ref is None else orient(ref.any(axis=axis)),
         f"subtraction MIP ({name}, along the slice axis; {how})", orient(flagged.any(axis=axis)))
    letters = {0: (("R", 0.01), ("L", 0.99)), 1: (("R", 0.01), ("L", 0.99)), 2: (("A", 0.01), ("P", 0.99))}[axis]
    for letter, x in letters:
        ax.text(x, 0.5, letter, transform=ax.transAxes, color="orange", fontsize=12, ha="center", va="center")
    for row, les in enumerate(lesions, start=1):
        xyz = grid.TransformPhysicalPointToIndex([float(c) for c in les.centroid_lps])
        idx = tuple(int(np.clip(v, 0, n - 1)) for v, n in zip(xyz[::-1], sub.shape))
        triples = zip(_views(sub, idx), _views(label, idx), _views(ref, idx) if ref is not None else [None] * 3,
                      _views(flagged, idx))
        for col, ((name, img, axes), (_, m, _), t, (_, f, _)) in enumerate(triples):
            centre = {"axial": (idx[1], idx[2]), "coronal": (sub.shape[0] - 1 - idx[0], idx[2]),
                      "sagittal": (sub.shape[0] - 1 - idx[0], idx[1])}[name]
            box = _crop_box(img.shape, centre, (spacing[axes[0]], spacing[axes[1]]))
            show(fig.add_subplot(grid_spec[row, col]), img[box], axes, m[box], None if t is None else t[1][box],
                 f"lesion {les.label} ({les.side}, {les.volume_ml:.2f} mL){' [flagged]' if les.flags else ''}: {name}",
                 f[box])

    ax = fig.add_subplot(grid_spec[rows, :])
    ax.axis("off")
    lines = [(f"{'#':>3}  {'side':<7}{'volume mL':>10}{'diameter mm':>13}   centroid RAS (mm)   flags", "black")]
    for les in result.lesions:
        r = ", ".join(f"{v:.1f}" for v in les.centroid_ras)
        lines.append((f"{les.label:>3}  {les.side:<7}{les.volume_ml:>10.2f}{les.longest_diameter_mm:>13.1f}   "
                      f"({r})   {', '.join(les.flags)}", FLAGGED_COLOUR if les.flags else "black"))
    if not result.lesions:
        lines.append(("no lesion found", "black"))
    lines += [(text, FLAGGED_COLOUR if les.flags else "black") for les, text in notes]
    legend = "outline: result (yellow)" + ("; outside the breast mask, kept for review (magenta)"
                                           if flagged.any() else "") + ("; truth (dashed cyan)" if truth is not None else "")
    lines += [("", "black"), (legend, "black")]
    step = LINE_IN / table_in
    for i, (text, colour) in enumerate(lines):
        ax.text(0.0, 1.0 - i * step, text, family="monospace", fontsize=9, va="top", color=colour,
                transform=ax.transAxes)
    fig.suptitle(title or f"{result.case_id} - model {result.model_id}", fontsize=11)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=90, format="png")
    plt.close(fig)
    return path
