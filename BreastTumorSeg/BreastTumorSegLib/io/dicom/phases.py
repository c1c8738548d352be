"""From DICOM frames to an ordered list of DCE phases: roles, stacks, temporal split, times.

The steps, each small enough to check by hand:

1. **Stacks.** Frames are grouped by series, image orientation, stack ID (enhanced MR) and image
   type, so that e.g. the three planes of a localizer or the water/fat images of a Dixon series
   are never mixed.
2. **Roles.** Each stack gets a role: a DCE candidate, or a reason it is ignored (not MR,
   localizer, scanner-made subtraction/MIP/reformat, diffusion, long-TE T2-weighted, too few
   slices). Ignored stacks can still be used by naming their series explicitly.
3. **Temporal split.** A stack whose slice positions repeat holds several phases. It is split
   by the first tag that tells them apart cleanly, in this order: TemporalPositionIdentifier
   (TemporalPositionIndex in enhanced MR), TriggerTime (TemporalPositionTimeOffset), acquisition
   date/time, content date/time, AcquisitionNumber. A tag qualifies when it has as many values as
   positions repeat and no value holds the same position twice.
4. **The DCE group.** Candidate stacks acquired with the same sequence (TR, TE, TI, flip angle,
   scan options, sequence name, image type) in the same orientation and study form a group; the
   group with the most volumes is the DCE. Its volumes are the phases.
5. **Order and times.** Within one series the scanner's TriggerTime is used; across series the
   acquisition date/time. Phases are ordered by that time; the earliest is the pre-contrast phase.
   Times are minutes after it, and also after ContrastBolusStartTime when the scanner wrote one.

Every refusal is an :class:`InputError` that names the series (number and description, never a
patient identifier) and says what to do.
"""
from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .headers import Frame, ScanResult, order_by_time
from ...core.errors import InputError

# Two slice positions closer than this along the normal are the same position (mm).
POSITION_TOLERANCE_MM = 0.01
# Slices shifted sideways by more than this are not a straight stack (gantry tilt, shear) (mm).
SHEAR_TOLERANCE_MM = 0.05
# Fewest slices a DCE phase can have.
MIN_SLICES = 3
# Echo times above this are not T1-weighted DCE (ms).
MAX_DCE_ECHO_TIME_MS = 30.0
MAX_DCE_REPETITION_TIME_MS = 1500.0

_LOCALIZER_RE = re.compile(r"(?<![a-z])(loc|localizer|localiser|scout|survey|3[- ]?plane|tri[- ]?pilot|aahead)"
                           r"(?![a-z])", re.IGNORECASE)
_DERIVED_RE = re.compile(r"(?<![a-z])(sub|subs|subtraction|subtract|mip|mips|mpr|reformat\w*|moco\w*|cad)"
                         r"(?![a-z])", re.IGNORECASE)
_DIFFUSION_RE = re.compile(r"(?<![a-z])(dwi|diff\w*|adc|ivim|resolve|trace\w*)(?![a-z])", re.IGNORECASE)
_T2_RE = re.compile(r"(?<![a-z])(t2\w*|stir|tirm|haste|flair)(?![a-z])", re.IGNORECASE)
_DERIVED_TYPES = {"SUBTRACTION", "SUB", "MIP", "PROJECTION IMAGE", "MPR", "REFORMATTED", "MOCO", "CAD",
                  "COLLAPSE", "SUBTRACT", "MNIP"}
_DIFFUSION_TYPES = {"DIFFUSION", "ADC", "TRACEW", "TRACE", "FA", "EADC", "CALC_BVALUE"}

DCE = "DCE"


# ------------------------------------------------------------------------------------ types
@dataclass
class Geometry:
    """A regular 3D grid in SimpleITK terms (x = DICOM columns, y = rows, z = slices)."""

    size: tuple[int, int, int]
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float]
    direction: tuple[float, ...]  # 3x3 row-major; columns are the x, y, z axes in LPS

    def same_as(self, other: Geometry, tol: float = 1e-3) -> bool:
        return (self.size == other.size and np.allclose(self.spacing, other.spacing, atol=tol)
                and np.allclose(self.origin, other.origin, atol=tol)
                and np.allclose(self.direction, other.direction, atol=tol))


