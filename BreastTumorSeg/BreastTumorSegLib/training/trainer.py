"""The one trainer of the package: every network and task, one config file, one GPU or many.

    breasttumorseg train --config configs/unet-demo.json --output runs/unet-demo
    breasttumorseg train --config configs/st-demo.json --output runs/st-demo --set epochs=3
    breasttumorseg train --retune runs/unet-demo/unet-demo.json
    torchrun --nproc_per_node=4 -m BreastTumorSegLib.cli train --config my.toml --output runs/x
    torchrun --nnodes=2 --node_rank=0 --master_addr=HOST --nproc_per_node=8 -m BreastTumorSegLib.cli train ...

The command line is ``cli/train.py``. The pieces: :mod:`.config` (the config and its checks),
:mod:`.distributed` (ranks and devices), :mod:`.patches` (task inputs, patch sampling, loss),
:mod:`.validation` (the network, validation Dice, threshold tuning), :mod:`.modelcard` (weights,
card, re-tuning); this module holds the optimiser, the logs and the training loop.

The config (JSON or TOML; keys of :class:`TrainerConfig`) names the task, the network, the
data (synthetic phantoms or a MAMA-MIA / nnU-Net folder with a case-level k-fold split, see
:mod:`.datasets`) and the schedule. Three tasks:

* ``tumor`` with a ``unet3d`` network: inputs after Hirsch et al. (T1c, DCE-in, DCE-out);
* ``tumor`` with an ``st_transformer`` network: every post-contrast phase and its subtraction,
  with *phase dropout* (random subsets of the phases, absent ones masked) so the model keeps
  working when phases are missing;
* ``breast``: the whole-breast U-Net on the pre-contrast image (``models.breastmask``).

Synthetic phantoms are motion corrected with their known transforms (an ideal registration),
folder data with the registration stage; both are cached once (:mod:`.datasets`).

Training: patches centred on tumor with probability ``tumor_fraction`` (0.2 = 1:4 as Hirsch
et al.), the rest on background, ``hot_fraction`` of which on the most enhancing non-tumor
voxels; flips, rotations about the cranio-caudal axis, intensity gain, enhancement gain
(``augment.enhancement_gain``); BCE + soft Dice (per batch, or per patch with
``per_patch_dice``); Adam/AdamW with warm-up + cosine decay, step decay or a one-cycle
schedule; mixed precision on CUDA; channels-last U-Nets on CPU. After every
epoch: validation Dice on whole cases (:func:`..models.inference.predict_probability`, the
package's one whole-volume inference), a checkpoint (``checkpoint.pt``, resumable with
``--resume``), one line in ``log.jsonl`` and ``log.csv`` (plot with
``scripts/plot_training_log.py``); early stopping after ``patience`` epochs without
improvement. Everything random is seeded from ``seed``, the rank and the epoch, so a resumed
run continues exactly as an uninterrupted one. With several processes (``torchrun``) the
model is wrapped in DistributedDataParallel (NCCL on GPUs, gloo on CPUs); every rank draws its
own patches, rank 0 validates, logs and writes.

``init_from`` starts from a trained model card (weights SHA-256 checked, its input scales kept):
fine-tuning, or continuing a recipe in several runs (``configs/unet-demo*.json``).

The best epoch's weights are written as ``<name>.safetensors`` with a model card ``<name>.json``
that ``models`` loads. With ``threshold_candidates`` the probability threshold of the card is
the candidate with the best median validation Dice of those weights (``--retune CARD`` does
only that, for a card this trainer wrote).
"""
from __future__ import annotations

import csv
import json
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from ..core.errors import InputError
from ..io.atomic import atomic_target, write_json
from .config import SCHEDULES, TrainerConfig, resolve_cache_dir
from .distributed import Dist, pick_device, setup_distributed
from .modelcard import write_model
from .patches import PatchSampler, input_scales, loss_fn, task_cases
from .validation import build_model, forward_batch, load_initial_model, tune_threshold, validate


