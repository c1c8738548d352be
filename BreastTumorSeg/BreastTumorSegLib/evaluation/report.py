"""Reader-study report: CSV and JSON of every number, PNG figures, and a Markdown summary.

:func:`write_report` writes, all or nothing (:class:`io.StagedOutputs`):

* ``per_case.csv`` — every metric for every (case, rater, reference) pair;
* ``summary.json`` — every summary number (:attr:`ReaderStudyResult.summary`);
* ``summary.md`` — tables and a paragraph a study coordinator can paste into a paper;
* ``dice_distribution.png`` — Dice of each reader and of the model against each reference;
* ``delta_dice.png`` — per-case ΔDice (model − reader) for each reference, with the equivalence band;
* ``roc.png`` + ``roc.csv`` — voxel-wise ROC of the probability map (when given);
* ``threshold.png`` + ``threshold.csv`` — Dice against threshold on tuning and evaluation cases;
* ``hybrid.png`` + ``hybrid.csv`` — Wu et al. hybrid AUC against λ (when scores are given);
* ``arms.png`` + ``arms.csv`` — Dice and active time per case in each arm (a table with an arm column).

Figures use matplotlib's object API with the Agg canvas (no pyplot, no display, thread-safe).
"""
from __future__ import annotations

import csv
import io as _io
import json
import math
from pathlib import Path

import numpy as np

from ..io.atomic import StagedOutputs
from .readerstudy import ReaderStudyResult, reference_name

MODEL_COLOR = "#4d4d4d"
READER_COLORS = ["#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#e6ab02", "#a6761d", "#1f78b4"]


def _color(i: int) -> str:
    return READER_COLORS[i % len(READER_COLORS)]


def _ranking(s: dict) -> str:
    """``a > b = c``: readers in order of median Dice, '=' between equal medians (3 decimals)."""
    order = s["reader_order"]
    text = order[0] if order else ""
    for prev, r in zip(order, order[1:]):
        same = _fmt(s["readers"][prev]["median_dice"]) == _fmt(s["readers"][r]["median_dice"])
        text += f" {'=' if same else '>'} {r}"
    return text


def fmt_p(p: float) -> str:
    """p-values as papers print them: three decimals, scientific below 0.001."""
    if p is None or (isinstance(p, float) and math.isnan(p)):
        return "n/a"
    return f"{p:.1e}" if p < 0.001 else f"{p:.3f}"


def _fmt(v, nd: int = 3) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    return f"{v:.{nd}f}"


def _ci(ci, nd: int = 3) -> str:
    return f"[{_fmt(ci[0], nd)}, {_fmt(ci[1], nd)}]"


# ------------------------------------------------------------------------------------ tables
def _csv_text(rows: list[dict], fields: list[str] | None = None) -> str:
    buf = _io.StringIO()
    fields = fields or list(dict.fromkeys(k for r in rows for k in r))
    w = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: ("" if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()})
    return buf.getvalue()


def per_case_csv(res: ReaderStudyResult) -> str:
    return _csv_text(res.rows)


def roc_csv(res: ReaderStudyResult, max_points: int = 200) -> str:
    rows = []
    for ref, curve in res.roc.items():
        d = curve.as_dict(max_points)
        for f, t, th in zip(d["fpr"], d["tpr"], d["thresholds"]):
            rows.append({"reference": ref, "fpr": f, "tpr": t, "threshold": "" if th is None else th})
    return _csv_text(rows, ["reference", "fpr", "tpr", "threshold"])


def threshold_csv(res: ReaderStudyResult) -> str:
    t = res.tuning
    test = t.get("mean_dice_test") or [float("nan")] * len(t["thresholds"])
    rows = [{"threshold": th, "mean_dice_tune": a, "mean_dice_test": b}
            for th, a, b in zip(t["thresholds"], t["mean_dice_tune"], test)]
    return _csv_text(rows)


def hybrid_csv(res: ReaderStudyResult) -> str:
    rows = [{"reader": h.reader, "lambda": float(lam), "auc": float(a)}
            for h in res.hybrid for lam, a in zip(h.lambdas, h.auc)]
    return _csv_text(rows, ["reader", "lambda", "auc"])


# ----------------------------------------------------------------------------------- figures
def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _jitter(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-0.12, 0.12, n)


