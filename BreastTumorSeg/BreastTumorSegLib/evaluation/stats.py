"""Statistics for reader studies: paired tests, equivalence (TOST), bootstrap, ROC/AUC, hybrids.

Thin, explicit layers over scipy.stats and statsmodels, so that every p-value in a report can be
traced to one library call on one vector of numbers:

* :func:`wilcoxon_signed_rank` — ``scipy.stats.wilcoxon`` on paired differences (zeros dropped,
  the "wilcox" convention; exact null distribution for ≤ 50 non-zero differences without ties,
  normal approximation with tie correction otherwise).
* :func:`tost_wilcoxon` — equivalence by two one-sided Wilcoxon signed-rank tests: with
  differences d (e.g. model Dice − reader Dice) and bounds ``low < 0 < high``, the null hypothesis
  is "the centre of d is ≤ low or ≥ high". Test 1 asks whether ``d − low`` is shifted above 0
  (``alternative="greater"``), test 2 whether ``d − high`` is shifted below 0 (``"less"``); the
  TOST p-value is the larger of the two, and equivalence is declared when it is below α.
* :func:`tost_paired_t` — the same question about the *mean* difference by statsmodels'
  ``ttost_paired`` (a cross-check that assumes normal differences).
* :func:`bootstrap_ci` — percentile bootstrap (``scipy.stats.bootstrap``) of a statistic over cases.
* :func:`roc_curve`, :class:`RocAccumulator` — ROC curves; AUC by the trapezoid rule, which equals
  the Mann–Whitney AUC (ties counted one half; checked against ``scipy.stats.mannwhitneyu``).
* :func:`hybrid_auc` — Wu et al. 2019: AUC of λ·reader + (1 − λ)·model over λ ∈ [0, 1].
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Callable, Sequence

import numpy as np
from scipy import stats as sps

_trapezoid = getattr(np, "trapezoid", None) or np.trapz  # numpy < 2 (e.g. older Slicer) has only trapz

# Largest number of non-zero differences for which the exact signed-rank distribution is used.
EXACT_MAX_N = 50


def _vector(values, name: str = "values") -> np.ndarray:
    v = np.asarray(values, dtype=float).ravel()
    if not np.all(np.isfinite(v)):
        raise ValueError(f"{name} contain NaN or infinite entries; drop those cases first")
    return v


# ------------------------------------------------------------------------------ paired tests
@dataclass(frozen=True)
class PairedTest:
    """Result of one signed-rank test on paired differences."""

    statistic: float  # W+ for one-sided tests, min(W+, W−) for two-sided (scipy's convention)
    p_value: float
    alternative: str
    n: int  # pairs
    n_nonzero: int  # pairs that enter the test
    median_difference: float
    hodges_lehmann: float  # median of Walsh averages: the location the signed-rank test is about
    method: str  # "exact", "asymptotic" or "degenerate" (no non-zero difference)
    shift: float = 0.0

    def as_dict(self) -> dict:
        return asdict(self)


def hodges_lehmann(diff) -> float:
    """Hodges–Lehmann estimate: the median of all pairwise averages (d_i + d_j)/2, i ≤ j."""
    d = _vector(diff, "differences")
    if d.size == 0:
        return float("nan")
    if d.size > 3000:  # n²/2 averages would not fit comfortably in memory; the median is close
        return float(np.median(d))
    i, j = np.triu_indices(d.size)
    return float(np.median((d[i] + d[j]) / 2.0))


def wilcoxon_signed_rank(diff, alternative: str = "two-sided", shift: float = 0.0) -> PairedTest:
    """Wilcoxon signed-rank test of ``diff − shift`` (paired differences, e.g. model − reader).

    ``alternative``: "two-sided" (centre ≠ shift), "greater" (centre > shift) or "less".
    With no non-zero difference there is no evidence either way: p = 1 ("degenerate").
    """
    if alternative not in ("two-sided", "greater", "less"):
        raise ValueError(f"alternative must be two-sided, greater or less, not {alternative!r}")
    d = _vector(diff, "differences")
    if d.size == 0:
        raise ValueError("no paired differences to test")
    shifted = d - shift
    nz = shifted[shifted != 0]
    base = dict(alternative=alternative, n=int(d.size), n_nonzero=int(nz.size),
                median_difference=float(np.median(d)), hodges_lehmann=hodges_lehmann(d), shift=float(shift))
    if nz.size == 0:
        return PairedTest(statistic=0.0, p_value=1.0, method="degenerate", **base)
    ties = np.unique(np.abs(nz)).size < nz.size
    method = "exact" if nz.size <= EXACT_MAX_N and not ties else "asymptotic"
    try:
        res = sps.wilcoxon(nz, alternative=alternative, method=method, zero_method="wilcox")
    except ValueError:  # scipy < 1.13 calls the normal approximation "approx"
        if method != "asymptotic":
            raise
        res = sps.wilcoxon(nz, alternative=alternative, method="approx", zero_method="wilcox")
    return PairedTest(statistic=float(res.statistic), p_value=float(res.pvalue), method=method, **base)


@dataclass(frozen=True)
class TostResult:
    """Two one-sided tests of equivalence: H0 "centre ≤ low or centre ≥ high"."""

    low: float
    high: float
    p_lower: float  # H0: centre ≤ low   (rejected → the difference is above the lower bound)
    p_upper: float  # H0: centre ≥ high  (rejected → the difference is below the upper bound)
    p_value: float  # max(p_lower, p_upper)
    alpha: float
    equivalent: bool
    n: int
    estimate: float  # Hodges–Lehmann (Wilcoxon) or mean (t) of the differences
    method: str  # "wilcoxon" or "paired-t"
    statistic_lower: float = float("nan")
    statistic_upper: float = float("nan")
    extra: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        d = asdict(self)
        d.update(d.pop("extra"))
        return d


def _check_bounds(low: float, high: float) -> None:
    if not (np.isfinite(low) and np.isfinite(high) and low < high):
        raise ValueError(f"equivalence bounds must satisfy low < high, got ({low}, {high})")


def tost_wilcoxon(diff, low: float, high: float, alpha: float = 0.05) -> TostResult:
    """Equivalence of paired differences to the interval (low, high) by two Wilcoxon tests.

    ``p_lower`` = Wilcoxon of ``diff − low`` with ``alternative="greater"``;
    ``p_upper`` = Wilcoxon of ``diff − high`` with ``alternative="less"``.
    Equivalent when both are below ``alpha`` (TOST at level α, confidence 1 − 2α).
    """
    _check_bounds(low, high)
    lower = wilcoxon_signed_rank(diff, "greater", shift=low)
    upper = wilcoxon_signed_rank(diff, "less", shift=high)
    p = max(lower.p_value, upper.p_value)
    return TostResult(low=float(low), high=float(high), p_lower=lower.p_value, p_upper=upper.p_value,
                      p_value=p, alpha=alpha, equivalent=bool(p < alpha), n=lower.n,
                      estimate=lower.hodges_lehmann, method="wilcoxon",
                      statistic_lower=lower.statistic, statistic_upper=upper.statistic,
                      extra={"method_lower": lower.method, "method_upper": upper.method})


def tost_paired_t(diff, low: float, high: float, alpha: float = 0.05) -> TostResult:
    """The same equivalence question about the mean difference, by statsmodels' ``ttost_paired``."""
    from statsmodels.stats.weightstats import ttost_paired

    _check_bounds(low, high)
    d = _vector(diff, "differences")
    if d.size < 2:
        raise ValueError("a paired t test needs at least two differences")
    p, (t1, p1, _df1), (t2, p2, _df2) = ttost_paired(d, np.zeros_like(d), low, high)
    return TostResult(low=float(low), high=float(high), p_lower=float(p1), p_upper=float(p2),
                      p_value=float(p), alpha=alpha, equivalent=bool(p < alpha), n=int(d.size),
                      estimate=float(d.mean()), method="paired-t",
                      statistic_lower=float(t1), statistic_upper=float(t2))


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm–Bonferroni adjusted p-values (statsmodels ``multipletests``), for per-reader tests."""
    from statsmodels.stats.multitest import multipletests

    p = np.asarray(p_values, dtype=float)
    if p.size == 0:
        return []
    return [float(v) for v in multipletests(p, method="holm")[1]]


# ------------------------------------------------------------------------------------- bootstrap
def bootstrap_ci(values, statistic: Callable = np.median, level: float = 0.95, n_resamples: int = 2000,
                 seed: int = 0) -> tuple[float, float]:
    """Percentile-bootstrap confidence interval of ``statistic(values)`` over cases.

    Fewer than two values, or all values equal, give the degenerate interval (v, v).
    """
    v = _vector(values)
    if v.size == 0:
        return (float("nan"), float("nan"))
    if v.size < 2 or np.all(v == v[0]):
        s = float(statistic(v))
        return (s, s)
    kw = dict(n_resamples=n_resamples, confidence_level=level, method="percentile", vectorized=True)
    try:
        res = sps.bootstrap((v,), statistic, rng=np.random.default_rng(seed), **kw)
    except TypeError:  # scipy < 1.15 names the generator random_state
        res = sps.bootstrap((v,), statistic, random_state=np.random.default_rng(seed), **kw)
    return (float(res.confidence_interval.low), float(res.confidence_interval.high))


# ------------------------------------------------------------------------------------------ ROC
@dataclass(frozen=True)
class RocCurve:
    fpr: np.ndarray
    tpr: np.ndarray
    thresholds: np.ndarray  # score at or above which a sample is called positive (first is +inf)
    auc: float
    n_positive: int
    n_negative: int

    def as_dict(self, max_points: int = 200) -> dict:
        """Summary with the curve thinned to at most *max_points* points (always keeps the ends)."""
        k = self.fpr.size
        idx = np.unique(np.linspace(0, k - 1, min(k, max_points)).round().astype(int))
        thr = [None if not np.isfinite(t) else float(t) for t in self.thresholds[idx]]
        return {"auc": self.auc, "n_positive": self.n_positive, "n_negative": self.n_negative,
                "fpr": self.fpr[idx].tolist(), "tpr": self.tpr[idx].tolist(), "thresholds": thr}


def _curve(tps: np.ndarray, fps: np.ndarray, thresholds: np.ndarray) -> RocCurve:
    n_pos, n_neg = int(tps[-1]), int(fps[-1])
    tps = np.r_[0, tps]
    fps = np.r_[0, fps]
    thresholds = np.r_[np.inf, thresholds]
    if n_pos == 0 or n_neg == 0:
        nan = np.full(tps.shape, np.nan)
        return RocCurve(nan, nan, thresholds, float("nan"), n_pos, n_neg)
    fpr, tpr = fps / n_neg, tps / n_pos
    return RocCurve(fpr, tpr, thresholds, float(_trapezoid(tpr, fpr)), n_pos, n_neg)


def roc_curve(scores, labels) -> RocCurve:
    """Exact ROC curve (one point per distinct score); AUC ``nan`` if a class is missing."""
    s = _vector(scores, "scores")
    y = np.asarray(labels).ravel() > 0
    if s.shape != y.shape:
        raise ValueError(f"{s.size} scores but {y.size} labels")
    if s.size == 0:
        raise ValueError("no scores")
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    last_of_run = np.r_[np.flatnonzero(np.diff(s)), s.size - 1]
    tps = np.cumsum(y)[last_of_run]
    fps = last_of_run + 1 - tps
    return _curve(tps, fps, s[last_of_run])


def auc_mann_whitney(scores, labels) -> float:
    """AUC = U / (n₊·n₋) from ``scipy.stats.mannwhitneyu`` (ties count one half)."""
    s = _vector(scores, "scores")
    y = np.asarray(labels).ravel() > 0
    if y.all() or not y.any():
        return float("nan")
    u = sps.mannwhitneyu(s[y], s[~y], alternative="two-sided").statistic
    return float(u) / (int(y.sum()) * int((~y).sum()))


class RocAccumulator:
    """Voxel-wise ROC over many volumes without keeping them: scores are counted in bins.

    The curve has one point per bin edge; its AUC equals the Mann–Whitney AUC of the scores
    rounded down to the bin edges (ties between voxels in one bin count one half), so with the
    default 10,000 bins on [0, 1] it is within 1e-4 of the exact AUC for probability maps.
    """

    def __init__(self, bins: int = 10_000, low: float = 0.0, high: float = 1.0):
        if bins < 1 or not high > low:
            raise ValueError("need bins >= 1 and high > low")
        self.bins, self.low, self.high = int(bins), float(low), float(high)
        self.pos = np.zeros(self.bins, np.int64)
        self.neg = np.zeros(self.bins, np.int64)

    def add(self, scores, labels) -> None:
        """Count one volume (any shape); scores outside [low, high] fall in the end bins."""
        s = np.asarray(scores, dtype=np.float64).ravel()
        y = np.asarray(labels).ravel() > 0
        if s.shape != y.shape:
            raise ValueError(f"{s.size} scores but {y.size} labels")
        b = np.clip(((s - self.low) / (self.high - self.low) * self.bins).astype(np.int64), 0, self.bins - 1)
        self.pos += np.bincount(b[y], minlength=self.bins)
        self.neg += np.bincount(b[~y], minlength=self.bins)

    def curve(self) -> RocCurve:
        edges = self.low + (self.high - self.low) * np.arange(self.bins) / self.bins
        keep = (self.pos + self.neg)[::-1] > 0  # drop empty bins: they add no point
        tps = np.cumsum(self.pos[::-1])[keep]
        fps = np.cumsum(self.neg[::-1])[keep]
        if tps.size == 0:
            return _curve(np.zeros(1, np.int64), np.zeros(1, np.int64), np.array([self.high]))
        return _curve(tps, fps, edges[::-1][keep])


# --------------------------------------------------------------------------------- hybrid (Wu)
@dataclass(frozen=True)
class HybridCurve:
    """AUC of λ·reader + (1 − λ)·model as λ goes from 0 (model alone) to 1 (reader alone)."""

    reader: str
    lambdas: np.ndarray  # increasing
    auc: np.ndarray
    normalize: str
    model_auc: float  # λ = 0
    reader_auc: float  # λ = 1
    cv: dict | None = None  # λ chosen by cross-validation over cases (:func:`hybrid_lambda_cv`)

    @property
    def best_lambda(self) -> float:
        return float(self.lambdas[int(np.nanargmax(self.auc))])

    @property
    def best_auc(self) -> float:
        return float(np.nanmax(self.auc))

    def auc_at(self, lam: float) -> float:
        return float(np.interp(lam, self.lambdas, self.auc))

    def as_dict(self) -> dict:
        return {"reader": self.reader, "normalize": self.normalize, "model_auc": self.model_auc,
                "reader_auc": self.reader_auc, "hybrid_auc_at_0.5": self.auc_at(0.5),
                "best_lambda": self.best_lambda, "best_auc": self.best_auc,
                "best_lambda_note": "chosen on the same cases (in-sample, optimistic)",
                "cv": self.cv, "lambdas": self.lambdas.tolist(), "auc": self.auc.tolist()}


def _normalize(v: np.ndarray, how: str) -> np.ndarray:
    if how == "none":
        return v
    if how == "rank":  # empirical percentile in (0, 1]
        return sps.rankdata(v) / v.size
    if how == "zscore":
        sd = v.std()
        return (v - v.mean()) / sd if sd > 0 else v - v.mean()
    raise ValueError(f"normalize must be none, rank or zscore, not {how!r}")


def hybrid_auc(reader_scores, model_scores, labels, lambdas=None, normalize: str = "none",
               reader: str = "reader") -> HybridCurve:
    """Wu et al. 2019 human–AI hybrid: AUC of λ·reader + (1 − λ)·model for each λ.

    Scores are per case (e.g. a reader's probability of malignancy in [0, 1] and the model's).
    ``normalize="rank"`` puts both on a percentile scale first, for readers scoring on another
    scale (e.g. BI-RADS); "none" averages the raw numbers as Wu et al. did.
    """
    r = _vector(reader_scores, "reader scores")
    m = _vector(model_scores, "model scores")
    y = np.asarray(labels).ravel() > 0
    if not (r.shape == m.shape == y.shape):
        raise ValueError(f"reader ({r.size}), model ({m.size}) and label ({y.size}) counts differ")
    if y.all() or not y.any():
        raise ValueError("hybrid AUC needs both malignant and benign cases")
    lam = np.linspace(0.0, 1.0, 21) if lambdas is None else np.unique(np.asarray(lambdas, dtype=float))
    if lam.size == 0 or np.any((lam < 0) | (lam > 1)):
        raise ValueError("lambdas must lie in [0, 1]")
    r, m = _normalize(r, normalize), _normalize(m, normalize)
    auc = np.array([auc_mann_whitney(k * r + (1 - k) * m, y) for k in lam])
    cv = hybrid_lambda_cv(r, m, y, lam) if min(int(y.sum()), int((~y).sum())) >= 2 else None
    return HybridCurve(reader, lam, auc, normalize, model_auc=auc_mann_whitney(m, y),
                       reader_auc=auc_mann_whitney(r, y), cv=cv)


def hybrid_lambda_cv(reader_scores, model_scores, labels, lambdas, folds: int = 5, seed: int = 0) -> dict:
    """λ of the hybrid chosen by stratified k-fold cross-validation over cases, not in-sample.

    In each fold λ maximises the AUC on the other folds and is applied to the held-out cases;
    the AUC of the pooled held-out hybrid scores estimates how a λ chosen this way performs on new
    cases (the in-sample best λ is optimistic). Scores are used as given (already normalised)."""
    r, m = np.asarray(reader_scores, float), np.asarray(model_scores, float)
    y = np.asarray(labels).ravel() > 0
    lam = np.asarray(lambdas, float)
    k = int(max(2, min(folds, y.sum(), (~y).sum())))
    rng = np.random.default_rng(seed)
    fold = np.empty(y.size, int)
    for cls in (True, False):  # stratified: both classes in every fold
        idx = rng.permutation(np.flatnonzero(y == cls))
        fold[idx] = np.arange(idx.size) % k
    held = np.empty(y.size)
    chosen = []
    for f in range(k):
        train, test = fold != f, fold == f
        aucs = [auc_mann_whitney(v * r[train] + (1 - v) * m[train], y[train]) for v in lam]
        best = float(lam[int(np.nanargmax(aucs))]) if np.any(np.isfinite(aucs)) else 0.5
        chosen.append(best)
        held[test] = best * r[test] + (1 - best) * m[test]
    return {"folds": k, "seed": seed, "lambda_per_fold": chosen, "auc": auc_mann_whitney(held, y),
            "method": f"stratified {k}-fold cross-validation over cases; AUC of the pooled held-out hybrid scores"}
