"""Voxel-wise contrast kinetics of a (motion-corrected) DCE exam.

Definitions (S = signal, pre = pre-contrast phase):

* **PE(t)**, percent enhancement: ``100 * (S(t) - S_pre) / S_pre``.
* **Early phase**: the post-contrast phase whose acquisition time is nearest the window
  ``early_window_min`` (default 1.5-2.5 min, i.e. 90-150 s after the pre-contrast phase);
  several phases inside the window: the one nearest its centre. Chosen from acquisition
  times, never from the phase index. Exams without times use the loader's assumed spacing
  (``exam.metadata["times_assumed"]``); this is written into :attr:`KineticMaps.notes`.
* **Late phase**: the phase nearest ``late_window_min`` (default 5-8 min) and after the early
  phase. When no phase is that late, the last phase is used and ``late_in_window`` is False,
  with a note saying so. With one post-contrast phase there is no late phase: SER and curve
  type cannot be computed (``ser is None``; ``curve_type`` all 0) and the notes say so. If the
  early window picks the last phase while there are two or more post-contrast phases, the
  early phase moves to the one before it so that SER stays computable (noted).
* **SER** = ``(S_early - S_pre) / (S_late - S_pre)`` = ``PE_early / PE_late``.
* **Initial enhancement class** from PE at the early phase: slow < 50 %, medium 50-100 %,
  fast > 100 % (codes 1, 2, 3).
* **Delayed curve type** from the signal change between early and late phase relative to the
  early signal, ``(S_late - S_early) / S_early``: > +10 % persistent (1), within +/-10 %
  plateau (2), < -10 % washout (3).
* **Time to peak**: acquisition time (min) of the post-contrast phase with the highest signal.

Guards: voxels whose pre-contrast signal is below ``pre_floor`` (``min_pre_fraction`` of the
95th percentile of the pre-contrast volume) have no meaningful ratio; all their maps are 0 and
``valid`` is 0 there. SER's denominator is near zero where the late enhancement is below
``ser_min_late_pe`` percent: such voxels get SER = ``ser_clip`` if they enhance early
(``PE_early >= ser_min_late_pe``; a strong washout back to baseline) and 0 otherwise; all SER
values are clipped to ``[-ser_clip, ser_clip]``.

Class, curve type and time to peak are assessed only in *enhancing* voxels (peak PE >=
``enhancing_pe``); elsewhere they are 0 ("not assessed"), so that noise in fat and air does not
paint the maps. Every map is a ``sitk.Image`` on the exam grid (origin, spacing and direction of
the pre-contrast phase). Arithmetic runs in float32, one phase at a time.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import SimpleITK as sitk

from ..core.errors import InputError
from ..core.exam import DCEExam
from ..core.imageutil import from_array

# Codes of the categorical maps.
NOT_ASSESSED = 0
SLOW, MEDIUM, FAST = 1, 2, 3
PERSISTENT, PLATEAU, WASHOUT = 1, 2, 3
CURVE_NAMES = {NOT_ASSESSED: "not assessed", PERSISTENT: "persistent", PLATEAU: "plateau", WASHOUT: "washout"}
INITIAL_NAMES = {NOT_ASSESSED: "not assessed", SLOW: "slow", MEDIUM: "medium", FAST: "fast"}


@dataclass(frozen=True)
class KineticSettings:
    """Every threshold of the kinetic maps (defaults follow the BI-RADS / I-SPY conventions)."""

    early_window_min: tuple[float, float] = (1.5, 2.5)
    late_window_min: tuple[float, float] = (5.0, 8.0)
    min_pre_fraction: float = 0.05  # pre_floor = this x p95(pre)
    slow_below_pe: float = 50.0
    fast_above_pe: float = 100.0
    curve_change: float = 0.10  # +/- 10 % rule
    enhancing_pe: float = 20.0
    ser_min_late_pe: float = 1.0
    ser_clip: float = 5.0


@dataclass(frozen=True)
class PhaseChoice:
    """Which phases the maps use and why."""

    early: int  # phase index into exam.phases (>= 1)
    late: int | None  # None when the exam has a single post-contrast phase
    early_time_min: float
    late_time_min: float | None
    late_in_window: bool
    notes: tuple[str, ...] = ()


MAP_NAMES = ("pe_early", "pe_late", "pe_peak", "ser", "time_to_peak_min", "initial_class", "curve_type", "valid")


@dataclass
class KineticMaps:
    """Kinetic maps on the exam grid plus the facts needed to read them.

    The maps are held as (z, y, x) arrays together with ``reference``, the image that gives
    them their geometry; each is exposed as a ``sitk.Image`` on that grid (built on first use,
    so a caller that only needs FTV does not pay for nine image copies). ``array(name)`` gives a
    read-only view for computations inside the package.

    Maps: ``pe_early``, ``pe_late`` (None with one post-contrast phase), ``pe_peak`` (maximum
    over post-contrast phases) in %; ``ser`` (None with one post-contrast phase);
    ``time_to_peak_min`` (0 = not assessed); ``initial_class`` uint8 (0 not assessed, 1 slow,
    2 medium, 3 fast); ``curve_type`` uint8 (0 not assessed, 1 persistent, 2 plateau,
    3 washout); ``valid`` uint8 (1 where the pre-contrast signal is above ``pre_floor``).
    """

    reference: sitk.Image
    arrays: dict[str, np.ndarray]
    phases: PhaseChoice
    pre_floor: float
    times_min: tuple[float, ...]
    settings: KineticSettings = field(default_factory=KineticSettings)
    notes: list[str] = field(default_factory=list)
    _images: dict[str, sitk.Image] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        for a in self.arrays.values():
            a.flags.writeable = False

    def array(self, name: str) -> np.ndarray | None:
        """Read-only (z, y, x) view of map *name* on ``reference``'s grid (None if absent)."""
        return self.arrays.get(name)

    def image(self, name: str) -> sitk.Image | None:
        """Map *name* as an image on the exam grid (None if absent)."""
        if name not in MAP_NAMES:
            raise KeyError(f"unknown kinetic map {name!r}; maps: {', '.join(MAP_NAMES)}")
        if name not in self.arrays:
            return None
        if name not in self._images:
            self._images[name] = from_array(self.arrays[name], self.reference)
        return self._images[name]

    pe_early = property(lambda self: self.image("pe_early"))
    pe_late = property(lambda self: self.image("pe_late"))
    pe_peak = property(lambda self: self.image("pe_peak"))
    ser = property(lambda self: self.image("ser"))
    time_to_peak_min = property(lambda self: self.image("time_to_peak_min"))
    initial_class = property(lambda self: self.image("initial_class"))
    curve_type = property(lambda self: self.image("curve_type"))
    valid = property(lambda self: self.image("valid"))

    @property
    def ser_available(self) -> bool:
        return "ser" in self.arrays

    def images(self) -> dict[str, sitk.Image]:
        """Every map except ``valid`` by a short file-friendly name (absent maps left out)."""
        names = {"pe_early": "pe_early", "pe_late": "pe_late", "pe_peak": "pe_peak", "ser": "ser",
                 "time_to_peak_min": "time_to_peak", "initial_class": "initial_class", "curve_type": "curve_type"}
        return {short: self.image(name) for name, short in names.items() if name in self.arrays}

    def info(self) -> dict:
        """JSON-friendly description: chosen phases, times, thresholds and notes."""
        ph = self.phases
        return {
            "early_phase": ph.early,
            "early_time_min": round(ph.early_time_min, 3),
            "late_phase": ph.late,
            "late_time_min": None if ph.late_time_min is None else round(ph.late_time_min, 3),
            "late_in_window": ph.late_in_window,
            "ser_available": self.ser_available,
            "times_min": [round(t, 3) for t in self.times_min],
            "pre_floor": float(self.pre_floor),
            "settings": asdict(self.settings),
            "notes": list(self.notes),
        }


