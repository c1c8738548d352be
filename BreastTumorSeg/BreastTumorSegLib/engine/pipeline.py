"""The end-to-end engine: DCE exam in, tumor segmentation out.

    from BreastTumorSegLib.io import load_exam
    from BreastTumorSegLib.engine.pipeline import segment_exam, write_result
    exam = load_exam("path/to/case_folder")
    result = segment_exam(exam, model="unet-demo")
    write_result(result, "out/")

Stages (each timed in ``result.timings``): register (motion correction), breast_mask,
predict (harmonization + network, or a classical method), postprocess. Loading and writing
are timed by their callers.
"""
from __future__ import annotations

import time
from pathlib import Path

import SimpleITK as sitk

from .. import __version__
from ..preprocess.breast_region import body_on_grid, breast_region, choose_breast_mask
from ..preprocess.chestwall import WRAP_DEPTH_MM
from ..preprocess import lung_level as lung_chest_wall
from ..preprocess import breast_region as breast_region_module
from ..kinetics import deep_band  # lesions behind the region's floor (kinetics/deep_band.py, off)
from ..core.exam import DCEExam
from ..io.atomic import StagedOutputs, atomic_target, check_no_overwrite, write_image, write_json
from ..io.segnrrd import TUMOR_SEGMENT_NAME, write_seg_nrrd
from ..models.registry import DEFAULT_MODEL, Segmenter, get_segmenter
from . import behind_floor  # a second look behind the region's floor (engine/behind_floor.py, on)
from . import one_breast_band  # a one-breast view's deep zone as its own band (engine/one_breast_band.py, off)
from . import dark_before  # tumors dark before contrast: in, beside and behind the region (engine/dark_before.py, on)
from . import vessel_open  # what the vessel opening took from small tumors (engine/vessel_open.py, off)
from . import kept_hull  # the inside of each kept lesion (engine/kept_hull.py, on)
from . import kept_grow  # the rest of each kept lesion just outside it (engine/kept_grow.py, on)
from . import kept_reach  # more rounds of that growth from the grown lesion (engine/kept_reach.py, off: held-out failed)
from . import near_level  # whole tumors just under the FTV level (engine/near_level.py, off)
from . import moderate  # compact moderate tumors above their own ring (engine/moderate.py, off)
from . import kept_pieces  # dropped pieces beside each kept lesion (engine/kept_pieces.py, off: held-out failed)
from . import learned_outline  # a learned classifier outlines each kept lesion in a band (engine/learned_outline.py, off)
from .doubt import doubt_report
from .fpreduce import FPReduceSettings, reduce_false_positives
from .fprescue import rescue_radius
from .postprocess import PostprocessSettings, postprocess, raw_lesions
from .settings import SegmentSettings, refuse_moved_keywords
from ..core.errors import InputError
from ..core.imageutil import cast_once
from ..core.values import check_device_name
from ..core.memo import forget_all
from ..core.progress import Reporter
from ..preprocess.registration import RegistrationSettings, register_exam
from ..core.results import Lesion, SegmentationResult

__all__ = ["segment_exam", "write_result", "output_names", "Lesion", "SegmentationResult", "SegmentSettings",
           "STAGE_WEIGHTS"]

# Rough share of the run time per stage, for an evenly moving progress bar.
STAGE_WEIGHTS = {"register": 3.0, "breast_mask": 1.0, "predict": 5.0, "postprocess": 0.5}


def _settings(segmenter: Segmenter, run: SegmentSettings, restrict_to_breast) -> PostprocessSettings:
    defaults = dict(segmenter.card.get("postprocess", {}))
    s = PostprocessSettings(**{k: v for k, v in defaults.items() if k in PostprocessSettings.__dataclass_fields__})
    if run.threshold is not None:
        s.threshold = float(run.threshold)
    if run.mode is not None:
        s.mode = run.mode
    if run.min_lesion_ml is not None:
        s.min_lesion_ml = float(run.min_lesion_ml)
    if restrict_to_breast is not None:
        s.restrict_to_breast = bool(restrict_to_breast)
    return s


def _check_call(exam, model, settings) -> None:
    """segment_exam's arguments as the Python API's caller gives them: one InputError with the fix
    instead of an AttributeError from deep inside."""
    if not isinstance(exam, DCEExam):
        raise InputError(f"segment_exam needs an exam, got {type(exam).__name__}", "exam",
                         "load it first: exam = BreastTumorSegLib.io.load_exam(path)")
    if not isinstance(model, str) and not (hasattr(model, "card") and hasattr(model, "model_id")):
        raise InputError(f"model must be a model name or a loaded segmenter, got {type(model).__name__}", "model",
                         f"give a name such as {DEFAULT_MODEL!r} (`breasttumorseg models` lists them)")
    if settings is not None and not isinstance(settings, SegmentSettings):
        raise InputError(f"settings must be a SegmentSettings, got {type(settings).__name__}", "settings",
                         "pass settings=SegmentSettings(...) from BreastTumorSegLib.engine.settings")


