"""``breasttumorseg demo``: make the demo phantom exam, segment it, report Dice against its truth."""
from __future__ import annotations

import os
from pathlib import Path

from ..core import interrupts
from ._common import TerminalProgress, path_arg, seed_arg
from .segment import add_engine_options, check_engine_options, engine_kwargs, print_result

# The first seed of the evaluation range 3000-3019 (never used for training, 1000+, or validation,
# 2000+), taken as it comes rather than chosen for its result: README gives the median over the
# whole range next to this exam's number (benchmarks/bench_demo.py).
DEMO_SEED = 3000


def register(sub) -> None:
    p = sub.add_parser("demo", help="segment the bundled demo exam (a synthetic phantom) and score it",
                       description="Writes the demo exam (a synthetic DCE phantom with known tumor, "
                                   "generated deterministically from a seed) to OUTPUT/demo_exam, "
                                   "segments it into OUTPUT, prints the Dice against the ground truth and "
                                   "the path of the overview picture (result and truth outlined). "
                                   "A re-run into the same folder needs --overwrite.")
    p.add_argument("--output", "-o", type=path_arg, default=Path("demo_output"), help="output folder (default: %(default)s)")
    p.add_argument("--seed", type=seed_arg, default=DEMO_SEED, help="phantom seed (default: %(default)s)")
    add_engine_options(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from ..io.files import load_exam
    from ..io.images import read_image
    from ..evaluation.metrics import dice
    from ..training.phantom import make_phantom, write_phantom
    from ..engine.pipeline import segment_exam, write_result

    from ..io.safety import check_output_dir

    from ..core.errors import OutputExistsError
    from ..io.safety import created_dirs, remove_empty_dirs

    out = Path(args.output)
    check_output_dir(out, need_bytes=64 << 20)
    check_engine_options(args)
    case_dir = out / "demo_exam"
    if os.path.lexists(case_dir) and not args.overwrite:
        raise OutputExistsError(f"{case_dir}: an earlier demo is there. Fix: pass --overwrite to replace it, "
                                "or choose another --output")
    progress = None if args.quiet else TerminalProgress()
    ph = make_phantom(args.seed)
    made = created_dirs(out)
    try:
        write_phantom(ph, case_dir, overwrite=args.overwrite)
        exam = load_exam(case_dir)
        interrupts.note_work()
        result = segment_exam(exam, progress=progress, **engine_kwargs(args))
        truth = read_image(case_dir / f"{ph.exam.case_id}_tumor.nii.gz", "ground truth")
        written = write_result(result, out, overwrite=args.overwrite, truth=truth)
    except BaseException:
        if not args.overwrite:  # nothing of an earlier demo was there: leave no half demo behind
            import shutil

            shutil.rmtree(case_dir, ignore_errors=True)
            remove_empty_dirs(made)
        raise
    if progress:
        progress.close()
    print(f"demo exam: {case_dir} ({exam.n_phases} phases, synthetic phantom seed {args.seed})")
    print_result(result, written)
    print(f"Dice against the phantom's ground truth: {dice(result.label, truth):.3f}")
    return 0
