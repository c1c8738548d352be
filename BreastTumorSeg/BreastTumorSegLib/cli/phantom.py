"""``breasttumorseg phantom``: write synthetic DCE phantom exams with exact ground truth."""
from __future__ import annotations


from ..core.errors import InputError
from ..io.safety import check_output_dir
from ._common import path_arg, seeds_arg


def register(sub) -> None:
    p = sub.add_parser("phantom", help="write synthetic DCE phantom exams (for tests, tutorials, training)",
                       description="Writes one folder per seed in the loader's layout (or the MAMA-MIA "
                                   "layout), with tumor and breast ground truth and the true kinetics.")
    p.add_argument("--seed", type=seeds_arg, default=[7], help="seed(s): 7, 1-5 or 3,8,13 (default: 7)")
    p.add_argument("--family", choices=["phantom", "randomized", "ellipse"], default="phantom",
                   help="synthetic family: phantom (default; the shipped models were trained on it), randomized "
                        "(domain-randomised, for training) or ellipse (held out, for evaluation only)")
    p.add_argument("--output", "-o", type=path_arg, required=True, help="output folder")
    p.add_argument("--layout", choices=["folder", "mamamia"], default="folder")
    p.add_argument("--size", choices=["small", "clinical"], default="small",
                   help="small (about 2 M voxels) or clinical (448x448x160)")
    p.add_argument("--phases", type=int, default=None, help="number of phases, 2-8 (default: random per seed)")
    p.add_argument("--overwrite", action="store_true", help="replace existing phantom files")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..training.phantom import write_phantom
    from ..training.phantom.families import make_exam

    check_output_dir(args.output, need_bytes=(40 << 20) * len(args.seed))
    if args.phases is not None and not 2 <= args.phases <= 8:
        raise InputError(f"{args.phases} phases", "--phases", "give 2 to 8")
    family = getattr(args, "family", "phantom")
    for seed in args.seed:
        if family == "phantom":
            ph = make_exam(family, seed, size=args.size, n_phases=args.phases)
        else:  # --size applies to the "phantom" family only
            ph = make_exam(family, seed, n_phases=args.phases)
        root = args.output if args.layout == "mamamia" else args.output / ph.case_id
        write_phantom(ph, root, layout=args.layout, overwrite=args.overwrite)
        tumors = ", ".join(f"{t['kind']} {t['volume_ml']:.2f} mL {t['curve']} ({t['side']})" for t in ph.tumors)
        print(f"{ph.case_id}: {ph.exam.n_phases} phases, {ph.params.get('orientation', '?')}, "
              f"tumors: {tumors or 'none'} -> {root}")
    return 0
