"""Multi-reader study: is the model as good as the radiologists? (Hirsch et al. 2022 protocol)

N readers segment the same cases. Each reader is scored against a reference built from the
*other* readers only (leave-one-out; by default their intersection, as Hirsch et al.; majority
vote or STAPLE as options). The model is scored against the very same N references, so that for
every case and every reference there is a pair (reader Dice, model Dice).

Statistics (on the evaluation cases; cases marked ``split="tune"`` only choose the threshold):

* per reader j: ΔDice_j = model Dice − reader j Dice, both against reference "excl-j";
  two-sided Wilcoxon signed-rank test (p also Holm-adjusted over readers) and TOST;
* overall: per case, ΔDice = mean over j of ΔDice_j; two-sided Wilcoxon; TOST equivalence by two
  one-sided Wilcoxon tests (:func:`stats.tost_wilcoxon`), cross-checked with a paired t TOST.
  Equivalence bounds come from the readers unless given: with M_j the median Dice of reader j,
  ``low = min_j M_j − mean_j M_j`` and ``high = max_j M_j − mean_j M_j`` — "the model differs
  from the average reader by no more than the weakest and the strongest reader do";
* voxel-wise ROC/AUC of the model's probability map against each reference (inside an optional
  region of interest, else the whole volume);
* the probability threshold maximising the mean Dice over the tuning cases, applied to the rest;
* percentile-bootstrap 95 % CIs over cases for medians.

A reader is never scored against a reference that contains their own mask (it would be biased
upwards: an intersection is a subset of each of its members), so the reader × reference table has
one entry per reader, the model's has N.

Inputs are SimpleITK masks (:class:`StudyCase`), so the Slicer Compare panel can call
:func:`run_reader_study` directly; :func:`read_study_table` builds lazily loaded cases from a CSV.
Cases are loaded one at a time, so studies with hundreds of full-size exams fit in memory.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Mapping, Protocol, Sequence

import numpy as np
import SimpleITK as sitk

from . import metrics as M
from . import stats as S
from ..core.errors import InputError
from ..io.images import read_image, read_mask
from ..core.progress import Reporter
from ..core.values import check_threshold

REFERENCE_METHODS = ("intersection", "majority", "staple")
SPLITS = ("test", "tune")
DEFAULT_THRESHOLDS = tuple(np.round(np.arange(0.05, 0.951, 0.05), 2).tolist())
CROP_PAD = 2  # voxels around the union of all masks of a case


def reference_name(left_out: str) -> str:
    """Name of the reference built from every reader except *left_out*."""
    return f"excl-{left_out}"


# ------------------------------------------------------------------------------ references
def _uint8(img: sitk.Image) -> sitk.Image:
    return M.binary_mask(img)


def combine_masks(masks: Sequence[sitk.Image], method: str = "intersection",
                  names: Sequence[str] | None = None) -> sitk.Image:
    """Consensus of several masks on one grid (uint8 0/1).

    * ``intersection``: voxels every mask contains (Hirsch et al.);
    * ``majority``: voxels more than half of the masks contain (a tie is background);
    * ``staple``: SimpleITK's STAPLE posterior ≥ 0.5. STAPLE estimates the foreground prior from the
      image it is given, so it is computed on the union of the masks' bounding box grown by
      ``CROP_PAD`` voxels, which makes it independent of how much empty space surrounds a lesion.
    """
    if method not in REFERENCE_METHODS:
        raise ValueError(f"reference method must be one of {', '.join(REFERENCE_METHODS)}, not {method!r}")
    if not masks:
        raise ValueError("no masks to combine")
    names = list(names) if names is not None else [f"mask {i + 1}" for i in range(len(masks))]
    for m, n in zip(masks[1:], names[1:]):
        M.check_same_grid(masks[0], m, names[0], n)
    arrays = np.stack([sitk.GetArrayFromImage(m) > 0 for m in masks])
    if method == "intersection":
        out = arrays.all(axis=0)
    elif method == "majority":
        out = arrays.sum(axis=0) * 2 > len(masks)
    else:
        out = _staple(masks, arrays)
    img = sitk.GetImageFromArray(out.astype(np.uint8))
    img.CopyInformation(masks[0])
    return img


def _staple(masks: Sequence[sitk.Image], arrays: np.ndarray) -> np.ndarray:
    if len(masks) < 2:
        raise ValueError("STAPLE needs at least two masks; use intersection with two readers")
    out = np.zeros(arrays.shape[1:], bool)
    union = arrays.any(axis=0)
    if not union.any():
        return out
    cropped = M.crop_to_foreground(*[_uint8(m) for m in masks], pad=CROP_PAD)
    post = sitk.GetArrayFromImage(sitk.STAPLE(cropped, 1.0)) >= 0.5
    # place the cropped result back: find the crop's offset from its origin
    offset = masks[0].TransformPhysicalPointToIndex(cropped[0].GetOrigin())
    sl = tuple(slice(o, o + n) for o, n in zip(offset[::-1], post.shape))
    out[sl] = post
    return out


def leave_one_out_references(readers: Mapping[str, sitk.Image], method: str = "intersection"
                             ) -> dict[str, sitk.Image]:
    """For each reader, the consensus of all *other* readers, keyed by the left-out reader."""
    if len(readers) < 2:
        raise ValueError("a leave-one-out reference needs at least two readers")
    names = list(readers)
    return {name: combine_masks([readers[o] for o in names if o != name], method,
                                [o for o in names if o != name]) for name in names}


# ------------------------------------------------------------------------------------- cases
class _CaseMembers:
    """What a case offers whether its masks are loaded (StudyCase) or still files (CaseFiles)."""

    @property
    def reader_names(self) -> list[str]:
        return list(self.readers)

    @property
    def has_prob(self) -> bool:
        return self.model_prob is not None

    @property
    def has_model(self) -> bool:
        return self.model_mask is not None or self.model_prob is not None


@dataclass
class StudyCase(_CaseMembers):
    """One case of a reader study, in memory: reader masks, the model's mask and/or probability.

    All images must share one voxel grid. ``sources`` maps a name (reader, ``"model"``,
    ``"model probability"``, ``"roi"``) to the file it came from, for error messages.
    """

    case_id: str
    readers: dict[str, sitk.Image]
    model_mask: sitk.Image | None = None
    model_prob: sitk.Image | None = None
    roi: sitk.Image | None = None
    split: str = "test"
    sources: dict[str, str] = field(default_factory=dict)

    def load(self) -> "StudyCase":
        return self


class CaseLike(Protocol):
    case_id: str
    split: str

    @property
    def reader_names(self) -> list[str]: ...

    @property
    def has_prob(self) -> bool: ...

    @property
    def has_model(self) -> bool: ...

    def load(self) -> StudyCase: ...


@dataclass
class CaseFiles(_CaseMembers):
    """One case of a study table: file paths, read only when :meth:`load` is called."""

    case_id: str
    readers: dict[str, Path]
    model_mask: Path | None = None
    model_prob: Path | None = None
    roi: Path | None = None
    split: str = "test"
    arm_readers: dict[str, dict[str, Path]] = field(default_factory=dict)  # other arms: arm -> reader -> mask
    times: dict[str, dict[str, float]] = field(default_factory=dict)  # arm -> reader -> active seconds
    primary_arm: str | None = None  # the arm whose masks are in ``readers``

    def load(self) -> StudyCase:
        readers = {name: read_mask(p, f"mask of reader {name}") for name, p in self.readers.items()}
        sources = {name: str(p) for name, p in self.readers.items()}
        mask = prob = roi = None
        if self.model_mask is not None:
            mask = read_mask(self.model_mask, "model mask")
            sources["model"] = str(self.model_mask)
        if self.model_prob is not None:
            prob = sitk.Cast(read_image(self.model_prob, "model probability map"), sitk.sitkFloat32)
            sources["model probability"] = str(self.model_prob)
            arr = sitk.GetArrayViewFromImage(prob)
            lo, hi = float(arr.min()), float(arr.max())
            if not (np.isfinite(lo) and np.isfinite(hi) and lo >= 0.0 and hi <= 1.0):
                raise InputError(f"probability map values span [{lo:g}, {hi:g}], not [0, 1]", self.model_prob,
                                 "give the model's probability map (e.g. <case>_prob.nii.gz), "
                                 "not a label map or logits")
        if self.roi is not None:
            roi = read_mask(self.roi, "region of interest")
            sources["roi"] = str(self.roi)
        return StudyCase(self.case_id, readers, mask, prob, roi, self.split, sources)


TABLE_COLUMNS = ("case", "reader", "mask")
OPTIONAL_COLUMNS = ("prob", "roi", "split", "arm", "time_s")
PRIMARY_ARM = "unaided"  # with an arm column, the readers' masks of this arm are compared with the model


def read_study_table(path: str | Path, model_name: str = "model") -> list[CaseFiles]:
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
        with path.open(newline="", encoding="utf-8-sig") as fh:
            rows = list(csv.DictReader(fh))
            header = [c.strip().lower() for c in (rows[0].keys() if rows else [])]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"cannot read the table ({exc})", path, "save it as a UTF-8 CSV file") from None
    if not rows:
        raise InputError("the table has no rows", path, "list one row per case and reader: case,reader,mask")
    missing = [c for c in TABLE_COLUMNS if c not in header]
    if missing:
        raise InputError(f"the table lacks column(s) {', '.join(missing)} (header: {', '.join(header)})", path,
                         "start the file with the header line case,reader,mask[,prob,roi,split]")
    base = path.parent

    def as_path(text: str | None) -> Path | None:
        text = (text or "").strip()
        if not text:
            return None
        p = Path(text).expanduser()
        return p if p.is_absolute() else base / p

    cases: dict[str, CaseFiles] = {}
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
        cf = cases.setdefault(case, CaseFiles(case, {}))
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
                raise InputError(f"the model row of case {case} gives neither a mask nor a prob file", where)
            cf.model_mask, cf.model_prob = mask, prob
        else:
            if prob is not None:
                raise InputError(f"a probability map is given for reader {reader!r}, not for the model "
                                 f"({model_name!r})", where, f"put probability maps on the {model_name!r} rows, "
                                 "or pass --model-name with the model's reader name")
            if mask is None:
                raise InputError(f"no mask for reader {reader} in case {case}", where)
            arm = row.get("arm", "") or primary
            if arms and not row.get("arm", ""):
                raise InputError(f"reader {reader}'s row of case {case} has no arm, other rows have one", where,
                                 "fill in the arm column of every reader row (leave it empty on the model's rows)")
            target = cf.readers if arm == primary else cf.arm_readers.setdefault(arm, {})
            if reader in target:
                raise InputError(f"reader {reader} appears twice for case {case}"
                                 + (f" in arm {arm}" if arm else ""), where)
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


def read_scores_table(path: str | Path) -> tuple[dict[str, dict[str, float]], dict[str, int]]:
    """Malignancy scores for the hybrid analysis: CSV with ``case, reader, score, malignant``.

    Returns ``(scores[rater][case], malignant[case])``; the model's rows use its reader name.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError("scores table does not exist", path, "check the path")
    with path.open(newline="", encoding="utf-8-sig") as fh:
        rows = list(csv.DictReader(fh))
    need = ("case", "reader", "score", "malignant")
    header = [c.strip().lower() for c in (rows[0].keys() if rows else [])]
    if not rows or any(c not in header for c in need):
        raise InputError(f"the scores table needs columns {', '.join(need)}", path,
                         "one row per case and reader (the model's rows use its reader name); "
                         "malignant is 1 or 0")
    scores: dict[str, dict[str, float]] = {}
    labels: dict[str, int] = {}
    for line, raw in enumerate(rows, start=2):
        row = {k.strip().lower(): (v or "").strip() for k, v in raw.items() if k is not None}
        where = f"{path}, line {line}"
        try:
            value, label = float(row["score"]), int(float(row["malignant"]))
        except ValueError:
            raise InputError("score and malignant must be numbers", where) from None
        if label not in (0, 1) or not np.isfinite(value):
            raise InputError("malignant must be 0 or 1 and the score finite", where)
        if labels.setdefault(row["case"], label) != label:
            raise InputError(f"case {row['case']} is marked both malignant and benign", where)
        scores.setdefault(row["reader"], {})[row["case"]] = value
    return scores, labels


