"""``breasttumorseg kinetics``: kinetic maps, I-SPY functional tumor volume, curves and a SER overlay.

Writes into the output folder (all or nothing; existing files only with ``--overwrite``):

* ``<case>_pe_early.nii.gz``, ``_pe_late``, ``_pe_peak`` (percent enhancement, float32),
  ``_ser`` (float32; absent with one post-contrast phase), ``_time_to_peak`` (minutes),
  ``_initial_class`` (uint8 1 slow / 2 medium / 3 fast), ``_curve_type`` (uint8 1 persistent /
  2 plateau / 3 washout); 0 = not assessed;
* ``<case>_ftv_mask.nii.gz`` (uint8 FTV voxels) -- or ``<case>_lesion_mask.nii.gz`` with a seed;
* ``<case>_ser_bands.nii.gz`` (uint8 label map inside the mask) with ``<case>_ser_bands.ctbl`` and
  ``<case>_ser_ramp.ctbl`` (Slicer colour tables, named by case so several exams share a folder; see :mod:`BreastTumorSegLib.kinetics.plots`);
* ``<case>_curves.png`` (lesion vs background enhancement curves);
* ``<case>_kinetics.json`` (FTV, SER band volumes, chosen phases, thresholds, per-lesion kinetics,
  notes).

Coordinates: ``--seed-lps`` / ``--box`` are patient LPS millimetres (ITK, DICOM); ``--seed-ras``
and ``--box-ras`` take the RAS coordinates 3D Slicer shows (x and y negated).
"""
from __future__ import annotations


import numpy as np
import SimpleITK as sitk

from ..core.errors import InputError
from ._common import (add_exam_arguments, TerminalProgress, box_arg, check_exam_command, check_outputs, path_arg, point_arg,
                      warn_about_exam)

LESION_MIN_ML = 0.05  # components below this are not plotted / tabulated
MAX_SKIN_MARGIN_MM = 50.0  # a larger margin would drop every lesion of a breast
MAX_VESSEL_RADIUS_MM = 10.0  # thicker than any breast vessel: tumors would be removed


def register(sub) -> None:
    p = sub.add_parser(
        "kinetics", help="kinetic maps (PE, SER, curve type), I-SPY functional tumor volume, curves",
        description="Kinetic maps and functional tumor volume (FTV, I-SPY rule) of one DCE exam; with a "
                    "seed point, the one lesion grown from it. INPUT as for `segment`.")
    add_exam_arguments(p)
    roi = p.add_mutually_exclusive_group()
    roi.add_argument("--roi", type=path_arg, default=None, help="ROI mask file (non-zero = inside)")
    roi.add_argument("--box", type=box_arg, default=None, metavar="X0,Y0,Z0,X1,Y1,Z1",
                     help="ROI box corners in LPS mm")
    roi.add_argument("--box-ras", type=box_arg, default=None, metavar="R0,A0,S0,R1,A1,S1",
                     help="ROI box corners in RAS mm (as Slicer shows them)")
    roi.add_argument("--whole-volume", action="store_true",
                     help="ROI = the whole volume (default: the automatic whole-breast mask)")
    seed = p.add_mutually_exclusive_group()
    seed.add_argument("--seed-lps", type=point_arg, default=None, metavar="X,Y,Z",
                      help="segment the one lesion holding this point (LPS mm); write --seed-lps=-12,30,5 "
                           "when the first value is negative")
    seed.add_argument("--seed-ras", type=point_arg, default=None, metavar="R,A,S",
                      help="the same in RAS mm (a point clicked in Slicer)")
    p.add_argument("--non-mass", action="store_true",
                   help="with a seed: the lesion is non-mass enhancement; join separate clumps within 4 mm")
    p.add_argument("--pe-threshold", type=float, default=70.0, help="FTV: PE threshold in %% (default 70)")
    p.add_argument("--background-fraction", type=float, default=0.6,
                   help="FTV: pre-contrast >= this x p95 in the ROI (fat-suppressed; default 0.6)")
    p.add_argument("--min-neighbors", type=int, default=4, help="FTV: enhancing 26-neighbours needed (default 4)")
    p.add_argument("--ser-min", type=float, default=0.0, help="FTV: SER lower limit (default 0)")
    p.add_argument("--skin-margin-mm", type=float, default=None,
                   help="drop FTV components lying entirely within this distance of the body surface (nipple, "
                        "skin); default 8 with the automatic breast mask, else 0 (plain I-SPY)")
    p.add_argument("--vessel-radius-mm", type=float, default=None,
                   help="remove enhancing structures thinner than twice this (vessels); default 2 with the "
                        "automatic breast mask, else 0 (plain I-SPY)")
    p.add_argument("--fat-suppressed", choices=["auto", "yes", "no"], default="auto",
                   help="auto: decide from the data (default); yes: the plain I-SPY background rule")
    p.add_argument("--no-register", action="store_true", help="skip motion correction (phases already aligned)")
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=run)