def segment_exam(exam: DCEExam, model: str | Segmenter = DEFAULT_MODEL, settings: SegmentSettings | None = None,
                 device: str = "auto", progress=None, cancel=None, models_dir=None,
                 model_options: dict | None = None, **options) -> SegmentationResult:
    """Segment tumors in *exam*; see the module docstring.

    ``model`` is a registry name (``"unet-demo"``, ``"ftv"``, ``"a+b"`` for an ensemble) or a
    ready :class:`Segmenter`. ``settings`` (:class:`~.settings.SegmentSettings`; default: all
    defaults) choose the registration, the post-processing (``threshold``/``mode``/``min_lesion_ml``
    override the model card's defaults) and the kind of output. ``options`` go to the segmenter
    (e.g. ``seed_lps`` for the FTV method). ``progress(stage, fraction, message)`` and ``cancel``
    (an Event or a callable) follow :class:`Reporter`. The keywords this function took before it
    took a settings object (``threshold=``, ``register=``, ...) raise a TypeError saying so.

    ``breast_model`` names a learned whole-breast model (e.g. ``"breastmask-demo"``; default:
    the model card's ``"breast_model"``, if any; or a loaded ``BreastMaskModel``) whose mask then
    gates the lesions instead of the classical mask; the network then sees the union of both
    masks (intensity scaling and cropping), so nothing the learned mask holds is cut off.
    The gate fails safe (:mod:`.postprocess`): a lesion with less than a quarter inside the mask
    is removed only when it lies outside the body, behind the chest wall, or is not confident;
    a confident one is kept with the flag ``outside_breast_mask`` and the reason in its notes.
    When no mask is trustworthy (``breast_mask_qa["trusted"]`` False) the network sees the whole
    body and every lesion inside the body in front of the chest wall is kept (flagged).
    Every mask is checked for plausibility (:func:`~..preprocess.breast_region.choose_breast_mask`):
    an implausible learned mask (e.g. the whole torso) is not used, the classical one is, and
    ``result.settings["breast_mask"]`` and ``result.breast_mask_qa`` say so. Lesion sides come
    from patient coordinates (body midline, or the one breast of a unilateral exam; the series'
    ``exam.metadata["laterality"]`` when given).

    ``raw``: the model's own answer on the exam as given: no motion correction, no breast mask
    given to the model or gating its lesions, no thresholding or size filter of ours — the label
    map is the segmenter's own (:meth:`predict_with_label`, e.g. nnU-Net's argmax) or p ≥ the
    threshold, and every connected component is a lesion. ``model_options`` go to foreign
    models (``nnunet:PATH``/``monai:PATH``: folds, mirroring, channels, trust_pickle).

    ``fp_reduction``: the component-level false-positive reduction (:mod:`.fpreduce`: vessels cut
    off lesions and vessel-like components removed by a small learned classifier, each removal
    counted by reason in ``result.settings["fp_reduction"]``). Default: on, unless the model
    card's ``postprocess`` says ``"fp_reduction": false`` or a reader's ``seed_lps`` chose the lesion.
    ``fp_rescue``: its second look at a rejected component (:mod:`.fprescue`: a small tumor is not
    deleted with the vessel leaving it). Default: the card's ``postprocess`` ``"fp_rescue"`` (on for
    "ftv-outline", off for the others).

    ``registration`` (auto, sitk, none) and ``motion`` (rigid, affine, deformable; default the
    engine's) choose the motion correction (:class:`~..preprocess.registration.RegistrationSettings`).
    """
    refuse_moved_keywords(options)
    _check_call(exam, model, settings)
    run = settings or SegmentSettings()
    if isinstance(device, str):
        check_device_name(device, "device")  # "tpu" is refused here, not ignored by a model that runs on the CPU anyway
    reporter = Reporter(progress, cancel, STAGE_WEIGHTS)
    segmenter = (get_segmenter(model, [models_dir] if models_dir else None, model_options)
                 if isinstance(model, str) else model)
    if run.raw:
        return _segment_raw(exam, segmenter, reporter, device, run.threshold, options)
    restrict_to_breast = run.restrict_to_breast
    if restrict_to_breast is None and options.get("seed_lps") is not None:
        restrict_to_breast = False  # the reader pointed at the lesion; the coarse mask must not cut it
    settings = _settings(segmenter, run, restrict_to_breast)
    fp_reduction = run.fp_reduction
    if fp_reduction is None:
        fp_reduction = bool((segmenter.card.get("postprocess") or {}).get("fp_reduction", True)) and \
            options.get("seed_lps") is None
    breast_model = run.breast_model or segmenter.card.get("breast_model")

    qa: list[dict] = []
    reg_settings = RegistrationSettings(method=run.registration, **({"motion": run.motion} if run.motion else {}))
    register = reg_settings.method != "none"
    with reporter.stage("register"):
        if register:
            exam, qa = register_exam(exam, reporter=reporter, settings=reg_settings)
    with reporter.stage("breast_mask"):
        laterality = exam.metadata.get("laterality") or exam.metadata.get("Laterality")
        bmask, context = breast_region(exam.pre, laterality=laterality, tissue_wrap_mm=_tissue_wrap_mm(segmenter, run),
                                       lung_level=lung_chest_wall.LUNG_CHEST_WALL,  # preprocess/lung_level.py
                                       one_breast_wrap=breast_region_module.ONE_BREAST_WRAP)  # off (issue 25)
        learned = None
        if breast_model:
            from ..models.breast_model import BreastMaskModel

            if isinstance(breast_model, str):
                breast_model = BreastMaskModel.load(breast_model, [models_dir] if models_dir else None)
            learned = breast_model.predict(exam.pre, device)  # a loaded model is reused (the batch runner)
        gate, used, mask_qa = choose_breast_mask(bmask, context, learned)
        if used == "learned":
            # The network also sees what only the learned mask holds (a tumor at the chest
            # wall outside the classical mask would otherwise fall outside the crop).
            bmask = sitk.Or(bmask, gate)
        region = context
        if not mask_qa["trusted"]:
            # No trustworthy mask: the network sees the whole body, and the gate neither trusts the
            # mask nor (when the classical mask itself is implausible) the chest-wall level behind it.
            bmask = sitk.Or(bmask, body_on_grid(context, exam.pre))
            if not mask_qa["classical"]["plausible"]:
                region = dict(context, level=None)
    with reporter.stage("predict"):
        prob = segmenter.predict(exam, bmask, reporter, device=device, **options)
        prob = near_level.add_near_level(segmenter, exam, prob, bmask, options)
        prob = moderate.add_moderate(segmenter, exam, prob, bmask, options)
        prob, region = deep_band.add_deep_lesions(segmenter, exam, prob, context, region, options)
        prob, region = behind_floor.add_behind_floor(segmenter, exam, prob, context, region, options)
        prob, region, gate = one_breast_band.add_one_breast_band(segmenter, exam, prob, context, region, gate, options)
        prob, region = dark_before.add_dark_before(segmenter, exam, prob, bmask, context, region, options)
        prob = vessel_open.add_vessel_open(segmenter, exam, prob, bmask, options)
        forget_all()  # the calls the predict steps shared (core/memo.py): not held into postprocess nor between exams
    with reporter.stage("postprocess"):
        gate_log: list = []
        label, lesions, components = postprocess(prob, settings, gate, return_components=True,
                                                 layout=context["layout"], region=region,
                                                 mask_trusted=mask_qa["trusted"], gate_log=gate_log)
        label, lesions, components, fp_report = reduce_false_positives(
            components, prob, list(exam.phases), exam.effective_times(), lesions,
            FPReduceSettings(enabled=bool(fp_reduction), rescue_radius_mm=rescue_radius(segmenter.card, run.fp_rescue)))
        kept = components
        label, lesions, components = kept_hull.add_kept_hull(segmenter, exam, label, lesions, components, prob, options)
        label, lesions, components = kept_pieces.add_kept_pieces(segmenter, exam, label, lesions, components, prob,
                                                                 options)
        label, lesions, components = kept_grow.add_kept_grow(segmenter, exam, label, lesions, components, prob, options)
        label, lesions, components = kept_reach.add_kept_reach(segmenter, exam, label, lesions, components, prob,
                                                               options)
        label, lesions, components = learned_outline.add_learned_outline(segmenter, exam, label, lesions, components,
                                                                         prob, options)
        prob = kept_hull.fill_probability(prob, kept, components)  # a threshold that keeps a lesion keeps its fill
        extras_fn = getattr(segmenter, "lesion_kinetics", None)
        if extras_fn is not None and lesions:
            extras = extras_fn(exam, components)
            for les in lesions:
                les.extra.update(extras.get(les.label, {}))
    return SegmentationResult(
        case_id=exam.case_id, label=label, probability=prob, lesions=lesions,
        model_id=segmenter.model_id, timings=dict(reporter.timings), breast_mask=gate,
        registration_qa=qa, breast_mask_qa=mask_qa,
        subtraction=sitk.Subtract(exam.phases[1], exam.phases[0]),
        registered_phases=list(exam.phases) if register else None,
        settings={"postprocess": settings.as_dict(), "device": device,
                  "registered": register,
                  "registration": {"method": reg_settings.method, "motion": reg_settings.motion},
                  "breast_mask": (breast_model.card["name"] if used == "learned" else
                                  ("classical" if learned is None else
                                   "classical (fallback: learned mask implausible)" if not mask_qa["learned"]["plausible"]
                                   else "classical (fallback: thin slab, learned mask not used)"))
                  + ("" if mask_qa["trusted"] else " - not trustworthy: lesions outside it kept and flagged"),
                  "breast_gate": gate_log,
                  "n_phases": exam.n_phases, "times_min": [round(float(t), 3) for t in exam.effective_times()],
                  "times_assumed": bool(exam.metadata.get("times_assumed", False)),
                  "fp_reduction": fp_report.as_dict() if fp_reduction else "off",
                  "layout": context["layout"]},  # lesion sides of a refined result (engine/refine.py)
    )