def dice_figure(res: ReaderStudyResult):
    """Per reference: box + points of the reader it leaves out and of the model."""
    readers, model = res.readers, res.model_name
    fig = _figure(1.6 + 1.5 * len(readers), 4.2)
    ax = fig.add_subplot()
    for i, r in enumerate(readers):
        ref = reference_name(r)
        for k, (who, color) in enumerate([(r, _color(i)), (model, MODEL_COLOR)]):
            v = res.values(who, ref)
            x = i + (k - 0.5) * 0.38
            ax.boxplot([v], positions=[x], widths=0.3, showfliers=False, patch_artist=True,
                       boxprops=dict(facecolor=color, alpha=0.25, edgecolor=color),
                       medianprops=dict(color=color, linewidth=2), whiskerprops=dict(color=color),
                       capprops=dict(color=color))
            ax.scatter(x + _jitter(v.size, 10 * i + k), v, s=12, color=color, alpha=0.8, zorder=3,
                       label=(model if (i == 0 and k == 1) else None))
    ax.set_xticks(range(len(readers)))
    ax.set_xticklabels([f"{r}\nvs {reference_name(r)}" for r in readers])
    ax.set_xlim(-0.6, len(readers) - 0.4)
    ax.set_ylabel("Dice")
    ax.set_ylim(max(0.0, _finite_min(res) - 0.05), 1.0)
    ax.grid(axis="y", alpha=0.3)
    ax.set_title(f"Dice against leave-one-out references ({res.config.reference} of the other readers); "
                 f"left box: reader, right box: {model}", fontsize=9)
    ax.legend(loc="lower left", fontsize=8, frameon=False)
    return fig


def _finite_min(res: ReaderStudyResult) -> float:
    v = [r["dice"] for r in res.rows if r["split"] == "test" and np.isfinite(r["dice"])]
    return float(min(v)) if v else 0.0


def delta_figure(res: ReaderStudyResult):
    """Per-case ΔDice (model − reader) for each reference, plus the per-case mean, with the TOST band."""
    s = res.summary
    low, high = s["comparison"]["bounds"]["low"], s["comparison"]["bounds"]["high"]
    groups = [(f"{r}\n(ref {reference_name(r)})", res.delta(r), _color(i)) for i, r in enumerate(res.readers)]
    groups.append(("mean over\nreaders", res.mean_delta(), MODEL_COLOR))
    fig = _figure(1.6 + 1.4 * len(groups), 4.2)
    ax = fig.add_subplot()
    ax.axhspan(low, high, color="#9ecae1", alpha=0.35, lw=0, label=f"equivalence bounds [{low:+.3f}, {high:+.3f}]")
    ax.axhline(0.0, color="black", lw=0.8)
    for i, (label, d, color) in enumerate(groups):
        ax.boxplot([d], positions=[i], widths=0.45, showfliers=False,
                   medianprops=dict(color=color, linewidth=2), boxprops=dict(color=color),
                   whiskerprops=dict(color=color), capprops=dict(color=color))
        ax.scatter(i + _jitter(d.size, 100 + i), d, s=12, color=color, alpha=0.8, zorder=3)
    ax.set_xticks(range(len(groups)))
    ax.set_xticklabels([g[0] for g in groups], fontsize=8)
    ax.set_ylabel(f"ΔDice = {res.model_name} − reader (per case)")
    ax.grid(axis="y", alpha=0.3)
    c = s["comparison"]
    verdict = "equivalent" if c["equivalent"] else "not shown equivalent"
    ax.set_title(f"Per-case ΔDice; overall Wilcoxon p = {fmt_p(c['wilcoxon_p'])}, TOST p = {fmt_p(c['tost_p'])} "
                 f"({verdict} at α = {res.config.alpha})", fontsize=9)
    ax.legend(loc="lower right", fontsize=8, frameon=False)
    return fig


def roc_figure(res: ReaderStudyResult):
    """ROC per reference: full curve (linear) and the low-FPR region (log FPR)."""
    fig = _figure(9.5, 4.2)
    ax_lin, ax_log = fig.subplots(1, 2)
    for i, r in enumerate(res.readers):
        ref = reference_name(r)
        c = res.roc[ref]
        lab = f"{ref}: AUC {c.auc:.4f}"
        ax_lin.plot(c.fpr, c.tpr, color=_color(i), lw=1.5, label=lab)
        keep = c.fpr > 0
        ax_log.plot(c.fpr[keep], c.tpr[keep], color=_color(i), lw=1.5, label=lab)
    ax_lin.plot([0, 1], [0, 1], color="gray", lw=0.8, ls="--")
    ax_lin.set(xlabel="false-positive rate (voxels)", ylabel="true-positive rate (voxels)",
               xlim=(0, 1), ylim=(0, 1.01), title=f"voxel-wise ROC of the probability map ({res.roc_region})")
    ax_log.set_xscale("log")
    ax_log.set(xlabel="false-positive rate (voxels, log scale)", ylabel="true-positive rate",
               ylim=(0, 1.01), title="same curves, low false-positive rates")
    for ax in (ax_lin, ax_log):
        ax.grid(alpha=0.3)
        ax.title.set_fontsize(9)
    ax_lin.legend(loc="lower right", fontsize=8, frameon=False)
    return fig


