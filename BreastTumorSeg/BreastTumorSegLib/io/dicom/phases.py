"""From DICOM frames to an ordered list of DCE phases: roles, stacks, temporal split, times.

The steps, each small enough to check by hand:

1. **Stacks.** Frames are grouped by series, image orientation, stack ID (enhanced MR) and image
   type, so that e.g. the three planes of a localizer or the water/fat images of a Dixon series
   are never mixed (:mod:`.stacks`).
2. **Roles.** Each stack gets a role: a DCE candidate, or a reason it is ignored (not MR,
   localizer, scanner-made subtraction/MIP/reformat, diffusion, long-TE T2-weighted, too few
   slices). Ignored stacks can still be used by naming their series explicitly (:func:`.stacks.classify`).
3. **Temporal split.** A stack whose slice positions repeat holds several phases. It is split
   by the first tag that tells them apart cleanly, in this order: TemporalPositionIdentifier
   (TemporalPositionIndex in enhanced MR), TriggerTime (TemporalPositionTimeOffset), acquisition
   date/time, content date/time, AcquisitionNumber. A tag qualifies when it has as many values as
   positions repeat and no value holds the same position twice; each volume must be complete and on a regular grid
   (:mod:`.volumes`, :mod:`.geometry`).
4. **The DCE group.** Candidate stacks acquired with the same sequence (TR, TE, TI, flip angle,
   scan options, sequence name, image type) in the same orientation and study form a group; the
   group with the most volumes is the DCE. Its volumes are the phases.
5. **Order and times.** Within one series the scanner's TriggerTime is used; across series the
   acquisition date/time. Phases are ordered by that time; the earliest is the pre-contrast phase.
   Times are minutes after it, and also after ContrastBolusStartTime when the scanner wrote one.

Every refusal is an :class:`InputError` that names the series (number and description, never a
patient identifier) and says what to do. Steps 4 and 5 are here (:func:`plan_dce`).
"""
from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ...core.errors import InputError
from .checks import check_rescale, philips_scale, refuse_mixed_subjects
from .scan import ScanResult
from .stacks import DCE, Stack, classify, make_stacks, orientation_key, orientation_name

# This many one-image series with one series number mean per-file SeriesInstanceUIDs.
MIN_SPLIT_FILES = 6
# Roles of series that are never DCE phases, whatever their geometry.
_NOT_PHASES = ("not MR", "not a grey-scale image", "localizer", "derived", "diffusion", "not T1-weighted")
from .times import order_by_time
from .volumes import Volume, estimated_volumes, split_key_name, stack_volumes


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
    notes: list[str] = field(default_factory=list)  # what was left out on purpose, and why
    intensity_scale: str = "RescaleSlope/RescaleIntercept"

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
            "notes": list(self.notes),
            "intensity_scale": self.intensity_scale,
        }


def _json_value(v: object):
    if isinstance(v, (int, float, str)) or v is None:
        return v
    return str(v)


# ------------------------------------------------------------------------------------ the plan
def _signature(stack: Stack) -> tuple:
    f = stack.first
    return (f.study_uid, orientation_key(f), f.sequence, f.image_type)


def _unoriented(stack: Stack) -> tuple:
    study, _, sequence, image_type = _signature(stack)
    return study, sequence, image_type


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
        refuse_mixed_subjects(stacks, folder, chosen)
        for s in stacks:
            if s not in chosen:
                s.role, s.reason = "not selected", "not in --series"
    else:
        refuse_mixed_subjects(stacks, folder)
        candidates = [s for s in stacks if s.role == DCE]
        if not candidates:
            roles = Counter(s.role for s in stacks)
            broken = next((s for s in stacks if s.role == "no geometry"), None)
            if broken is not None and roles["no geometry"] == sum(n for r, n in roles.items()
                                                                   if r not in _NOT_PHASES):
                raise InputError(f"the MR images have no usable geometry: {broken.name()}: {broken.reason}",
                                 broken.first.label(), "re-export the series with its geometry tags "
                                 "(ImagePositionPatient, ImageOrientationPatient, PixelSpacing)")
            _refuse_split_series(stacks, folder)
            _refuse_one_position(stacks)
            raise InputError("no T1-weighted MR volume that could be a DCE phase was found (series found: "
                             + ", ".join(f"{n} {r}" for r, n in roles.most_common()) + ")", folder,
                             "point to the DCE exam's folder; to use an ignored series anyway, name it with --series")
        groups: dict[tuple, list[Stack]] = defaultdict(list)
        for s in candidates:
            groups[_signature(s)].append(s)
        ranked = sorted(groups.values(), key=lambda g: -sum(s.n_volumes for s in g))
        best = sum(s.n_volumes for s in ranked[0])
        if best < 2:
            _refuse_study_per_series(ranked, folder)
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
                if _unoriented(s) == _unoriented(chosen[0]):  # the same acquisition, tilted
                    warnings.append(f"{s.name()} has the DCE's sequence in another orientation "
                                    f"({orientation_name(s.first)}); not used (name it with --series if it "
                                    "is a phase)")
        for s in stacks:  # a damaged phase series would otherwise drop out of the exam unsaid
            if s.role == "no geometry" and s.series_uid not in {c.series_uid for c in chosen} \
                    and _unoriented(s) == _unoriented(chosen[0]):
                warnings.append(f"{s.name()} has the DCE's sequence but no usable geometry ({s.reason}); not used "
                                "(re-send it from the scanner or PACS if it is a phase)")

    for s in stacks:  # a slice without geometry in a phase series would otherwise read as a missing slice
        if s.role == "no geometry" and any(c.series_uid == s.series_uid for c in chosen):
            raise InputError(f"this image of {s.name()} has no usable geometry ({s.reason}) while the "
                             "series' other images have it", s.first.label(),
                             "re-send the series from the scanner or PACS; the file's header is damaged")
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
    check_rescale([f for v in phases for f in v.frames])
    scale, frames_by_phase = philips_scale([v.frames for v in phases], warnings)
    for v, frames in zip(phases, frames_by_phase):
        v.frames = frames
    after = _after_injection(phases, warnings)
    if len({v.geometry.direction for v in phases}) > 1 or any(not v.geometry.same_as(phases[0].geometry)
                                                              for v in phases):
        warnings.append("phases are on different grids; they are resampled onto the pre-contrast grid")
    if len({f.for_uid for v in phases for f in v.frames[:1]}) > 1:
        warnings.append("phases have different frames of reference; patient position may differ between them")
    notes = [f"{s.name()} left out: {s.reason} (ImageType {'/'.join(s.first.image_type) or 'not written'})"
             for s in stacks if s.role == "derived"]
    return DCEPlan(folder, stacks, phases, times, source, after, _layout(phases), warnings, scan, notes,
                   scale or "RescaleSlope/RescaleIntercept")


