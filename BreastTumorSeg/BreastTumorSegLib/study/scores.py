"""Per-breast malignancy scores in a reader study (Wu et al.: readers, the model, and their hybrid).

A study made with ``study init --scores probability,birads`` asks each reader, per reading and per
breast, for a probability of malignancy (0–100 %) and/or a BI-RADS category. They are stored with
the reading (``state.json``, written atomically at every change: autosaved, timed as activity,
locked on submit) and exported by ``study export`` as the scores table ``reader-study --scores``
reads: one row per case, side, rater, arm and kind, with

* ``score``: the reader's probability as a fraction (0–1, so that ``0.5·reader + 0.5·model``
  averages like with like), or the BI-RADS category as an ordinal rank (1 … 7);
* the model's rows (reader ``model``, arm empty, kind ``probability``): its per-breast score from
  :mod:`.model_scores`, always exported when the study has a model;
* ``malignant``: the truth from ``study init --truth`` (case,side,malignant), empty when unknown.
"""
from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Callable, Mapping, Sequence

from ..core.errors import InputError

SCORE_KINDS = ("probability", "birads")
SIDES = ("left", "right")
# BI-RADS (ACR, MRI) final assessment categories, and their order for ROC/AUC (4A < 4 = 4B < 4C < 5).
BIRADS_RANK = {"0": None, "1": 1.0, "2": 2.0, "3": 3.0, "4A": 4.0, "4": 4.5, "4B": 4.5, "4C": 5.0, "5": 6.0,
               "6": 7.0}
SCORES_COLUMNS = ("case", "side", "reader", "arm", "kind", "score", "value", "malignant")


def check_score_kinds(kinds: Sequence[str] | str | None) -> list[str]:
    """``probability`` and/or ``birads`` (a comma-separated string or a list); an unknown kind is refused."""
    if isinstance(kinds, str):
        kinds = [k for k in kinds.split(",")]
    out = []
    for k in kinds or ():
        k = k.strip().lower().replace("-", "")
        if not k:
            continue
        if k not in SCORE_KINDS:
            raise InputError(f"{k!r} is not a score readers can give", "--scores",
                             "use probability, birads or probability,birads")
        if k not in out:
            out.append(k)
    return out


def check_reader_scores(scores: Mapping, kinds: Sequence[str], where: object = "scores") -> dict:
    """The reader's scores as stored: ``{side: {"probability": 0–100, "birads": "4A"}}``.

    Every side given must carry every kind the study asks for; values out of range are refused."""
    if not isinstance(scores, Mapping) or not scores:
        raise InputError("scores must give the left and/or right breast", where,
                         'e.g. {"left": {"probability": 20}, "right": {"probability": 85}}')
    out = {}
    for side, val in scores.items():
        side = {"l": "left", "r": "right"}.get(str(side).strip().lower(), str(side).strip().lower())
        if side not in SIDES or not isinstance(val, Mapping):
            raise InputError(f"unknown breast side {side!r}", where, "use left and right")
        rec = {}
        for kind in kinds:
            v = val.get(kind)
            if v is None or v == "":
                raise InputError(f"the {side} breast has no {kind} score", where,
                                 "give " + (" and ".join(kinds)) + " for each breast")
            rec[kind] = _check_value(kind, v, f"{where} ({side} {kind})")
        out[side] = rec
    return out


def _check_value(kind: str, v, where: str):
    if kind == "probability":
        try:
            p = float(v)
        except (TypeError, ValueError, OverflowError):  # OverflowError: an integer of hundreds of digits
            p = float("nan")
        if not 0.0 <= p <= 100.0:
            raise InputError(f"probability of malignancy {v!r} is not a percentage", where, "give 0 to 100")
        return p
    cat = str(v).strip().upper()
    if cat not in BIRADS_RANK:
        raise InputError(f"{v!r} is not a BI-RADS category", where, "give 0, 1, 2, 3, 4, 4A, 4B, 4C, 5 or 6")
    return cat