def assign_tuning(cases: Sequence[CaseLike], fraction: float, seed: int = 0) -> list[CaseLike]:
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


# ------------------------------------------------------------------------------------ config
@dataclass
class StudyConfig:
    """Choices of a reader-study analysis (all recorded in the report)."""

    reference: str = "intersection"
    margins: tuple[float, float] | None = None  # TOST bounds on ΔDice; None: from the readers
    alpha: float = 0.05
    threshold: float = 0.5  # for probability maps when there are no tuning cases
    thresholds: Sequence[float] = DEFAULT_THRESHOLDS  # candidates on the tuning cases
    n_bootstrap: int = 2000
    seed: int = 0
    roc_bins: int = 10_000
    model_name: str = "model"

    def check(self) -> None:
        if self.reference not in REFERENCE_METHODS:
            raise InputError(f"unknown reference method {self.reference!r}", "--reference",
                             f"use one of {', '.join(REFERENCE_METHODS)}")
        if self.margins is not None:
            low, high = self.margins
            if not low < 0 < high:
                raise InputError(f"equivalence margins must satisfy low < 0 < high, got ({low}, {high})", "--margins",
                                 "give them as ΔDice, e.g. --margins -0.05 0.05")
        if not 0 < self.alpha < 0.5:
            raise InputError(f"alpha must lie in (0, 0.5), got {self.alpha}", "--alpha", "e.g. --alpha 0.05")
        for t in (self.threshold, *self.thresholds):
            check_threshold(t)