def _tissue_wrap_mm(segmenter, run: SegmentSettings) -> float:
    """Depth of the breast region's tissue wrap (:mod:`..preprocess.chestwall`; 0 = off): the model
    card's ``postprocess["tissue_wrap_mm"]`` unless ``run.tissue_wrap`` says on (the card's depth, else
    :data:`~..preprocess.chestwall.WRAP_DEPTH_MM`) or off."""
    card_mm = float((segmenter.card.get("postprocess") or {}).get("tissue_wrap_mm", 0.0))
    if run.tissue_wrap is None:
        return card_mm
    return (card_mm or WRAP_DEPTH_MM) if run.tissue_wrap else 0.0


def _segment_raw(exam: DCEExam, segmenter: Segmenter, reporter: Reporter, device: str, threshold,
                 options: dict) -> SegmentationResult:
    """:func:`segment_exam` with ``raw=True``. The breast region is still found, for the lesions'
    sides only (it neither reaches the model nor gates anything)."""
    with reporter.stage("breast_mask"):
        _, context = breast_region(exam.pre, laterality=exam.metadata.get("laterality") or exam.metadata.get("Laterality"))
    with reporter.stage("predict"):
        own = getattr(segmenter, "predict_with_label", None)
        if own is not None:
            prob, label = own(exam, None, reporter, device=device, **options)
        else:
            prob = segmenter.predict(exam, None, reporter, device=device, **options)
            level = threshold if threshold is not None else (segmenter.card.get("postprocess") or {}).get("threshold", 0.5)
            label = sitk.Cast(prob >= float(level), sitk.sitkUInt8)
    with reporter.stage("postprocess"):
        lesions = raw_lesions(label, prob, context["layout"])
    return SegmentationResult(
        case_id=exam.case_id, label=sitk.Cast(label > 0, sitk.sitkUInt8), probability=prob, lesions=lesions,
        model_id=segmenter.model_id, timings=dict(reporter.timings), breast_mask=None, registration_qa=[],
        breast_mask_qa={"used": "none (--raw)"}, subtraction=sitk.Subtract(exam.phases[1], exam.phases[0]),
        settings={"raw": True, "postprocess": "none (--raw): the model's own label map", "device": device,
                  "registered": False, "breast_mask": "none (--raw)", "n_phases": exam.n_phases,
                  "times_min": [round(float(t), 3) for t in exam.effective_times()],
                  "times_assumed": bool(exam.metadata.get("times_assumed", False))},
    )


