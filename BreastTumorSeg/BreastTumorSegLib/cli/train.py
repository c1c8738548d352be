"""``breasttumorseg train``: train or fine-tune any model from a config file with the package's one trainer
(:mod:`..training.trainer`; e.g. ``configs/unet-demo.json``, ``configs/st-demo.json``)."""
from __future__ import annotations

from pathlib import Path


def register(sub) -> None:
    p = sub.add_parser(
        "train", help="train a tumor or whole-breast model from a config file",
        description="Train a model described by a JSON/TOML config (task, network, data, schedule) and "
                    "write <name>.safetensors + <name>.json into the output folder, with checkpoint.pt, "
                    "log.jsonl and log.csv. Several GPUs or nodes: launch "
                    "`torchrun --nproc_per_node=N -m BreastTumorSegLib.training.trainer` with the same arguments.")
    p.add_argument("--config", required=True, type=Path, help="JSON or TOML training config (see configs/)")
    p.add_argument("--output", "-o", required=True, type=Path, help="run folder")
    p.add_argument("--resume", action="store_true", help="continue from <output>/checkpoint.pt")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config entry (value read as JSON), e.g. --set epochs=5 --set data.fold=2")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..io.safety import check_input_path, check_output_dir, check_regular_file
    from ..training.trainer import load_config, train

    check_output_dir(args.output, [args.config], need_bytes=64 << 20)
    check_input_path(args.config, "config")
    check_regular_file(args.config, "config", max_bytes=1 << 20)
    cfg = load_config(args.config, args.set)  # the whole config checked here, before any data is prepared
    if (args.output / "checkpoint.pt").exists() and not args.resume:
        from ..core.errors import OutputExistsError
        raise OutputExistsError(f"{args.output}: a training run is already there. Fix: add --resume to continue it, "
                                "or choose another --output")
    train(cfg, args.output, resume=args.resume, log=lambda *m: print(*m, flush=True))
    return 0