@dataclass
class Stack:
    """Frames of one series that share orientation, stack ID and image type."""

    frames: list[Frame]
    series_number: int | None
    series_description: str
    series_uid: str
    sub_label: str = ""  # set when a series holds several stacks
    role: str = ""
    reason: str = ""
    n_volumes: int = 0

    @property
    def first(self) -> Frame:
        return self.frames[0]

    def name(self) -> str:
        num = "?" if self.series_number is None else str(self.series_number)
        desc = f" '{self.series_description}'" if self.series_description else ""
        return f"series {num}{self.sub_label}{desc}"

    @property
    def enhanced(self) -> bool:
        return self.first.is_multiframe


@dataclass
class Volume:
    """One 3D volume: one temporal position of one stack, frames sorted along the slice normal."""

    stack: Stack
    frames: list[Frame]
    geometry: Geometry
    split_key: str | None  # the tag that split the stack, None for a single-volume stack
    split_value: object = None
    start_dt: float | None = None  # absolute seconds (acquisition, else content date/time)
    start_dt_source: str | None = None
    trigger_ms: float | None = None
    temporal_index: int | None = None

    def name(self) -> str:
        if self.split_key is None:
            return self.stack.name()
        return f"{self.stack.name()} [{self.split_key} {_fmt_value(self.split_value)}]"


@dataclass
class DCEPlan:
    """What the reader found and what it will load: read this before trusting an exam."""

    folder: Path
    stacks: list[Stack]
    phases: list[Volume]
    times_min: list[float] | None
    time_source: str
    times_after_injection_min: list[float] | None
    layout: str
    warnings: list[str] = field(default_factory=list)
    scan: ScanResult | None = None

    def summary(self) -> dict:
        """JSON-safe description (no UIDs, no paths, no patient identifiers)."""
        return {
            "layout": self.layout,
            "time_source": self.time_source,
            "times_min": None if self.times_min is None else [round(t, 4) for t in self.times_min],
            "times_after_injection_min": None if self.times_after_injection_min is None
            else [round(t, 4) for t in self.times_after_injection_min],
            "phases": [{"series_number": v.stack.series_number, "series_description": v.stack.series_description,
                        "split_key": v.split_key, "split_value": _json_value(v.split_value),
                        "n_slices": len(v.frames)} for v in self.phases],
            "series": [{"series_number": s.series_number, "series_description": s.series_description,
                        "sub": s.sub_label.strip(" ()") or None, "modality": s.first.modality,
                        "role": s.role, "reason": s.reason, "n_frames": len(s.frames), "n_volumes": s.n_volumes}
                       for s in self.stacks],
            "manufacturer": self.phases[0].frames[0].manufacturer if self.phases else "",
            "warnings": list(self.warnings),
        }


def _fmt_value(v: object) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


def _json_value(v: object):
    if isinstance(v, (int, float, str)) or v is None:
        return v
    return str(v)


# ------------------------------------------------------------------------------------ stacks
def _orientation_key(f: Frame) -> tuple | None:
    return None if f.iop is None else tuple(round(v, 3) for v in f.iop)


def make_stacks(frames: Sequence[Frame]) -> list[Stack]:
    """Group frames into stacks (series x orientation x stack ID x image type)."""
    by_key: dict[tuple, list[Frame]] = defaultdict(list)
    for f in frames:
        by_key[(f.series_uid, _orientation_key(f) or (), f.stack_id or "", f.image_type)].append(f)
    keys_of_series: dict[str, list[tuple]] = defaultdict(list)
    for key in by_key:
        keys_of_series[key[0]].append(key)
    stacks = []
    for key in sorted(by_key, key=lambda k: (_series_sort_key(by_key[k][0]), str(k))):
        fr = by_key[key]
        s = Stack(fr, fr[0].series_number, fr[0].series_description, fr[0].series_uid)
        siblings = keys_of_series[key[0]]
        if len(siblings) > 1:
            s.sub_label = f" ({_sub_label(key, siblings, fr[0])})"
        stacks.append(s)
    return stacks