# ------------------------------------------------------------------------------ optimisation
def make_optimizer(cfg: TrainerConfig, params) -> torch.optim.Optimizer:
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    raise InputError(f"optimizer {cfg.optimizer!r}", "training config", "use 'adam' or 'adamw'")


def lr_factor(cfg: TrainerConfig, step: int) -> float:
    """Learning-rate multiplier at optimizer step *step* (0-based)."""
    total = cfg.epochs * cfg.steps_per_epoch
    if step < cfg.warmup_steps and cfg.schedule != "onecycle":
        return (step + 1) / cfg.warmup_steps
    if cfg.schedule == "cosine":
        prog = (step - cfg.warmup_steps) / max(1, total - cfg.warmup_steps)
        return 0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * min(prog, 1.0)))
    if cfg.schedule == "step":
        return 0.5 ** (step // (cfg.step_epochs * cfg.steps_per_epoch))
    if cfg.schedule == "constant":
        return 1.0
    if cfg.schedule == "onecycle":  # as torch.optim.lr_scheduler.OneCycleLR (div 25, final div 1e4)
        lo, hi, end = 1 / 25, 1.0, 1 / 25e4
        up = cfg.warmup_steps - 1
        if step <= up:
            a, b, prog = lo, hi, step / max(1, up)
        else:
            a, b, prog = hi, end, (step - up) / max(1, total - 1 - up)
        return b + (a - b) / 2 * (math.cos(math.pi * min(prog, 1.0)) + 1)
    raise InputError(f"schedule {cfg.schedule!r}", "training config", f"use one of {SCHEDULES}")


# ------------------------------------------------------------------------------ logs
class RunLog:
    """``log.jsonl`` (every record) and ``log.csv`` (one row per epoch) in the run folder."""

    CSV_FIELDS = ["epoch", "step", "train_loss", "lr", "val_dice_median", "val_dice_mean", "best_epoch",
                  "patches_per_s", "seconds"]

    def __init__(self, folder: Path, resume: bool):
        self.jsonl, self.csv = folder / "log.jsonl", folder / "log.csv"
        if not resume:
            for f in (self.jsonl, self.csv):
                f.unlink(missing_ok=True)

    def write(self, record: dict) -> None:
        with self.jsonl.open("a") as fh:
            fh.write(json.dumps(record) + "\n")
        if record.get("type") == "epoch":
            new = not self.csv.exists()
            with self.csv.open("a", newline="") as fh:
                w = csv.DictWriter(fh, self.CSV_FIELDS, extrasaction="ignore")
                if new:
                    w.writeheader()
                w.writerow(record)


# ------------------------------------------------------------------------------ training
@dataclass
class TrainOutcome:
    card: dict | None  # rank 0 only
    final_state: dict  # this rank's weights after the last epoch
    history: list[dict]


def _seed_everything(cfg: TrainerConfig, rank: int, epoch: int) -> np.random.Generator:
    torch.manual_seed(cfg.seed * 1_000_003 + epoch * 101 + rank)
    return np.random.default_rng([cfg.seed, rank, epoch])


def train(cfg: TrainerConfig, out_dir: str | os.PathLike, resume: bool = False, log=print,
          cases: tuple[list[dict], list[dict]] | None = None,
          max_epochs_this_run: int | None = None) -> TrainOutcome:
    """Train as *cfg* says; write checkpoints, logs, weights and card into *out_dir*.

    ``cases``: prepared (training, validation) cases instead of ``cfg.data``.
    ``max_epochs_this_run``: stop after this many epochs (a time-limited job on a cluster);
    ``resume=True`` later continues exactly where it stopped.
    """
    from .datasets import load_split
    from ..models.nets.unet import count_parameters

    out_dir = Path(out_dir)
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    device = pick_device(cfg.device, int(os.environ.get("LOCAL_RANK", "0")))
    ddp = setup_distributed(device)
    say = log if ddp.main else (lambda *a, **k: None)
    t_start = time.perf_counter()

    # Data: one process per node prepares the cache, the others then read it.
    if cases is None:
        cache_dir = resolve_cache_dir(cfg, out_dir)
        if ddp.local_rank == 0:
            load_split(cfg.data, cfg.spacing_mm, cache_dir, say, cfg.breast_spacing_mm, keys=set())
        ddp.barrier()
        keys = {"pre_coarse", "breast_coarse"} if cfg.task == "breast" else {"phases", "times", "label", "breast"}
        cases = load_split(cfg.data, cfg.spacing_mm, cache_dir, say, cfg.breast_spacing_mm, keys)
    kind = cfg.input_kind
    train_cases, val_cases = task_cases(cases[0], kind), task_cases(cases[1], kind)
    if cfg.val_max_cases:
        val_cases = val_cases[: cfg.val_max_cases]
    torch.manual_seed(cfg.seed)
    if cfg.init_from:
        net, scales = load_initial_model(cfg)
        say(f"fine-tuning from {cfg.init_from}")
    else:
        scales = input_scales(train_cases, kind)
        net = build_model(cfg, scales)
    net = net.to(device)
    # channels-last 3D lets oneDNN use its fast convolution kernels for the U-Net's small channel
    # counts (about twice as fast per step on a 2-core CPU)
    channels_last = device.type == "cpu" and cfg.architecture["type"] == "unet3d"
    if channels_last:
        net = net.to(memory_format=torch.channels_last_3d)
    n_params = count_parameters(net)
    say(f"{cfg.name}: {cfg.architecture['type']} ({n_params:,} parameters), task {cfg.task}, "
        f"{len(train_cases)} training / {len(val_cases)} validation cases, {ddp.world} process(es) on {device}")
    model = net
    if ddp.world > 1:
        model = torch.nn.parallel.DistributedDataParallel(
            net, device_ids=[device.index] if device.type == "cuda" else None)
    opt = make_optimizer(cfg, net.parameters())
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(cfg, s))
    use_amp = cfg.amp and device.type == "cuda"
    amp_dtype = torch.bfloat16 if use_amp and torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and amp_dtype == torch.float16)

    out_dir.mkdir(parents=True, exist_ok=True)
    ckpt_path = out_dir / "checkpoint.pt"
    state = {"epoch": 0, "step": 0, "best": {"dice_median": -1.0}, "bad_epochs": 0, "history": []}
    best_state = None
    if resume and ckpt_path.exists():
        ck = torch.load(ckpt_path, map_location=device, weights_only=True)
        net.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        sched.load_state_dict(ck["scheduler"])
        scaler.load_state_dict(ck["scaler"])
        best_state = ck["best_state"]
        state = json.loads(ck["state_json"])
        say(f"resumed from {ckpt_path} after epoch {state['epoch']}")
    elif resume:
        say(f"no checkpoint in {out_dir}; starting fresh")
    runlog = RunLog(out_dir, resume and ckpt_path.exists()) if ddp.main else None
    if ddp.main:
        write_json(out_dir / "config.json", asdict(cfg))

    model.train()
    first_epoch = state["epoch"]
    stop = state["epoch"] >= cfg.epochs
    while not stop:
        epoch = state["epoch"] + 1
        sampler = PatchSampler(train_cases, cfg, scales, _seed_everything(cfg, ddp.rank, epoch))
        t_epoch, losses, patches = time.perf_counter(), [], 0
        for _ in range(cfg.steps_per_epoch):
            batch = sampler.sample(cfg.batch)
            patches += int(batch["y"].shape[0])
            if channels_last:
                batch["x"] = batch["x"].contiguous(memory_format=torch.channels_last_3d)
            with torch.autocast(device.type, dtype=amp_dtype, enabled=use_amp):
                logits = forward_batch(model, batch, device)
            loss = loss_fn(logits.float(), batch["y"].to(device), cfg.per_patch_dice)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            sched.step()
            state["step"] += 1
            losses.append(float(loss.detach()))
            if ddp.main and state["step"] % cfg.log_every == 0:
                runlog.write({"type": "step", "epoch": epoch, "step": state["step"],
                              "loss": float(np.mean(losses[-cfg.log_every:])), "lr": sched.get_last_lr()[0]})
        seconds = time.perf_counter() - t_epoch
        _average_buffers(net, ddp)
        patches = _sum_over_ranks(patches, ddp)
        record = {"type": "epoch", "epoch": epoch, "step": state["step"], "train_loss": float(np.mean(losses)),
                  "lr": sched.get_last_lr()[0], "patches": patches, "patches_per_s": patches / seconds}
        flag = torch.zeros(1)
        if ddp.main:
            d = validate(net, val_cases, cfg, scales, device) if val_cases else []
            med = float(np.median(d)) if d else float("nan")
            improved = bool(d) and med > state["best"]["dice_median"]
            if improved or best_state is None:
                state["best"] = {"dice_median": med, "dice_per_case": [round(v, 4) for v in d], "epoch": epoch}
                best_state = {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}
            state["bad_epochs"] = 0 if improved else state["bad_epochs"] + 1
            record.update(val_dice_median=med, val_dice_mean=float(np.mean(d)) if d else float("nan"),
                          val_dice=[round(v, 4) for v in d], best_epoch=state["best"]["epoch"],
                          seconds=round(time.perf_counter() - t_start, 1))
            runlog.write(record)
            state["history"].append({k: record[k] for k in ("epoch", "train_loss", "val_dice_median")})
            say(f"epoch {epoch}/{cfg.epochs}: loss {record['train_loss']:.4f}, val Dice median {med:.3f} "
                f"(best {state['best']['dice_median']:.3f} @ {state['best']['epoch']}), "
                f"{record['patches_per_s']:.2f} patches/s")
            state["epoch"] = epoch
            _save_checkpoint(ckpt_path, net, opt, sched, scaler, best_state, state)
            if cfg.patience and state["bad_epochs"] >= cfg.patience:
                say(f"early stop: no improvement for {cfg.patience} epochs")
                flag[0] = 1
        else:
            state["epoch"] = epoch
        if ddp.world > 1:
            dist.broadcast(flag, 0)
        stop = bool(flag[0]) or epoch >= cfg.epochs or (
            max_epochs_this_run is not None and epoch - first_epoch >= max_epochs_this_run)

    card = None
    final = {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}
    if ddp.main:
        threshold = cfg.threshold
        if cfg.threshold_candidates and val_cases:
            net.load_state_dict(best_state)
            threshold, medians = tune_threshold(net, val_cases, cfg, scales, device)
            state["best"]["threshold_tuning"] = {"median_dice_by_threshold": medians, "chosen": threshold}
            say(f"threshold {threshold} (median validation Dice by threshold: {medians})")
        card = write_model(cfg, out_dir, best_state, n_params, scales, state, time.perf_counter() - t_start,
                           threshold)
        say(f"saved {out_dir / card['weights']} (best validation Dice {state['best']['dice_median']:.3f} "
            f"at epoch {state['best']['epoch']})")
    ddp.barrier()
    return TrainOutcome(card, final, state["history"])


def _average_buffers(net: torch.nn.Module, ddp: Dist) -> None:
    """Average floating-point buffers (BatchNorm running statistics) over the ranks.

    DDP keeps the parameters equal; each rank's last forward pass, though, updates its own
    running statistics. Averaging them after every epoch uses every rank's data and leaves all
    ranks with the same model for validation, checkpoints and the final weights.
    """
    if ddp.world <= 1:
        return
    for buf in net.buffers():
        if buf.is_floating_point():
            dist.all_reduce(buf, op=dist.ReduceOp.SUM)
            buf.div_(ddp.world)


def _sum_over_ranks(count: int, ddp: Dist) -> int:
    """*count* summed over every rank (the patches trained this epoch by all processes)."""
    if ddp.world <= 1:
        return count
    total = torch.tensor([count], dtype=torch.int64)
    dist.all_reduce(total, op=dist.ReduceOp.SUM)
    return int(total.item())


def _save_checkpoint(path: Path, net, opt, sched, scaler, best_state, state) -> None:
    with atomic_target(path, durable=True) as tmp:  # a resumable run survives a crash mid-save
        torch.save({"model": net.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                    "scaler": scaler.state_dict(), "best_state": best_state, "state_json": json.dumps(state)}, tmp)