def output_names(case_id: str, dicom_seg: bool = False, reading_images: bool = False,
                 registered_phases: bool = False) -> dict[str, str]:
    names = {
        "label": f"{case_id}_seg.nii.gz",
        "probability": f"{case_id}_prob.nii.gz",
        "segmentation": f"{case_id}.seg.nrrd",
        "summary": f"{case_id}.json",
        "overview": f"{case_id}_overview.png",
    }
    if dicom_seg:
        names["dicom_seg"] = f"{case_id}_seg.dcm"
    if reading_images:  # what the Slicer panel shows beside the result and re-thresholds within
        names["subtraction"] = f"{case_id}_subtraction.nii.gz"
        names["breast_mask"] = f"{case_id}_breast.nii.gz"
    if registered_phases:  # every phase after motion correction, as one 4D image (phase = 4th axis)
        names["registered_phases"] = f"{case_id}_registered.nrrd"
    return names


# Probabilities below this are written as 0: a network's sigmoid is never exactly 0, so without
# the floor the map of a 448x448x160 exam is 60 MB of incompressible noise (2.7 s to write);
# with it 0.6 MB (0.07 s). It is 1/10 of the lowest threshold the panel offers (0.01), and the
# relative mode needs a slice maximum >= the threshold, so thresholding the written map gives
# the engine's masks for every threshold >= 0.002.
PROBABILITY_FLOOR = 1e-3