# ------------------------------------------------------------------------------- per case
@dataclass
class _Case:
    """A loaded case cropped to the box around all its masks."""

    case_id: str
    split: str
    readers: dict[str, sitk.Image]
    refs: dict[str, sitk.Image]  # keyed by left-out reader
    model_mask: sitk.Image | None
    prob: np.ndarray | None  # probability inside the box
    roc_labels: dict[str, np.ndarray] | None  # per reference, over the ROC voxels (whole volume or ROI)
    roc_scores: np.ndarray | None
    box_offset_zyx: tuple[int, int, int]

    def __post_init__(self) -> None:
        # each mask's contour, distance map and components are computed once per case
        self.prepared_readers = {r: M.PreparedMask(m, f"{r} ({self.case_id})") for r, m in self.readers.items()}
        self.prepared_refs = {r: M.PreparedMask(m, f"{reference_name(r)} ({self.case_id})")
                              for r, m in self.refs.items()}
        self.prepared_model = (M.PreparedMask(self.model_mask, f"model ({self.case_id})")
                               if self.model_mask is not None else None)


def _check_case(case: StudyCase, readers: Sequence[str]) -> None:
    first = readers[0]
    like = case.readers[first]
    src = case.sources

    def name(key: str) -> str:
        return src.get(key, f"{key} of case {case.case_id}")

    for r in readers[1:]:
        M.check_same_grid(like, case.readers[r], name(first), name(r))
    for key, img in (("model", case.model_mask), ("model probability", case.model_prob), ("roi", case.roi)):
        if img is not None:
            M.check_same_grid(like, img, name(first), name(key))