def _series_sort_key(f: Frame) -> tuple:
    return (f.study_uid, f.series_number if f.series_number is not None else 10 ** 9, f.series_uid)


def _sub_label(key: tuple, siblings: list[tuple], f: Frame) -> str:
    """What tells this stack apart from the other stacks of its series."""
    if len({k[1] for k in siblings}) > 1:
        return orientation_name(f)
    if len({k[2] for k in siblings}) > 1:
        return f"stack {key[2]}"
    return "/".join(f.image_type[2:]) or "/".join(f.image_type)


def orientation_name(f: Frame) -> str:
    """'axial', 'sagittal', 'coronal', or e.g. 'oblique axial (12 deg)' from the slice normal."""
    if f.iop is None:
        return "unknown"
    n = np.cross(np.asarray(f.iop[:3]), np.asarray(f.iop[3:]))
    k = int(np.argmax(np.abs(n)))
    name = ("sagittal", "coronal", "axial")[k]
    angle = float(np.degrees(np.arccos(min(1.0, abs(n[k]) / max(np.linalg.norm(n), 1e-12)))))
    return name if angle < 0.5 else f"oblique {name} ({angle:.0f} deg)"


# ------------------------------------------------------------------------------------ roles
def classify(stack: Stack) -> tuple[str, str]:
    """(role, reason): ``DCE`` for a candidate, else a short role and why it is ignored."""
    f = stack.first
    types = set(f.image_type)
    desc = stack.series_description
    if f.modality != "MR":
        return "not MR", f"modality {f.modality or 'missing'}"
    if f.samples_per_pixel != 1:
        return "not a grey-scale image", f"{f.samples_per_pixel} samples per pixel"
    if "LOCALIZER" in types or _LOCALIZER_RE.search(desc):
        return "localizer", "image type or description says localizer"
    if f.iop is None or f.ipp is None or f.pixel_spacing is None:
        return "no geometry", "image position, orientation or pixel spacing missing"
    if types & _DERIVED_TYPES or _DERIVED_RE.search(desc):
        return "derived", "subtraction, MIP or reformat made by the scanner"
    if (f.image_type[:1] == ("DERIVED",)) and not types & {"PRIMARY"}:
        return "derived", "image type DERIVED\\SECONDARY"
    if any(fr.diffusion for fr in stack.frames[:8]) or types & _DIFFUSION_TYPES or _DIFFUSION_RE.search(desc):
        return "diffusion", "diffusion-weighted or ADC"
    tr, te = f.sequence[0] if f.sequence else None, f.sequence[1] if len(f.sequence) > 1 else None
    if (te is not None and te > MAX_DCE_ECHO_TIME_MS) or (tr is not None and tr > MAX_DCE_REPETITION_TIME_MS):
        return "not T1-weighted", f"TE {te} ms, TR {tr} ms"
    if _T2_RE.search(desc):
        return "not T1-weighted", "description says T2/STIR"
    n_pos = len(position_clusters(stack.frames)[1])
    if n_pos < MIN_SLICES:
        return "too few slices", f"{n_pos} slice position(s)"
    return DCE, "T1-weighted volume"


