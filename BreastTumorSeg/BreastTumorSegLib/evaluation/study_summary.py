"""The numbers of a reader-study report: per reader, the model, the overall comparison, hybrid.

:func:`summarize` turns a :class:`~.readerstudy.ReaderStudyResult` into the JSON-ready summary
that :mod:`report` writes (summary.json / summary.md).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from . import stats as S
from ..core.errors import InputError
from .arms import median_finite as _med
from .references import reference_name
from .study_tables import StudyCase

if TYPE_CHECKING:
    from .study_types import ReaderStudyResult


def has_mask(c: StudyCase) -> bool:
    return getattr(c, "model_mask", None) is not None


def hybrid_curves(scores, malignant, readers, model_name, normalize: str = "none") -> list[S.HybridCurve]:
    """Wu et al. hybrid curve (λ·reader + (1 − λ)·model) of every reader with scores.
    *normalize* ``"rank"`` for scores on another scale than the model's (BI-RADS)."""
    if model_name not in scores:
        raise InputError(f"the scores table has no rows for the model ({model_name!r})", None,
                         "add the model's malignancy score for every case")
    out = []
    for r in readers:
        if r not in scores:
            continue
        cases = [c for c in malignant if c in scores[r] and c in scores[model_name]]
        if len(cases) < 2:
            raise InputError(f"reader {r} and the model share fewer than two scored cases", "--scores",
                             "give the reader's and the model's score for the same cases, at least one malignant "
                             "and one not")
        try:
            out.append(S.hybrid_auc([scores[r][c] for c in cases], [scores[model_name][c] for c in cases],
                                    [malignant[c] for c in cases], normalize=normalize, reader=r))
        except ValueError as exc:
            raise InputError(f"hybrid AUC of reader {r}: {exc}", None,
                             "score malignant and benign cases (the truth column holds both 1 and 0)") from None
    return out