def threshold_figure(res: ReaderStudyResult):
    t = res.tuning
    fig = _figure(5.5, 3.8)
    ax = fig.add_subplot()
    ax.plot(t["thresholds"], t["mean_dice_tune"], "o-", color="#1f78b4", ms=3,
            label=f"tuning cases (n = {len(res.tune_cases)})")
    if t.get("mean_dice_test"):
        ax.plot(t["thresholds"], t["mean_dice_test"], "s--", color="#e31a1c", ms=3,
                label=f"evaluation cases (n = {len(res.eval_cases)})")
    ax.axvline(t["chosen"], color="black", lw=0.8, ls=":", label=f"chosen threshold {t['chosen']:.2f}")
    ax.set(xlabel="probability threshold", ylabel="mean Dice (all references)", xlim=(0, 1))
    ax.set_title("threshold chosen on the tuning cases, applied to the evaluation cases", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, frameon=False)
    return fig


def hybrid_figure(res: ReaderStudyResult):
    fig = _figure(5.5, 3.8)
    ax = fig.add_subplot()
    for i, h in enumerate(res.hybrid):
        idx = res.readers.index(h.reader) if h.reader in res.readers else i
        ax.plot(h.lambdas, h.auc, "-", color=_color(idx), lw=1.5,
                label=f"{h.reader}: {h.reader_auc:.3f} alone, {h.auc_at(0.5):.3f} at λ = 0.5")
    ax.axhline(res.hybrid[0].model_auc, color=MODEL_COLOR, ls="--", lw=1,
               label=f"{res.model_name} alone: {res.hybrid[0].model_auc:.3f}")
    ax.set(xlabel="λ  (score = λ·reader + (1 − λ)·model)", ylabel="AUC (malignant vs benign cases)", xlim=(0, 1))
    ax.set_title("human–AI hybrid (Wu et al. 2019)", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, frameon=False)
    return fig


