"""Pictures of contrast kinetics: lesion signal-time curves and a SER colour overlay for Slicer.

Curves
------
:func:`signal_time_curves` gives, per lesion label, the mean and standard deviation of the
signal and of the percent enhancement at every phase, inside the lesion and in *background
tissue*: the given background mask (e.g. the breast mask) minus every lesion, or, without one,
a shell ``shell_mm`` (3-15 mm) around the lesion, outside all lesions, where the pre-contrast
signal is valid (above the kinetic maps' floor). :func:`plot_curves` draws them into one PNG
(matplotlib's Agg canvas; no display, no pyplot global state).

SER overlay
-----------
Two files a reader can load in 3D Slicer next to the exam:

* the SER map itself (float NIfTI, written by the caller) with ``<case>_ser_ramp.ctbl``, a 256-entry
  blue -> cyan -> green -> yellow -> red colour table. In Slicer: Volumes module, Lookup Table =
  that table, Window/Level = 2 / 1 so that SER 0 is blue, 1 green-yellow and >= 2 red;
* ``ser_bands`` (uint8 label map, written by the caller: 1 SER < 0.9 persistent-like, 2 0.9-1.3
  plateau-like, 3 > 1.3 washout-like, inside the lesion/FTV mask only) with ``<case>_ser_bands.ctbl``
  (blue, yellow, red). Loaded as a label map with that colour table it overlays directly; this
  is the I-SPY-style display.

``.ctbl`` is Slicer's colour-table text format: ``index name R G B A`` per line (0-255),
``#`` comments; Slicer reads it with ``vtkMRMLColorTableStorageNode``.
"""
from __future__ import annotations

import io
from dataclasses import dataclass, field

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from ..core.errors import InputError
from ..core.exam import DCEExam
from .ftv import ser_band_codes
from ..core.imageutil import from_array, padded_components, same_grid
from .maps import KineticMaps, compute_kinetic_maps, mean_curve_kinetics

# ----------------------------------------------------------------------------- curves


@dataclass
class CurveStats:
    """Signal-time statistics of one lesion and its background tissue."""

    label: int
    times_min: list[float]
    lesion_mean: list[float]
    lesion_sd: list[float]
    lesion_pe_mean: list[float]
    lesion_pe_sd: list[float]
    background_mean: list[float]
    background_sd: list[float]
    background_pe_mean: list[float]
    background_pe_sd: list[float]
    n_lesion: int
    n_background: int
    background: str  # "mask" or "shell a-b mm"
    kinetics: dict = field(default_factory=dict)  # mean-curve kinetics (curve type, SER, ...)

    def as_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items()}


def _stats(phases: list[np.ndarray], region: np.ndarray) -> tuple[list[float], list[float], list[float], list[float]]:
    """Mean/sd of the signal and of each voxel's PE over *region*, per phase (float64 sums)."""
    if not region.any():
        nan = [float("nan")] * len(phases)
        return nan, nan, nan, nan
    pre = phases[0][region].astype(np.float64)
    safe = np.where(pre > 0, pre, np.nan)
    mean, sd, pe_mean, pe_sd = [], [], [], []
    for p in phases:
        v = p[region].astype(np.float64)
        pe = 100.0 * (v - pre) / safe
        mean.append(float(v.mean()))
        sd.append(float(v.std()))
        pe_mean.append(float(np.nanmean(pe)) if np.isfinite(pe).any() else float("nan"))
        pe_sd.append(float(np.nanstd(pe)) if np.isfinite(pe).any() else float("nan"))
    return mean, sd, pe_mean, pe_sd


def signal_time_curves(exam: DCEExam, label_image: sitk.Image, background: sitk.Image | None = None,
                       maps: KineticMaps | None = None,
                       shell_mm: tuple[float, float] = (3.0, 15.0)) -> dict[int, CurveStats]:
    """Per-lesion signal-time curves (mean +/- sd) against background tissue; see the module docstring."""
    ref = exam.reference
    if not same_grid(label_image, ref):
        raise InputError("the lesion label image is not on the exam grid",
                         fix="resample the segmentation onto the pre-contrast image first")
    if background is not None and not same_grid(background, ref):
        raise InputError("the background mask is not on the exam grid")
    if maps is None:
        maps = compute_kinetic_maps(exam)
    labels = sitk.GetArrayFromImage(label_image).astype(np.int64, copy=False)
    any_lesion = labels > 0
    valid = maps.array("valid") > 0
    phases = [sitk.GetArrayViewFromImage(p) for p in exam.phases]
    spacing = np.asarray(ref.GetSpacing(), float)[::-1]
    pad = np.ceil(shell_mm[1] / spacing).astype(int) + 1
    bg_mask = None if background is None else (sitk.GetArrayViewFromImage(background) > 0) & ~any_lesion & valid
    times = [float(t) for t in maps.times_min]
    out: dict[int, CurveStats] = {}
    for lab, box, lesion in padded_components(labels, pad):
        crop_phases = [p[box] for p in phases]
        if bg_mask is not None:
            bg = bg_mask
            bg_phases = phases
            desc = "mask"
        else:
            dist = ndimage.distance_transform_edt(~lesion, sampling=spacing)
            bg = (dist >= shell_mm[0]) & (dist <= shell_mm[1]) & ~any_lesion[box] & valid[box]
            bg_phases = crop_phases
            desc = f"shell {shell_mm[0]:g}-{shell_mm[1]:g} mm"
        lm, ls, lpm, lps = _stats(crop_phases, lesion)
        bm, bs, bpm, bps = _stats(bg_phases, bg)
        out[lab] = CurveStats(lab, times, lm, ls, lpm, lps, bm, bs, bpm, bps, int(lesion.sum()), int(bg.sum()),
                              desc, mean_curve_kinetics(times, lm, maps.phases, maps.settings))
    return out


