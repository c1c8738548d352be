"""``breasttumorseg reader-study``: the multi-reader analysis of Hirsch et al. from a table of masks.

TABLE.csv lists one row per case and reader (``case,reader,mask``; the model's rows use reader
name ``model`` and may add ``prob``; optional ``roi`` and ``split`` columns). Writes DIR/summary.json,
summary.md, per_case.csv and the figures (see :mod:`BreastTumorSegLib.evaluation.report`).
"""
from __future__ import annotations

import sys

from ..core.errors import InputError
from ..io.atomic import check_no_overwrite
from ..io.safety import check_input_path, check_output_dir
REFERENCE_METHODS = ("intersection", "majority", "staple")  # as evaluation.readerstudy (scipy.stats: imported by run)
from ._common import TerminalProgress, path_arg, seed_arg, threshold_arg


def register(sub) -> None:
    p = sub.add_parser(
        "reader-study", help="compare the model with several readers (leave-one-out references, Wilcoxon, TOST)",
        description="Multi-reader study: every reader is scored against a consensus of the OTHER readers; "
                    "the model against the same references. TABLE is a CSV with columns case,reader,mask "
                    "[,prob,roi,split]; the model's rows use --model-name (default 'model') and may give its "
                    "probability map in 'prob'. Relative paths are relative to the table.")
    p.add_argument("table", type=path_arg, metavar="TABLE.csv")
    p.add_argument("--output", "-o", required=True, type=path_arg, help="report folder")
    p.add_argument("--reference", choices=REFERENCE_METHODS, default="intersection",
                   help="how the other readers' masks are combined (default: %(default)s, as Hirsch et al.)")
    p.add_argument("--margins", type=float, nargs=2, metavar=("LOW", "HIGH"), default=None,
                   help="equivalence bounds on ΔDice (model − reader), e.g. -0.05 0.05 "
                        "(default: from the weakest and strongest reader)")
    p.add_argument("--alpha", type=float, default=0.05, help="significance level (default: %(default)s)")
    p.add_argument("--model-name", default="model", help="reader name of the model's rows (default: %(default)s)")
    p.add_argument("--threshold", type=threshold_arg, default=0.5,
                   help="threshold for probability maps when no case is a tuning case (default: %(default)s)")
    p.add_argument("--tune-fraction", type=float, default=0.0,
                   help="if the table has no split column: fraction of cases (random, --seed) used only to "
                        "choose the threshold (default: 0, none)")
    p.add_argument("--scores", type=path_arg, default=None,
                   help="CSV case,reader,score,malignant[,side,arm,kind] of malignancy scores for the human-AI hybrid "
                        "analysis (as `study export` writes it)")
    p.add_argument("--score-kind", choices=("probability", "birads"), default=None,
                   help="which readers' scores the hybrid uses (default: probability when present); BI-RADS is put "
                        "on a rank scale with the model's")
    p.add_argument("--score-arm", default=None,
                   help="the arm whose readers' scores the hybrid uses (default: unaided when present)")
    p.add_argument("--bootstrap", type=int, default=2000, help="bootstrap resamples (default: %(default)s)")
    p.add_argument("--seed", type=seed_arg, default=0, help="seed for the bootstrap and the tuning split")
    p.add_argument("--overwrite", action="store_true", help="replace an existing report in --output")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


REPORT_FILES = ("summary.json", "summary.md", "per_case.csv")