# ------------------------------------------------------------------------------------ geometry
def frame_axes(f: Frame, where: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Orthonormal row direction, column direction and slice normal of a frame (LPS)."""
    row = np.asarray(f.iop[:3], dtype=float)
    col = np.asarray(f.iop[3:], dtype=float)
    if abs(np.linalg.norm(row) - 1) > 1e-3 or abs(np.linalg.norm(col) - 1) > 1e-3 or abs(row @ col) > 1e-3:
        raise InputError(f"ImageOrientationPatient {list(f.iop)} is not two unit vectors at right angles",
                         where, "re-export the series; the scanner's orientation tag is damaged")
    row /= np.linalg.norm(row)
    col = col - (col @ row) * row
    col /= np.linalg.norm(col)
    return row, col, np.cross(row, col)


def position_clusters(frames: Sequence[Frame]) -> tuple[np.ndarray, list[float]]:
    """Distance of each frame along its slice normal, and the distinct positions (sorted)."""
    f0 = frames[0]
    if f0.iop is None or any(f.ipp is None for f in frames):
        return np.zeros(len(frames)), [0.0]
    n = np.cross(np.asarray(f0.iop[:3]), np.asarray(f0.iop[3:]))
    n = n / max(np.linalg.norm(n), 1e-12)
    d = np.array([np.dot(f.ipp, n) for f in frames])
    uniq: list[float] = []
    for v in np.sort(d):
        if not uniq or v - uniq[-1] > POSITION_TOLERANCE_MM:
            uniq.append(float(v))
    return d, uniq


def _cluster_index(d: np.ndarray, uniq: list[float]) -> np.ndarray:
    u = np.asarray(uniq)
    return np.argmin(np.abs(d[:, None] - u[None, :]), axis=1)


def volume_geometry(frames: list[Frame], where: str) -> tuple[list[Frame], Geometry]:
    """Sort one volume's frames along the normal and check they form a regular grid."""
    f0 = frames[0]
    sizes = Counter((f.rows, f.cols) for f in frames)
    if len(sizes) > 1:
        desc = ", ".join(f"{c}x{r} ({n} slices)" for (r, c), n in sizes.most_common())
        raise InputError(f"slices of different matrix sizes in one volume: {desc}", where,
                         "re-export the series; if two acquisitions were merged, select one with --series")
    spacings = Counter(tuple(round(v, 4) for v in f.pixel_spacing) for f in frames)
    if len(spacings) > 1:
        raise InputError(f"slices with different pixel spacings in one volume: {sorted(spacings)}", where,
                         "re-export the series; if two acquisitions were merged, select one with --series")
    for f in frames:
        if f.iop is None or np.max(np.abs(np.subtract(f.iop, f0.iop))) > 1e-4:
            raise InputError(f"slices with different orientations in one volume ({f.label()})", where,
                             "re-export the series, or select a single stack with --series")
    row, col, normal = frame_axes(f0, where)
    d = np.array([np.dot(f.ipp, normal) for f in frames])
    order = np.argsort(d, kind="stable")
    frames = [frames[i] for i in order]
    d = d[order]
    if len(frames) < MIN_SLICES:
        raise InputError(f"a volume with {len(frames)} slice(s) is not a 3D phase", where,
                         "select a 3D series with --series")
    gaps = np.diff(d)
    if np.any(gaps <= POSITION_TOLERANCE_MM):
        i = int(np.argmax(gaps <= POSITION_TOLERANCE_MM))
        raise InputError(f"two different slices at the same position ({frames[i].label()} and "
                         f"{frames[i + 1].label()})", where,
                         "remove the extra copy, or select the wanted series with --series")
    med = float(np.median(gaps))
    tol = max(0.02, 0.01 * med)
    bad = np.flatnonzero(np.abs(gaps - med) > tol)
    if bad.size:
        i = int(bad[0])
        multiples = gaps[bad] / med
        if np.all(np.abs(multiples - np.round(multiples)) < 0.05) and np.all(np.round(multiples) >= 2):
            missing = int(np.sum(np.round(multiples) - 1))
            raise InputError(
                f"{missing} slice(s) missing: a gap of {gaps[i]:.3g} mm between {frames[i].label()} and "
                f"{frames[i + 1].label()} where slices are {med:.3g} mm apart", where,
                "re-send the complete series from the scanner or PACS (an interrupted copy drops files)")
        raise InputError(
            f"inconsistent slice spacing: {gaps.min():.3g} to {gaps.max():.3g} mm (e.g. {gaps[i]:.3g} mm between "
            f"{frames[i].label()} and {frames[i + 1].label()})", where,
            "re-export the series with uniform slice spacing, or select another series with --series")
    origin = np.asarray(frames[0].ipp, dtype=float)
    shear = max(np.linalg.norm((np.asarray(f.ipp) - origin) - ((np.asarray(f.ipp) - origin) @ normal) * normal)
                for f in frames)
    if shear > SHEAR_TOLERANCE_MM:
        raise InputError(f"slices are not stacked along their normal (sideways shift up to {shear:.2f} mm; "
                         "gantry tilt or sheared acquisition)", where,
                         "resample the series to a regular grid (e.g. dcm2niix) and load the NIfTI files")
    dz = float((d[-1] - d[0]) / (len(d) - 1))
    direction = np.column_stack([row, col, normal])
    geom = Geometry(size=(f0.cols, f0.rows, len(frames)),
                    spacing=(float(f0.pixel_spacing[1]), float(f0.pixel_spacing[0]), dz),
                    origin=tuple(float(v) for v in origin),
                    direction=tuple(float(v) for v in direction.ravel()))
    return frames, geom


# ------------------------------------------------------------------------------------ temporal split
def _rounded(v: float | None, step: float) -> float | None:
    return None if v is None else round(v / step) * step


# (name shown to users, getter); the order is the order of preference.
SPLIT_KEYS: list[tuple[str, Callable[[Frame], object]]] = [
    ("TemporalPositionIdentifier", lambda f: f.temporal_index),
    ("TriggerTime", lambda f: _rounded(f.trigger_ms, 1e-3)),
    ("AcquisitionTime", lambda f: _rounded(f.acq_dt, 1e-3)),
    ("ContentTime", lambda f: _rounded(f.content_dt, 1e-3)),
    ("AcquisitionNumber", lambda f: f.acq_number),
]


def split_key_name(key: str, enhanced: bool) -> str:
    if not enhanced:
        return key
    return {"TemporalPositionIdentifier": "TemporalPositionIndex", "TriggerTime": "TemporalPositionTimeOffset",
            "AcquisitionTime": "FrameAcquisitionDateTime", "ContentTime": "FrameReferenceDateTime",
            "AcquisitionNumber": "FrameAcquisitionNumber"}.get(key, key)


def split_stack(stack: Stack) -> list[tuple[str | None, object, list[Frame]]]:
    """Split a stack into volumes: [(key name, key value, frames)], ordered by the key value."""
    frames = stack.frames
    d, uniq = position_clusters(frames)
    idx = _cluster_index(d, uniq)
    counts = np.bincount(idx, minlength=len(uniq))
    n_max = int(counts.max())
    if n_max == 1:
        return [(None, None, list(frames))]
    for name, getter in SPLIT_KEYS:
        values = [getter(f) for f in frames]
        if any(v is None for v in values):
            continue
        groups: dict[object, list[int]] = defaultdict(list)
        for i, v in enumerate(values):
            groups[v].append(i)
        if len(groups) != n_max:
            continue
        if any(len(set(idx[g].tolist())) != len(g) for g in groups.values()):
            continue
        key = split_key_name(name, stack.enhanced)
        return [(key, v, [frames[i] for i in groups[v]]) for v in sorted(groups)]
    if np.all(counts == n_max):
        # No tag separates the phases: take the k-th frame at every position, in acquisition order.
        per_pos: dict[int, list[int]] = defaultdict(list)
        for i in range(len(frames)):
            per_pos[int(idx[i])].append(i)
        vols: list[list[Frame]] = [[] for _ in range(n_max)]
        for members in per_pos.values():
            members.sort(key=lambda i: (frames[i].acq_dt or 0.0, frames[i].instance_number or 0, frames[i].frame_index))
            for k, i in enumerate(members):
                vols[k].append(frames[i])
        return [("order", k + 1, v) for k, v in enumerate(vols)]
    raise InputError(
        f"slice positions repeat {int(counts.min())} to {n_max} times, and no tag (temporal position, trigger time, "
        "acquisition time or number) separates the phases", stack.name(),
        "re-send the complete series; if several acquisitions were merged into one series, split them at the scanner")


def _volume_times(v: Volume) -> None:
    acq = [f.acq_dt for f in v.frames]
    con = [f.content_dt for f in v.frames]
    if all(a is not None for a in acq):
        v.start_dt, v.start_dt_source = min(acq), "AcquisitionTime"
    elif all(c is not None for c in con):
        v.start_dt, v.start_dt_source = min(con), "ContentTime"
    trig = [f.trigger_ms for f in v.frames]
    if all(t is not None for t in trig):
        v.trigger_ms = min(trig)
    ti = [f.temporal_index for f in v.frames]
    if all(t is not None for t in ti):
        v.temporal_index = min(ti)
    if v.stack.enhanced:
        v.start_dt_source = {"AcquisitionTime": "FrameAcquisitionDateTime",
                             "ContentTime": "FrameReferenceDateTime"}.get(v.start_dt_source, v.start_dt_source)


def stack_volumes(stack: Stack) -> list[Volume]:
    """Split and check a stack: every phase complete, on a regular grid."""
    parts = split_stack(stack)
    all_pos = position_clusters(stack.frames)[1]
    volumes = []
    for key, value, frames in parts:
        where = stack.name() if key is None else f"{stack.name()} [{key} {_fmt_value(value)}]"
        if key is not None:
            _, pos = position_clusters(frames)
            if len(pos) < len(all_pos):
                have = np.asarray(pos)
                missing = [p for p in all_pos if np.min(np.abs(have - p)) > POSITION_TOLERANCE_MM]
                raise InputError(
                    f"this phase has {len(pos)} slices where the series has {len(all_pos)} positions; missing at "
                    f"{', '.join(f'{m:.2f}' for m in missing[:5])} mm along the slice normal", where,
                    "re-send the complete series from the scanner or PACS (an interrupted copy drops files)")
        frames, geom = volume_geometry(frames, where)
        vol = Volume(stack, frames, geom, key, value)
        _volume_times(vol)
        volumes.append(vol)
    if parts[0][0] == "order":
        # Keep the documented ordering name for messages.
        for v in volumes:
            v.split_key = "instance order"
    return volumes


# ------------------------------------------------------------------------------------ the plan
def _signature(stack: Stack) -> tuple:
    f = stack.first
    return (f.study_uid, _orientation_key(f), f.sequence, f.image_type)


def estimated_volumes(stack: Stack) -> int:
    d, uniq = position_clusters(stack.frames)
    return int(np.bincount(_cluster_index(d, uniq), minlength=len(uniq)).max())


def _matches(stack: Stack, wanted: Sequence[int | str]) -> bool:
    for w in wanted:
        if isinstance(w, int) or (isinstance(w, str) and w.isdigit()):
            if stack.series_number is not None and stack.series_number == int(w):
                return True
        elif w == stack.series_uid:
            return True
    return False


def plan_dce(scan: ScanResult, series: Sequence[int | str] | None = None) -> DCEPlan:
    """Decide which volumes are the DCE phases, in which order, with which times.

    ``series`` (series numbers or SeriesInstanceUIDs) restricts the search to those series and
    uses them whatever their role; otherwise the roles decide.
    """
    folder = scan.folder
    if not scan.frames:
        extra = ""
        if scan.non_image:
            kinds = Counter(r for _, r in scan.non_image)
            extra = " (only " + ", ".join(f"{n} {k}" for k, n in kinds.most_common()) + ")"
        raise InputError(f"no DICOM images found in {scan.n_files} file(s){extra}", folder,
                         "point to the folder that holds the exam's MR DICOM files")
    stacks = make_stacks(scan.frames)
    warnings: list[str] = []
    if scan.duplicates:
        warnings.append(f"{scan.duplicates} duplicate instance(s) (same SOP instance UID) read once")
    for s in stacks:
        s.role, s.reason = classify(s)
        s.n_volumes = estimated_volumes(s)

    if series:
        chosen = [s for s in stacks if _matches(s, series)]
        if not chosen:
            raise InputError(f"none of the requested series ({', '.join(map(str, series))}) is in this folder",
                             folder, "run `breasttumorseg dicom-list` on the folder to see the series numbers")
        for s in chosen:
            if s.role in ("not MR", "not a grey-scale image", "no geometry"):
                raise InputError(f"cannot be used as a DCE phase: {s.role} ({s.reason})", f"{folder}: {s.name()}",
                                 "choose MR image series with --series")
        for s in stacks:
            if s not in chosen:
                s.role, s.reason = "not selected", "not in --series"
    else:
        candidates = [s for s in stacks if s.role == DCE]
        if not candidates:
            roles = Counter(s.role for s in stacks)
            raise InputError("no T1-weighted MR volume that could be a DCE phase was found (series found: "
                             + ", ".join(f"{n} {r}" for r, n in roles.most_common()) + ")", folder,
                             "point to the DCE exam's folder; to use an ignored series anyway, name it with --series")
        groups: dict[tuple, list[Stack]] = defaultdict(list)
        for s in candidates:
            groups[_signature(s)].append(s)
        ranked = sorted(groups.values(), key=lambda g: -sum(s.n_volumes for s in g))
        best = sum(s.n_volumes for s in ranked[0])
        if best < 2:
            only = ranked[0][0]
            ignored = [s for s in stacks if s.role != DCE]
            hint = f" ({len(ignored)} other series ignored: " + ", ".join(
                sorted({s.role for s in ignored})) + ")" if ignored else ""
            raise InputError(f"only one DCE phase found ({only.name()}); a DCE exam needs a pre-contrast and at least "
                             f"one post-contrast phase{hint}", folder,
                             "add the post-contrast series to the folder, or name the phase series with --series")
        if len(ranked) > 1 and sum(s.n_volumes for s in ranked[1]) == best:
            a, b = ranked[0], ranked[1]
            raise InputError(
                "two different acquisitions could each be the DCE: "
                f"{', '.join(s.name() for s in a)} and {', '.join(s.name() for s in b)}", folder,
                "choose one with --series (see `breasttumorseg dicom-list`)")
        chosen = ranked[0]
        for g in ranked[1:]:
            for s in g:
                s.role, s.reason = "other T1", "T1-weighted, not part of the DCE acquisition"

    volumes: list[Volume] = []
    for s in chosen:
        _check_usable(s, folder)
        vols = stack_volumes(s)
        s.role, s.n_volumes = DCE, len(vols)
        s.reason = "1 phase" if len(vols) == 1 else f"{len(vols)} phases"
        volumes.extend(vols)
    if len(volumes) < 2:
        raise InputError(f"only one DCE phase found ({volumes[0].name()}); a DCE exam needs a pre-contrast and at "
                         "least one post-contrast phase", folder,
                         "add the post-contrast series to the folder, or name all phase series with --series")
    _check_same_matrix(volumes, folder)
    phases, times, source, order_warn = order_phases(volumes)
    warnings.extend(order_warn)
    after = _after_injection(phases, warnings)
    if len({v.geometry.direction for v in phases}) > 1 or any(not v.geometry.same_as(phases[0].geometry)
                                                              for v in phases):
        warnings.append("phases are on different grids; they are resampled onto the pre-contrast grid")
    if len({f.for_uid for v in phases for f in v.frames[:1]}) > 1:
        warnings.append("phases have different frames of reference; patient position may differ between them")
    return DCEPlan(folder, stacks, phases, times, source, after, _layout(phases), warnings, scan)


def _check_usable(stack: Stack, folder: Path) -> None:
    for f in stack.frames:
        if f.problem:
            raise InputError(f"this image {f.problem}", f.label(),
                             f"re-send {stack.name()} from the scanner or PACS; the file is damaged")
        if f.iop is None or f.ipp is None or f.pixel_spacing is None:
            raise InputError("image position, orientation or pixel spacing is missing", f.label(),
                             "re-export the series with its geometry tags")
        if f.rows < 2 or f.cols < 2:
            raise InputError(f"image of {f.cols}x{f.rows} pixels", f.label(), "select a 3D MR series")


def _check_same_matrix(volumes: list[Volume], folder: Path) -> None:
    sizes = Counter((v.geometry.size[0], v.geometry.size[1]) for v in volumes)
    if len(sizes) > 1:
        desc = "; ".join(f"{v.name()}: {v.geometry.size[0]}x{v.geometry.size[1]}" for v in volumes)
        raise InputError(f"the DCE phases have different matrix sizes ({desc})", folder,
                         "re-export the exam, or pick phases of one acquisition with --series")
    spacings = {tuple(round(s, 3) for s in v.geometry.spacing[:2]) for v in volumes}
    if len(spacings) > 1:
        raise InputError(f"the DCE phases have different pixel spacings ({sorted(spacings)} mm)", folder,
                         "re-export the exam, or pick phases of one acquisition with --series")


def order_phases(volumes: list[Volume]) -> tuple[list[Volume], list[float] | None, str, list[str]]:
    """Sort the phases by time and give minutes after the first; fall back to tag order."""
    warnings: list[str] = []
    one_stack = len({id(v.stack) for v in volumes}) == 1
    trig = [v.trigger_ms for v in volumes]
    start = [v.start_dt for v in volumes]
    times_s: list[float] | None = None
    source = "none"
    if one_stack and all(t is not None for t in trig) and len(set(trig)) == len(trig):
        times_s, source = [t / 1000.0 for t in trig], split_key_name("TriggerTime", volumes[0].stack.enhanced)
    elif all(t is not None for t in start) and len(set(start)) == len(start):
        times_s, source = list(start), volumes[0].start_dt_source or "AcquisitionTime"
    if times_s is not None:
        order, relative_s = order_by_time(times_s)
        phases = [volumes[i] for i in order]
        times = [t / 60.0 for t in relative_s]
        idx = [v.temporal_index for v in phases]
        if all(i is not None for i in idx) and one_stack and idx != sorted(idx):
            warnings.append(f"the {source} order disagrees with the temporal position numbers {idx}; "
                            f"phases are ordered by {source}")
        if source.startswith(("TriggerTime", "TemporalPositionTimeOffset")) and all(s is not None for s in start):
            by_dt = sorted(range(len(phases)), key=lambda i: phases[i].start_dt)
            if len(set(start)) == len(start) and by_dt != list(range(len(phases))):
                warnings.append("acquisition times and trigger times order the phases differently; "
                                "trigger times were used")
        return phases, times, source, warnings
    # No usable times: temporal index, then series number, then instance number.
    phases = sorted(volumes, key=lambda v: (v.temporal_index if v.temporal_index is not None else 10 ** 6,
                                            v.stack.series_number if v.stack.series_number is not None else 10 ** 6,
                                            min(f.instance_number or 0 for f in v.frames)))
    warnings.append("no acquisition or trigger times tell the phases apart; they are ordered by temporal position "
                    "/ series number and their times are assumed (pass --times to give them)")
    return phases, None, "none (assumed)", warnings


def _after_injection(phases: list[Volume], warnings: list[str]) -> list[float] | None:
    bolus = next((f.bolus_start for v in phases for f in v.frames[:1] if f.bolus_start is not None), None)
    if bolus is None or any(v.start_dt is None for v in phases):
        return None
    after = [(v.start_dt - bolus) / 60.0 for v in phases]
    if after[0] > 0:
        warnings.append(f"the first phase started {after[0]:.2f} min after ContrastBolusStartTime; check that it "
                        "is really pre-contrast")
    return after


def _layout(phases: list[Volume]) -> str:
    stacks = {id(v.stack): v.stack for v in phases}
    if all(v.stack.enhanced for v in phases):
        kind = "enhanced multi-frame"
        if len(stacks) == 1:
            return f"{kind}, one series holding all phases (split by {phases[0].split_key})"
        return f"{kind}, one series per phase" if len(stacks) == len(phases) else f"{kind}, {len(stacks)} series"
    if len(stacks) == 1:
        return f"one series holding all phases (split by {phases[0].split_key})"
    if len(stacks) == len(phases):
        return "one series per phase"
    return f"{len(stacks)} series holding {len(phases)} phases"
