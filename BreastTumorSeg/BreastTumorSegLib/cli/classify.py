"""``breasttumorseg classify``: per-breast malignancy probabilities and heatmap of one exam."""
from __future__ import annotations

import sys
import time
from pathlib import Path

from ..models.classifier import DEFAULT_CLASSIFIER
from ._common import add_exam_arguments, TerminalProgress, check_exam_command, check_outputs, warn_about_exam


def register(sub) -> None:
    p = sub.add_parser("classify", help="per-breast malignancy probability (L/R) and heatmap of one DCE exam",
                       description="Per-breast malignancy probability (left/right, for each breast in the field of "
                                   "view) and a heatmap on the pre-contrast grid. The shipped model was trained on "
                                   "synthetic exams only: not a clinical classifier (see its model card). INPUT as "
                                   "for `segment`.")
    add_exam_arguments(p)
    p.add_argument("--model", default=DEFAULT_CLASSIFIER,
                   help="classification model (task: classification; default: %(default)s)")
    p.add_argument("--models-dir", default=None, help="extra folder with model cards")
    p.add_argument("--no-register", action="store_true", help="skip motion correction (phases already aligned)")
    p.add_argument("--overwrite", action="store_true", help="replace existing results in the output folder")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def write_classification(result, out_dir, overwrite: bool = False) -> dict[str, Path]:
    """JSON, heatmap (NIfTI) and picture of *result* into *out_dir*: all or nothing, atomic."""
    from ..engine.classify import output_names
    from ..engine.classify_render import render_classification
    from ..io.atomic import StagedOutputs, atomic_target, check_no_overwrite, write_image, write_json

    names = output_names(result.case_id)
    with StagedOutputs(out_dir, overwrite=overwrite) as staged:
        check_no_overwrite([staged.out_dir / n for n in names.values()], overwrite)
        write_image(staged.path(names["heatmap"]), result.heatmap)
        with atomic_target(staged.path(names["picture"])) as tmp:
            render_classification(result, tmp)
        summary = result.as_dict()
        summary["outputs"] = dict(names)
        write_json(staged.path(names["classification"]), summary)
        staged.commit()
    return {k: Path(out_dir) / n for k, n in names.items()}


def print_probabilities(result, stream=None) -> None:
    from ..engine.classify_render import probability_line

    print(f"case {result.case_id}: {probability_line(result)} (model {result.model_id}; synthetic-data model, "
          "not for clinical use)", file=stream or sys.stdout)


def run(args) -> int:
    from ..io.files import load_exam
    from ..io.safety import check_input_path

    check_exam_command(args)
    if args.models_dir is not None:
        check_input_path(args.models_dir, "--models-dir", kind="dir")
    from ..engine.classify import classify_exam, output_names
    from ..models.classifier import load_classifier

    model = load_classifier(args.model, [args.models_dir] if args.models_dir else None)  # refused before loading
    t0 = time.perf_counter()
    exam = load_exam(args.inputs, times_min=args.times, case_id=args.case_id, series=args.series)
    t_load = time.perf_counter() - t0
    warn_about_exam(exam)
    check_outputs(args, exam.case_id, output_names(exam.case_id).values())
    progress = None if args.quiet else TerminalProgress()
    result = classify_exam(exam, model, register=not args.no_register, progress=progress)
    if progress:
        progress.close()
    result.timings = {"load": t_load, **result.timings}
    written = write_classification(result, args.output, overwrite=args.overwrite)
    print_probabilities(result)
    for key, path in written.items():
        print(f"  {key:<14} {path}")
    return 0