def _box(arrays: Iterable[np.ndarray], shape: tuple[int, ...], pad: int = CROP_PAD) -> tuple[slice, ...]:
    union = np.zeros(shape, bool)
    for a in arrays:
        union |= a
    if not union.any():
        return tuple(slice(0, n) for n in shape)
    out = []
    for ax in range(len(shape)):
        idx = np.flatnonzero(union.any(axis=tuple(i for i in range(len(shape)) if i != ax)))
        out.append(slice(max(int(idx[0]) - pad, 0), min(int(idx[-1]) + pad + 1, shape[ax])))
    return tuple(out)


def _crop(img: sitk.Image, box: tuple[slice, ...]) -> sitk.Image:
    return img[tuple(box[::-1])]  # numpy (z, y, x) slices -> SimpleITK (x, y, z)


def _prepare(case: StudyCase, readers: Sequence[str], config: StudyConfig, threshold: float,
             with_roc: bool) -> _Case:
    _check_case(case, readers)
    like = case.readers[readers[0]]
    shape = sitk.GetArrayViewFromImage(like).shape
    arrays = [sitk.GetArrayFromImage(case.readers[r]) > 0 for r in readers]
    prob_full = sitk.GetArrayFromImage(case.model_prob) if case.model_prob is not None else None
    extra = []
    if case.model_mask is not None:
        extra.append(sitk.GetArrayFromImage(case.model_mask) > 0)
    if prob_full is not None:
        extra.append(prob_full >= min(list(config.thresholds) + [threshold]))
    box = _box(arrays + extra, shape)
    crop = {r: _crop(_uint8(case.readers[r]), box) for r in readers}
    refs = leave_one_out_references(crop, config.reference)
    model_mask = _crop(_uint8(case.model_mask), box) if case.model_mask is not None else None
    prob = prob_full[box] if prob_full is not None else None
    if model_mask is None and prob is not None:
        model_mask = sitk.GetImageFromArray((prob >= threshold).astype(np.uint8))
        model_mask.CopyInformation(crop[readers[0]])
    roc_labels = roc_scores = None
    if with_roc and prob_full is not None:
        region = (sitk.GetArrayFromImage(case.roi) > 0) if case.roi is not None else np.ones(shape, bool)
        roc_scores = prob_full[region]
        roc_labels = {}
        for r, ref in refs.items():
            lab = np.zeros(shape, bool)
            lab[box] = sitk.GetArrayFromImage(ref) > 0
            roc_labels[r] = lab[region]
    return _Case(case.case_id, case.split, crop, refs, model_mask, prob, roc_labels, roc_scores,
                 tuple(s.start for s in box))