def run(args) -> int:
    from ..evaluation.readerstudy import (StudyConfig, assign_tuning, read_scores_table, read_study_table,
                                          run_reader_study)
    from ..evaluation.report import fmt_p, write_report

    check_output_dir(args.output, need_bytes=16 << 20)
    check_input_path(args.table, "study table")
    if args.scores is not None:
        check_input_path(args.scores, "scores table")
    if not 0 <= args.tune_fraction < 1:
        raise InputError(f"{args.tune_fraction!r} is not a valid fraction", "--tune-fraction", "give 0 <= f < 1")
    if args.bootstrap < 0:
        raise InputError(f"{args.bootstrap} is not a valid count", "--bootstrap", "give 0 or more resamples")
    check_no_overwrite([args.output / f for f in REPORT_FILES], args.overwrite)
    config = StudyConfig(reference=args.reference, margins=tuple(args.margins) if args.margins else None,
                         alpha=args.alpha, threshold=args.threshold, n_bootstrap=args.bootstrap,
                         seed=args.seed, model_name=args.model_name,
                         hybrid_normalize="rank" if args.score_kind == "birads" else "none")
    config.check()
    cases = read_study_table(args.table, args.model_name)
    if not any(c.has_model for c in cases):  # a readers-only study: agreement between the readers
        return _run_interreader(args, cases)
    if args.tune_fraction:
        cases = assign_tuning(cases, args.tune_fraction, args.seed)
    scores = malignant = None
    if args.scores is not None:
        scores, malignant = read_scores_table(args.scores, args.score_kind, args.score_arm)
    result = _with_progress(args, lambda progress: run_reader_study(cases, config, scores, malignant,
                                                                    progress=progress))
    write_report(result, args.output, overwrite=args.overwrite)

    s = result.summary
    print(f"{s['study']['n_eval_cases']} evaluation case(s), {len(result.readers)} readers, "
          f"reference: {config.reference} of the other readers")
    for r in result.readers:
        b = s["readers"][r]
        print(f"  {r:<12} median Dice {b['median_dice']:.3f}   {args.model_name} on {b['reference']}: "
              f"{b['model_median_dice']:.3f}   Wilcoxon p {fmt_p(b['wilcoxon_p'])}")
    c = s["comparison"]
    verdict = "equivalent" if c["equivalent"] else "not shown equivalent"
    print(f"overall: median ΔDice {c['median_delta_dice']:+.3f}, Wilcoxon p {fmt_p(c['wilcoxon_p'])}, "
          f"TOST p {fmt_p(c['tost_p'])} with bounds [{c['bounds']['low']:+.3f}, {c['bounds']['high']:+.3f}] "
          f"-> {verdict}")
    for h in s.get("hybrid") or []:
        print(f"  hybrid 0.5·{h['reader']} + 0.5·{args.model_name}: AUC {h['hybrid_auc_at_0.5']:.3f} "
              f"({h['reader']} alone {h['reader_auc']:.3f}, {args.model_name} alone {h['model_auc']:.3f})")
    print(f"report: {args.output / 'summary.md'}", file=sys.stderr)
    return 0


def _with_progress(args, run):
    """``run(progress)`` with a terminal progress bar (none with --quiet), closed afterwards."""
    progress = None if args.quiet else TerminalProgress()
    try:
        return run(progress)
    finally:
        if progress is not None:
            progress.close()


def _run_interreader(args, cases) -> int:
    """No case has the model's rows: report how the readers agree (see evaluation.interreader)."""
    from ..evaluation.interreader import REPORT_FILES as FILES, run_interreader_study, write_interreader_report

    if args.scores is not None:
        raise InputError("the hybrid reader+model analysis needs the model's rows in the table", "--scores",
                         "make the study with --model (study init), or drop --scores")
    check_no_overwrite([args.output / f for f in FILES], args.overwrite)
    result = _with_progress(args, lambda progress: run_interreader_study(cases, args.reference, args.bootstrap,
                                                                         args.seed, progress=progress))
    write_interreader_report(result, args.output, overwrite=args.overwrite)
    s = result.summary
    print(f"{len(result.cases)} case(s), {len(result.readers)} readers, no model: inter-reader agreement, "
          f"each reader against the {args.reference} of the others")
    for r in s["reader_order"]:
        b = s["readers"][r]
        print(f"  {r:<12} median Dice {b['median_dice']:.3f} against {b['reference']}")
    fk = s["fleiss_kappa"]
    print(f"Fleiss' kappa (voxels, {fk['region']}): pooled {fk['pooled']:.3f}, per-case median "
          f"{fk['median_per_case']:.3f}")
    print(f"report: {args.output / 'summary.md'}", file=sys.stderr)
    return 0