def stored_probability(prob: sitk.Image) -> sitk.Image:
    """*prob* as written to ``<case>_prob.nii.gz``: float32, values below PROBABILITY_FLOOR set to 0."""
    prob = cast_once(prob, sitk.sitkFloat32)  # no copy of a float32 map: Mask makes the new image
    return sitk.Mask(prob, sitk.GreaterEqual(prob, PROBABILITY_FLOOR))


def write_result(result: SegmentationResult, out_dir: str | Path, overwrite: bool = False,
                 exam: DCEExam | None = None, dicom_seg: bool = False,
                 extra_summary: dict | None = None, deidentify: bool = False,
                 load_seconds: float | None = None, truth: sitk.Image | None = None,
                 reading_images: bool = False, registered_phases: bool = False) -> dict[str, Path]:
    """Write every output of *result* into *out_dir*, all or nothing.

    The overview picture (:mod:`.overview`) outlines *truth* too when it is given (the demo).

    Existing outputs are not replaced unless ``overwrite``; on any error nothing is left behind.
    ``dicom_seg`` needs the source *exam* loaded from DICOM. With ``load_seconds`` (how long the
    caller took to load the exam) ``result.timings`` gets ``load`` first and ``write`` (this
    call's time up to the summary) last, and the summary written records them. ``reading_images``
    also writes the motion-corrected early subtraction and the breast mask that gated the lesions;
    ``registered_phases`` the motion-corrected phases as one 4D NRRD (only when the run registered).
    """
    t0 = time.perf_counter()
    names = output_names(result.case_id, dicom_seg, reading_images, registered_phases)
    if result.registered_phases is None:
        names.pop("registered_phases", None)
    if result.subtraction is None:  # a result made elsewhere: nothing to draw the overview on
        names.pop("overview")
        names.pop("subtraction", None)
    if result.breast_mask is None:
        names.pop("breast_mask", None)
    with StagedOutputs(out_dir, overwrite=overwrite) as staged:
        check_no_overwrite([staged.out_dir / n for n in names.values()], overwrite)
        write_image(staged.path(names["label"]), result.label)
        write_image(staged.path(names["probability"]), stored_probability(result.probability))
        write_seg_nrrd(result.label, staged.path(names["segmentation"]), segment_name=TUMOR_SEGMENT_NAME)
        if "subtraction" in names:
            write_image(staged.path(names["subtraction"]), sitk.Cast(result.subtraction, sitk.sitkFloat32))
        if "breast_mask" in names:
            write_image(staged.path(names["breast_mask"]), sitk.Cast(result.breast_mask, sitk.sitkUInt8))
        if "registered_phases" in names:
            phases = sitk.JoinSeries([sitk.Cast(p, sitk.sitkFloat32) for p in result.registered_phases])
            write_image(staged.path(names["registered_phases"]), phases)
        if dicom_seg:
            from ..io.dicom.seg import write_dicom_seg
            write_dicom_seg(result.label, exam, staged.path(names["dicom_seg"]), model_id=result.model_id,
                            deidentify=deidentify)
        if "overview" in names:
            from .overview import render_overview
            with atomic_target(staged.path(names["overview"])) as tmp:
                render_overview(result, tmp, truth=truth)
        if load_seconds is not None:
            result.timings = {"load": load_seconds, **result.timings, "write": time.perf_counter() - t0}
        summary = result.summary()
        summary["engine_version"] = __version__
        summary["outputs"] = dict(names)
        summary["doubt"] = doubt_report(result)  # uncertainty and flags: the batch worklist sorts on it
        if extra_summary:
            summary.update(extra_summary)
        write_json(staged.path(names["summary"]), summary)
        written = staged.commit()
    return {key: Path(out_dir) / name for key, name in names.items() if Path(out_dir, name) in written}