def _pair_row(case: _Case, rater: str, kind: str, mask: M.PreparedMask, left_out: str,
              readers: Sequence[str]) -> dict:
    ref = case.prepared_refs[left_out]
    m = M.evaluate_prepared(mask, ref)
    d2, k = M.dice_2d(mask.array, ref.array)
    row = {"case": case.case_id, "split": case.split, "rater": rater, "kind": kind,
           "reference": reference_name(left_out),
           "reference_readers": "+".join(r for r in readers if r != left_out)}
    row.update(m.as_dict())
    row["dice_2d"] = d2
    row["dice_2d_slice"] = k + case.box_offset_zyx[0]
    return row


def _threshold_dice(case: _Case, thresholds: Sequence[float]) -> np.ndarray:
    """Dice of (prob ≥ t) against each reference: array (thresholds, references)."""
    refs = [case.prepared_refs[r].array for r in case.refs]
    out = np.zeros((len(thresholds), len(refs)))
    for i, t in enumerate(thresholds):
        pred = case.prob >= t
        for j, ref in enumerate(refs):
            out[i, j] = M.dice(pred, ref)
    return out


# ------------------------------------------------------------------------------------ result
@dataclass
class ReaderStudyResult:
    """Everything a reader study produced; :mod:`report` turns it into files."""

    config: StudyConfig
    readers: list[str]
    model_name: str
    eval_cases: list[str]
    tune_cases: list[str]
    rows: list[dict]  # one per (case, rater, reference): every metric
    summary: dict  # every summary number, JSON-ready
    roc: dict[str, S.RocCurve]  # keyed by reference name
    hybrid: list[S.HybridCurve]
    tuning: dict | None
    roc_region: str = "whole volume"  # where the voxel-wise ROC counts voxels
    arm_rows: list[dict] = field(default_factory=list)  # per (case, reader, arm): Dice and time

    def values(self, rater: str, reference: str, metric: str = "dice") -> np.ndarray:
        """Per-case values over the evaluation cases, in :attr:`eval_cases` order."""
        by_case = {r["case"]: r[metric] for r in self.rows
                   if r["rater"] == rater and r["reference"] == reference and r["split"] == "test"}
        return np.array([by_case[c] for c in self.eval_cases], dtype=float)

    def delta(self, reader: str) -> np.ndarray:
        """ΔDice per evaluation case: model − reader, both against the reader's reference."""
        ref = reference_name(reader)
        return self.values(self.model_name, ref) - self.values(reader, ref)

    def mean_delta(self) -> np.ndarray:
        """Per case, the mean over readers of ΔDice (the vector of the overall tests)."""
        return np.mean([self.delta(r) for r in self.readers], axis=0)


# ------------------------------------------------------------------------------- the study
def _validate(cases: Sequence[CaseLike], model_name: str) -> list[str]:
    if not cases:
        raise InputError("the study has no cases")
    seen: set[str] = set()
    readers = cases[0].reader_names
    if len(readers) < 2:
        raise InputError(f"case {cases[0].case_id} has {len(readers)} reader(s); a reader study needs at least 2",
                         None, "add the other readers' masks")
    if model_name in readers:
        raise InputError(f"a reader is named like the model ({model_name!r})", None, "rename the reader or the model")
    for c in cases:
        if c.case_id in seen:
            raise InputError(f"case {c.case_id} is listed twice", None, "give each case one id")
        seen.add(c.case_id)
        if sorted(c.reader_names) != sorted(readers):
            miss = sorted(set(readers) - set(c.reader_names))
            more = sorted(set(c.reader_names) - set(readers))
            raise InputError(f"case {c.case_id} has readers {', '.join(sorted(c.reader_names))} but case "
                             f"{cases[0].case_id} has {', '.join(sorted(readers))}"
                             + (f" (missing: {', '.join(miss)})" if miss else "")
                             + (f" (extra: {', '.join(more)})" if more else ""), None,
                             "every reader must segment every case; drop incomplete cases")
        if not c.has_model:
            raise InputError(f"case {c.case_id} has no model mask or probability map", None,
                             f"add a row with reader {model_name!r} for this case")
        if c.split not in SPLITS:
            raise InputError(f"case {c.case_id}: split must be 'test' or 'tune', not {c.split!r}")
    if all(c.split == "tune" for c in cases):
        raise InputError("every case is a tuning case; nothing is left to evaluate", None,
                         "mark some cases split=test")
    if any(c.split == "tune" and not c.has_prob for c in cases):
        raise InputError("tuning cases need the model's probability map (prob column)", None,
                         "add prob files for the tuning cases, or drop split=tune")
    return list(readers)


