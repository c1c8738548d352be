"""``breasttumorseg train``: train or fine-tune any model from a config file with the package's one trainer
(:mod:`..training.trainer`; e.g. ``configs/unet-demo.json``, ``configs/st-demo.json``), or re-tune the
threshold of a model card it wrote (``--retune CARD``)."""
from __future__ import annotations

from ._common import path_arg


def register(sub) -> None:
    p = sub.add_parser(
        "train", help="train a tumor or whole-breast model from a config file",
        description="Train a model described by a JSON/TOML config (task, network, data, schedule) and "
                    "write <name>.safetensors + <name>.json into the output folder, with checkpoint.pt, "
                    "log.jsonl and log.csv. Several GPUs or nodes: launch "
                    "`torchrun --nproc_per_node=N -m BreastTumorSegLib.cli train` with the same arguments. "
                    "--retune CARD only re-tunes the probability threshold of a card this trainer wrote, on "
                    "its validation data, and rewrites that card in its folder.")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--config", type=path_arg, help="JSON or TOML training config (see configs/)")
    what.add_argument("--retune", type=path_arg, default=None, metavar="CARD",
                      help="re-tune the threshold of a model card this trainer wrote (<run>/<name>.json)")
    p.add_argument("--output", "-o", type=path_arg, help="run folder (training; --retune writes into the card's folder)")
    p.add_argument("--resume", action="store_true", help="continue from <output>/checkpoint.pt")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config entry (value read as JSON), e.g. --set epochs=5 --set data.fold=2")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..core.errors import InputError, OutputExistsError
    from ..io.safety import check_input_path, check_output_dir, check_regular_file

    given = args.config or args.retune
    if args.retune and (args.output or args.resume or args.set):
        raise InputError("--retune rewrites the card in its own folder and takes no --output, --resume or --set",
                         "--retune", "drop those options, or train with --config")
    if args.config and args.output is None:
        raise InputError("training needs a run folder", "--output", "add --output RUN_FOLDER")
    # the same checks for both: the folder written is writable, has room and is not inside an input
    if args.config:
        check_output_dir(args.output, [args.config], need_bytes=64 << 20)
    else:
        check_output_dir(args.retune.parent, [], need_bytes=64 << 20, option="--retune")
    check_input_path(given, "model card" if args.retune else "config")
    check_regular_file(given, "model card" if args.retune else "config", max_bytes=1 << 20)
    log = lambda *m: print(*m, flush=True)  # noqa: E731
    if args.retune:
        from ..training.modelcard import retune_card

        retune_card(args.retune, log=log)
        return 0
    from ..training.config import load_config
    from ..training.trainer import train

    cfg = load_config(args.config, args.set)  # the whole config checked here, before any data is prepared
    if (args.output / "checkpoint.pt").exists() and not args.resume:
        raise OutputExistsError(f"{args.output}: a training run is already there. Fix: add --resume to continue it, "
                                "or choose another --output")
    try:
        train(cfg, args.output, resume=args.resume, log=log)
    finally:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():  # torchrun: leave the process group cleanly
            dist.destroy_process_group()
    return 0