def complete(scores: Mapping | None, kinds: Sequence[str]) -> bool:
    """Whether *scores* give every kind for both breasts."""
    if not kinds:
        return True
    return isinstance(scores, Mapping) and all(
        isinstance(scores.get(s), Mapping) and all(scores[s].get(k) not in (None, "") for k in kinds) for s in SIDES)


def parse_side_pair(text: str, kind: str, option: str) -> dict:
    """``--probability 20,85`` / ``--birads 2,4B`` (left,right) as ``{side: {kind: value}}``."""
    parts = [p.strip() for p in str(text).split(",")]
    if len(parts) != 2:
        raise InputError(f"{text!r} is not a pair left,right", option, f"e.g. {option} " +
                         ("20,85" if kind == "probability" else "2,4B"))
    return {side: {kind: _check_value(kind, p, option)} for side, p in zip(SIDES, parts)}


def read_truth_table(path: str | os.PathLike, case_ids: Sequence[str]) -> dict[str, dict[str, int]]:
    """``case,side,malignant`` (1/0) rows: the per-breast truth of the scores table."""
    from ..io.safety import check_input_path, open_table

    path = check_input_path(path, "truth table")
    try:
        with open_table(path) as fh:
            rows = list(csv.DictReader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"cannot read the truth table ({exc})", path, "save it as a UTF-8 CSV file") from None
    out: dict[str, dict[str, int]] = {}
    for line, raw in enumerate(rows, start=2):
        row = {(k or "").strip().lower(): (v or "").strip() for k, v in raw.items()}
        where = f"{path}, line {line}"
        case, side, mal = row.get("case", ""), row.get("side", "").lower(), row.get("malignant", "")
        side = {"l": "left", "r": "right"}.get(side, side)
        if case not in case_ids:
            raise InputError(f"case {case!r} is not in the cases table", where, "use the case ids of CASES.csv")
        if side not in SIDES or mal not in ("0", "1"):
            raise InputError("each row needs side left/right and malignant 1 or 0", where,
                             "write e.g. 'P001,left,1'")
        out.setdefault(case, {})[side] = int(mal)
    if not out:
        raise InputError("the truth table has no rows", path, "write the header case,side,malignant and one row per breast")
    return out


def score_rows(study, submitted: Callable[[str, str, str], dict | None], case_ids: Sequence[str]) -> list[dict]:
    """Rows of the scores table for the cases *case_ids*: the readers' submitted scores
    (``submitted(reader, case label, arm)`` -> that reading's scores when it is done, else None)
    and the model's."""
    rows = []
    for c in study.cases:
        if c.id not in case_ids:
            continue
        truth = c.truth or {}
        for side in SIDES:
            mal = truth.get(side)
            mal = "" if mal is None else str(int(mal))
            for a in study.arms:
                for r in study.readers:
                    given = (submitted(r, c.label, a.name) or {}).get(side)
                    for kind in study.scores:
                        v = (given or {}).get(kind)
                        if v is None:
                            continue
                        score = float(v) / 100.0 if kind == "probability" else BIRADS_RANK[str(v)]
                        if score is None:  # BI-RADS 0 (incomplete) has no place on a malignancy scale
                            continue
                        rows.append({"case": c.id, "side": side, "reader": r, "arm": a.name, "kind": kind,
                                     "score": f"{score:.4g}", "value": v, "malignant": mal})
            model = (c.model or {}).get("scores") or {}
            if side in model:
                rows.append({"case": c.id, "side": side, "reader": "model", "arm": "", "kind": "probability",
                             "score": f"{float(model[side]):.4g}", "value": f"{float(model[side]):.4g}",
                             "malignant": mal})
    return rows


def scores_table_path(table: Path) -> Path:
    """Where ``study export`` writes the scores table next to TABLE.csv: ``TABLE.scores.csv``."""
    return table.with_name(table.stem + ".scores.csv")