def run_reader_study(cases: Sequence[CaseLike], config: StudyConfig | None = None,
                     scores: Mapping[str, Mapping[str, float]] | None = None,
                     malignant: Mapping[str, int] | None = None,
                     progress: Callable[[str, float, str], None] | None = None, cancel=None) -> ReaderStudyResult:
    """Run the whole analysis on in-memory :class:`StudyCase` objects or lazily loaded :class:`CaseFiles`.

    ``scores[rater][case]`` and ``malignant[case]`` (optional) add the Wu et al. hybrid analysis.
    ``progress``/``cancel`` follow :class:`BreastTumorSegLib.core.progress.Reporter`.
    """
    config = config or StudyConfig()
    config.check()
    readers = _validate(cases, config.model_name)
    rep = Reporter(progress, cancel, weights={"tuning": 1.0, "evaluation": 4.0, "statistics": 1.0})
    tune = [c for c in cases if c.split == "tune"]
    test = [c for c in cases if c.split == "test"]
    thresholds = list(config.thresholds)

    tuning = None
    threshold = config.threshold
    with rep.stage("tuning"):
        if tune:
            per_case = []
            for i, c in enumerate(tune):
                rep.update(i / len(tune), f"tuning on case {c.case_id}")
                per_case.append(_threshold_dice(_prepare(c.load(), readers, config, threshold, False), thresholds))
            mean = np.mean(per_case, axis=(0, 2))
            threshold = float(thresholds[int(np.argmax(mean))])
            tuning = {"thresholds": thresholds, "mean_dice_tune": mean.tolist(), "chosen": threshold,
                      "criterion": "mean Dice over tuning cases and all references", "cases": [c.case_id for c in tune]}

    rows: list[dict] = []
    accs = {r: S.RocAccumulator(config.roc_bins) for r in readers}
    any_prob = False
    roi_cases = 0
    test_threshold_dice = []
    with rep.stage("evaluation"):
        for i, c in enumerate(test):
            rep.update(i / len(test), f"case {c.case_id}")
            loaded = c.load()
            roi_cases += loaded.roi is not None
            case = _prepare(loaded, readers, config, threshold, True)
            for r in readers:
                rows.append(_pair_row(case, r, "reader", case.prepared_readers[r], r, readers))
                rows.append(_pair_row(case, config.model_name, "model", case.prepared_model, r, readers))
            if case.roc_scores is not None:
                any_prob = True
                for r in readers:
                    accs[r].add(case.roc_scores, case.roc_labels[r])
                test_threshold_dice.append(_threshold_dice(case, thresholds))
    if tuning is not None and len(test_threshold_dice) == len(test):
        tuning["mean_dice_test"] = np.mean(test_threshold_dice, axis=(0, 2)).tolist()

    result = ReaderStudyResult(config, readers, config.model_name, [c.case_id for c in test],
                               [c.case_id for c in tune], rows, {}, {}, [], tuning)
    result.roc_region = ("inside the region of interest" if roi_cases == len(test) else
                         "whole volume" if roi_cases == 0 else
                         f"inside the region of interest in {roi_cases} of {len(test)} cases, else the whole volume")
    with rep.stage("statistics"):
        if any_prob:
            result.roc = {reference_name(r): accs[r].curve() for r in readers}
        if scores is not None and malignant is not None:
            result.hybrid = _hybrid(scores, malignant, readers, config.model_name)
        result.summary = _summarize(result, threshold, any(c.has_prob and not _has_mask(c) for c in test))
        if any(getattr(c, "arm_readers", None) or getattr(c, "times", None) for c in test):
            result.arm_rows = arm_rows(test, readers, config)
            result.summary["arms"] = summarize_arms(result)
    return result


