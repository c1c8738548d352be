"""Contrast-uptake curves of the synthetic phantom and the early/late phase rules.

Every tissue's relative enhancement is an analytic function of time (minutes after the
pre-contrast phase)::

    E(t) = amplitude * (1 - exp(-t / tau)) * exp(-k * t)

so the truth at any acquisition time is exact. Tumor curves are *designed* for the exam's
actual acquisition times, so that the requested curve type holds on the phases a reader (or
:mod:`BreastTumorSegLib.kinetics`) would use:

* early phase: the post-contrast phase nearest 1.5-2.5 min (inside the window: nearest 2 min);
  if that is the last phase and there are two or more post-contrast phases, the one before it;
* late phase: the phase after the early one nearest 5-8 min (inside the window: nearest
  6.5 min); with a single post-contrast phase there is none.

Curve types hold under both common definitions: the change of *enhancement*
``(E_late - E_early) / E_early`` and the BI-RADS change of *signal*
``(S_late - S_early) / S_early = (E_late - E_early) / (1 + E_early)``:
persistent > +10 % (and rising phase after phase), plateau within +/-10 % on every phase after
the early one, washout < -10 %.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

CURVE_TYPES = ("persistent", "plateau", "washout")
EARLY_WINDOW_MIN = (1.5, 2.5)
LATE_WINDOW_MIN = (5.0, 8.0)
CURVE_CHANGE = 0.10  # the +/-10 % rule


@dataclass(frozen=True)
class Curve:
    """Relative enhancement ``E(t) = amplitude (1 - exp(-t/tau)) exp(-k t)``, t in minutes."""

    amplitude: float
    tau_min: float
    k_per_min: float = 0.0

    def __call__(self, t) -> np.ndarray:
        t = np.asarray(t, dtype=float)
        return self.amplitude * (-np.expm1(-t / self.tau_min)) * np.exp(-self.k_per_min * t)

    def peak_time_min(self) -> float:
        """Time of the continuous-time maximum (inf when the curve keeps rising)."""
        if self.k_per_min <= 0:
            return math.inf
        return self.tau_min * math.log1p(1.0 / (self.k_per_min * self.tau_min))

    def scaled(self, factor: float) -> "Curve":
        return Curve(self.amplitude * factor, self.tau_min, self.k_per_min)

    def as_dict(self) -> dict:
        return {key: float(v) for key, v in asdict(self).items()}


# ------------------------------------------------------------------------------ phase rules
def _window_distance(t: float, window: tuple[float, float]) -> float:
    return max(window[0] - t, 0.0, t - window[1])


def _nearest_in_window(t: np.ndarray, candidates: list[int], window: tuple[float, float]) -> int:
    centre = 0.5 * (window[0] + window[1])
    return min(candidates, key=lambda i: (_window_distance(t[i], window), abs(t[i] - centre), i))


def early_late_phases(times_min) -> tuple[int, int | None]:
    """Indices of the early and late phases for *times_min* (phase 0 = pre-contrast).

    ``late`` is None when there is only one post-contrast phase. See the module docstring.
    """
    t = np.asarray(times_min, dtype=float)
    t = t - t[0]
    if t.size < 2:
        raise ValueError("need a pre-contrast and at least one post-contrast time")
    post = list(range(1, t.size))
    early = _nearest_in_window(t, post, EARLY_WINDOW_MIN)
    if len(post) == 1:
        return early, None
    if early == post[-1]:
        early = post[-2]
    late = _nearest_in_window(t, [i for i in post if i > early], LATE_WINDOW_MIN)
    return early, late


def classify_curve(e_early: float, e_late: float, signal_based: bool = True) -> str:
    """Curve type from the early and late relative enhancement (+/-10 % rule).

    ``signal_based`` uses the BI-RADS change of signal ``(E_late - E_early) / (1 + E_early)``;
    otherwise the change of enhancement ``(E_late - E_early) / E_early``.
    """
    change = (e_late - e_early) / ((1.0 + e_early) if signal_based else e_early)
    if change > CURVE_CHANGE:
        return "persistent"
    if change < -CURVE_CHANGE:
        return "washout"
    return "plateau"


# ------------------------------------------------------------------------------ design
def _ratio_rise(tau: float, t_early: float, t_late: float) -> float:
    return (-math.expm1(-t_late / tau)) / (-math.expm1(-t_early / tau))


def _solve_tau(target: float, t_early: float, t_late: float) -> float:
    """tau with (1 - exp(-t_late/tau)) / (1 - exp(-t_early/tau)) = target (the ratio grows with tau)."""
    lo, hi = 0.02, 1000.0
    for _ in range(100):
        mid = math.sqrt(lo * hi)
        if _ratio_rise(mid, t_early, t_late) < target:
            lo = mid
        else:
            hi = mid
    return math.sqrt(lo * hi)


def _valid(curve: Curve, kind: str, t: np.ndarray, early: int, late: int | None) -> bool:
    e = curve(t)
    post = e[1:]
    if np.any(post <= 0.02):
        return False
    if late is None:
        return True
    ee, el = float(e[early]), float(e[late])
    sig = (el - ee) / (1.0 + ee)
    enh = (el - ee) / ee
    margin = 0.03
    if kind == "persistent":
        return sig > CURVE_CHANGE + margin and bool(np.all(np.diff(post) > 0))
    if kind == "washout":
        return sig < -(CURVE_CHANGE + margin)
    after = e[early:]
    return bool(np.all(np.abs(after / ee - 1.0) < CURVE_CHANGE - margin)) and abs(enh) < CURVE_CHANGE - margin


def design_tumor_curve(rng: np.random.Generator, kind: str, peak: float, times_min) -> Curve:
    """A curve of type *kind* whose largest value over the acquired phases is *peak*.

    Shape parameters are drawn from *rng* and the decay rate is solved so that the ratio
    late/early hits a target ratio; candidates are redrawn until every rule of the type holds.
    """
    if kind not in CURVE_TYPES:
        raise ValueError(f"curve must be one of {CURVE_TYPES}, got {kind!r}")
    t = np.asarray(times_min, dtype=float)
    t = t - t[0]
    early, late = early_late_phases(t)
    for _ in range(200):
        if kind == "persistent":
            tau = float(rng.uniform(1.5, 6.0))
        else:
            tau = float(rng.uniform(0.15, 0.6))
        if late is None:
            k = {"persistent": 0.0, "plateau": 0.0, "washout": float(rng.uniform(0.05, 0.12))}[kind]
        else:
            # Target change of the *signal* (persistent/washout) or of the enhancement (plateau).
            te, tl = t[early], t[late]
            if kind == "plateau":
                target = float(rng.uniform(0.95, 1.05))
            else:
                # E_late/E_early such that (E_l - E_e)/(1 + E_e) lands at a drawn signal change;
                # E_early is unknown before scaling, so use the peak as a stand-in and re-check.
                change = float(rng.uniform(0.16, 0.45)) * (1 if kind == "persistent" else -1)
                target = 1.0 + change * (1.0 + peak) / peak
                if target <= 0.15:
                    continue
            if kind == "persistent" and target < 0.95 * tl / te:
                # a pure saturating rise (k = 0) is monotone; solve its time constant for the target
                tau, k = _solve_tau(target, te, tl), 0.0
            else:
                k = math.log(_ratio_rise(tau, te, tl) / target) / (tl - te)
            if k < -0.12:
                continue
        curve = Curve(1.0, tau, k)
        top = float(np.max(curve(t[1:])))
        curve = curve.scaled(peak / top)
        if _valid(curve, kind, t, early, late):
            return curve
    raise RuntimeError(f"could not design a {kind} curve with peak {peak:.2f} for times {list(t)}")


def design_curve_for_times(rng: np.random.Generator, kind: str, peak: float, times_min) -> tuple[str, Curve]:
    """(kind, curve): :func:`design_tumor_curve`, or, where the acquired times cannot show *kind* (a persistent
    or washout change of more than 10 % between two post-contrast phases a fraction of a minute apart), the
    plateau curve those phases would show, with its kind, so that the exam's truth names what was acquired."""
    try:
        return kind, design_tumor_curve(rng, kind, peak, times_min)
    except RuntimeError:
        if kind == "plateau":
            raise
        return "plateau", design_tumor_curve(rng, "plateau", peak, times_min)


def normalised_fast_curve(tau_min: float, k_per_min: float) -> Curve:
    """Blood-pool curve whose continuous-time maximum is 1 (heart, arteries)."""
    c = Curve(1.0, tau_min, k_per_min)
    return c.scaled(1.0 / float(c(c.peak_time_min())))


def normalised_slow_curve(tau_min: float, at_min: float = 6.0) -> Curve:
    """Slow persistent curve equal to 1 at *at_min* (fat, parenchyma, muscle)."""
    c = Curve(1.0, tau_min, 0.0)
    return c.scaled(1.0 / float(c(at_min)))
