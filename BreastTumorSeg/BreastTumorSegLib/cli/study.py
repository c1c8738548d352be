"""``breasttumorseg study init|status|import|export|serve|tokens``: the reader-study coordinator's commands.

* ``init --cases CASES.csv --readers a,b,c --arms unaided,assisted --output STUDY`` makes the study
  folder (pseudonyms, seeded reading orders, the model's masks for the assisted arm);
* ``status STUDY``: per reader done / in progress / to do and time spent;
* ``import STUDY --reader a --case CASE --mask FILE``: a mask drawn elsewhere (imported, untimed);
* ``export STUDY --output TABLE.csv``: the table ``breasttumorseg reader-study`` reads.
"""
from __future__ import annotations

import sys

from ._common import device_arg, path_arg, seed_arg, threshold_arg


def register(sub) -> None:
    p = sub.add_parser("study", help="reader-study sessions: init, status, import, export",
                       description="Run a blinded, timed reader study: make the study folder, follow the readers, "
                                   "import masks drawn elsewhere, export the table `reader-study` analyses.")
    ss = p.add_subparsers(dest="study_command", metavar="ACTION", parser_class=type(p))
    ss.required = True

    q = ss.add_parser("init", help="make a study folder")
    q.add_argument("--cases", required=True, type=path_arg, metavar="CASES.csv",
                   help="CSV case,path (an exam folder, DICOM folder, or phase files separated by ';')")
    q.add_argument("--readers", required=True, help="comma-separated reader names, e.g. a,b,c")
    q.add_argument("--arms", default="unaided", help="unaided, assisted or unaided,assisted (default: %(default)s)")
    q.add_argument("--output", "-o", required=True, type=path_arg, help="the new study folder")
    q.add_argument("--model", default=None,
                   help="model compared with the readers (any arms) and shown in the assisted arm (a registry name, "
                        "e.g. st-demo); run on every case unless --model-outputs gives its masks")
    q.add_argument("--model-outputs", type=path_arg, default=None,
                   help="folder with the model's <case>_seg.nii.gz [and _prob.nii.gz] (else the model is run now)")
    q.add_argument("--threshold", type=threshold_arg, default=None,
                   help="probability threshold for the model's masks (default: its card's; tune one for an ensemble)")
    q.add_argument("--device", type=device_arg, default="auto", help="device for running the model (default: %(default)s)")
    q.add_argument("--seed", type=seed_arg, default=None, help="seed of pseudonyms and reading orders (default: random, "
                                                          "recorded in study.json)")
    q.add_argument("--washout-cases", type=int, default=0,
                   help="at least this many readings between a case's two arms (default: %(default)s)")
    q.add_argument("--washout-days", type=float, default=0.0,
                   help="a case's second arm opens this many days after the first was submitted (default: 0)")
    q.add_argument("--autosave-s", type=float, default=30.0, help="autosave interval (default: %(default)s s)")
    q.add_argument("--idle-timeout-s", type=float, default=90.0,
                   help="the timer stops this long after the last activity (default: %(default)s s)")
    q.add_argument("--no-breast-region", action="store_true",
                   help="do not store the whole-breast masks (the report's voxel-wise ROC then covers the whole volume)")
    q.add_argument("--effects", default=None, help="Segment Editor effects readers may use (comma-separated)")
    q.add_argument("--scores", default="", metavar="KINDS",
                   help="per breast, readers also give: probability (of malignancy, 0-100 %%), birads, or both "
                        "(comma-separated; default: none)")
    q.add_argument("--truth", type=path_arg, default=None, metavar="TRUTH.csv",
                   help="CSV case,side,malignant (1/0) per breast, for the scores table's AUC (never shown to readers)")
    q.set_defaults(func=run_init)

    q = ss.add_parser("status", help="per reader: done / in progress / to do, time spent")
    q.add_argument("study", type=path_arg, metavar="STUDY")
    q.set_defaults(func=run_status)

    q = ss.add_parser("import", help="store a mask drawn in another tool as a reader's submitted reading")
    q.add_argument("study", type=path_arg, metavar="STUDY")
    q.add_argument("--reader", required=True)
    q.add_argument("--case", required=True, help="case id of CASES.csv")
    q.add_argument("--mask", required=True, type=path_arg, help="label map on the exam's pre-contrast grid")
    q.add_argument("--arm", default=None, help="arm of the reading (default: the study's first arm)")
    q.add_argument("--probability", default=None, metavar="L,R",
                   help="the reader's probability of malignancy (0-100 %%) of the left and right breast")
    q.add_argument("--birads", default=None, metavar="L,R", help="the reader's BI-RADS category, left and right")
    q.set_defaults(func=run_import)

    q = ss.add_parser("export", help="write the table `breasttumorseg reader-study` reads")
    q.add_argument("study", type=path_arg, metavar="STUDY")
    q.add_argument("--output", "-o", required=True, type=path_arg, metavar="TABLE.csv")
    q.add_argument("--scores-output", type=path_arg, default=None, metavar="SCORES.csv",
                   help="the scores table for `reader-study --scores` (default: TABLE.scores.csv, written when the "
                        "study has readers' or the model's scores)")
    q.add_argument("--partial", action="store_true", help="export the complete cases only, when readers are not done")
    q.add_argument("--overwrite", action="store_true", help="replace an existing table")
    q.set_defaults(func=run_export)

    from .study_serve import add_parsers  # the web reader station: study serve, study tokens

    add_parsers(ss)