# ------------------------------------------------------------------------ arms (assisted vs unaided)
def arm_rows(cases: Sequence[CaseLike], readers: Sequence[str], config: StudyConfig) -> list[dict]:
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
                M.check_same_grid(first, m, f"reader {readers[0]} of case {c.case_id}", f"reader {r} ({arm})")
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


def _has_mask(c: CaseLike) -> bool:
    return getattr(c, "model_mask", None) is not None


def _hybrid(scores, malignant, readers, model_name) -> list[S.HybridCurve]:
    if model_name not in scores:
        raise InputError(f"the scores table has no rows for the model ({model_name!r})", None,
                         "add the model's malignancy score for every case")
    out = []
    for r in readers:
        if r not in scores:
            continue
        cases = [c for c in malignant if c in scores[r] and c in scores[model_name]]
        if len(cases) < 2:
            raise InputError(f"reader {r} and the model share fewer than two scored cases")
        out.append(S.hybrid_auc([scores[r][c] for c in cases], [scores[model_name][c] for c in cases],
                                [malignant[c] for c in cases], reader=r))
    return out


def _med(v: np.ndarray) -> float:
    v = v[np.isfinite(v)]
    return float(np.median(v)) if v.size else float("nan")


def _summarize(res: ReaderStudyResult, threshold: float, thresholded: bool) -> dict:
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


# ------------------------------------------------------------------------ simulated studies
@dataclass(frozen=True)
class SimulatedRater:
    """A simulated segmenter: the true boundary moved by ``bias_mm`` (+ dilates, − erodes) plus a
    smooth random displacement of standard deviation ``noise_mm``."""

    name: str
    bias_mm: float
    noise_mm: float


DEFAULT_SIM_READERS = (SimulatedRater("R1", -0.5, 0.8), SimulatedRater("R2", 0.3, 1.0),
                       SimulatedRater("R3", 1.0, 1.2), SimulatedRater("R4", 2.0, 1.5))
DEFAULT_SIM_MODEL = SimulatedRater("model", 0.5, 1.8)
NOISE_CORRELATION_MM = 2.5  # smoothing length of the simulated boundary noise


def _signed_distance(truth: np.ndarray, spacing_zyx: Sequence[float]) -> np.ndarray:
    """Signed distance (mm) to the other side: negative inside, positive outside, never zero."""
    from scipy import ndimage

    outside = ndimage.distance_transform_edt(~truth, sampling=spacing_zyx)
    inside = ndimage.distance_transform_edt(truth, sampling=spacing_zyx)
    return np.where(truth, -inside, outside)


def _smooth_noise(rng: np.random.Generator, shape, spacing_zyx: Sequence[float]) -> np.ndarray:
    """Unit-variance Gaussian noise, smoothed over ``NOISE_CORRELATION_MM``."""
    from scipy import ndimage

    sigma = [NOISE_CORRELATION_MM / s for s in spacing_zyx]
    f = ndimage.gaussian_filter(rng.standard_normal(shape), sigma)
    return f / (f.std() or 1.0)


def simulate_case(case_id: str, truth: sitk.Image, readers: Sequence[SimulatedRater] = DEFAULT_SIM_READERS,
                  model: SimulatedRater = DEFAULT_SIM_MODEL, rng: np.random.Generator | None = None,
                  split: str = "test", model_prob_width_mm: float = 1.0) -> StudyCase:
    """Readers' masks and the model's probability map made from a true mask (any grid).

    A rater's mask is ``{signed distance to the truth + noise_mm · smooth noise < bias_mm}``; the
    model's probability map is ``sigmoid((bias − distance − noise) / width)``, so thresholding it at
    0.5 gives the model's own mask and other thresholds move its boundary.
    """
    rng = rng or np.random.default_rng(0)
    t = sitk.GetArrayFromImage(truth) > 0
    sp = tuple(truth.GetSpacing()[::-1])
    sdf = _signed_distance(t, sp)

    def image(arr: np.ndarray, pixel) -> sitk.Image:
        img = sitk.GetImageFromArray(arr.astype(pixel))
        img.CopyInformation(truth)
        return img

    masks = {r.name: image(sdf + r.noise_mm * _smooth_noise(rng, t.shape, sp) < r.bias_mm, np.uint8)
             for r in readers}
    margin = model.bias_mm - sdf - model.noise_mm * _smooth_noise(rng, t.shape, sp)
    prob = 1.0 / (1.0 + np.exp(-margin / model_prob_width_mm))
    return StudyCase(case_id, masks, None, image(prob, np.float32), None, split)