# ----------------------------------------------------------------------------- phase choice
def _distance_to_window(t: np.ndarray, window: tuple[float, float]) -> np.ndarray:
    lo, hi = window
    return np.maximum(0.0, np.maximum(lo - t, t - hi))


def _nearest_in_window(times: np.ndarray, candidates: list[int], window: tuple[float, float]) -> int:
    """Candidate index nearest the window; inside it, nearest the window centre."""
    t = times[candidates]
    centre = 0.5 * (window[0] + window[1])
    order = np.lexsort((np.abs(t - centre), _distance_to_window(t, window)))
    return candidates[int(order[0])]


def choose_phases(times_min, settings: KineticSettings | None = None,
                  times_assumed: bool = False) -> PhaseChoice:
    """Pick the early and late post-contrast phases from acquisition times (minutes).

    ``times_min[0]`` is the pre-contrast phase. See the module docstring for the rules.
    """
    s = settings or KineticSettings()
    t = np.asarray(times_min, dtype=float)
    t = t - t[0]
    n_post = t.size - 1
    if n_post < 1:
        raise InputError("kinetic maps need a pre-contrast and at least one post-contrast phase",
                         fix="load the exam with all its phases")
    notes: list[str] = []
    if times_assumed:
        notes.append("acquisition times unknown; phases assumed evenly spaced "
                     f"({', '.join(f'{x:g}' for x in t)} min). Early/late choice may be wrong: "
                     "give the real times (JSON acquisition_times_min or --times)")
    post = list(range(1, t.size))
    early = _nearest_in_window(t, post, s.early_window_min)
    if _distance_to_window(t[early:early + 1], s.early_window_min)[0] > 0:
        notes.append(f"no phase at {s.early_window_min[0]:g}-{s.early_window_min[1]:g} min; "
                     f"early phase is phase {early} at {t[early]:.2f} min")
    if n_post == 1:
        notes.append("only one post-contrast phase: SER, late enhancement and curve type cannot be "
                     "computed; FTV skips the SER >= 0 condition")
        return PhaseChoice(early, None, float(t[early]), None, False, tuple(notes))
    if early == post[-1]:
        early = post[-2]
        notes.append(f"the early window picked the last phase; early phase moved to phase {early} "
                     f"at {t[early]:.2f} min so that a later phase is left for SER")
    later = [i for i in post if i > early]
    late = _nearest_in_window(t, later, s.late_window_min)
    in_window = bool(_distance_to_window(t[late:late + 1], s.late_window_min)[0] == 0)
    if not in_window:
        if t[later[-1]] < s.late_window_min[0]:
            late = later[-1]
            notes.append(f"no phase as late as {s.late_window_min[0]:g}-{s.late_window_min[1]:g} min; "
                         f"SER and curve type use the last phase ({late}, {t[late]:.2f} min), so "
                         "washout may be under-called")
        else:
            notes.append(f"no phase inside {s.late_window_min[0]:g}-{s.late_window_min[1]:g} min; "
                         f"late phase is the nearest one ({late}, {t[late]:.2f} min)")
    return PhaseChoice(early, late, float(t[early]), float(t[late]), in_window, tuple(notes))


