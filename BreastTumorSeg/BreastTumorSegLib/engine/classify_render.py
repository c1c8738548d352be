"""The classification picture: the heatmap over the early-subtraction MIP, with the L/R probabilities.

One PNG per exam (``<case>_classification.png``): the maximum-intensity projection of the early
subtraction along the patient's S-I axis (an axial MIP, whatever the slice axis, so that the two
breasts lie side by side; radiological convention as the segmentation overview) in grey, the maximum projection of the
heatmap over it in colour (transparent where it is 0), a colour bar, and the per-breast
probabilities in the title.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk

from .classify import ClassificationResult, probability_text
from .overview import _MIPS, _lps, _window

HEAT_VISIBLE = 0.02  # heatmap values below this are not drawn


def probability_line(result: ClassificationResult) -> str:
    """``"P(malignant): R 0.04 (below 0.39), L 0.93 (above 0.39)"`` (patient right first, as the
    picture shows it; each against the card's operating threshold when it has one)."""
    t = result.threshold
    parts = [f"{k} {probability_text(result.probabilities[k], t)}" for k in ("R", "L") if k in result.probabilities]
    return "P(malignant): " + (", ".join(parts) if parts else "no breast found")


def render_classification(result: ClassificationResult, path: str | Path, title: str | None = None) -> Path:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    if result.subtraction is None:
        raise ValueError("the result carries no subtraction image to draw")
    sub = sitk.GetArrayFromImage(_lps(sitk.Cast(result.subtraction, sitk.sitkFloat32)))
    heat_img = _lps(result.heatmap)
    heat = sitk.GetArrayFromImage(heat_img)
    axis = 0  # along S-I (an axial MIP): the two breasts side by side, whatever the slice axis
    name, how, orient, axes = _MIPS[axis]
    sx, sy, sz = heat_img.GetSpacing()
    spacing = {0: sz, 1: sy, 2: sx}
    lo, hi = _window(sub)
    mip, hmip = orient(sub.max(axis=axis)), orient(heat.max(axis=axis))
    fig, ax = plt.subplots(figsize=(10, 10 * mip.shape[0] * spacing[axes[0]] / (mip.shape[1] * spacing[axes[1]]) + 1.2))
    aspect = spacing[axes[0]] / spacing[axes[1]]
    ax.imshow(mip, cmap="gray", vmin=lo, vmax=hi, interpolation="nearest", aspect=aspect)
    shown = ax.imshow(np.ma.masked_less(hmip, HEAT_VISIBLE), cmap="inferno", vmin=0, vmax=1, alpha=0.7,
                      interpolation="nearest", aspect=aspect)
    fig.colorbar(shown, ax=ax, fraction=0.03, label="candidate P(malignant)")
    letters = {0: (("R", 0.02), ("L", 0.98)), 1: (("R", 0.02), ("L", 0.98)), 2: (("A", 0.02), ("P", 0.98))}[axis]
    for letter, x in letters:
        ax.text(x, 0.5, letter, transform=ax.transAxes, color="orange", fontsize=14, ha="center", va="center")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(f"{probability_line(result)}\nheatmap over the early-subtraction MIP ({name}; {how})", fontsize=10)
    fig.suptitle(title or f"{result.case_id} - model {result.model_id} (synthetic-data model, not for clinical use)",
                 fontsize=10)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=80, format="png")
    plt.close(fig)
    return path
