"""What is checked about each visit before anything is computed: same patient, dates, phases.

* **Patient**: for DICOM exams, the PatientID of every visit must equal the baseline's (read from
  the first file of the pre-contrast phase; never written anywhere). Other formats carry no
  identity; the registration's anatomy check (:mod:`.register`) still catches another body.
* **Dates**: ``dates`` given (ISO ``YYYY-MM-DD``), else DICOM StudyDate, else unknown; known dates
  must increase from the baseline on (the visits are given in chronological order).
* **Phases**: every visit must allow the same FTV rule as the baseline: a late post-contrast
  phase (SER) in each visit when the baseline has one.
* **Distinct**: no visit may be another visit given again (the same pre-contrast images, voxel for voxel, on
  the same grid): a follow-up of an exam with itself would report a perfect "stable disease".
"""
from __future__ import annotations

import datetime as dt
import hashlib

import numpy as np
import SimpleITK as sitk

from ..core.errors import InputError
from ..core.exam import DCEExam
from ..kinetics.maps import choose_phases


def visit_name(k: int, exam: DCEExam) -> str:
    """How messages name visit *k* (0 = baseline): ``visit 2 (<where it came from>)``."""
    src = exam.metadata.get("dicom_source")
    where = getattr(src, "folder", None) or (exam.sources[0] if exam.sources else exam.case_id)
    return f"visit {k + 1} ({where})"


def dicom_header(exam: DCEExam, keywords=("PatientID", "StudyDate")) -> dict:
    """The named attributes of the pre-contrast phase's first DICOM file ({} for other formats)."""
    src = exam.metadata.get("dicom_source")
    if src is None or not getattr(src, "phase_files", None):
        return {}
    import pydicom

    try:
        ds = pydicom.dcmread(src.reference_files[0][0], stop_before_pixels=True, specific_tags=list(keywords))
    except Exception:  # unreadable now (moved?): identity unknown, as for NIfTI
        return {}
    return {k: str(getattr(ds, k, "") or "") or None for k in keywords}


def parse_date(text: str, where: str, from_dicom: bool = False) -> str:
    for fmt in ("%Y-%m-%d", "%Y%m%d"):
        try:
            return dt.datetime.strptime(text.strip(), fmt).date().isoformat()
        except ValueError:
            pass
    if from_dicom:  # the user wrote no date: say where this one came from and how to give the right one
        raise InputError(f"its DICOM StudyDate {text!r} is not a date (DICOM writes YYYYMMDD)", where,
                         "give every visit's date with --dates YYYY-MM-DD,YYYY-MM-DD (one per visit)")
    raise InputError(f"date {text!r} is not a date", where, "write dates as YYYY-MM-DD, one per visit")


def _fingerprint(exam: DCEExam) -> str:
    """A digest of the pre-contrast phase's voxels and grid (equal only for the same images)."""
    pre = exam.phases[0]  # kept in a variable: its array view must not outlive it
    h = hashlib.blake2b(np.ascontiguousarray(sitk.GetArrayViewFromImage(pre)).tobytes(), digest_size=16)
    h.update(repr((pre.GetSize(), pre.GetSpacing(), pre.GetOrigin(), pre.GetDirection())).encode())
    return h.hexdigest()


def check_distinct(exams: list[DCEExam]) -> None:
    """Refuse a visit that is an earlier visit given again (:data:`module docstring <.visits>`, "Distinct")."""
    seen: dict[str, int] = {}
    for k, exam in enumerate(exams):
        j = seen.setdefault(_fingerprint(exam), k)
        if j != k:
            raise InputError(f"is the same exam as {visit_name(j, exams[j])}: its pre-contrast images are identical",
                             visit_name(k, exam), "give each visit's own exam once, baseline first")


def check_visits(exams: list[DCEExam], dates: list[str] | None = None) -> list[str | None]:
    """Refuse a visit of another patient, out of date order, or without the baseline's phases;
    returns each visit's date (ISO, or None when unknown)."""
    if len(exams) < 2:
        raise InputError(f"follow-up needs at least two visits, got {len(exams)}", "VISIT",
                         "give the baseline exam first, then each later visit")
    if dates is not None and len(dates) != len(exams):
        raise InputError(f"{len(dates)} date(s) for {len(exams)} visits", "--dates", "give one date per visit")
    check_distinct(exams)
    headers = [dicom_header(e) for e in exams]
    base_id = headers[0].get("PatientID")
    for k in range(1, len(exams)):
        other = headers[k].get("PatientID")
        if base_id and other and other != base_id:
            raise InputError("its DICOM PatientID differs from the baseline's: another patient's exam",
                             visit_name(k, exams[k]), "give the exams of one patient, baseline first")
    out = []
    for k, exam in enumerate(exams):
        if dates is not None:
            out.append(parse_date(dates[k], "--dates"))
        else:
            raw = headers[k].get("StudyDate")
            out.append(parse_date(raw, visit_name(k, exam), from_dicom=True) if raw else None)
    known = [(k, d) for k, d in enumerate(out) if d]
    for (_, a), (k, b) in zip(known, known[1:]):
        if b <= a:
            raise InputError(f"dated {b}, not after the visit before it ({a})", visit_name(k, exams[k]),
                             "give the visits in chronological order, baseline first (or fix --dates)")
    late = [choose_phases(e.effective_times()).late is not None for e in exams]
    for k in range(1, len(exams)):
        if late[0] and not late[k]:
            raise InputError("has no late post-contrast phase, so its FTV (PE and SER rule) cannot be measured "
                             "as the baseline's", visit_name(k, exams[k]),
                             "load the visit with all its post-contrast phases (see `breasttumorseg dicom-list`)")
    return out
