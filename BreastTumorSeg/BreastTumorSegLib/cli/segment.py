"""``breasttumorseg segment``: one exam in, segmentation files out."""
from __future__ import annotations

import argparse
import sys
import time

from ..core.errors import InputError
from ..models.registry import DEFAULT_MODEL
from ._common import (add_exam_arguments, TerminalProgress, check_exam_command, check_outputs, device_arg, point_arg,
                      threshold_arg, warn_about_exam)


def add_engine_options(p: argparse.ArgumentParser) -> None:
    """Options shared by `segment` and `demo`."""
    p.add_argument("--model", default=DEFAULT_MODEL,
                   help="model name (see `breasttumorseg models`), or name1+name2 for an ensemble (default: %(default)s)")
    p.add_argument("--models-dir", default=None, help="extra folder with <name>.safetensors + <name>.json model cards")
    p.add_argument("--device", type=device_arg, default="auto",
                   help="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N or mps (default: auto)")
    p.add_argument("--threshold", type=threshold_arg, default=None,
                   help="probability threshold (default: the model card's)")
    p.add_argument("--mode", choices=["absolute", "relative"], default=None,
                   help="absolute: p >= threshold; relative: p >= 0.6 x slice maximum (Hirsch et al.)")
    p.add_argument("--min-lesion-ml", type=float, default=None, help="drop components smaller than this (mL)")
    p.add_argument("--breast-model", default=None, metavar="NAME",
                   help="gate lesions with this learned whole-breast model (e.g. breastmask-demo) instead of "
                        "the classical breast mask")
    p.add_argument("--tissue-wrap", action="store_true",
                   help="breast region with the tissue wrap: lateral breast tissue in front of the chest-wall "
                        "muscle added to the sternum rule (off by default; README, robustness)")
    p.add_argument("--no-register", action="store_true", help="skip motion correction (phases already aligned)")
    p.add_argument("--registration", choices=["auto", "sitk", "deepali", "none"], default="auto",
                   help="motion-correction method: auto (rigid/affine with SimpleITK, the deformable level with "
                        "hf-deepali), sitk (SimpleITK only), deepali, none (= --no-register)")
    p.add_argument("--motion", choices=["rigid", "affine", "deformable"], default=None,
                   help="highest motion-correction level tried: rigid, bounded affine, or deformable B-spline "
                        "(default: the engine's, see README)")
    p.add_argument("--raw", action="store_true",
                   help="the model's own answer on the input as given: no motion correction, no breast gating, "
                        "no lesion post-processing")
    byom = p.add_argument_group("your own models (--model nnunet:FOLDER, monai:BUNDLE, or a name from `models add`)")
    byom.add_argument("--channels", default=None, metavar="SOURCES",
                      help="DCE image per model input channel: phaseK or subK (phase K minus pre-contrast), "
                           "comma-separated, or a preset (mama-mia = phase1); default: the model's "
                           "breasttumorseg.json, else mama-mia for a one-channel model")
    byom.add_argument("--folds", default=None, help="nnU-Net folds to use, e.g. 0,1 (default: all it has)")
    byom.add_argument("--no-mirroring", action="store_true", help="nnU-Net: no mirroring test-time augmentation")
    byom.add_argument("--trust-pickle", action="store_true",
                      help="load an unregistered nnU-Net/MONAI checkpoint (a pickle, which can run code) anyway")
    p.add_argument("--overwrite", action="store_true", help="replace existing results in the output folder")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def register(sub) -> None:
    p = sub.add_parser("segment", help="segment tumors in one DCE exam",
                       description="Segment breast tumors in one DCE-MRI exam. INPUT is an exam folder "
                                   "(<case>_0000.nii.gz = pre-contrast, _0001 = first post-contrast, ...; "
                                   "or a DICOM folder), the phase files in acquisition order, or one 4D file.")
    add_exam_arguments(p)
    p.add_argument("--dicom-seg", action="store_true", help="also write <case>_seg.dcm (DICOM SEG; DICOM input only)")
    p.add_argument("--reading-images", action="store_true",
                   help="also write <case>_subtraction.nii.gz (first post - pre, motion-corrected) and "
                        "<case>_breast.nii.gz (the breast mask that gated the lesions), as the Slicer panel uses")
    p.add_argument("--registered-phases", action="store_true",
                   help="also write <case>_registered.nrrd: every phase after motion correction (4D, phase = 4th axis)")
    p.add_argument("--deidentify", action="store_true",
                   help="with --dicom-seg: write the SEG without patient identifiers, dates or equipment IDs")
    p.add_argument("--seed-lps", type=point_arg, default=None,
                   help="for --model ftv: a point inside the lesion, x,y,z in mm, patient LPS coordinates")
    p.add_argument("--seed-ras", type=point_arg, default=None,
                   help="the same point in RAS coordinates as Slicer shows them")
    p.add_argument("--progress", choices=["bar", "json", "none"], default="bar",
                   help="bar: a progress bar on stderr; json: one JSON event per line on stdout, the schema of "
                        "`batch --progress json` (stage, fraction, message, warnings, the files written, or the "
                        "error with its fix), the summary on stderr (default: bar)")
    p.add_argument("--classify", action="store_true",
                   help="also the per-breast malignancy probabilities (L/R) in the JSON, and "
                        "<case>_classification.json / _heatmap.nii.gz / _classification.png (see `classify`)")
    p.add_argument("--classify-model", default="breastcls-demo", metavar="NAME",
                   help="classification model for --classify (default: %(default)s)")
    add_engine_options(p)
    p.set_defaults(func=run)