def _seed(args) -> tuple[float, float, float] | None:
    if args.seed_ras is not None:
        r, a, s = args.seed_ras
        return (-r, -a, s)
    return None if args.seed_lps is None else tuple(args.seed_lps)


def _roi(args, exam):
    from ..preprocess.breast_region import breast_mask
    from ..kinetics.ftv import Box
    from ..io.images import read_image

    if args.roi is not None:
        roi = read_image(args.roi, "ROI mask")
        _check_roi_covers_exam(roi, exam.pre, args.roi)
        return roi, f"mask {args.roi.name}"
    if args.box is not None:
        return Box(tuple(args.box[:3]), tuple(args.box[3:])), "box (LPS)"
    if args.box_ras is not None:
        return Box.from_ras(args.box_ras[:3], args.box_ras[3:]), "box (RAS)"
    if args.whole_volume:
        return None, "whole volume"
    mask = breast_mask(exam.pre)
    if not np.any(sitk.GetArrayViewFromImage(mask)):
        return None, "whole volume (the automatic breast mask was empty)"
    return mask, "automatic breast mask"


def _check_roi_covers_exam(roi, reference, path) -> None:
    """The --roi file named when it is not a 3D mask or has no voxel on the exam (the FTV step would
    refuse it too, without saying which file)."""
    from ..core.imageutil import resample_to, same_grid

    if roi.GetDimension() != 3 or roi.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(f"the ROI mask is {roi.GetDimension()}D with {roi.GetNumberOfComponentsPerPixel()} "
                         "component(s) per voxel, not a 3D mask", path, "give one 3D mask (non-zero = inside)")
    on_exam = roi if same_grid(roi, reference) else resample_to(roi, reference, sitk.sitkNearestNeighbor)
    if not np.any(sitk.GetArrayViewFromImage(on_exam)):
        raise InputError("the ROI mask has no voxel inside this exam (it is empty, or it was drawn on another "
                         "exam or grid)", path, "draw the ROI on this exam, or give its corners with --box-ras")


def check_options(args) -> None:
    """FTV option values (finite, in range; coordinates are checked by the parser) and the ROI mask
    file, before anything is read."""
    from ..io.safety import check_coordinates, check_input_path, check_positive

    check_positive(args.pe_threshold, "--pe-threshold", upper=10000)
    for option in ("box", "box_ras", "seed_lps", "seed_ras"):
        check_coordinates(getattr(args, option), "--" + option.replace("_", "-"))
    check_positive(args.background_fraction, "--background-fraction", upper=1.0, zero_ok=True)
    check_positive(args.ser_min, "--ser-min", upper=100, zero_ok=True)
    check_positive(args.skin_margin_mm, "--skin-margin-mm", upper=MAX_SKIN_MARGIN_MM, zero_ok=True)
    check_positive(args.vessel_radius_mm, "--vessel-radius-mm", upper=MAX_VESSEL_RADIUS_MM, zero_ok=True)
    if not 0 <= args.min_neighbors <= 26:
        raise InputError(f"{args.min_neighbors} is not a valid value", "--min-neighbors", "give 0 to 26")
    if args.roi is not None:
        check_input_path(args.roi, "ROI mask")


def output_names(case: str, seeded: bool) -> list[str]:
    maps = ["pe_early", "pe_late", "pe_peak", "ser", "time_to_peak", "initial_class", "curve_type"]
    names = [f"{case}_{m}.nii.gz" for m in maps]
    names += [f"{case}_{'lesion' if seeded else 'ftv'}_mask.nii.gz", f"{case}_ser_bands.nii.gz",
              f"{case}_ser_bands.ctbl", f"{case}_ser_ramp.ctbl", f"{case}_curves.png", f"{case}_kinetics.json"]
    return names


