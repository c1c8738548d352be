"""``breasttumorseg refine``: correct a segmentation with positive / negative clicks.

    breasttumorseg refine EXAM --seg out/case_seg.nii.gz --click-ras 12,30.5,-4,+ \\
        --click-ras=-20,41,-2,- --output refined/

Writes the outputs of ``segment`` (label map, probability, ``.seg.nrrd``, JSON with the updated
lesion table and the clicks, overview picture). ``<case>_prob.nii.gz`` and ``<case>.json`` beside
the segmentation are used when present (the probability map, the model id, whether the exam was
motion-corrected, the breast layout for lesion sides). Clicks are applied in the order given.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import SimpleITK as sitk

from ..core.errors import InputError
from ._common import TerminalProgress, add_exam_arguments, check_exam_command, path_arg, warn_about_exam
from .segment import print_result


def register(sub) -> None:
    p = sub.add_parser("refine", help="correct a segmentation with positive/negative clicks",
                       description="Correct a tumor segmentation of one DCE exam with clicks: a positive click "
                                   "(+, 'this is tumor') adds a missed lesion or extends one, a negative click "
                                   "(-, 'this is not tumor') removes a false lesion or cuts a leak. INPUT as for "
                                   "`segment`.")
    add_exam_arguments(p)
    p.add_argument("--seg", required=True, type=path_arg, help="the segmentation to correct (<case>_seg.nii.gz)")
    p.add_argument("--click-ras", dest="clicks", action="append", type=lambda t: ("ras", t), default=[],
                   metavar="R,A,S[,+|-]", help="a click in RAS mm as Slicer shows it; + (default) tumor, - not "
                                               "tumor; repeat for more clicks (negative first value: "
                                               "--click-ras=-12,30,5,-)")
    p.add_argument("--click-lps", dest="clicks", action="append", type=lambda t: ("lps", t), default=[],
                   metavar="X,Y,Z[,+|-]", help="a click in LPS mm (ITK, DICOM)")
    reg = p.add_mutually_exclusive_group()
    reg.add_argument("--register", dest="register", action="store_true", default=None,
                     help="motion-correct the exam first (default: as the segmentation's JSON records, else yes)")
    reg.add_argument("--no-register", dest="register", action="store_false")
    p.add_argument("--overwrite", action="store_true", help="replace existing results in the output folder")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def _beside(seg: Path, suffix: str) -> Path | None:
    name = seg.name
    for ext in (".nii.gz", ".nii", ".nrrd", ".mha"):
        if name.endswith("_seg" + ext):
            path = seg.with_name(name[: -len("_seg" + ext)] + suffix)
            return path if path.is_file() else None
    return None


def run(args) -> int:
    from ..engine.refine import parse_click
    from ..io.files import load_exam
    from ..io.images import read_image, read_mask
    from ..io.safety import check_input_path

    check_exam_command(args)
    check_input_path(args.seg, "--seg", kind="file")
    clicks = [parse_click(text, frame) for frame, text in args.clicks]
    if not clicks:
        raise InputError("no click given", "refine", "add --click-ras R,A,S,+ (tumor) or R,A,S,- (not tumor)")
    prob_path = _beside(args.seg, "_prob.nii.gz")
    json_path = _beside(args.seg, ".json")
    summary = {}
    if json_path is not None:
        # The summary holds the settings the segmentation was made with: a damaged one is refused,
        # not replaced silently by the defaults (the refined outline would differ without a word).
        fix = "repair it, or move it out of the folder to refine with the default settings"
        try:
            summary = json.loads(json_path.read_text(encoding="utf-8-sig"))
        except (OSError, ValueError) as err:  # UnicodeDecodeError is a ValueError
            raise InputError(f"cannot read the segmentation's summary ({type(err).__name__})", json_path,
                             fix) from None
        if not isinstance(summary, dict):
            raise InputError("the segmentation's summary is not a JSON object", json_path, fix)
    settings = summary.get("settings") if isinstance(summary.get("settings"), dict) else {}

    progress = None if args.quiet else TerminalProgress()
    t0 = time.perf_counter()
    exam = load_exam(args.inputs, times_min=args.times, case_id=args.case_id, series=args.series)
    label = read_mask(args.seg, "--seg")
    prob = read_image(prob_path, "probability map") if prob_path is not None else None
    t_load = time.perf_counter() - t0
    warn_about_exam(exam)

    from ..core.imageutil import same_grid
    from ..engine.pipeline import output_names, write_result
    from ..engine.refine import Refiner

    if not same_grid(label, exam.reference):
        raise InputError("the segmentation is not on the exam's pre-contrast grid", args.seg,
                         "give the segmentation made from this exam (same size, spacing, origin, direction)")
    if prob is not None and not same_grid(prob, exam.reference):
        prob = None
    # No output may replace the exam, the segmentation or the files read beside it.
    from ..io.atomic import check_no_overwrite
    from ..io.safety import check_case_id, check_not_inputs

    check_case_id(exam.case_id, "case id (from the input names; set it with --case-id)")
    outputs = [args.output / n for n in output_names(exam.case_id).values()]
    check_not_inputs(outputs, [*args.inputs, args.seg, *(p for p in (prob_path, json_path) if p is not None)])
    check_no_overwrite(outputs, args.overwrite)

    register = args.register if args.register is not None else bool(settings.get("registered", True))
    qa = []
    if register:
        from ..preprocess.registration import register_exam
        if progress:
            progress("register", 0.0, "motion correction")
        exam, qa = register_exam(exam)
    from ..core.results import SegmentationResult

    result = SegmentationResult(
        case_id=exam.case_id, label=label, probability=prob if prob is not None else sitk.Cast(label, sitk.sitkFloat32),
        lesions=[], model_id=str(summary.get("model_id", "unknown")), registration_qa=qa,
        breast_mask_qa=summary.get("breast_mask_qa"),
        subtraction=sitk.Subtract(exam.phases[1], exam.phases[0]),
        settings={"registered": register, "layout": settings.get("layout") or _layout(exam),
                  "source_segmentation": str(args.seg), "source_probability": str(prob_path) if prob_path else None})
    refiner = Refiner(exam, result)
    for k, click in enumerate(clicks):
        if progress:
            progress("refine", k / len(clicks), f"click {k + 1}/{len(clicks)} {click.sign}")
        refiner.add(click)
    refined = refiner.result()
    refined.timings = {"refine": refined.timings["refine"]}
    written = write_result(refined, args.output, overwrite=args.overwrite, load_seconds=t_load)
    if progress:
        progress("refine", 1.0, "done")
        progress.close()
    print_result(refined, written)
    for entry in refiner.log:
        print(f"  click {entry['sign']} RAS ({', '.join(f'{v:.1f}' for v in entry['ras_mm'])}): {entry['action']}"
              + (f" {entry['volume_ml']:.2f} mL" if entry.get("voxels") else f" ({entry.get('note', '')})"))
    return 0


def _layout(exam) -> dict:
    """Where the breasts and the midline are (lesion sides), when the JSON does not say."""
    from ..preprocess.breast_region import breast_region

    laterality = exam.metadata.get("laterality") or exam.metadata.get("Laterality")
    return breast_region(exam.pre, laterality=laterality)[1]["layout"]
