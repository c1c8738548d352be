"""The follow-up picture: each followed lesion at every visit, same plane in the baseline frame,
and the FTV over time.

One row per track (the targets first, then the largest; at most :data:`MAX_TRACKS`): for each
visit, the early subtraction (first post-contrast minus pre-contrast) of that visit resampled into
the baseline frame, the baseline's acquisition slice through the track's centroid, ``HALF_FIELD_MM``
around it, with the track's outline at that visit (yellow). The last row: FTV of each track and in
total against days since the baseline (visit number when dates are unknown), with the RECIST
category of each later visit.
"""
from __future__ import annotations

import datetime as dt

import numpy as np
import SimpleITK as sitk

MAX_TRACKS = 4
HALF_FIELD_MM = 35.0


def _x_axis(res) -> tuple[list[float], str]:
    dates = [v.date for v in res.visits]
    if all(dates):
        d0 = dt.date.fromisoformat(dates[0])
        return [float((dt.date.fromisoformat(d) - d0).days) for d in dates], "days since baseline"
    return [float(k + 1) for k in range(len(dates))], "visit"


def render_followup(res, path) -> None:
    """Write the picture of :class:`~.run.FollowupResult` *res* to *path* (PNG)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    n = len(res.visits)
    base = res.baseline.exam.reference
    targets = res.table["targets"]
    size = {t.track_id: max((r["volume_ml"] for r in res.table["lesions"] if r["track"] == t.track_id), default=0)
            for t in res.tracks}
    order = sorted(res.tracks, key=lambda t: (t.track_id not in targets, -size[t.track_id]))[:MAX_TRACKS]
    subs, tracks = [], []
    for k, v in enumerate(res.visits):
        phases = v.result.registered_phases or list(v.exam.phases)
        subs.append(sitk.GetArrayFromImage(res.visit_in_baseline(k, sitk.Subtract(phases[1], phases[0]))))
        tracks.append(sitk.GetArrayFromImage(res.tracks_in_baseline(k)))
    rows = len(order) + 1
    fig = Figure(figsize=(2.4 * max(n, 2), 2.4 * rows + 0.4))
    FigureCanvasAgg(fig)
    sp = np.asarray(base.GetSpacing())  # x, y, z
    vmax = float(np.percentile(subs[0], 99.5)) or 1.0
    for r, t in enumerate(order):
        idx = base.TransformPhysicalPointToContinuousIndex(tuple(float(c) for c in t.centroid))
        z = int(np.clip(round(idx[2]), 0, subs[0].shape[0] - 1))
        hy, hx = int(HALF_FIELD_MM / sp[1]), int(HALF_FIELD_MM / sp[0])
        y0, x0 = int(round(idx[1])), int(round(idx[0]))
        ys = slice(max(0, y0 - hy), y0 + hy)
        xs = slice(max(0, x0 - hx), x0 + hx)
        for k in range(n):
            ax = fig.add_subplot(rows, n, r * n + k + 1)
            ax.imshow(subs[k][z, ys, xs], cmap="gray", vmin=0, vmax=vmax, aspect=sp[1] / sp[0])
            m = tracks[k][z, ys, xs] == t.track_id
            if m.any():
                ax.contour(m.astype(float), levels=[0.5], colors="yellow", linewidths=0.8)
            row = next((x for x in res.table["lesions"] if x["track"] == t.track_id and x["visit"] == k + 1), None)
            label = "-" if row is None else f"{row['status']}\n{row['volume_ml']:.2f} mL, {row['longest_diameter_mm']:.0f} mm"
            ax.set_title(f"lesion {t.track_id}{' (target)' if t.track_id in targets else ''} · visit {k + 1}\n{label}",
                         fontsize=7)
            ax.set_xticks([])
            ax.set_yticks([])
    ax = fig.add_subplot(rows, 1, rows)
    x, xlabel = _x_axis(res)
    for t in order:
        y = [next((r["ftv_ml"] for r in res.table["lesions"] if r["track"] == t.track_id and r["visit"] == k + 1),
                  np.nan) for k in range(n)]
        ax.plot(x, y, marker="o", label=f"lesion {t.track_id}")
    ax.plot(x, [e["ftv_ml"] for e in res.table["exams"]], marker="s", color="black", label="total")
    for xi, e in zip(x[1:], res.table["exams"][1:]):
        ax.annotate(e["recist"], (xi, e["ftv_ml"]), textcoords="offset points", xytext=(0, 6), fontsize=8,
                    ha="center")
    ax.set_xlabel(xlabel, fontsize=8)
    ax.set_ylabel("FTV (mL)", fontsize=8)
    ax.legend(fontsize=7)
    ax.tick_params(labelsize=7)
    fig.suptitle("Follow-up: each lesion in the baseline frame (early subtraction), FTV over time", fontsize=9)
    fig.tight_layout()
    fig.savefig(str(path), format="png", dpi=100)