def check_engine_options(args) -> None:
    """Option values of `segment` and `demo`, checked before anything is read."""
    from ..io.safety import check_input_path, check_positive

    check_positive(args.min_lesion_ml, "--min-lesion-ml", zero_ok=True)
    if args.models_dir is not None:
        check_input_path(args.models_dir, "--models-dir", kind="dir")
    from ..models.registry import model_card  # no PyTorch: only the cards are read

    from ..models.registry import get_segmenter, is_foreign

    dirs = [args.models_dir] if args.models_dir else None
    foreign = False
    for name in args.model.split("+"):
        model_card(name, dirs)  # unknown names refused now
        if is_foreign(name, dirs):  # nnU-Net folder / MONAI bundle: folder, pins, channel mapping (cheap, no weights)
            get_segmenter(name, dirs, model_options(args)).check_installed()
            foreign = True
    if model_options(args) and not foreign:
        raise InputError(f"--channels, --folds, --no-mirroring and --trust-pickle apply to nnU-Net and MONAI models, "
                         f"not to {args.model}", "--model", "drop them, or use --model nnunet:FOLDER / monai:BUNDLE")
    seeded = getattr(args, "seed_lps", None) is not None or getattr(args, "seed_ras", None) is not None
    if seeded and "ftv" not in args.model.split("+"):
        raise InputError(f"a seed point only guides --model ftv, not {args.model}", "--seed-ras/--seed-lps",
                         "add --model ftv, or drop the seed point")


def model_options(args) -> dict:
    """Options for foreign models (nnU-Net folders, MONAI bundles); only those the user set."""
    opts = {"trust_pickle": args.trust_pickle or None, "folds": args.folds, "channels": args.channels,
            "mirroring": False if args.no_mirroring else None}
    return {k: v for k, v in opts.items() if v is not None}


def engine_kwargs(args) -> dict:
    """The keywords of ``segment_exam`` (and of the batch runner's engine) from the options."""
    from ..engine.settings import SegmentSettings

    settings = SegmentSettings(registration="none" if args.no_register else args.registration, motion=args.motion,
                               threshold=args.threshold, mode=args.mode, min_lesion_ml=args.min_lesion_ml,
                               breast_model=args.breast_model, raw=args.raw,
                               tissue_wrap=True if getattr(args, "tissue_wrap", False) else None)
    kw = dict(model=args.model, device=args.device, models_dir=args.models_dir, model_options=model_options(args),
              settings=settings)
    seed = getattr(args, "seed_lps", None)
    if getattr(args, "seed_ras", None) is not None:
        if seed is not None:
            raise InputError("give the seed point once, either --seed-lps or --seed-ras", "--seed-ras")
        x, y, z = args.seed_ras
        seed = (-x, -y, z)
    if seed is not None:
        kw["seed_lps"] = seed
    return kw


def print_result(result, written: dict, stream=None) -> None:
    stream = stream or sys.stdout
    print(f"case {result.case_id}: {len(result.lesions)} lesion(s), model {result.model_id}", file=stream)
    if result.lesions:
        print(f"  {'#':>2}  {'side':<6} {'volume mL':>9} {'diameter mm':>11}  centroid RAS (mm)", file=stream)
        for les in result.lesions:
            r = ", ".join(f"{v:.1f}" for v in les.centroid_ras)
            print(f"  {les.label:>2}  {les.side:<6} {les.volume_ml:9.2f} {les.longest_diameter_mm:11.1f}  ({r})",
                  file=stream)
    t = result.timings
    print("  time: " + ", ".join(f"{k} {v:.1f} s" for k, v in t.items()), file=stream)
    if getattr(result, "classification", None) is not None:
        from ..engine.classify_render import probability_line

        print(f"  {probability_line(result.classification)} (model {result.classification.model_id})", file=stream)
    for key, path in written.items():
        print(f"  {key:<12} {path}", file=stream)


