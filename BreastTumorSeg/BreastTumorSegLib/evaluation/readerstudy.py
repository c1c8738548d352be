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

Inputs are :class:`~.study_tables.StudyCase` objects (masks in memory or file paths, loaded one
case at a time). The module's neighbours: :mod:`references` (leave-one-out consensus),
:mod:`study_tables` (the case type and the CSV tables), :mod:`arms` (unaided vs assisted),
:mod:`study_summary` (the report's numbers), :mod:`interreader` (studies without a model) and
:mod:`simulation` (synthetic studies for tests and benchmarks).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Mapping, Sequence

import numpy as np
import SimpleITK as sitk

from . import metrics as M
from .masks import PreparedMask, binary_mask, check_same_grid
from . import stats as S
from ..core.errors import InputError
from ..core.progress import Reporter
from .arms import arm_rows, summarize_arms
from .references import (CROP_PAD, REFERENCE_METHODS, combine_masks, leave_one_out_references,  # noqa: F401
                         reference_name)
from .study_summary import has_mask, hybrid_curves, summarize
from .study_types import DEFAULT_THRESHOLDS, ReaderStudyResult, StudyConfig  # noqa: F401
from .study_tables import (PRIMARY_ARM, SPLITS, StudyCase, assign_tuning, read_scores_table,  # noqa: F401
                           read_study_table)

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
        self.prepared_readers = {r: PreparedMask(m, f"{r} ({self.case_id})") for r, m in self.readers.items()}
        self.prepared_refs = {r: PreparedMask(m, f"{reference_name(r)} ({self.case_id})")
                              for r, m in self.refs.items()}
        self.prepared_model = (PreparedMask(self.model_mask, f"model ({self.case_id})")
                               if self.model_mask is not None else None)


def _check_case(case: StudyCase, readers: Sequence[str]) -> None:
    first = readers[0]
    like = case.readers[first]
    src = case.sources

    def name(key: str) -> str:
        return src.get(key, f"{key} of case {case.case_id}")

    for r in readers[1:]:
        check_same_grid(like, case.readers[r], name(first), name(r))
    for key, img in (("model", case.model_mask), ("model probability", case.model_prob), ("roi", case.roi)):
        if img is not None:
            check_same_grid(like, img, name(first), name(key))


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
    crop = {r: _crop(binary_mask(case.readers[r]), box) for r in readers}
    refs = leave_one_out_references(crop, config.reference)
    model_mask = _crop(binary_mask(case.model_mask), box) if case.model_mask is not None else None
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


def _pair_row(case: _Case, rater: str, kind: str, mask: PreparedMask, left_out: str,
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


# ------------------------------------------------------------------------------- the study
def validate_cases(cases: Sequence[StudyCase], model_name: str, need_model: bool = True) -> list[str]:
    """The readers of *cases* (the same ≥ 2 readers in every case); *need_model*: every case has the model."""
    if not cases:
        raise InputError("the study has no cases", None, "list one row per case and reader: case,reader,mask")
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
        if need_model and not c.has_model:
            raise InputError(f"case {c.case_id} has no model mask or probability map", None,
                             f"add a row with reader {model_name!r} for this case")
        if c.split not in SPLITS:
            raise InputError(f"case {c.case_id}: split must be 'test' or 'tune', not {c.split!r}", None,
                             "write test or tune in the split column (or leave it empty: test)")
    if all(c.split == "tune" for c in cases):
        raise InputError("every case is a tuning case; nothing is left to evaluate", None,
                         "mark some cases split=test")
    if any(c.split == "tune" and not c.has_prob for c in cases):
        raise InputError("tuning cases need the model's probability map (prob column)", None,
                         "add prob files for the tuning cases, or drop split=tune")
    return list(readers)


def run_reader_study(cases: Sequence[StudyCase], config: StudyConfig | None = None,
                     scores: Mapping[str, Mapping[str, float]] | None = None,
                     malignant: Mapping[str, int] | None = None,
                     progress: Callable[[str, float, str], None] | None = None, cancel=None) -> ReaderStudyResult:
    """Run the whole analysis on :class:`StudyCase` objects (loaded one at a time).

    ``scores[rater][case]`` and ``malignant[case]`` (optional) add the Wu et al. hybrid analysis.
    ``progress``/``cancel`` follow :class:`BreastTumorSegLib.core.progress.Reporter`.
    """
    config = config or StudyConfig()
    config.check()
    readers = validate_cases(cases, config.model_name)
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
            result.hybrid = hybrid_curves(scores, malignant, readers, config.model_name, config.hybrid_normalize)
        result.summary = summarize(result, threshold, any(c.has_prob and not has_mask(c) for c in test))
        if any(getattr(c, "arm_readers", None) or getattr(c, "times", None) for c in test):
            result.arm_rows = arm_rows(test, readers, config)
            result.summary["arms"] = summarize_arms(result)
    return result