def plot_curves(curves: dict[int, CurveStats], maps: KineticMaps | None = None, title: str = "",
                pe_threshold: float | None = 70.0, max_panels: int = 6) -> bytes:
    """PNG (bytes) of percent enhancement vs time, one panel per lesion (largest labels first
    up to *max_panels*): lesion mean +/- sd in red, background in grey, the early and late phases
    as dotted lines, the FTV PE threshold dashed."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    items = sorted(curves.values(), key=lambda c: -c.n_lesion)[:max_panels]
    n = max(1, len(items))
    cols = min(3, n)
    rows = int(np.ceil(n / cols))
    fig = Figure(figsize=(4.2 * cols, 3.3 * rows), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    if not items:
        ax = fig.add_subplot(1, 1, 1)
        ax.text(0.5, 0.5, "no lesion", ha="center", va="center")
        ax.set_axis_off()
    for i, c in enumerate(items):
        ax = fig.add_subplot(rows, cols, i + 1)
        t = np.asarray(c.times_min)
        for mean, sd, colour, name in ((c.lesion_pe_mean, c.lesion_pe_sd, "tab:red", f"lesion ({c.n_lesion} vox)"),
                                       (c.background_pe_mean, c.background_pe_sd, "0.45",
                                        f"background, {c.background} ({c.n_background} vox)")):
            m, s = np.asarray(mean), np.asarray(sd)
            ax.plot(t, m, "o-", color=colour, label=name, lw=1.8, ms=4)
            ax.fill_between(t, m - s, m + s, color=colour, alpha=0.2, lw=0)
        if maps is not None:
            ax.axvline(maps.phases.early_time_min, color="k", ls=":", lw=1)
            if maps.phases.late_time_min is not None:
                ax.axvline(maps.phases.late_time_min, color="k", ls=":", lw=1)
        if pe_threshold is not None:
            ax.axhline(pe_threshold, color="tab:blue", ls="--", lw=0.8)
        k = c.kinetics
        ser = k.get("ser")
        ax.set_title(f"lesion {c.label}: {k.get('curve_type', '?')}, "
                     f"{k.get('initial_enhancement', '?')} initial" + ("" if ser is None else f", SER {ser:.2f}"),
                     fontsize=9)
        ax.set_xlabel("time after pre-contrast (min)")
        ax.set_ylabel("enhancement (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="best")
    if title:
        fig.suptitle(title, fontsize=10)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()




# ----------------------------------------------------------------------------- SER colours
_RAMP = np.array([[0, 0, 255], [0, 255, 255], [0, 200, 0], [255, 255, 0], [255, 0, 0]], float)
BAND_COLOURS = ((0, 90, 255), (255, 215, 0), (230, 0, 0))  # persistent-like, plateau-like, washout-like


def ser_ramp(n: int = 256) -> np.ndarray:
    """(n, 3) uint8 colours from blue (low SER) through cyan, green, yellow to red (high SER)."""
    x = np.linspace(0, len(_RAMP) - 1, n)
    rgb = np.stack([np.interp(x, np.arange(len(_RAMP)), _RAMP[:, k]) for k in range(3)], axis=1)
    return np.round(rgb).astype(np.uint8)


def ser_ramp_table(ser_max: float = 2.0, n: int = 256) -> str:
    """Slicer colour table text for the continuous SER map (entry i <-> SER = i / (n-1) * ser_max)."""
    lines = [f"# BreastTumorSeg SER colour ramp: entry i is SER {ser_max:g} * i / {n - 1}.",
             f"# In Slicer set the SER volume's lookup table to this and Window/Level to {ser_max:g} / {ser_max / 2:g}."]
    for i, (r, g, b) in enumerate(ser_ramp(n)):
        lines.append(f"{i} ser_{ser_max * i / (n - 1):.3f} {r} {g} {b} 255")
    return "\n".join(lines) + "\n"


def ser_band_table(edges: tuple[float, float] = (0.9, 1.3)) -> str:
    """Slicer colour table text for the SER band label map (0 transparent, 1-3 bands)."""
    lo, hi = edges
    names = (f"SER_below_{lo:g}_persistent-like", f"SER_{lo:g}_to_{hi:g}_plateau-like", f"SER_above_{hi:g}_washout-like")
    lines = ["# BreastTumorSeg SER bands (label map values)", "0 background 0 0 0 0"]
    for i, ((r, g, b), name) in enumerate(zip(BAND_COLOURS, names), start=1):
        lines.append(f"{i} {name} {r} {g} {b} 255")
    return "\n".join(lines) + "\n"


def ser_band_image(maps: KineticMaps, mask: sitk.Image, edges: tuple[float, float] = (0.9, 1.3)) -> sitk.Image:
    """uint8 label map of SER bands inside *mask* (1 < lo, 2 lo-hi, 3 > hi) on the exam grid."""
    if not maps.ser_available:
        raise InputError("SER bands need SER, which needs two or more post-contrast phases",
                         fix="load every post-contrast phase of the exam")
    inside = sitk.GetArrayFromImage(mask) > 0
    return from_array(ser_band_codes(maps.array("ser"), inside, edges), maps.reference)