def summarize(res: ReaderStudyResult, threshold: float, thresholded: bool) -> dict:
    cfg = res.config
    readers, model = res.readers, res.model_name
    refs = [reference_name(r) for r in readers]
    ci = lambda v: list(S.bootstrap_ci(v[np.isfinite(v)], np.median, 0.95, cfg.n_bootstrap, cfg.seed))  # noqa: E731

    reader_median = {r: _med(res.values(r, reference_name(r))) for r in readers}
    if cfg.margins is not None:
        low, high = map(float, cfg.margins)
        bounds_source = "user-given margins"
    else:
        mean_m = float(np.mean(list(reader_median.values())))
        weakest = min(readers, key=reader_median.get)
        strongest = max(readers, key=reader_median.get)
        low, high = reader_median[weakest] - mean_m, reader_median[strongest] - mean_m
        bounds_source = (f"exploratory, not prespecified: derived from the same readers: weakest {weakest} (median Dice {reader_median[weakest]:.3f}) and strongest "
                         f"{strongest} ({reader_median[strongest]:.3f}) minus the mean of the readers' "
                         f"median Dice ({mean_m:.3f})")
        if not low < 0 < high:
            raise InputError("all readers have the same median Dice, so the readers give no equivalence bounds",
                             None, "give the margins explicitly (e.g. --margins -0.05 0.05)")

    per_reader_tests = {r: S.wilcoxon_signed_rank(res.delta(r)) for r in readers}
    holm = dict(zip(readers, S.holm([per_reader_tests[r].p_value for r in readers])))
    order = sorted(readers, key=lambda r: -reader_median[r])

    median_dice = {r: {reference_name(r): reader_median[r]} for r in readers}
    median_dice[model] = {ref: _med(res.values(model, ref)) for ref in refs}

    reader_block = {}
    for r in readers:
        ref = reference_name(r)
        d = res.delta(r)
        tost = S.tost_wilcoxon(d, low, high, cfg.alpha)
        w = per_reader_tests[r]
        reader_block[r] = {
            "reference": ref, "rank": order.index(r) + 1,
            "median_dice": reader_median[r], "dice_ci95": ci(res.values(r, ref)),
            "mean_dice": float(np.mean(res.values(r, ref))),
            "median_dice_2d": _med(res.values(r, ref, "dice_2d")),
            "median_hd95_mm": _med(res.values(r, ref, "hd95_mm")),
            "median_sensitivity": _med(res.values(r, ref, "sensitivity")),
            "median_precision": _med(res.values(r, ref, "precision")),
            "model_median_dice": median_dice[model][ref], "model_dice_ci95": ci(res.values(model, ref)),
            "median_delta_dice": float(np.median(d)), "delta_dice_ci95": ci(d),
            "wilcoxon_p": w.p_value, "wilcoxon_p_holm": holm[r], "tost_p": tost.p_value,
            "wilcoxon": w.as_dict(), "tost": tost.as_dict(),
        }

    d = res.mean_delta()
    overall_w = S.wilcoxon_signed_rank(d)
    overall_t = S.tost_wilcoxon(d, low, high, cfg.alpha)
    t_check = S.tost_paired_t(d, low, high, cfg.alpha) if d.size >= 2 else None
    model_block = {
        "name": model, "median_dice": median_dice[model],
        "dice_ci95": {ref: ci(res.values(model, ref)) for ref in refs},
        "median_dice_2d": {ref: _med(res.values(model, ref, "dice_2d")) for ref in refs},
        "median_hd95_mm": {ref: _med(res.values(model, ref, "hd95_mm")) for ref in refs},
        "median_sensitivity": {ref: _med(res.values(model, ref, "sensitivity")) for ref in refs},
        "median_precision": {ref: _med(res.values(model, ref, "precision")) for ref in refs},
        "lesions_detected": {ref: _lesions(res, model, ref) for ref in refs},
        "auc": {ref: res.roc[ref].auc for ref in refs} if res.roc else None,
        "threshold": {"value": threshold,
                      "source": ("chosen on the tuning cases" if res.tuning else "fixed (no tuning cases)")
                      if thresholded else "not used (the model's masks were given)"},
    }
    comparison = {
        "delta_definition": "per case, mean over readers j of (model Dice − reader j Dice), both against "
                            "the reference that leaves reader j out",
        "n_cases": int(d.size), "median_delta_dice": float(np.median(d)), "delta_dice_ci95": ci(d),
        "wilcoxon_p": overall_w.p_value, "tost_p": overall_t.p_value, "equivalent": overall_t.equivalent,
        "bounds": {"low": low, "high": high, "source": bounds_source},
        "margins_prespecified": cfg.margins is not None,
        "wilcoxon": overall_w.as_dict(), "tost": overall_t.as_dict(),
        "tost_paired_t": t_check.as_dict() if t_check else None,
        "note": None,
    }
    if 0.5 ** d.size >= cfg.alpha:  # the most extreme exact one-sided signed-rank p is 1/2^n
        comparison["note"] = (f"with {d.size} cases the smallest possible one-sided Wilcoxon p-value is "
                              f"1/2^{d.size} = {0.5 ** d.size:.3g} ≥ α = {cfg.alpha}, so equivalence cannot be "
                              f"shown; evaluate at least {int(np.ceil(np.log2(1 / cfg.alpha)))} cases")
    return {
        "study": {"n_cases": len(res.eval_cases) + len(res.tune_cases), "n_eval_cases": len(res.eval_cases),
                  "n_tune_cases": len(res.tune_cases), "readers": readers, "model": model,
                  "reference_method": cfg.reference, "alpha": cfg.alpha,
                  "bootstrap": {"method": "percentile", "n_resamples": cfg.n_bootstrap, "seed": cfg.seed},
                  "hd95_definition": "max of the two directed 95th percentiles of surface-voxel distances (mm)",
                  "roc": f"voxel-wise, pooled over evaluation cases, {res.roc_region}" if res.roc else None},
        "references": {reference_name(r): {"left_out_reader": r, "combines": [o for o in readers if o != r],
                                           "method": cfg.reference} for r in readers},
        "median_dice": median_dice,
        "reader_order": order,
        "readers": reader_block,
        "model": model_block,
        "comparison": comparison,
        "tuning": res.tuning,
        "hybrid": [h.as_dict() for h in res.hybrid] or None,
    }


def _lesions(res: ReaderStudyResult, rater: str, reference: str) -> dict:
    rows = [r for r in res.rows if r["rater"] == rater and r["reference"] == reference and r["split"] == "test"]
    n_ref = sum(r["ref_lesions"] for r in rows)
    found = sum(r["detected_lesions"] for r in rows)
    return {"reference_lesions": n_ref, "detected": found,
            "false_positive_components": sum(r["false_positive_components"] for r in rows),
            "lesion_sensitivity": found / n_ref if n_ref else float("nan")}
