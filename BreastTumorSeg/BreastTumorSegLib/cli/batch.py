"""``breasttumorseg batch``: many exams, one model load per worker, resumable, a worklist by doubt."""
from __future__ import annotations

import sys
from pathlib import Path

from ..core.errors import InputError
from .segment import add_engine_options, check_engine_options, engine_kwargs
from ._common import path_arg


def register(sub) -> None:
    p = sub.add_parser(
        "batch", help="segment many exams (resumable; failures listed; worklist sorted by doubt)",
        description="Segment every exam of INPUT: a folder of case folders (MAMA-MIA naming or DICOM "
                    "studies), or a manifest CSV with columns case,path[,times]. Each exam gets exactly the "
                    "files of `breasttumorseg segment`. Re-running the same command skips complete exams and "
                    "redoes interrupted ones. Exit code 0: every exam done; 1: some failed (OUT/failures.csv) "
                    "or were not finished; 2: refused.")
    p.add_argument("input", metavar="INPUT", help="folder of exam folders, or a manifest CSV (case,path[,times])")
    p.add_argument("--output", "-o", required=True, type=path_arg, help="output folder (shared by all shards)")
    p.add_argument("--workers", type=int, default=1,
                   help="worker processes (local) or Ray actors, each loading the models once (default: 1)")
    p.add_argument("--shard", default=None, metavar="i/n",
                   help="process only part i of n (deterministic by case name), e.g. for a Slurm job array")
    p.add_argument("--engine", choices=["local", "ray"], default="local",
                   help="local processes, or actors on a Ray cluster (pip install 'breasttumorseg[ray]')")
    p.add_argument("--ray-address", default=None,
                   help="with --engine ray: the cluster to join (e.g. auto); default: start Ray on this machine")
    p.add_argument("--progress", choices=["bar", "json", "none"], default="bar",
                   help="bar: a bar with ETA on a terminal (one line per exam in a log); json: one JSON line "
                        "per event on stdout (default: bar)")
    p.add_argument("--verify", choices=["size", "hash"], default="size",
                   help="how complete outputs of earlier runs are checked: size and modification time, or "
                        "also SHA-256 (reads every file)")
    p.add_argument("--dicom-seg", action="store_true", help="also write <case>_seg.dcm (DICOM inputs)")
    p.add_argument("--deidentify", action="store_true", help="with --dicom-seg: without patient identifiers")
    add_engine_options(p)
    p.set_defaults(func=run)


def check_batch_options(args):
    from ..batch.cases import parse_shard
    from ..io.safety import check_input_path, check_output_dir

    check_output_dir(args.output, [args.input])
    check_input_path(args.input, "batch input", kind="any")
    if args.workers < 1:
        raise InputError(f"--workers {args.workers} is not a positive number", "--workers", "give 1 or more")
    check_engine_options(args)
    return parse_shard(args.shard)


def run(args) -> int:
    from ..batch.cases import discover
    from ..batch.runner import run_batch
    from ..io.safety import check_output_dir, check_output_location, exam_locations, input_bytes

    shard = check_batch_options(args)
    cases = discover(args.input)
    # the output never lies in (or is) an exam of the batch, whichever way the exams were listed
    check_output_location(args.output, exam_locations(p for c in cases for p in c.inputs))
    # room for one exam's outputs (segment's rule, on the largest of the first exams) before the
    # ledger is made: a full disk is one line, not a folder of failed exams
    check_output_dir(args.output, need_bytes=2 * max((input_bytes(c.inputs) for c in cases[:8]), default=0)
                     + (16 << 20))
    progress = "none" if args.quiet and args.progress == "bar" else args.progress
    out = sys.stderr if progress == "json" else sys.stdout
    try:
        report = run_batch(cases, args.output, engine_kwargs(args),
                           {"dicom_seg": args.dicom_seg, "deidentify": args.deidentify},
                           workers=args.workers, shard=shard, backend=args.engine, progress=progress,
                           overwrite=args.overwrite, verify=args.verify, ray_address=args.ray_address)
    except KeyboardInterrupt:  # SIGINT / SIGTERM: say what is in OUT before the exit code says "interrupted"
        from ..core import interrupts

        interrupts.note_work()  # one exam's commit is not the batch's: the exit code is 130 / 143
        _say_interrupted(args.output)
        raise
    print(f"batch: {report.selected} exam(s){f' in shard {args.shard}' if shard else ''}: "
          f"{report.done} done now, {report.already_done} done before or by a concurrent run, "
          f"{len(report.failed)} failed, "
          f"{len(report.unfinished)} not finished; {report.models_loaded} model load(s)", file=out)
    print(f"  failures  {args.output / 'failures.csv'}\n  worklist  {args.output / 'worklist.csv'}", file=out)
    if report.unfinished:
        print("  re-run the same command to finish: " + ", ".join(report.unfinished[:10]), file=out)
    return report.exit_code


def _say_interrupted(out_dir: Path) -> None:
    """What an interrupted batch leaves: the exams committed so far (complete, kept) and the reports."""
    done = len(list((out_dir / ".batch" / "done").glob("*.json")))  # the ledger's records, only read
    written = [n for n in ("failures.csv", "worklist.csv") if (out_dir / n).is_file()]
    print(f"batch: interrupted; {done} exam(s) complete in {out_dir} are kept"
          + (f", {' and '.join(written)} list them" if written else "")
          + "; the exam in progress was discarded. Re-run the same command to finish", file=sys.stderr)
