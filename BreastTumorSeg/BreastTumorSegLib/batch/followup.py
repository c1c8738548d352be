"""Follow-up of many patients from one manifest, resumable like the exam batch.

The manifest is a CSV with the columns ``patient``, ``visit`` and ``path`` (an exam as `segment`
takes it: folder, DICOM folder or 4D file; relative to the CSV), and optionally ``date``
(YYYY-MM-DD). A patient's visits run in the order of the ``visit`` column (numbers numerically,
otherwise as written: ``1, 2, 10`` or ``baseline, early, presurgery`` in file order).

Each patient is one key of the batch's :class:`~.ledger.Ledger` in ``OUT/.batch/``: claimed while
worked on (two runs sharing OUT never compute a patient twice), its files written into
``work/<patient>/`` (all or none), committed by the record, then moved into OUT as
``<patient>_followup.json``, ``.csv``, ``.png`` and ``<patient>_followup_visitN_tracks.nii.gz``. A
re-run skips every complete patient and redoes the rest; a refused patient (wrong patient's exam,
other anatomy, missing phase) is recorded with its one-line reason and the others go on.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..core.errors import BreastTumorSegError, InputError
from ..io.atomic import check_no_overwrite
from ..io.files import load_exam
from ..io.safety import check_case_id, check_input_path, check_paths_exist, check_table_row
from ..followup.visits import parse_date
from .cases import read_manifest_rows
from .ledger import Ledger


@dataclass
class Patient:
    key: str
    paths: list[str]
    dates: list[str] | None


@dataclass
class FollowupBatchReport:
    selected: int = 0
    already_done: int = 0
    done: int = 0
    failed: list[dict] = field(default_factory=list)
    busy: list[str] = field(default_factory=list)  # claimed by another run sharing OUT

    @property
    def exit_code(self) -> int:
        return 1 if self.failed or self.busy else 0


def _order(visits: list[str]) -> list[int]:
    try:
        keys = [float(v) for v in visits]
    except ValueError:
        return list(range(len(visits)))
    return sorted(range(len(visits)), key=lambda i: keys[i])


def read_manifest(csv_path: str | Path) -> list[Patient]:
    """The patients of *csv_path* (module docstring), sorted by key; every path checked first."""
    csv_path = check_input_path(csv_path, "--manifest", kind="file")
    rows, header = read_manifest_rows(csv_path, ("patient", "visit", "path"), ("date",))
    by: dict[str, list[tuple[str, str, str]]] = {}
    for line, raw in rows:
        check_table_row(raw, header, f"line {line}", csv_path)
        row = {(k or "").strip(): (v or "").strip() for k, v in raw.items()}
        key = check_case_id(row["patient"], f"{csv_path} line {line}, column patient")
        path = row["path"] if Path(row["path"]).is_absolute() else str(csv_path.parent / row["path"])
        date = row.get("date") or ""
        if date:  # refused here, before any patient is run, not as one patient's failure
            parse_date(date, f"{csv_path} line {line}, column date")
        by.setdefault(key, []).append((row["visit"], path, date))
    patients = []
    for key in sorted(by):
        visits = by[key]
        if len({v for v, _, _ in visits}) != len(visits):
            raise InputError(f"patient {key!r} lists a visit twice", csv_path, "give every visit of a patient its own name")
        if len(visits) < 2:  # a manifest error, refused before any patient is run (not one patient's failure)
            raise InputError(f"patient {key!r} has only one visit", csv_path,
                             "list at least two visits per patient (the baseline and a later exam), or remove the patient")
        order = _order([v for v, _, _ in visits])
        dates = [visits[i][2] for i in order]
        patients.append(Patient(key, [visits[i][1] for i in order], dates if all(dates) else None))
    if not patients:
        raise InputError("no visits listed", csv_path, "add one line per visit: patient,visit,path[,date]")
    check_paths_exist([(p.key, p.paths) for p in patients], csv_path)
    return patients


def run_followup_batch(patients: list[Patient], out_dir, model: str, device: str = "auto",
                       overwrite: bool = False, log=print, **segment_options) -> FollowupBatchReport:
    """Follow every patient in turn (module docstring); *log* gets one line per patient;
    ``segment_options`` go to the engine (:func:`~..engine.pipeline.segment_exam`)."""
    from ..followup.run import output_names, run_followup, write_followup

    ledger = Ledger(out_dir)
    report = FollowupBatchReport(selected=len(patients))
    for p in patients:
        pending = ledger.pending_record(p.key)
        if pending is not None:  # moved half-way by a killed run: roll forward
            ledger.finish(p.key, pending)
        if ledger.is_done(p.key):
            report.already_done += 1
            continue
        lock = ledger.claim(p.key)
        if lock is None:
            report.busy.append(p.key)
            continue
        try:
            if ledger.is_done(p.key):
                report.already_done += 1
                continue
            ledger.clear_work(p.key)
            names = output_names(len(p.paths), f"{p.key}_")
            try:
                check_no_overwrite([Path(out_dir) / n for n in names.values()], overwrite)
                exams = []
                for k, path in enumerate(p.paths):
                    try:
                        exams.append(load_exam(path))
                    except InputError as exc:
                        raise InputError(f"visit {k + 1} cannot be loaded: {exc.problem}", exc.source or path,
                                         exc.fix) from None
                res = run_followup(exams, dates=p.dates, model=model, device=device, **segment_options)
                write_followup(res, ledger.work_dir(p.key), prefix=f"{p.key}_")
            except BreastTumorSegError as exc:
                rec = ledger.record_failure(p.key, "followup", str(exc))
                ledger.clear_work(p.key)
                report.failed.append(rec)
                log(f"patient {p.key}: refused: {rec['message']}")
                continue
            rec = ledger.record_work(p.key, {"patient": p.key, "visits": len(p.paths)})
            ledger.finish(p.key, rec)
            report.done += 1
            last = res.table["exams"][-1]
            log(f"patient {p.key}: {len(p.paths)} visits, last {last['recist']} ({last['recist_reason']})")
        finally:
            ledger.release(lock)
    return report