# ---------------------------------------------------------------------------------- markdown
def summary_markdown(res: ReaderStudyResult, figures: list[str]) -> str:
    s = res.summary
    st, comp, mod = s["study"], s["comparison"], s["model"]
    readers, model = res.readers, res.model_name
    n_eval = st["n_eval_cases"]
    alpha = st["alpha"]
    method = {"intersection": "the intersection", "majority": "the majority vote",
              "staple": "the STAPLE consensus"}[st["reference_method"]]
    lines = [f"# Reader study: {model} versus {len(readers)} readers", ""]
    design = (f"{len(readers)} readers ({', '.join(readers)}) segmented {st['n_cases']} cases. "
              f"Each reader was scored against {method} of the other readers' masks (leave-one-out "
              f"reference); the model was scored against the same {len(readers)} references. ")
    if st["n_tune_cases"]:
        design += (f"{st['n_tune_cases']} cases were used only to choose the model's probability threshold "
                   f"({mod['threshold']['value']:.2f}); the statistics use the other {n_eval} cases. ")
    else:
        design += f"All {n_eval} cases are evaluation cases. "
    design += (f"Medians carry 95% percentile-bootstrap confidence intervals over cases "
               f"({st['bootstrap']['n_resamples']} resamples). ΔDice is model Dice minus reader Dice on the "
               f"reader's reference. Tests: two-sided Wilcoxon signed-rank (Holm-adjusted over readers) and "
               f"equivalence by two one-sided Wilcoxon signed-rank tests (TOST, α = {alpha}).")
    lines += ["## Design", "", design, ""]

    lines += ["## Dice per reader and reference", "",
              f"| Reader | Reference | Reader median Dice [95% CI] | {model} median Dice [95% CI] | "
              "Median ΔDice [95% CI] | Wilcoxon p (Holm) | TOST p |",
              "|---|---|---|---|---|---|---|"]
    for r in readers:
        b = s["readers"][r]
        lines.append(f"| {r} | {b['reference']} | {_fmt(b['median_dice'])} {_ci(b['dice_ci95'])} | "
                     f"{_fmt(b['model_median_dice'])} {_ci(b['model_dice_ci95'])} | "
                     f"{b['median_delta_dice']:+.3f} {_ci(b['delta_dice_ci95'])} | "
                     f"{fmt_p(b['wilcoxon_p'])} ({fmt_p(b['wilcoxon_p_holm'])}) | {fmt_p(b['tost_p'])} |")
    lines += ["", f"Readers ranked by median Dice: {_ranking(s)}.", ""]

    lines += ["## Other metrics (medians over cases)", "",
              "| Rater | Reference | Dice (2D, largest reference slice) | HD95 mm | Sensitivity | Precision |",
              "|---|---|---|---|---|---|"]
    for r in readers:
        b = s["readers"][r]
        lines.append(f"| {r} | {b['reference']} | {_fmt(b['median_dice_2d'])} | {_fmt(b['median_hd95_mm'], 2)} | "
                     f"{_fmt(b['median_sensitivity'])} | {_fmt(b['median_precision'])} |")
    for r in readers:
        ref = reference_name(r)
        lines.append(f"| {model} | {ref} | {_fmt(mod['median_dice_2d'][ref])} | "
                     f"{_fmt(mod['median_hd95_mm'][ref], 2)} | "
                     f"{_fmt(mod['median_sensitivity'][ref])} | {_fmt(mod['median_precision'][ref])} |")
    lines += ["", "HD95: the larger of the two directed 95th percentiles of surface-voxel distances.", ""]

    b = comp["bounds"]
    verdict = "**equivalent**" if comp["equivalent"] else "**not shown to be equivalent**"
    t = comp["tost"]
    lines += ["## Model versus readers", "",
              f"Per case, ΔDice averaged over the {len(readers)} references had median "
              f"{comp['median_delta_dice']:+.3f} {_ci(comp['delta_dice_ci95'])} (n = {comp['n_cases']}); "
              f"Wilcoxon signed-rank p = {fmt_p(comp['wilcoxon_p'])}.", "",
              f"Equivalence bounds [{b['low']:+.3f}, {b['high']:+.3f}] ({b['source']}). "
              f"TOST: H0 ΔDice ≤ {b['low']:+.3f} p = {fmt_p(t['p_lower'])}; H0 ΔDice ≥ {b['high']:+.3f} "
              f"p = {fmt_p(t['p_upper'])}; the model is {verdict} to the readers at α = {alpha} "
              f"(TOST p = {fmt_p(comp['tost_p'])})."]
    if comp.get("note"):
        lines += ["", f"**Note:** {comp['note']}."]
    if comp.get("tost_paired_t"):
        pt = comp["tost_paired_t"]
        lines += ["", f"Cross-check with a paired t TOST on the mean difference ({pt['estimate']:+.3f}): "
                      f"p = {fmt_p(pt['p_value'])} ({'equivalent' if pt['equivalent'] else 'not equivalent'})."]
    lines.append("")

    if mod.get("auc"):
        caveat = ("" if "region of interest" in res.roc_region and "whole volume" not in res.roc_region else
                  " **Caution:** over the whole volume the many easy background voxels inflate the AUC (towards "
                  "0.999); give the breast mask in the table's roi column (`breasttumorseg study export` does).")
        lines += ["## Probability map", "", f"Voxel-wise ROC pooled over the evaluation cases, {res.roc_region}.{caveat}",
                  "",
                  "| Reference | Voxel-wise AUC |", "|---|---|"]
        lines += [f"| {ref} | {auc:.4f} |" for ref, auc in mod["auc"].items()]
        lines += ["", f"Threshold: {mod['threshold']['value']:.2f} ({mod['threshold']['source']}).", ""]

    if s.get("hybrid"):
        lines += ["## Human–AI hybrid (Wu et al. 2019)", "",
                  f"| Reader | Reader AUC | {model} AUC | Hybrid AUC at λ = 0.5 | Best λ | Best AUC |",
                  "|---|---|---|---|---|---|"]
        for h in s["hybrid"]:
            lines.append(f"| {h['reader']} | {h['reader_auc']:.3f} | {h['model_auc']:.3f} | "
                         f"{h['hybrid_auc_at_0.5']:.3f} | {h['best_lambda']:.2f} | {h['best_auc']:.3f} |")
        cvs = [h for h in s["hybrid"] if h.get("cv")]
        if cvs:
            lines += ["", "| Reader | λ per fold (cross-validated) | Cross-validated hybrid AUC |", "|---|---|---|"]
            lines += [f"| {h['reader']} | {', '.join(f'{v:.2f}' for v in h['cv']['lambda_per_fold'])} | "
                      f"{h['cv']['auc']:.3f} |" for h in cvs]
            lines += ["", f"Cross-validation: {cvs[0]['cv']['method']}."]
        lines += ["", "The best λ is chosen on the same cases and is therefore optimistic (in-sample); "
                      "λ = 0.5 is pre-specified and the cross-validated AUC estimates a λ chosen from data.", ""]

    if s.get("arms"):
        lines += arms_markdown(s["arms"], model, mod)
    lines += ["## Suggested text", "", paper_paragraph(res), ""]
    if figures:
        lines += ["## Figures", ""] + [f"![{f}]({f})" for f in figures] + [""]
    return "\n".join(lines)


