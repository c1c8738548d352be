"""The reader study's settings (:class:`StudyConfig`) and its result (:class:`ReaderStudyResult`).

Kept apart from :mod:`.readerstudy` (the analysis) so that its neighbours (:mod:`.arms`,
:mod:`.study_summary`) can use both types without importing the analysis.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from . import stats as S
from ..core.errors import InputError
from ..core.values import check_threshold
from .references import REFERENCE_METHODS, reference_name

DEFAULT_THRESHOLDS = tuple(np.round(np.arange(0.05, 0.951, 0.05), 2).tolist())


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
    hybrid_normalize: str = "none"  # "rank" for readers' scores on another scale (BI-RADS)

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