# ----------------------------------------------------------------------------- maps
def robust_percentile(arr: np.ndarray, q: float, mask: np.ndarray | None = None,
                      max_samples: int = 4_000_000) -> float:
    """Percentile of *arr* (optionally inside *mask*) from a regular subsample of at most
    ``max_samples`` voxels; deterministic, and within a fraction of a percent of the exact value
    for volumes of millions of voxels."""
    flat = arr.reshape(-1)
    stride = max(1, flat.size // max_samples)
    sample = flat[::stride]
    if mask is not None:
        sample = sample[mask.reshape(-1)[::stride]]
    if sample.size == 0:
        return 0.0
    return float(np.percentile(sample, q))


def compute_kinetic_maps(exam: DCEExam, settings: KineticSettings | None = None,
                         reporter=None) -> KineticMaps:
    """All kinetic maps of *exam* (see the module docstring for definitions and guards)."""
    s = settings or KineticSettings()
    times = exam.effective_times()
    choice = choose_phases(times, s, times_assumed=exam.times_min is None
                           or bool(exam.metadata.get("times_assumed", False)))
    ref = exam.reference
    pre = sitk.GetArrayViewFromImage(exam.pre).astype(np.float32, copy=False)
    pre_floor = max(s.min_pre_fraction * robust_percentile(pre, 95.0), float(np.finfo(np.float32).tiny))
    valid = pre > pre_floor
    # 100 / pre where valid, 0 elsewhere: PE is then 0 outside the valid region automatically.
    inv100 = np.zeros(pre.shape, np.float32)
    np.divide(np.float32(100.0), pre, out=inv100, where=valid)

    pe_early = pe_late = peak = ttp = None
    for k in range(1, exam.n_phases):
        if reporter is not None:
            reporter.update((k - 1) / exam.n_phases, f"kinetics: phase {k}/{exam.n_phases - 1}")
        post = sitk.GetArrayViewFromImage(exam.phases[k]).astype(np.float32, copy=False)
        pe = np.subtract(post, pre)  # a new array per phase: early/late ones are kept without a copy
        pe *= inv100
        t_k = np.float32(times[k])
        if peak is None:
            peak, ttp = pe.copy(), np.full(pre.shape, t_k, np.float32)
        else:
            # Times increase with k, so "time of the running maximum" is a maximum too:
            # ttp = max(ttp, t_k where this phase is a new maximum). Arithmetic, no masked copies.
            new_max = (pe > peak).view(np.uint8)
            np.maximum(ttp, new_max * t_k, out=ttp)
            np.maximum(peak, pe, out=peak)
        if k == choice.early:
            pe_early = pe
        if k == choice.late:
            pe_late = pe
    del inv100

    enhancing = (peak >= np.float32(s.enhancing_pe)).view(np.uint8)
    enhancing &= valid.view(np.uint8)
    ttp *= enhancing
    # Initial class 1/2/3 (slow/medium/fast) in enhancing voxels, 0 elsewhere, in uint8 arithmetic.
    initial = (pe_early >= np.float32(s.slow_below_pe)).view(np.uint8) + np.uint8(1)
    initial += (pe_early > np.float32(s.fast_above_pe)).view(np.uint8)
    initial *= enhancing

    arrays = {"pe_early": pe_early, "pe_peak": peak, "time_to_peak_min": ttp, "initial_class": initial,
              "valid": valid.view(np.uint8)}
    if pe_late is not None:
        arrays["pe_late"] = pe_late
        arrays["ser"] = _ser(pe_early, pe_late, valid, s)
        arrays["curve_type"] = _curve_type(pe_early, pe_late, enhancing, s.curve_change)
    else:
        arrays["curve_type"] = np.zeros(pre.shape, np.uint8)
    peak *= valid  # PE is already 0 where pre is below the floor; the peak of -0 noise is not
    return KineticMaps(ref, arrays, choice, pre_floor, tuple(float(x) for x in times), s, list(choice.notes))


def _curve_type(pe_early: np.ndarray, pe_late: np.ndarray, enhancing: np.ndarray, change: float) -> np.ndarray:
    """uint8 curve type where *enhancing* (uint8 0/1) is set: the signal change
    ``(S_late - S_early) / S_early`` equals ``(PE_late - PE_early) / (100 + PE_early)``;
    compared without dividing (100 + PE >= 0)."""
    diff = np.subtract(pe_late, pe_early)
    limit = np.add(pe_early, np.float32(100.0))
    limit *= np.float32(change)
    rising = (diff > limit).view(np.uint8)
    np.negative(limit, out=limit)
    falling = (diff < limit).view(np.uint8)
    curve = np.full(pe_early.shape, PLATEAU, np.uint8)
    curve -= rising  # PERSISTENT = PLATEAU - 1
    curve += falling  # WASHOUT = PLATEAU + 1
    curve *= enhancing
    return curve


def _ser(pe_early: np.ndarray, pe_late: np.ndarray, valid: np.ndarray, s: KineticSettings) -> np.ndarray:
    """SER = PE_early / PE_late with the near-zero-denominator guard of the module docstring."""
    eps = np.float32(s.ser_min_late_pe)
    ok = np.abs(pe_late) >= eps
    ok &= valid
    ser = np.zeros(pe_early.shape, np.float32)
    np.divide(pe_early, pe_late, out=ser, where=ok)
    # Late enhancement back to ~baseline after a real early enhancement: extreme washout.
    extreme = (pe_early >= eps).view(np.uint8)
    extreme &= valid.view(np.uint8)
    extreme &= (~ok).view(np.uint8)
    ser += extreme * np.float32(s.ser_clip)
    np.clip(ser, -s.ser_clip, s.ser_clip, out=ser)
    return ser


def mean_curve_kinetics(times_min, mean_signal, choice: PhaseChoice,
                        settings: KineticSettings | None = None) -> dict:
    """Kinetic descriptors of one signal-time curve (e.g. a lesion's mean curve).

    ``mean_signal[0]`` is the pre-contrast signal. Returns PE at the early/late/peak phase,
    SER, curve type, initial class and time to peak, using the same rules as the maps.
    """
    s = settings or KineticSettings()
    sig = np.asarray(mean_signal, dtype=float)
    t = np.asarray(times_min, dtype=float)
    pre = sig[0]
    if not pre > 0:
        return {"curve_type": CURVE_NAMES[NOT_ASSESSED], "initial_enhancement": INITIAL_NAMES[NOT_ASSESSED]}
    pe = 100.0 * (sig - pre) / pre
    pe_early = pe[choice.early]
    k_peak = 1 + int(np.argmax(pe[1:]))
    out = {
        "pe_early_percent": float(pe_early),
        "pe_peak_percent": float(pe[k_peak]),
        "time_to_peak_min": float(t[k_peak] - t[0]),
        "initial_enhancement": INITIAL_NAMES[
            SLOW if pe_early < s.slow_below_pe else (FAST if pe_early > s.fast_above_pe else MEDIUM)],
        "pe_late_percent": None, "ser": None, "curve_type": CURVE_NAMES[NOT_ASSESSED],
    }
    if choice.late is not None:
        pe_late = pe[choice.late]
        change = (pe_late - pe_early) / (100.0 + pe_early)
        code = PERSISTENT if change > s.curve_change else (WASHOUT if change < -s.curve_change else PLATEAU)
        if abs(pe_late) >= s.ser_min_late_pe:
            ser = float(np.clip(pe_early / pe_late, -s.ser_clip, s.ser_clip))
        else:
            ser = s.ser_clip if pe_early >= s.ser_min_late_pe else 0.0
        out.update(pe_late_percent=float(pe_late), ser=ser, curve_type=CURVE_NAMES[code])
    return out