class JsonProgress:
    """``--progress json``: the engine's progress as ``stage`` events (batch's schema,
    :mod:`..batch.progress`), at most every *min_interval* s within a stage."""

    def __init__(self, min_interval: float = 0.2):
        from ..batch.progress import JsonEvents

        self.emit = JsonEvents()
        self.case = None
        self.min_interval = min_interval
        self._last = (None, 0.0)

    def __call__(self, stage: str, fraction: float, message: str = "") -> None:
        now = time.monotonic()
        if stage == self._last[0] and now - self._last[1] < self.min_interval and fraction < 1.0:
            return
        self._last = (stage, now)
        self.emit({"event": "stage", "case": self.case, "stage": stage, "fraction": round(fraction, 4),
                   "message": message or stage})

    def close(self) -> None:
        pass


def _progress(args):
    mode = getattr(args, "progress", "bar")
    if args.quiet or mode == "none":
        return None
    return JsonProgress() if mode == "json" else TerminalProgress()


def segment_and_write(args):
    """What ``breasttumorseg segment`` does before printing: load the exam, segment it, write the
    outputs (the summary once, with the load and write times). Returns (exam, result, written)."""
    from ..io.files import load_exam

    check_exam_command(args)
    check_engine_options(args)
    progress = _progress(args)
    t0 = time.perf_counter()
    exam = load_exam(args.inputs, times_min=args.times, case_id=args.case_id, series=args.series)
    t_load = time.perf_counter() - t0
    warn_about_exam(exam)
    if isinstance(progress, JsonProgress):
        progress.case = exam.case_id
        progress.emit({"event": "started", "case": exam.case_id, "stage": "load", "fraction": 0.0,
                       "message": f"{exam.n_phases} phases read"})
        for warning in (exam.metadata.get("dicom") or {}).get("warnings", []):
            progress.emit({"event": "warning", "case": exam.case_id, "message": warning})
    from ..engine.pipeline import output_names, segment_exam, write_result  # imports PyTorch: after the checks
    # Fail before the long work, not after it, when results exist already.
    check_outputs(args, exam.case_id, output_names(exam.case_id, args.dicom_seg, args.reading_images,
                                                       args.registered_phases).values())
    if args.dicom_seg and "dicom" not in exam.metadata:
        raise InputError("--dicom-seg needs a DICOM input (the SEG must reference the source series)",
                         args.inputs[0], "run on the DICOM folder, or drop --dicom-seg")
    if args.dicom_seg:
        from ..io.dicom.seg import check_seg_writer

        check_seg_writer()
    classifier = _classifier(args, exam.case_id)
    result = segment_exam(exam, progress=progress, **engine_kwargs(args))
    extra, classified = _classify(classifier, exam, result)
    classification_files = {}
    if classified is not None:  # written first and removed again if the segmentation's outputs fail
        from .classify import write_classification

        classification_files = write_classification(classified, args.output, overwrite=args.overwrite)
        result.classification = classified
    try:
        written = write_result(result, args.output, overwrite=args.overwrite, exam=exam, dicom_seg=args.dicom_seg,
                               deidentify=args.deidentify, load_seconds=t_load, reading_images=args.reading_images,
                               registered_phases=args.registered_phases, extra_summary=extra)
    except BaseException:
        for path in classification_files.values():
            path.unlink(missing_ok=True)
        raise
    written.update(classification_files)
    if progress:
        progress.close()
    return exam, result, written


def _classifier(args, case_id: str):
    """``--classify``: the classification model, and its outputs checked, before the long work."""
    if not getattr(args, "classify", None):
        return None
    from ..models.classifier import load_classifier
    from ..engine.classify import output_names as classify_names

    check_outputs(args, case_id, classify_names(case_id).values())
    return load_classifier(args.classify_model, [args.models_dir] if args.models_dir else None)


def _classify(classifier, exam, result):
    """(summary entry, classification result) of ``--classify`` on the segmented (aligned) phases."""
    if classifier is None:
        return None, None
    from ..engine.classify import classify_exam
    from ..engine.classify_lesions import shipped_label

    aligned = exam.with_phases(result.registered_phases) if result.registered_phases else exam
    # the segmented lesions inside the body are looked at even where the breast region misses them;
    # the shipped segmenter's lesions are candidates too (not segmented again)
    classified = classify_exam(aligned, classifier, register=False, lesion_mask=result.label,
                               segmenter_lesions=shipped_label(result))
    return {"classification": classified.as_dict()}, classified


def run(args) -> int:
    if getattr(args, "progress", "bar") != "json" or args.quiet:
        _, result, written = segment_and_write(args)
        print_result(result, written)
        return 0
    from ..batch.progress import JsonEvents
    from ..core.errors import BreastTumorSegError

    emit = JsonEvents()
    try:
        _, result, written = segment_and_write(args)
    except BreastTumorSegError as exc:  # the same one line the CLI prints on stderr, as one event
        emit({"event": "failed", "message": " ".join(str(exc).split())})
        raise
    emit({"event": "done", "case": result.case_id, "stage": "write", "fraction": 1.0,
          "message": f"{len(result.lesions)} lesion(s)", "files": {k: str(v) for k, v in written.items()}})
    print_result(result, written, stream=sys.stderr)
    return 0
