"""Reader-vs-reader agreement: the report of a study without a model.

When no case of a study has the model's mask or probability map (``study init`` without
``--model``), ``breasttumorseg reader-study`` reports how well the readers agree instead of
stopping:

* each reader against the leave-one-out reference of the *other* readers (their intersection by
  default, as in the model comparison of Hirsch et al.): Dice, HD95, sensitivity, precision,
  medians with percentile-bootstrap 95 % CIs over cases;
* a pairwise Dice matrix (median over cases of the Dice between two readers' masks);
* Fleiss' kappa on voxels (all readers at once, tumour vs background) inside a region: the
  region of interest when every case has one (the breast, as ``study init`` stores it), else the
  box around the union of the readers' masks grown by ``CROP_PAD`` voxels (a kappa over the whole
  volume would be inflated by empty background). Reported per case (median, CI) and pooled over
  the voxels of all cases;
* the arms (unaided / assisted) as in the model study, when the table has them.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import SimpleITK as sitk

from . import metrics as M
from .masks import PreparedMask, binary_mask, check_same_grid
from . import stats as S
from ..core.progress import Reporter
from .arms import arm_rows, median_finite, summarize_arms
from .references import leave_one_out_references, reference_name
from .study_tables import StudyCase

METRICS = ("dice", "hd95_mm", "sensitivity", "precision")


def fleiss_kappa_binary(histogram: Sequence[float]) -> tuple[float, float, float]:
    """Fleiss' kappa of k raters on items with two categories (tumour / background).

    *histogram*: ``histogram[n]`` = number of items (voxels) that exactly *n* of the k raters
    marked as tumour (length k + 1), e.g. ``np.bincount(counts, minlength=k + 1)``; the statistic
    depends on nothing else, so cases are pooled by adding their histograms. Returns
    ``(kappa, observed agreement P̄, chance agreement Pe)``; kappa is NaN when Pe is 1 (no rater
    marked anything, or every rater marked everything)."""
    h = np.asarray(histogram, dtype=float)
    k = h.size - 1
    items = h.sum()
    if k < 2 or items == 0:
        return float("nan"), float("nan"), float("nan")
    n = np.arange(k + 1, dtype=float)
    agree = (n * (n - 1) + (k - n) * (k - n - 1)) / (k * (k - 1))  # P_i of an item with n "tumour" votes
    p_obs = float((h * agree).sum() / items)
    p1 = float((h * n).sum() / (items * k))
    p_chance = p1 ** 2 + (1 - p1) ** 2
    kappa = (p_obs - p_chance) / (1 - p_chance) if p_chance < 1 else float("nan")
    return kappa, p_obs, p_chance


@dataclass
class InterReaderResult:
    """What a readers-only study produced; :func:`write_interreader_report` writes it."""

    readers: list[str]
    cases: list[str]
    rows: list[dict]  # per (case, reader): metrics against the reader's leave-one-out reference
    pair_rows: list[dict]  # per (case, reader a, reader b): Dice
    kappa_rows: list[dict]  # per case: Fleiss' kappa and its region
    summary: dict
    arm_rows: list[dict] = field(default_factory=list)


def run_interreader_study(cases: Sequence[StudyCase], reference: str = "intersection", n_bootstrap: int = 2000,
                          seed: int = 0, progress: Callable[[str, float, str], None] | None = None,
                          cancel=None) -> InterReaderResult:
    """Agreement of the readers of *cases* (every case read by the same ≥ 2 readers)."""
    from .readerstudy import StudyConfig, _box, _crop, validate_cases

    readers = validate_cases(cases, "model", need_model=False)
    test = [c for c in cases if c.split == "test"] or list(cases)
    rep = Reporter(progress, cancel, weights={"evaluation": 4.0, "statistics": 1.0})
    rows, pairs, kappas = [], [], []
    k = len(readers)
    pooled = np.zeros(k + 1)
    roi_cases = 0
    with rep.stage("evaluation"):
        for i, c in enumerate(test):
            rep.update(i / len(test), f"case {c.case_id}")
            case = c.load()
            first = case.readers[readers[0]]
            for r in readers[1:]:
                check_same_grid(first, case.readers[r], f"reader {readers[0]} of case {case.case_id}",
                                  f"reader {r}")
            arrays = [sitk.GetArrayFromImage(case.readers[r]) > 0 for r in readers]
            box = _box(arrays, arrays[0].shape)
            crop = {r: _crop(binary_mask(case.readers[r]), box) for r in readers}
            refs = leave_one_out_references(crop, reference)
            prepared = {r: PreparedMask(m, f"{r} ({case.case_id})") for r, m in crop.items()}
            for r in readers:
                m = M.evaluate_prepared(prepared[r], PreparedMask(refs[r], f"{reference_name(r)} ({case.case_id})"))
                d = m.as_dict()
                rows.append({"case": case.case_id, "reader": r, "reference": reference_name(r),
                             "reference_readers": "+".join(o for o in readers if o != r),
                             **{key: d[key] for key in METRICS}})
            for a in range(k):
                for b in range(a + 1, k):
                    pairs.append({"case": case.case_id, "reader_a": readers[a], "reader_b": readers[b],
                                  "dice": M.dice(arrays[a][box], arrays[b][box])})
            if case.roi is not None:
                check_same_grid(first, case.roi, f"reader {readers[0]} of case {case.case_id}", "region of interest")
                region = sitk.GetArrayFromImage(case.roi) > 0
                roi_cases += 1
            else:
                region = np.zeros(arrays[0].shape, bool)
                region[box] = True
            hist = np.bincount(np.sum([a[region] for a in arrays], axis=0).ravel(), minlength=k + 1)
            pooled += hist
            kappa, p_obs, _ = fleiss_kappa_binary(hist)
            kappas.append({"case": case.case_id, "fleiss_kappa": kappa, "observed_agreement": p_obs,
                           "region": "region of interest" if case.roi is not None else "box around the masks",
                           "region_voxels": int(region.sum())})
    arms = []
    if any(c.arm_readers or c.times for c in test):
        arms = arm_rows(test, readers, StudyConfig(reference=reference))
    with rep.stage("statistics"):
        result = InterReaderResult(readers, [c.case_id for c in test], rows, pairs, kappas, {}, arms)
        result.summary = _summarize(result, reference, n_bootstrap, seed, pooled, roi_cases)
    return result


def _summarize(res: InterReaderResult, reference: str, n_bootstrap: int, seed: int, pooled: np.ndarray,
               roi_cases: int) -> dict:
    def ci(v) -> list[float]:
        v = np.asarray(v, float)
        v = v[np.isfinite(v)]
        return list(S.bootstrap_ci(v, np.median, 0.95, n_bootstrap, seed)) if v.size else [float("nan")] * 2

    def col(reader: str, key: str) -> np.ndarray:
        return np.array([r[key] for r in res.rows if r["reader"] == reader], float)

    medians = {r: median_finite(col(r, "dice")) for r in res.readers}
    order = sorted(res.readers, key=lambda r: -medians[r])
    readers = {r: {"reference": reference_name(r), "rank": order.index(r) + 1, "median_dice": medians[r],
                   "dice_ci95": ci(col(r, "dice")), "mean_dice": float(np.nanmean(col(r, "dice"))),
                   "median_hd95_mm": median_finite(col(r, "hd95_mm")),
                   "median_sensitivity": median_finite(col(r, "sensitivity")),
                   "median_precision": median_finite(col(r, "precision"))} for r in res.readers}
    matrix = {a: {b: (1.0 if a == b else median_finite(np.array(
        [p["dice"] for p in res.pair_rows if {p["reader_a"], p["reader_b"]} == {a, b}], float))) for b in res.readers}
        for a in res.readers}
    per_case = np.array([r["fleiss_kappa"] for r in res.kappa_rows], float)
    pooled_kappa = fleiss_kappa_binary(pooled)[0]
    n = len(res.cases)
    region = ("the region of interest" if roi_cases == n else "the box around the readers' masks (+2 voxels)"
              if roi_cases == 0 else f"the region of interest in {roi_cases} of {n} cases, else the box around the masks")
    out = {
        "study": {"design": "inter-reader agreement (no model in the study)", "n_cases": n, "readers": res.readers,
                  "reference_method": reference,
                  "bootstrap": {"method": "percentile", "n_resamples": n_bootstrap, "seed": seed}},
        "references": {reference_name(r): {"left_out_reader": r, "combines": [o for o in res.readers if o != r],
                                           "method": reference} for r in res.readers},
        "readers": readers,
        "reader_order": order,
        "pairwise_dice": matrix,
        "fleiss_kappa": {"pooled": pooled_kappa, "median_per_case": median_finite(per_case), "ci95": ci(per_case),
                         "region": region, "categories": "tumour / background per voxel, all readers at once"},
    }
    if res.arm_rows:
        view = _ArmsView(res.readers, res.arm_rows, n_bootstrap, seed)
        out["arms"] = summarize_arms(view)
    return out


@dataclass
class _ArmsView:
    """What :func:`summarize_arms` reads from a result (readers, arm rows, bootstrap settings)."""

    readers: list[str]
    arm_rows: list[dict]
    n_bootstrap: int
    seed: int

    @property
    def config(self):
        from .readerstudy import StudyConfig

        return StudyConfig(n_bootstrap=self.n_bootstrap, seed=self.seed)


# ------------------------------------------------------------------------------------ report
REPORT_FILES = ("summary.json", "summary.md", "per_case.csv", "pairwise_dice.csv", "fleiss_kappa.csv")


def summary_markdown(res: InterReaderResult) -> str:
    from .report import _ci, _fmt

    s = res.summary
    fk = s["fleiss_kappa"]
    lines = ["# Reader study: inter-reader agreement", "",
             f"{s['study']['n_cases']} case(s), readers {', '.join(res.readers)}; no model in the study, so the "
             "readers are compared with each other. Each reader is scored against the "
             f"{s['study']['reference_method']} of the other readers (leave-one-out).", "",
             "| Reader | Reference | Median Dice [95% CI] | Median HD95 (mm) | Sensitivity | Precision |",
             "|---|---|---|---|---|---|"]
    for r in s["reader_order"]:
        b = s["readers"][r]
        lines.append(f"| {r} | {b['reference']} | {_fmt(b['median_dice'])} {_ci(b['dice_ci95'])} | "
                     f"{_fmt(b['median_hd95_mm'], 1)} | {_fmt(b['median_sensitivity'])} | {_fmt(b['median_precision'])} |")
    lines += ["", "## Pairwise Dice (median over cases)", "", "| | " + " | ".join(res.readers) + " |",
              "|---|" + "---|" * len(res.readers)]
    for a in res.readers:
        lines.append(f"| {a} | " + " | ".join(_fmt(s["pairwise_dice"][a][b]) for b in res.readers) + " |")
    lines += ["", "## Fleiss' kappa (voxels, all readers)", "",
              f"Pooled over all cases: **{_fmt(fk['pooled'])}**; per case median {_fmt(fk['median_per_case'])} "
              f"{_ci(fk['ci95'])}. Voxels inside {fk['region']}.", ""]
    if s.get("arms"):
        from .report import arms_markdown

        lines += arms_markdown(s["arms"], "", {"median_dice": {}})
    return "\n".join(lines) + "\n"


def _csv(rows: list[dict]) -> str:
    from .report import _csv_text

    return _csv_text(rows)


def write_interreader_report(res: InterReaderResult, out_dir: str | Path, overwrite: bool = False) -> list[Path]:
    """Write summary.json/.md and the per-case tables into *out_dir* (all or nothing)."""
    from ..io.atomic import StagedOutputs
    from .report import _finite

    with StagedOutputs(out_dir, overwrite) as staged:
        staged.path("summary.json").write_text(json.dumps(_finite(res.summary), indent=2) + "\n")
        staged.path("summary.md").write_text(summary_markdown(res))
        staged.path("per_case.csv").write_text(_csv(res.rows))
        staged.path("pairwise_dice.csv").write_text(_csv(res.pair_rows))
        staged.path("fleiss_kappa.csv").write_text(_csv(res.kappa_rows))
        if res.arm_rows:
            staged.path("arms.csv").write_text(_csv(res.arm_rows))
        return staged.commit()