def arms_markdown(arms: dict, model: str, mod: dict) -> list[str]:
    """The arms section: Dice and time per case in each arm (AI-assisted vs from scratch)."""
    lines = ["## Arms: time and Dice per case", "",
             f"Every arm is scored against {arms['reference']}; per case the readers' values are averaged, "
             "then the median over cases is given with a bootstrap 95% CI. Time is the active reading time "
             "(idle periods and pauses excluded); imported masks have no time.", "",
             "| Arm | Cases | Median Dice [95% CI] | Median time per case (s) [95% CI] |", "|---|---|---|---|"]
    for a, b in arms["arms"].items():
        lines.append(f"| {a} | {b['n_cases']} | {_fmt(b['median_dice'])} {_ci(b['dice_ci95'])} | "
                     f"{_fmt(b['median_time_s'], 1)} {_ci(b['time_ci95'], 1)} |")
    mm = [v for v in mod["median_dice"].values() if v == v]
    if mm:
        lines.append(f"| {model} (for comparison) | | {min(mm):.3f}–{max(mm):.3f} over the references | – |")
    lines += ["", "| Reader | " + " | ".join(f"{a} Dice | {a} time (s)" for a in arms["arms"]) + " |",
              "|---|" + "---|---|" * len(arms["arms"])]
    readers = next(iter(arms["arms"].values()))["readers"]
    for r in readers:
        lines.append(f"| {r} | " + " | ".join(f"{_fmt(b['readers'][r]['median_dice'])} | "
                                             f"{_fmt(b['readers'][r]['median_time_s'], 1)}"
                                             for b in arms["arms"].values()) + " |")
    comp = arms.get("comparison")
    if comp:
        lines.append("")
        for key, what, nd in (("dice", "Dice", 3), ("time_s", "time per case (s)", 1)):
            c = comp[key]
            if c:
                lines.append(f"{what}: median {comp['definition']} {c['median_difference']:+.{nd}f} "
                             f"{_ci(c['ci95'], nd)}, Wilcoxon signed-rank p = {fmt_p(c['wilcoxon_p'])} "
                             f"(n = {c['n_cases']}).  ")
    lines.append("")
    return lines


def arms_csv(res: ReaderStudyResult) -> str:
    return _csv_text(res.arm_rows, ["case", "reader", "arm", "reference", "dice", "time_s"])


def arms_figure(res: ReaderStudyResult):
    arms = list(dict.fromkeys(r["arm"] for r in res.arm_rows))
    fig = _figure(8.0, 3.4)
    ax1, ax2 = fig.subplots(1, 2)
    for k, (ax, key, label) in enumerate(((ax1, "dice", "Dice against the leave-one-out reference"),
                                          (ax2, "time_s", "active time per case (s)"))):
        data = [np.array([r[key] for r in res.arm_rows if r["arm"] == a], float) for a in arms]
        data = [d[np.isfinite(d)] for d in data]
        ax.boxplot([d if d.size else np.array([np.nan]) for d in data], showfliers=False)
        ax.set_xticks(range(1, len(arms) + 1), arms)
        for i, d in enumerate(data):
            ax.scatter(i + 1 + _jitter(d.size, i + 10 * k), d, s=10, alpha=0.6, color=_color(i))
        ax.set_ylabel(label)
    fig.suptitle("Readers per arm")
    return fig


