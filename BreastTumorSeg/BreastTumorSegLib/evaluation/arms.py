"""Arms of a reader study (unaided / assisted): every reader's Dice and time per arm.

Every arm is scored against the same leave-one-out references, built from the primary arm's
masks (readers segmenting from scratch), so the assisted arm is not compared with itself.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import numpy as np
import SimpleITK as sitk

from . import metrics as M
from .masks import check_same_grid
from . import stats as S
from ..core.errors import InputError
from ..io.images import read_mask
from .references import leave_one_out_references, reference_name
from .study_tables import StudyCase

if TYPE_CHECKING:
    from .study_types import ReaderStudyResult, StudyConfig


def median_finite(v: np.ndarray) -> float:
    """Median of the finite values (NaN when there are none)."""
    v = v[np.isfinite(v)]
    return float(np.median(v)) if v.size else float("nan")


_med = median_finite


def arm_rows(cases: Sequence[StudyCase], readers: Sequence[str], config: StudyConfig) -> list[dict]:
    """Dice and time of every reader in every arm, per case.

    Every arm is scored against the same leave-one-out references, built from the primary arm's
    masks (readers segmenting from scratch), so the assisted arm is not compared with itself."""
    rows = []
    for c in cases:
        primary = getattr(c, "primary_arm", None) or ""
        masks = {primary: {r: read_mask(p, f"mask of reader {r}") for r, p in c.readers.items()}}
        for arm, by_reader in getattr(c, "arm_readers", {}).items():
            missing = sorted(set(readers) - set(by_reader))
            if missing:
                raise InputError(f"case {c.case_id}: arm {arm} lacks reader(s) {', '.join(missing)}", None,
                                 "every reader must read every case in every arm; export complete cases only")
            masks[arm] = {r: read_mask(p, f"mask of reader {r} ({arm})") for r, p in by_reader.items()}
        first = masks[primary][readers[0]]
        for arm, by_reader in masks.items():
            for r, m in by_reader.items():
                check_same_grid(first, m, f"reader {readers[0]} of case {c.case_id}", f"reader {r} ({arm})")
        arrays = {r: sitk.GetArrayFromImage(m) > 0 for r, m in masks[primary].items()}
        refs = {}
        for r in readers:
            others = [arrays[o] for o in readers if o != r]
            if config.reference == "intersection":
                refs[r] = np.logical_and.reduce(others)
            elif config.reference == "majority":
                refs[r] = np.sum(others, axis=0) * 2 > len(others)
            else:
                refs[r] = sitk.GetArrayFromImage(leave_one_out_references(masks[primary], "staple")[r]) > 0
        for arm, by_reader in masks.items():
            for r in readers:
                t = getattr(c, "times", {}).get(arm, {}).get(r)
                rows.append({"case": c.case_id, "reader": r, "arm": arm or "-", "reference": reference_name(r),
                             "dice": M.dice(sitk.GetArrayFromImage(by_reader[r]) > 0, refs[r]),
                             "time_s": float("nan") if t is None else float(t)})
    return rows


def summarize_arms(res: ReaderStudyResult) -> dict:
    """Per arm: median per-case Dice and time (mean over readers per case, bootstrap CI), per
    reader medians; between two arms the paired per-case differences (Wilcoxon)."""
    cfg = res.config
    arms = list(dict.fromkeys(r["arm"] for r in res.arm_rows))
    cases = list(dict.fromkeys(r["case"] for r in res.arm_rows))
    ci = lambda v: list(S.bootstrap_ci(v[np.isfinite(v)], np.median, 0.95, cfg.n_bootstrap, cfg.seed))  # noqa: E731

    def per_case(arm: str, key: str, readers=None) -> np.ndarray:
        out = []
        for c in cases:
            v = np.array([r[key] for r in res.arm_rows if r["arm"] == arm and r["case"] == c
                          and (readers is None or r["reader"] in readers)], float)
            v = v[np.isfinite(v)]  # untimed (imported) readings have no time
            out.append(float(np.mean(v)) if v.size else float("nan"))
        return np.array(out)

    out: dict = {"reference": "leave-one-out references from the readers' " + (arms[0] if arms else "") +
                              " masks (the same as the model's)", "arms": {}}
    for a in arms:
        d, t = per_case(a, "dice"), per_case(a, "time_s")
        out["arms"][a] = {
            "n_cases": int(np.isfinite(d).sum()),
            "median_dice": _med(d), "dice_ci95": ci(d) if np.isfinite(d).any() else [float("nan")] * 2,
            "median_time_s": _med(t), "time_ci95": ci(t) if np.isfinite(t).any() else [float("nan")] * 2,
            "readers": {r: {"median_dice": _med(np.array([x["dice"] for x in res.arm_rows
                                                          if x["arm"] == a and x["reader"] == r], float)),
                            "median_time_s": _med(np.array([x["time_s"] for x in res.arm_rows
                                                            if x["arm"] == a and x["reader"] == r], float))}
                        for r in res.readers},
        }
    if len(arms) == 2:
        a0, a1 = arms
        dd = per_case(a1, "dice") - per_case(a0, "dice")
        timed = [r for r in res.readers  # readers with a time in both arms of every case
                 if all(np.isfinite(x["time_s"]) for x in res.arm_rows if x["reader"] == r)]
        dt = per_case(a1, "time_s", timed) - per_case(a0, "time_s", timed)
        block = {"arms": [a1, a0], "definition": f"per case, mean over readers of ({a1} − {a0})",
                 "timed_readers": timed}
        for key, v in (("dice", dd), ("time_s", dt)):
            v = v[np.isfinite(v)]
            block[key] = ({"median_difference": float(np.median(v)), "ci95": ci(v),
                           "wilcoxon_p": S.wilcoxon_signed_rank(v).p_value, "n_cases": int(v.size)}
                          if v.size else None)
        out["comparison"] = block
    return out
