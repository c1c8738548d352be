"""``breasttumorseg followup``: the same patient's exams, baseline first, and how the lesions changed."""
from __future__ import annotations

import sys

from ..core.errors import InputError
from ..followup import FOLLOWUP_MODEL
from ._common import TerminalProgress, device_arg, path_arg


def _dates(text: str) -> list[str]:
    return [d.strip() for d in text.split(",") if d.strip()]


def register(sub) -> None:
    p = sub.add_parser("followup", help="treatment response across visits: lesions matched, volume/FTV change, RECIST",
                       description="Follow one patient's lesions across visits. Each VISIT is one exam as `segment` "
                                   "takes it (an exam folder, a DICOM folder or a 4D file), the baseline first, then "
                                   "the later visits in date order. Writes followup.json, followup.csv, followup.png "
                                   "and each visit's lesions in the baseline frame (followup_visitN_tracks.nii.gz).")
    p.add_argument("visits", nargs="*", metavar="VISIT")
    p.add_argument("--manifest", type=path_arg, default=None,
                   help="many patients: a CSV with columns patient,visit,path[,date]; resumable like `batch` "
                        "(complete patients are skipped on a re-run; outputs <patient>_followup.*)")
    p.add_argument("--output", "-o", required=True, type=path_arg, help="output folder")
    p.add_argument("--dates", type=_dates, default=None,
                   help="one date per visit, YYYY-MM-DD, comma-separated (default: DICOM StudyDate, if any)")
    p.add_argument("--model", default=FOLLOWUP_MODEL, help="segmentation model for every visit (default: %(default)s)")
    p.add_argument("--device", default="auto", type=device_arg, help="auto, cpu, cuda or cuda:N (default: auto)")
    p.add_argument("--overwrite", action="store_true", help="replace existing follow-up results in the output folder")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def load_visits(paths) -> list:
    """Every visit's exam; a visit that cannot be loaded is named in the one-line error."""
    from ..io.files import load_exam

    exams = []
    for k, path in enumerate(paths):
        try:
            exams.append(load_exam(path))
        except InputError as exc:
            raise InputError(f"visit {k + 1} cannot be loaded: {exc.problem}", exc.source or path, exc.fix) from None
    return exams


def run(args) -> int:
    from ..io.atomic import check_no_overwrite
    from ..io.safety import check_input_path, check_output_dir, check_not_inputs, input_bytes
    from ..models.registry import model_card

    if args.manifest is not None:
        return run_manifest(args)
    if len(args.visits) < 2:
        raise InputError(f"follow-up needs at least two visits, got {len(args.visits)}", "VISIT",
                         "give the baseline exam first, then each later visit")
    check_output_dir(args.output, args.visits, need_bytes=input_bytes(args.visits) // 2 + (16 << 20))
    for path in args.visits:
        check_input_path(path, "VISIT", kind="any")
    model_card(args.model)  # an unknown model refused before anything is read
    if args.dates is not None and len(args.dates) != len(args.visits):
        raise InputError(f"{len(args.dates)} date(s) for {len(args.visits)} visits", "--dates",
                         "give one date per visit, comma-separated")
    from ..followup.run import output_names, run_followup, write_followup

    paths = [args.output / n for n in output_names(len(args.visits)).values()]
    check_not_inputs(paths, args.visits)
    check_no_overwrite(paths, args.overwrite)
    exams = load_visits(args.visits)
    progress = None if args.quiet else TerminalProgress()
    res = run_followup(exams, dates=args.dates, model=args.model, device=args.device, progress=progress)
    written = write_followup(res, args.output, overwrite=args.overwrite)
    if progress:
        progress.close()
    print_summary(res, written)
    return 0


def print_summary(res, written, stream=None) -> None:
    stream = stream or sys.stdout
    print(f"follow-up of {len(res.visits)} visits, {len(res.tracks)} lesion(s) followed", file=stream)
    print(f"  {'visit':<5} {'date':<10} {'lesions':>7} {'volume mL':>9} {'FTV mL':>7} {'sum LD mm':>9} "
          f"{'FTV %':>7}  RECIST", file=stream)
    for e in res.table["exams"]:
        pct = e.get("ftv_ml_percent_from_baseline")
        print(f"  {e['visit']:<5} {e['date'] or '-':<10} {e['n_lesions']:>7} {e['volume_ml']:9.2f} {e['ftv_ml']:7.2f} "
              f"{e['sum_target_diameters_mm']:9.1f} {'-' if pct is None else f'{pct:+.0f}':>7}  "
              f"{e['recist']} ({e['recist_reason']})", file=stream)
    for key, path in written.items():
        print(f"  {key:<14} {path}", file=stream)


def run_manifest(args) -> int:
    """``--manifest``: every patient of the CSV (:mod:`..batch.followup`); exit 1 when one was refused."""
    from ..batch.followup import read_manifest, run_followup_batch
    from ..io.safety import check_output_dir, input_bytes
    from ..models.registry import model_card

    if args.visits or args.dates:
        raise InputError("VISIT arguments and --dates go with one patient, not with --manifest", "--manifest",
                         "list every visit (and its date) in the manifest, or drop --manifest")
    patients = read_manifest(args.manifest)
    # the output folder as for one patient (not a file, not under one, writable, room for one
    # patient's outputs: the largest of the first patients), never in or over an input
    check_output_dir(args.output, [args.manifest] + [v for p in patients for v in p.paths],
                     need_bytes=max((input_bytes(p.paths) for p in patients[:8]), default=0) // 2 + (16 << 20))
    model_card(args.model)
    report = run_followup_batch(patients, args.output, args.model, args.device, args.overwrite)
    print(f"follow-up batch: {report.selected} patient(s), {report.done} done, {report.already_done} already done, "
          f"{len(report.failed)} refused, {len(report.busy)} busy in another run")
    return report.exit_code
