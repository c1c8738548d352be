"""Segment one DCE exam with Slicer running headless: the same engine and outputs as the CLI.

    Slicer --no-splash --no-main-window --python-script /abs/path/BreastTumorSeg/Scripts/segment_headless.py \\
        --input EXAM_FOLDER_OR_PHASE_FILES... --output OUT_DIR [--scene OUT_DIR/case.mrb] [CLI options]

``--batch INPUT --output OUT_DIR [--scenes] [batch options]`` runs ``breasttumorseg batch`` in this
one Slicer process (models loaded once; the same resume and failure rules; ``--scenes`` adds
``OUT_DIR/scenes/<case>.mrb`` for every exam done).

Every option of ``breasttumorseg segment`` (``--model``, ``--device``, ``--threshold``, ``--times``,
``--overwrite``, ...) is accepted, parsed by that command's parser and run by its own code
(``cli.segment.segment_and_write``), so the files written (``<case>_seg.nii.gz``,
``<case>_prob.nii.gz``, ``<case>.seg.nrrd``, ``<case>.json``) are exactly the CLI's. ``--scene`` adds
a Slicer scene bundle (``.mrb``) holding the exam phases (the exam that run loaded), the
motion-corrected subtraction image the result was made on, the segmentation, the probability map and the lesion table, built by the module's logic.

The script also runs in plain Python (``python segment_headless.py ...``); ``--scene`` then needs
the ``slicer-core`` wheel. Exit codes follow the CLI: 0 done, 2 bad input, 130 cancelled.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

MODULE_DIR = Path(__file__).resolve().parent.parent
if str(MODULE_DIR) not in sys.path:  # Slicer does not put the module folder on the path of a --python-script
    sys.path.insert(0, str(MODULE_DIR))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="segment_headless.py",
        description="Segment breast tumors in one DCE-MRI exam (Slicer headless). Options not listed "
                    "here are those of `breasttumorseg segment` (--model, --device, --threshold, --times, ...).")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--input", "-i", nargs="+", metavar="INPUT",
                        help="exam folder (<case>_0000 = pre-contrast, ...; or DICOM), phase files in order, "
                             "or a 4D file")
    source.add_argument("--batch", metavar="INPUT",
                        help="many exams in this one Slicer process: a folder of exam folders or a manifest CSV "
                             "(case,path[,times]); the options and rules of `breasttumorseg batch` (resume, "
                             "failures.csv, worklist.csv, --shard, --progress json)")
    p.add_argument("--output", "-o", required=True, type=Path, help="output folder")
    p.add_argument("--scene", type=Path, default=None,
                   help="also save a Slicer scene bundle (.mrb) with the exam and the results")
    p.add_argument("--scenes", action="store_true",
                   help="with --batch: also save OUT/scenes/<case>.mrb for every exam done (skipped when present)")
    return p


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, list[str], argparse.Namespace]:
    """Our own options, the ``breasttumorseg segment`` command line they translate to, and its parse.

    The CLI's parser checks everything we do not handle, so an unknown or malformed option is
    reported exactly as the CLI reports it (usage message, exit code 2).
    """
    args, rest = build_parser().parse_known_args(argv)
    if args.scene is not None and not args.scene.name.lower().endswith(".mrb"):
        build_parser().error(f"--scene must name a .mrb file, got {args.scene}")
    if args.batch is not None and args.scene is not None:
        build_parser().error("--scene saves one exam's scene; with --batch use --scenes (one .mrb per exam)")
    if args.batch is None and args.scenes:
        build_parser().error("--scenes goes with --batch; for one exam use --scene OUT/case.mrb")
    if args.batch is not None:
        cli_argv = ["batch", args.batch, "--output", str(args.output), *rest]
    else:
        cli_argv = ["segment", *args.input, "--output", str(args.output), *rest]
    from BreastTumorSegLib.cli import build_parser as cli_parser

    return args, cli_argv, cli_parser().parse_args(cli_argv)


def save_scene(exam, out_dir: Path, mrb_path: Path, result=None, clear: bool = False) -> Path:
    """Build a scene with *exam* and the results written into *out_dir*, and save it as a .mrb bundle.

    With the engine's *result* its motion-corrected subtraction and breast mask go into the scene
    (the subtraction the segmentation was made on); without it only the files are read. ``clear``:
    empty the scene afterwards, so that a batch does not pile up nodes."""
    import slicer

    from BreastTumorSegLib.io.atomic import atomic_target
    from BreastTumorSegLib.slicer import mrml_bridge
    from BreastTumorSegLib.slicer.logic import SegmentationLogic

    in_app = hasattr(slicer, "app") and hasattr(slicer, "mrmlScene")
    ctx = mrml_bridge.MRMLContext.from_slicer() if in_app else mrml_bridge.MRMLContext.headless()
    case_id = exam.case_id
    nodes = [mrml_bridge.image_to_volume_node(ctx, img, f"{case_id}_{i:04d}") for i, img in enumerate(exam.phases)]
    logic = SegmentationLogic(ctx)
    if result is not None:
        outputs = logic.import_result(result, nodes[0], exam=exam)
    else:
        outputs = logic.import_result_folder(out_dir, case_id, nodes[0], exam=exam)
    logic.show_results(outputs)
    mrb_path = mrb_path.resolve()
    mrb_path.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".scene-", dir=mrb_path.parent))
    try:
        bundle = work / mrb_path.name[: -len(".mrb")]
        bundle.mkdir()
        if not ctx.app_logic.SaveSceneToSlicerDataBundleDirectory(str(bundle), None):
            raise OSError(f"{mrb_path}: Slicer could not save the scene")
        with atomic_target(mrb_path) as tmp_mrb:  # the package's one atomic write
            if not ctx.app_logic.Zip(str(tmp_mrb), str(bundle)):
                raise OSError(f"{mrb_path}: Slicer could not write the scene bundle")
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if clear:
            ctx.scene.Clear(0)
    return mrb_path


def run_batch(args, cli_args) -> int:
    """``--batch``: the CLI's batch command in this process (models loaded once), then with
    ``--scenes`` a scene bundle per exam done (resumable: existing bundles are kept)."""
    from BreastTumorSegLib.batch.cases import discover
    from BreastTumorSegLib.batch.ledger import Ledger
    from BreastTumorSegLib.cli.batch import run
    from BreastTumorSegLib.io.files import load_exam

    code = run(cli_args)
    if not args.scenes:
        return code
    ledger = Ledger(cli_args.output)
    for case in discover(args.batch):
        rec = ledger.read_done(case.key)
        if rec is None:
            continue
        mrb = cli_args.output / "scenes" / f"{rec['case_id']}.mrb"
        if mrb.exists():
            continue
        try:
            save_scene(load_exam(**case.load_kwargs()), cli_args.output, mrb, clear=True)
        except Exception as exc:  # one scene that cannot be saved does not stop the others
            print(f"segment_headless: {case.key}: scene not saved: {' '.join(str(exc).split())}", file=sys.stderr)
            code = code or 1
    return code


def main(argv: list[str] | None = None) -> int:
    args, _, cli_args = parse_args(sys.argv[1:] if argv is None else argv)
    from BreastTumorSegLib.cli import guarded
    from BreastTumorSegLib.cli.segment import print_result, segment_and_write
    from BreastTumorSegLib.core.errors import BreastTumorSegError
    from BreastTumorSegLib.io.safety import check_output_dir

    def work() -> int:
        if args.batch is not None:
            return run_batch(args, cli_args)
        if args.scene is not None:
            check_output_dir(args.scene.parent, option="--scene")
        try:
            exam, result, written = segment_and_write(cli_args)
            print_result(result, written)
            if args.scene is not None:
                print(f"  scene        {save_scene(exam, cli_args.output, args.scene, result)}")
        except OSError as exc:  # e.g. Slicer could not save the scene
            raise BreastTumorSegError(str(exc)) from None
        return 0

    # Exit codes, messages and signal handling as the CLI's (BreastTumorSegLib.cli.main).
    return guarded(work, restore=argv is not None)


if __name__ == "__main__":
    sys.exit(main())