def _split(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def run_init(args) -> int:
    from ..io.safety import check_output_dir
    from ..study.coordinator import init_study
    from ._common import TerminalProgress

    check_output_dir(args.output, [args.cases] + ([args.truth] if args.truth else []), need_bytes=16 << 20)
    study = init_study(args.cases, _split(args.readers), _split(args.arms), args.output, seed=args.seed,
                       model=args.model, model_outputs=args.model_outputs, washout_cases=args.washout_cases,
                       washout_days=args.washout_days, autosave_s=args.autosave_s,
                       idle_timeout_s=args.idle_timeout_s,
                       allowed_effects=_split(args.effects) if args.effects else None, device=args.device,
                       breast_region=not args.no_breast_region, threshold=args.threshold,
                       progress=TerminalProgress(), scores=_split(args.scores), truth=args.truth)
    arms = ", ".join(a.name + (f" ({a.model}, sha256 {a.model_sha256[:12]}…)" if a.model else "") for a in study.arms)
    print(f"study {study.folder}: {len(study.cases)} cases, readers {', '.join(study.readers)}, arms {arms}, "
          f"seed {study.seed}" + (f", model {study.model['name']} on every case" if study.model else "")
          + (f", readers score {' and '.join(study.scores)} per breast" if study.scores else ""))
    return 0


def _hms(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def run_status(args) -> int:
    from ..io.safety import check_input_path
    from ..study.coordinator import study_status

    check_input_path(args.study, "study folder", kind="dir")
    rows = study_status(args.study)
    print(f"{'reader':<14} {'done':>5} {'in progress':>12} {'to do':>6} {'active':>9} {'wall':>9}  session")
    for r in rows:
        print(f"{r['reader']:<14} {r['done']:>5} {r['in_progress']:>12} {r['to_do']:>6} {_hms(r['active_s']):>9} "
              f"{_hms(r['wall_s']):>9}  {'open' if r['session_open'] else '-'}"
              + (f"  ({r['imported']} imported)" if r["imported"] else ""))
    return 0


def run_import(args) -> int:
    from ..io.safety import check_input_path
    from ..study.coordinator import import_mask

    check_input_path(args.study, "study folder", kind="dir")
    check_input_path(args.mask, "mask")
    from ..study.scores import parse_side_pair

    scores = None
    for kind, text in (("probability", args.probability), ("birads", args.birads)):
        if text is not None:
            for side, rec in parse_side_pair(text, kind, f"--{kind}").items():
                (scores := scores or {}).setdefault(side, {}).update(rec)
    path = import_mask(args.study, args.reader, args.case, args.mask, args.arm, scores)
    print(f"imported as {path}")
    return 0


def run_export(args) -> int:
    from ..io.safety import check_input_path
    from ..study.coordinator import export_table

    check_input_path(args.study, "study folder", kind="dir")  # the table's location is checked with the study
    path, left_out = export_table(args.study, args.output, partial=args.partial, overwrite=args.overwrite,
                                  scores_output=args.scores_output)
    if left_out:
        print(f"breasttumorseg: warning: {len(left_out)} incomplete case(s) left out: {', '.join(left_out[:10])}"
              f"{' ...' if len(left_out) > 10 else ''}", file=sys.stderr)
    from ..study.scores import scores_table_path

    scores = args.scores_output or scores_table_path(path)
    more = f" --scores {scores}" if scores.exists() else ""
    if more:
        print(f"scores table: {scores}")
    print(f"table: {path}  (next: breasttumorseg reader-study {path}{more} --output REPORT)")
    return 0