def _span(lo: float, hi: float, nd: int, over: str) -> str:
    a, b = f"{lo:.{nd}f}", f"{hi:.{nd}f}"
    return f"{a} against every reference" if a == b else f"{a}–{b} (range over {over})"


def paper_paragraph(res: ReaderStudyResult) -> str:
    """One paragraph of results in the style of a paper, generated from the numbers."""
    s = res.summary
    comp, mod = s["comparison"], s["model"]
    readers = res.readers
    rm = [s["readers"][r]["median_dice"] for r in readers]
    mm = list(mod["median_dice"].values())
    method = {"intersection": "intersection", "majority": "majority vote", "staple": "STAPLE consensus"}[
        res.config.reference]
    text = (f"Against leave-one-out {method} references, the model reached a median Dice of "
            f"{_span(min(mm), max(mm), 2, f'the {len(readers)} references')}, compared with "
            f"{min(rm):.2f}–{max(rm):.2f} for the {len(readers)} readers "
            f"({', '.join(f'{r} {v:.2f}' for r, v in zip(readers, rm))}). ")
    if comp["wilcoxon_p"] >= res.config.alpha:
        text += (f"The per-case difference between model and readers was not significant "
                 f"(Wilcoxon signed-rank p = {fmt_p(comp['wilcoxon_p'])}, n = {comp['n_cases']}). ")
    else:
        direction = "higher" if comp["median_delta_dice"] > 0 else "lower"
        text += (f"The model's Dice was significantly {direction} than the readers' "
                 f"(median per-case difference {comp['median_delta_dice']:+.3f}, Wilcoxon signed-rank "
                 f"p = {fmt_p(comp['wilcoxon_p'])}, n = {comp['n_cases']}). ")
    b, t = comp["bounds"], comp["tost"]
    src = ("set by the weakest and the strongest reader (exploratory: derived from the same readers, not "
           "prespecified)") if res.config.margins is None else "pre-specified"
    if comp["equivalent"]:
        text += (f"A two one-sided test with equivalence bounds {src} ([{b['low']:+.3f}, {b['high']:+.3f}]) "
                 f"showed equivalence (p = {fmt_p(t['p_lower'])} and {fmt_p(t['p_upper'])}).")
    else:
        text += (f"Equivalence within bounds {src} ([{b['low']:+.3f}, {b['high']:+.3f}]) was not shown "
                 f"(two one-sided tests p = {fmt_p(t['p_lower'])} and {fmt_p(t['p_upper'])}).")
    if mod.get("auc"):
        aucs = list(mod["auc"].values())
        text += f" The voxel-wise AUC of the probability map was {_span(min(aucs), max(aucs), 4, 'references')}."
    return text


# ------------------------------------------------------------------------------------ writer
def write_report(res: ReaderStudyResult, out_dir: str | Path, overwrite: bool = False) -> list[Path]:
    """Write every report file into *out_dir* (all appear, or none; existing files need *overwrite*)."""
    figures: list[tuple[str, object]] = [("dice_distribution.png", dice_figure(res)),
                                         ("delta_dice.png", delta_figure(res))]
    if res.roc:
        figures.append(("roc.png", roc_figure(res)))
    if res.tuning:
        figures.append(("threshold.png", threshold_figure(res)))
    if res.hybrid:
        figures.append(("hybrid.png", hybrid_figure(res)))
    if res.arm_rows:
        figures.append(("arms.png", arms_figure(res)))
    with StagedOutputs(out_dir, overwrite) as staged:
        staged.path("per_case.csv").write_text(per_case_csv(res))
        staged.path("summary.json").write_text(json.dumps(_finite(res.summary), indent=2) + "\n")
        staged.path("summary.md").write_text(summary_markdown(res, [f for f, _ in figures]))
        if res.roc:
            staged.path("roc.csv").write_text(roc_csv(res))
        if res.tuning:
            staged.path("threshold.csv").write_text(threshold_csv(res))
        if res.hybrid:
            staged.path("hybrid.csv").write_text(hybrid_csv(res))
        if res.arm_rows:
            staged.path("arms.csv").write_text(arms_csv(res))
        for name, fig in figures:
            fig.savefig(staged.path(name), metadata={"Software": None})
        return staged.commit()


def _finite(obj):
    """JSON has no NaN: write ``null`` instead."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    if isinstance(obj, np.floating):
        return _finite(float(obj))
    if isinstance(obj, (np.integer, np.bool_)):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return _finite(obj.tolist())
    if isinstance(obj, Path):
        return str(obj)
    return obj
