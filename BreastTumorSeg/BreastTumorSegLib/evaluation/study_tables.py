"""The inputs of a reader study: one case type and the two tables (masks, malignancy scores).

A :class:`StudyCase` holds a case's reader masks, the model's mask and/or probability map and an
optional region of interest, either as SimpleITK images (the Slicer Compare panel builds them in
memory) or as file paths (read only when :meth:`StudyCase.load` is called, so studies with
hundreds of full-size exams fit in memory). :func:`read_study_table` makes cases from the CSV
``breasttumorseg study export`` writes; :func:`read_scores_table` reads per-case (or per-breast)
malignancy scores for the human–AI hybrid analysis.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Sequence, Union

import numpy as np
import SimpleITK as sitk

from ..core.errors import InputError
from ..io.images import read_image, read_mask
from ..io.safety import csv_separator_fix, open_table

SPLITS = ("test", "tune")
ImageOrPath = Union[sitk.Image, Path]


@dataclass
class StudyCase:
    """One case of a reader study: reader masks, the model's mask and/or probability, an ROI.

    Members are SimpleITK images or file paths; :meth:`load` returns the case with every member
    read (the case itself when nothing is a path). All images must share one voxel grid.
    ``sources`` maps a name (reader, ``"model"``, ``"model probability"``, ``"roi"``) to the file
    it came from, for error messages. ``arm_readers`` holds the masks of the arms other than
    ``primary_arm`` (arm -> reader -> mask file) and ``times`` the readers' active seconds
    (arm -> reader -> s), as the study table gives them.
    """

    case_id: str
    readers: dict[str, ImageOrPath]
    model_mask: ImageOrPath | None = None
    model_prob: ImageOrPath | None = None
    roi: ImageOrPath | None = None
    split: str = "test"
    sources: dict[str, str] = field(default_factory=dict)
    arm_readers: dict[str, dict[str, Path]] = field(default_factory=dict)
    times: dict[str, dict[str, float]] = field(default_factory=dict)
    primary_arm: str | None = None  # the arm whose masks are in ``readers``

    @property
    def reader_names(self) -> list[str]:
        return list(self.readers)

    @property
    def has_prob(self) -> bool:
        return self.model_prob is not None

    @property
    def has_model(self) -> bool:
        return self.model_mask is not None or self.model_prob is not None

    def load(self) -> "StudyCase":
        members = [*self.readers.values(), self.model_mask, self.model_prob, self.roi]
        if not any(isinstance(m, (str, Path)) for m in members):
            return self
        sources = dict(self.sources)

        def mask(value, name: str, what: str):
            if isinstance(value, (str, Path)):
                sources[name] = str(value)
                return read_mask(value, what)
            return value

        readers = {r: mask(m, r, f"mask of reader {r}") for r, m in self.readers.items()}
        prob = self.model_prob
        if isinstance(prob, (str, Path)):
            sources["model probability"] = str(prob)
            prob = _read_probability(Path(prob))
        return replace(self, readers=readers, model_mask=mask(self.model_mask, "model", "model mask"),
                       model_prob=prob, roi=mask(self.roi, "roi", "region of interest"), sources=sources)


def _read_probability(path: Path) -> sitk.Image:
    prob = sitk.Cast(read_image(path, "model probability map"), sitk.sitkFloat32)
    arr = sitk.GetArrayViewFromImage(prob)
    lo, hi = float(arr.min()), float(arr.max())
    if not (np.isfinite(lo) and np.isfinite(hi) and lo >= 0.0 and hi <= 1.0):
        raise InputError(f"probability map values span [{lo:g}, {hi:g}], not [0, 1]", path,
                         "give the model's probability map (e.g. <case>_prob.nii.gz), not a label map or logits")
    return prob


TABLE_COLUMNS = ("case", "reader", "mask")
OPTIONAL_COLUMNS = ("prob", "roi", "split", "arm", "time_s")
PRIMARY_ARM = "unaided"  # with an arm column, the readers' masks of this arm are compared with the model


def read_study_table(path: str | Path, model_name: str = "model") -> list[StudyCase]:
    """Cases of a reader-study table (CSV with a header row).

    Columns: ``case``, ``reader``, ``mask`` (path to a label map; voxels > 0 are tumor), and
    optionally ``prob`` (the model's probability map, on rows whose reader is *model_name*),
    ``roi`` (a mask limiting the voxel-wise ROC, e.g. the breast) and ``split`` (``test`` or
    ``tune``; tune cases only choose the threshold), ``arm`` (e.g. ``unaided`` / ``assisted``,
    as ``breasttumorseg study export`` writes) and ``time_s`` (the reader's active time). Relative
    paths are relative to the table's folder. The model's row may give a mask, a probability map,
    or both; its arm is left empty. With an arm column, the readers' masks of the ``unaided`` arm
    (or, without one, of the first arm listed) are compared with the model; the other arms' masks
    are scored against the same references (:func:`arm_comparison`).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError("reader-study table does not exist", path, "check the path")
    try:
        with open_table(path) as fh:
            rows = list(csv.DictReader(fh))
            header = [c.strip().lower() for c in (rows[0].keys() if rows else [])]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"cannot read the table ({exc})", path, "save it as a UTF-8 CSV file") from None
    if not rows:
        raise InputError("the table has no rows", path, "list one row per case and reader: case,reader,mask")
    missing = [c for c in TABLE_COLUMNS if c not in header]
    if missing:
        raise InputError(f"the table lacks column(s) {', '.join(missing)} (header: {', '.join(header)})", path,
                         csv_separator_fix(header, "start the file with the header line case,reader,mask[,prob,roi,split]"))
    base = path.parent

    def as_path(text: str | None) -> Path | None:
        text = (text or "").strip()
        if not text:
            return None
        p = Path(text).expanduser()
        return p if p.is_absolute() else base / p

    cases: dict[str, StudyCase] = {}
    splits: dict[str, str] = {}
    arms = list(dict.fromkeys((raw.get("arm") or "").strip() for raw in rows
                              if (raw.get("reader") or "").strip() != model_name and (raw.get("arm") or "").strip()))
    primary = PRIMARY_ARM if PRIMARY_ARM in arms else (arms[0] if arms else None)
    for line, raw in enumerate(rows, start=2):
        row = {k.strip().lower(): (v or "").strip() for k, v in raw.items() if k is not None}
        case, reader = row.get("case", ""), row.get("reader", "")
        where = f"{path}, line {line}"
        if not case or not reader:
            raise InputError("empty case or reader name", where, "fill in both columns")
        cf = cases.setdefault(case, StudyCase(case, {}))
        split = row.get("split", "").lower()
        if split:
            if split not in SPLITS:
                raise InputError(f"split must be 'test' or 'tune', got {split!r}", where)
            if splits.setdefault(case, split) != split:
                raise InputError(f"case {case} is marked both {splits[case]!r} and {split!r}", where,
                                 "give one split per case")
            cf.split = split
        roi = as_path(row.get("roi"))
        if roi is not None:
            cf.roi = roi
        mask, prob = as_path(row.get("mask")), as_path(row.get("prob"))
        if reader == model_name:
            if cf.has_model:
                raise InputError(f"case {case} lists the model twice", where, "keep one model row per case")
            if mask is None and prob is None:
                raise InputError(f"the model row of case {case} gives neither a mask nor a prob file", where,
                                 "fill in the model's mask (or prob) column")
            cf.model_mask, cf.model_prob = mask, prob
        else:
            if prob is not None:
                raise InputError(f"a probability map is given for reader {reader!r}, not for the model "
                                 f"({model_name!r})", where, f"put probability maps on the {model_name!r} rows, "
                                 "or pass --model-name with the model's reader name")
            if mask is None:
                raise InputError(f"no mask for reader {reader} in case {case}", where,
                                 "fill in the mask column with the reader's mask file")
            arm = row.get("arm", "") or primary
            if arms and not row.get("arm", ""):
                raise InputError(f"reader {reader}'s row of case {case} has no arm, other rows have one", where,
                                 "fill in the arm column of every reader row (leave it empty on the model's rows)")
            target = cf.readers if arm == primary else cf.arm_readers.setdefault(arm, {})
            if reader in target:
                raise InputError(f"reader {reader} appears twice for case {case}"
                                 + (f" in arm {arm}" if arm else ""), where,
                                 "keep one row per case and reader (remove the repeated row)")
            target[reader] = mask
            cf.primary_arm = primary
            if row.get("time_s", ""):
                try:
                    t = float(row["time_s"])
                except ValueError:
                    t = float("nan")
                if not (np.isfinite(t) and t >= 0):
                    raise InputError(f"time_s must be a number of seconds >= 0, got {row['time_s']!r}", where,
                                     "give the reader's active time in seconds, or leave it empty")
                cf.times.setdefault(arm or "", {})[reader] = t
    return list(cases.values())


def read_scores_table(path: str | Path, kind: str | None = None, arm: str | None = None
                      ) -> tuple[dict[str, dict[str, float]], dict[str, int]]:
    """Malignancy scores for the hybrid analysis: CSV with ``case, reader, score, malignant``.

    Optional columns (as ``breasttumorseg study export`` writes them): ``side`` (the scored unit
    is then the breast, ``case:side``), ``kind`` (``probability`` or ``birads``; rows of *kind*
    are used, default ``probability`` when present) and ``arm`` (readers' rows of *arm* are used,
    default ``unaided`` when present, else the first arm; rows with an empty arm, the model's,
    always count). Returns ``(scores[rater][unit], malignant[unit])``; the model's rows use its
    reader name.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError("scores table does not exist", path, "check the path")
    try:
        with open_table(path) as fh:
            rows = [{(k or "").strip().lower(): (v or "").strip() for k, v in raw.items()} for raw in csv.DictReader(fh)]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"cannot read the scores table ({exc})", path, "save it as a UTF-8 CSV file") from None
    need = ("case", "reader", "score", "malignant")
    if not rows or any(c not in rows[0] for c in need):
        raise InputError(f"the scores table needs columns {', '.join(need)}", path,
                         "one row per case and reader (the model's rows use its reader name); "
                         "malignant is 1 or 0")
    kinds = list(dict.fromkeys(r.get("kind", "") for r in rows if r.get("kind")))
    kind = kind or ("probability" if "probability" in kinds or not kinds else kinds[0])
    if kinds and kind not in kinds:
        raise InputError(f"the scores table has no {kind!r} scores (kinds: {', '.join(kinds)})", path,
                         f"pass --score-kind {kinds[0]}")
    arms = list(dict.fromkeys(r.get("arm", "") for r in rows if r.get("arm")))
    arm = arm or (PRIMARY_ARM if PRIMARY_ARM in arms or not arms else arms[0])
    if arms and arm not in arms:
        raise InputError(f"the scores table has no arm {arm!r} (arms: {', '.join(arms)})", path,
                         f"pass --score-arm {arms[0]}")
    scores: dict[str, dict[str, float]] = {}
    labels: dict[str, int] = {}
    for line, row in enumerate(rows, start=2):
        if row.get("arm"):  # a reader's row: of the chosen arm and kind only
            if row["arm"] != arm or (row.get("kind") and row["kind"] != kind):
                continue
        elif not arms and row.get("kind") and row["kind"] != kind:  # no arms at all: choose by kind
            continue
        where = f"{path}, line {line}"
        if row["malignant"] == "":
            raise InputError(f"case {row['case']} {row.get('side', '')} has no truth (malignant is empty)", where,
                             "fill in malignant (1 or 0), or make the study with --truth TRUTH.csv")
        try:
            value, label = float(row["score"]), int(float(row["malignant"]))
        except ValueError:
            raise InputError("score and malignant must be numbers", where) from None
        if label not in (0, 1) or not np.isfinite(value):
            raise InputError("malignant must be 0 or 1 and the score finite", where)
        unit = f"{row['case']}:{row['side']}" if row.get("side") else row["case"]
        if labels.setdefault(unit, label) != label:
            raise InputError(f"{unit} is marked both malignant and benign", where)
        scores.setdefault(row["reader"], {})[unit] = value
    return scores, labels


def assign_tuning(cases: Sequence[StudyCase], fraction: float, seed: int = 0) -> list[StudyCase]:
    """Mark a random *fraction* of the cases (seeded) as tuning cases, unless some already are.

    Only cases with a probability map can tune a threshold; the others stay test cases.
    """
    if not 0 <= fraction < 1:
        raise InputError(f"the tuning fraction must lie in [0, 1), got {fraction}")
    if any(c.split == "tune" for c in cases) or fraction == 0:
        return list(cases)
    eligible = [i for i, c in enumerate(cases) if c.has_prob]
    n = int(round(fraction * len(cases)))
    if not eligible or n == 0:
        return list(cases)
    rng = np.random.default_rng(seed)
    chosen = set(rng.choice(eligible, size=min(n, len(eligible) - 1 or 1), replace=False).tolist())
    for i in chosen:
        cases[i].split = "tune"
    return list(cases)