def _refuse_split_series(stacks: list[Stack], folder: Path) -> None:
    """Many one-image series sharing a series number: SeriesInstanceUID was changed per file."""
    single = [s for s in stacks if s.role == "too few slices" and len(s.frames) == 1]
    by_number = Counter(s.series_number for s in single)
    number, n = by_number.most_common(1)[0] if by_number else (None, 0)
    if n >= MIN_SPLIT_FILES:
        example = next(s for s in single if s.series_number == number)
        raise InputError(f"{n} series of one image each share series number {number}: each file has its own "
                         "SeriesInstanceUID (an anonymizer or export tool changed them per file)",
                         example.first.label(), "re-export or re-anonymize keeping one SeriesInstanceUID per series")


def _refuse_one_position(stacks: list[Stack]) -> None:
    """A series of several images that all lie at one slice position (the same ImagePositionPatient
    in every file): said as such, not as "too few slices" (a folder of 6-slice series read so)."""
    flat = [s for s in stacks if s.role == "too few slices" and len(s.frames) >= 3
            and s.reason.startswith("1 slice position")]
    if flat:
        s = flat[0]
        raise InputError(f"{s.name()}: its {len(s.frames)} images all lie at one slice position (the same "
                         "ImagePositionPatient in every file), so they make no 3D volume", s.first.label(),
                         "re-export the series from the scanner or PACS with each slice's own ImagePositionPatient "
                         "(an anonymizer or converter may have overwritten it); a single-slice acquisition "
                         "cannot be segmented")


def _refuse_study_per_series(ranked: list[list[Stack]], folder: Path) -> None:
    """Single-phase candidates of one sequence split only by StudyInstanceUID (UIDs changed per series)."""
    same = [g for g in ranked if _unoriented(g[0])[1:] == _unoriented(ranked[0][0])[1:]
            and orientation_key(g[0].first) == orientation_key(ranked[0][0].first)]
    if len(same) >= 2 and len({g[0].first.study_uid for g in same}) == len(same):
        names = ", ".join(s.name() for g in same for s in g)
        numbers = " ".join(str(s.series_number) for g in same for s in g if s.series_number is not None)
        raise InputError(f"{len(same)} series of the same sequence each belong to a different study "
                         f"(StudyInstanceUID): {names}", folder,
                         f"if they are the phases of one exam (an anonymizer changed the study UID per series), "
                         f"name them: --series {numbers}")


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


# Phase times spanning more than this are a broken header, not a DCE exam (protocols last under an hour).
MAX_DCE_SPAN_MIN = 360.0


def order_phases(volumes: list[Volume]) -> tuple[list[Volume], list[float] | None, str, list[str]]:
    """Sort the phases by time and give minutes after the first; fall back to tag order."""
    warnings: list[str] = []
    one_stack = len({id(v.stack) for v in volumes}) == 1
    trig = [v.trigger_ms for v in volumes]
    start = [v.start_dt for v in volumes]
    times_s: list[float] | None = None
    source = "none"
    candidates = []
    if one_stack and all(t is not None for t in trig) and len(set(trig)) == len(trig):
        candidates.append(([t / 1000.0 for t in trig], split_key_name("TriggerTime", volumes[0].stack.enhanced)))
    if all(t is not None for t in start) and len(set(start)) == len(start):
        candidates.append((list(start), volumes[0].start_dt_source or "AcquisitionTime"))
    for values, name in candidates:
        span_min = (max(values) - min(values)) / 60.0
        if span_min <= MAX_DCE_SPAN_MIN:
            times_s, source = values, name
            break
        # e.g. a converter that added TriggerTime (ms) to FrameAcquisitionDateTime as days
        warnings.append(f"the {name} values span {span_min:.4g} min, more than a DCE exam lasts "
                        f"({MAX_DCE_SPAN_MIN:g} min); they are not used as phase times")
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