def run(args) -> int:
    from ..kinetics.ftv import (
        SEGMENTER_SKIN_MARGIN_MM,
        SEGMENTER_VESSEL_RADIUS_MM,
        FTVSettings,
        functional_tumor_volume,
        lesion_kinetics,
    )
    from ..io.atomic import StagedOutputs, write_bytes, write_image, write_json
    from ..io.files import load_exam
    from ..kinetics.plots import plot_curves, ser_band_image, ser_band_table, ser_ramp_table, signal_time_curves
    from ..kinetics.maps import compute_kinetic_maps
    from ..core.progress import Reporter
    from ..kinetics.seeded import SeededSettings, segment_from_seed

    check_exam_command(args)
    check_options(args)
    progress = None if args.quiet else TerminalProgress()
    reporter = Reporter(progress, weights={"load": 1, "register": 3, "kinetics": 2, "segment": 1, "write": 1})
    seed = _seed(args)
    with reporter.stage("load"):
        exam = load_exam(args.inputs, times_min=args.times, case_id=args.case_id, series=args.series)
    check_outputs(args, exam.case_id, output_names(exam.case_id, seed is not None))
    warn_about_exam(exam)
    qa: list[dict] = []
    with reporter.stage("register"):
        if not args.no_register:
            from ..preprocess.registration import register_exam
            exam, qa = register_exam(exam, reporter=reporter)
    with reporter.stage("kinetics"):
        maps = compute_kinetic_maps(exam, reporter=reporter)
    with reporter.stage("segment"):
        roi, roi_desc = _roi(args, exam)
        auto = roi_desc == "automatic breast mask"
        settings = FTVSettings(
            pe_threshold=args.pe_threshold, background_fraction=args.background_fraction,
            min_neighbors=args.min_neighbors, ser_min=args.ser_min,
            fat_suppressed={"auto": None, "yes": True, "no": False}[args.fat_suppressed],
            skin_margin_mm=args.skin_margin_mm if args.skin_margin_mm is not None
            else (SEGMENTER_SKIN_MARGIN_MM if auto else 0.0),
            vessel_radius_mm=args.vessel_radius_mm if args.vessel_radius_mm is not None
            else (SEGMENTER_VESSEL_RADIUS_MM if auto else 0.0))
        ftv = functional_tumor_volume(exam, roi, settings, maps=maps)
        summary = {"case_id": exam.case_id, "roi": roi_desc, "ftv": ftv.summary(), "registration_qa": qa}
        if seed is not None:
            seeded = segment_from_seed(exam, seed, maps=maps,
                                       settings=SeededSettings(group_gap_mm=4.0 if args.non_mass else 0.0))
            mask, mask_name = seeded.mask, f"{exam.case_id}_lesion_mask.nii.gz"
            summary["seeded"] = seeded.summary()
        else:
            mask, mask_name = ftv.mask, f"{exam.case_id}_ftv_mask.nii.gz"
        cc = sitk.RelabelComponent(sitk.ConnectedComponent(mask, True), sortByObjectSize=True,
                                   minimumObjectSize=max(1, int(np.ceil(LESION_MIN_ML / (np.prod(exam.pre.GetSpacing()) / 1000)))))
        summary["lesions"] = {str(k): v for k, v in lesion_kinetics(exam, cc, maps, settings).items()}
        curves = signal_time_curves(exam, cc, maps=maps)
        summary["curves"] = {str(k): c.as_dict() for k, c in curves.items()}
    with reporter.stage("write"), StagedOutputs(args.output, overwrite=args.overwrite) as out:
        for name, img in maps.images().items():
            write_image(out.path(f"{exam.case_id}_{name}.nii.gz"), img)
        write_image(out.path(mask_name), mask)
        if maps.ser_available:
            write_image(out.path(f"{exam.case_id}_ser_bands.nii.gz"), ser_band_image(maps, mask, settings.ser_bands))
            write_bytes(out.path(f"{exam.case_id}_ser_bands.ctbl"), ser_band_table(settings.ser_bands).encode())
            write_bytes(out.path(f"{exam.case_id}_ser_ramp.ctbl"), ser_ramp_table().encode())
        curves_png = plot_curves(curves, maps, title=f"{exam.case_id}: FTV {ftv.ftv_ml:.2f} mL",
                                 pe_threshold=settings.pe_threshold)
        write_bytes(out.path(f"{exam.case_id}_curves.png"), curves_png)
        summary["timings_s"] = {k: round(v, 3) for k, v in reporter.timings.items()}
        write_json(out.path(f"{exam.case_id}_kinetics.json"), summary)
        written = out.commit()
    if progress:
        progress.close()
    print(f"case {exam.case_id}: FTV {ftv.ftv_ml:.2f} mL in {roi_desc}"
          + ("" if ftv.band_volumes_ml is None else
             " (" + ", ".join(f"{k} {v:.2f}" for k, v in ftv.band_volumes_ml.items()) + " mL)"))
    if seed is not None:
        print(f"  seeded lesion: {summary['seeded']['volume_ml']:.2f} mL")
    for note in ftv.notes:
        print(f"  note: {note}")
    for p in written:
        print(f"  {p}")
    return 0