def ellipsoid_truth(rng: np.random.Generator, size_xyz: tuple[int, int, int] = (64, 64, 24),
                    spacing: tuple[float, float, float] = (0.8, 0.8, 2.0)) -> sitk.Image:
    """A true tumour mask: one ellipsoid (semi-axes 4–12 mm), a small satellite in a third of cases."""
    shape = tuple(size_xyz[::-1])
    sp = np.asarray(spacing[::-1])
    extent = np.asarray(shape) * sp
    zz, yy, xx = np.meshgrid(*[(np.arange(n) + 0.5) * s for n, s in zip(shape, sp)], indexing="ij")

    def ellipsoid(center, axes) -> np.ndarray:
        return ((zz - center[0]) / axes[0]) ** 2 + ((yy - center[1]) / axes[1]) ** 2 + \
               ((xx - center[2]) / axes[2]) ** 2 <= 1.0

    axes = rng.uniform(4.0, 12.0, 3)
    axes[0] = max(axes[0], 2.5 * sp[0])
    center = extent / 2 + rng.uniform(-3, 3, 3)
    truth = ellipsoid(center, axes)
    if rng.random() < 0.35:
        off = np.array([0.0, 1.0, 1.0]) * (axes.max() + rng.uniform(5, 8)) * rng.choice([-1, 1], 3)
        truth |= ellipsoid(np.clip(center + off, 8, extent - 8), rng.uniform(2.5, 4.0, 3).clip(sp[0] * 1.5))
    img = sitk.GetImageFromArray(truth.astype(np.uint8))
    img.SetSpacing(spacing)
    return img


def simulate_study(n_cases: int = 30, n_tune: int = 6, readers: Sequence[SimulatedRater] = DEFAULT_SIM_READERS,
                   model: SimulatedRater = DEFAULT_SIM_MODEL, seed: int = 0,
                   size_xyz: tuple[int, int, int] = (64, 64, 24), spacing: tuple[float, float, float] = (0.8, 0.8, 2.0),
                   truths: Sequence[sitk.Image] | None = None) -> tuple[list[StudyCase], dict[str, sitk.Image]]:
    """A synthetic reader study with known truth, for tests, demos and the example report.

    Truth masks are ellipsoids (:func:`ellipsoid_truth`) unless given (e.g. phantom tumour masks);
    raters are made by :func:`simulate_case`. The first *n_tune* cases are tuning cases.
    Returns ``(cases, truth_by_case)``.
    """
    rng = np.random.default_rng(seed)
    if truths is not None:
        n_cases = len(truths)
    cases, out = [], {}
    for i in range(n_cases):
        truth = truths[i] if truths is not None else ellipsoid_truth(rng, size_xyz, spacing)
        case_id = f"SIM{i + 1:03d}"
        cases.append(simulate_case(case_id, truth, readers, model, rng, "tune" if i < n_tune else "test"))
        out[case_id] = truth
    return cases, out


def simulate_scores(n_cases: int = 200, readers: Sequence[str] = ("R1", "R2", "R3", "R4"),
                    reader_separation: Sequence[float] = (1.6, 1.3, 1.0, 0.8), model_separation: float = 1.4,
                    prevalence: float = 0.3, model_name: str = "model", seed: int = 0
                    ) -> tuple[dict[str, dict[str, float]], dict[str, int]]:
    """Synthetic per-case malignancy scores in [0, 1] for the hybrid (Wu et al.) analysis.

    Each rater's latent score is ``separation · malignant + N(0, 1)`` with noise independent
    between raters, mapped through a logistic function; independent errors are what makes the
    average of a reader and the model better than either (binormal AUC = Φ(separation / √2)).
    Returns ``(scores[rater][case], malignant[case])``.
    """
    rng = np.random.default_rng(seed)
    labels = (rng.random(n_cases) < prevalence).astype(int)
    labels[:2] = (0, 1)  # both classes present whatever the seed
    cases = [f"EXAM{i + 1:04d}" for i in range(n_cases)]
    scores: dict[str, dict[str, float]] = {}
    for name, sep in list(zip(readers, reader_separation)) + [(model_name, model_separation)]:
        latent = sep * labels + rng.standard_normal(n_cases)
        scores[name] = dict(zip(cases, (1.0 / (1.0 + np.exp(-(latent - sep / 2)))).tolist()))
    return scores, dict(zip(cases, labels.tolist()))
