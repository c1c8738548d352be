"""Checks across the series of one folder: one patient, one study, one intensity scale.

* **Patients and studies.** A folder holding two patients (a PACS export of a work list, a
  mis-filed series) or two studies of one patient (today's exam and a prior) must not be read as
  one exam, and the reader must not pick one of them silently. :func:`refuse_mixed_subjects`
  refuses, naming the series of each and a file of each; patients are told apart by a digest of
  PatientID and PatientName (:attr:`.headers.Frame.patient`), so no identifier is printed or kept.
* **Rescale.** The stored values of every phase go through RescaleSlope/RescaleIntercept. An
  image without the tags, among images whose tags scale their values, would be read unscaled:
  :func:`check_rescale` refuses it, naming the file.
* **Philips' private scale slope** (2005,100E). Philips writes display values (stored x
  RescaleSlope + RescaleIntercept) and the factor back to its floating-point values,
  FP = display / (RescaleSlope x MR scale slope). When that factor is equal in every phase, display
  values keep the phases' ratios (the enhancement) and are used as they are; when it differs between
  phases the display values of two phases are on different scales, so the floating-point values are
  used, and the plan says so (:func:`philips_scale`).
"""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from ...core.errors import InputError
from .headers import Frame
from .stacks import DCE, Stack

# Two scale factors closer than this (relative) are the same.
SCALE_TOLERANCE = 1e-4


def _series_list(stacks: Sequence[Stack], limit: int = 4) -> str:
    names = list(dict.fromkeys(s.name() for s in stacks))
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def _groups(stacks: Sequence[Stack], key) -> dict[str, list[Stack]]:
    out: dict[str, list[Stack]] = defaultdict(list)
    for s in stacks:
        out[key(s.first)].append(s)
    return out


def refuse_mixed_subjects(stacks: Sequence[Stack], folder: Path, chosen: Sequence[Stack] | None = None) -> None:
    """Refuse images of more than one patient, and DCE acquisitions of more than one study.

    *chosen*: the series named with ``--series``; only they are checked then.
    """
    pool = list(chosen) if chosen is not None else list(stacks)
    patients = _groups(pool, lambda f: f.patient)
    if len(patients) > 1:
        parts = [f"patient {i + 1}: {_series_list(g)} (e.g. {g[0].first.path})"
                 for i, g in enumerate(sorted(patients.values(), key=lambda g: g[0].first.path))]
        raise InputError(f"the images belong to {len(patients)} different patients (PatientID/PatientName differ): "
                         + "; ".join(parts), folder,
                         "name one patient's series only with --series (see `breasttumorseg dicom-list`)"
                         if chosen is not None else
                         "put each patient's files in a folder of their own, or choose one with --series "
                         "(see `breasttumorseg dicom-list`)")
    if chosen is not None:  # series named by the user (e.g. phases an anonymizer gave a study UID each)
        return
    # Only studies that hold a DCE of their own: a prior's localizer, or one phase per study UID
    # (an anonymizer's doing, refused elsewhere with its own fix), does not make two exams.
    studies = {uid: g for uid, g in _groups([s for s in pool if s.role == DCE], lambda f: f.study_uid).items()
               if sum(s.n_volumes for s in g) >= 2}
    if len(studies) > 1:
        parts = [f"study {i + 1}: {_series_list(g)} (e.g. {g[0].first.path})"
                 for i, g in enumerate(sorted(studies.values(), key=lambda g: g[0].first.path))]
        raise InputError(f"the folder holds DCE series of {len(studies)} different studies (StudyInstanceUID "
                         "differs; e.g. today's exam and a prior): " + "; ".join(parts), folder,
                         "put each study in a folder of its own, or choose the phases of one study with --series "
                         "(SeriesInstanceUIDs if series numbers repeat)")


def check_rescale(frames: Sequence[Frame]) -> None:
    """Refuse an image without rescale tags among images whose tags change their values."""
    scaled = [f for f in frames if f.has_rescale and (f.slope != 1.0 or f.intercept != 0.0)]
    bare = [f for f in frames if not f.has_rescale]
    if scaled and bare:
        f, ref = bare[0], scaled[0]
        raise InputError(f"this image has no RescaleSlope/RescaleIntercept while other images of the exam have "
                         f"them (e.g. slope {ref.slope:g}, intercept {ref.intercept:g} in {ref.label()}); its "
                         f"stored values would be read unscaled ({len(bare)} image(s) without them)", f.label(),
                         "re-send its series from the scanner or PACS with the rescale tags (an anonymizer or "
                         "converter dropped them)")


def philips_scale(frames_by_phase: Sequence[Sequence[Frame]],
                  warnings: list[str]) -> tuple[str | None, list[list[Frame]]]:
    """The intensity scale of the phases: (what was used, the phases' frames to read).

    With Philips' private scale slope differing between phases the frames returned are copies whose
    slope and intercept give floating-point values (the scan's frames are left as read); the scale
    is None when no frame carries the private slope."""
    frames = [f for fr in frames_by_phase for f in fr]
    carried = [f for f in frames if f.private_scale is not None]
    same = [list(fr) for fr in frames_by_phase]
    if not carried:
        return None, same
    lacking = [f for f in frames if f.private_scale is None]
    if lacking:
        raise InputError(f"this image has no Philips MR scale slope (2005,100E) while {len(carried)} other image(s) "
                         f"of the exam have it (e.g. {carried[0].label()}); the phases cannot be put on one "
                         "intensity scale", lacking[0].label(),
                         "re-send every phase from the scanner or PACS unchanged (keep the private tags), or load "
                         "phases converted by dcm2niix")
    factors = [f.slope * f.private_scale for f in frames]
    lo, hi = min(factors), max(factors)
    if hi - lo <= SCALE_TOLERANCE * hi:
        return "display values (Philips' RescaleSlope x private scale slope is the same in every phase)", same
    per_phase = ["/".join(f"{v:.4g}" for v in sorted({f.slope * f.private_scale for f in fr}))
                 for fr in frames_by_phase]
    # FP = (stored x RS + RI) / (RS x SS)
    floating = [[replace(f, slope=1.0 / f.private_scale, intercept=f.intercept / (f.slope * f.private_scale))
                 for f in fr] for fr in frames_by_phase]
    warnings.append("Philips' scale factor RescaleSlope x private MR scale slope (2005,100E) differs between phases ("
                    + ", ".join(per_phase) + "), so their display values are on different scales; the phases were "
                    "read as Philips floating-point values, (stored x RescaleSlope + RescaleIntercept) / that factor")
    return "Philips floating-point values (private scale slope differs between phases)", floating
