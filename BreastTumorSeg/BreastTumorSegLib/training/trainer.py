"""The one trainer of the package: every network and task, one config file, one GPU or many.

    python -m BreastTumorSegLib.training.trainer --config configs/unet-demo.json --output runs/unet-demo
    python -m BreastTumorSegLib.training.trainer --config configs/st-demo.json --output runs/st-demo --set epochs=3
    python -m BreastTumorSegLib.training.trainer --retune runs/unet-demo/unet-demo.json
    torchrun --nproc_per_node=4 -m BreastTumorSegLib.training.trainer --config my.toml --output runs/x
    torchrun --nnodes=2 --node_rank=0 --master_addr=HOST --nproc_per_node=8 -m BreastTumorSegLib.training.trainer ...

(``breasttumorseg train`` is the same with the package's command line.)

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

import argparse
import csv
import json
import math
import os
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F

from ..core.errors import InputError
from ..preprocess.harmonize import post_contrast_slope
from ..evaluation.metrics import dice

TASKS = ("tumor", "breast")
SCHEDULES = ("cosine", "step", "constant", "onecycle")


# ------------------------------------------------------------------------------ config
@dataclass
class TrainerConfig:
    name: str = "model"
    task: str = "tumor"
    architecture: dict = field(default_factory=lambda: {"type": "st_transformer"})
    data: dict = field(default_factory=lambda: {"source": "phantom", "train_seeds": "1000-1039",
                                                "val_seeds": "2000-2005", "size": "small"})
    spacing_mm: float = 1.5  # tumor model grid (cases are prepared on it for both tasks)
    breast_spacing_mm: float = 3.0
    patch: int = 48
    batch: int = 2
    epochs: int = 20
    steps_per_epoch: int = 50
    optimizer: str = "adamw"  # or "adam"
    lr: float = 2e-3
    weight_decay: float = 1e-4
    schedule: str = "cosine"  # "cosine" (after warm-up), "step" (halve every step_epochs), "constant",
    # or "onecycle": cosine from lr/25 up to lr over warmup_steps, then cosine down to lr/25e4
    warmup_steps: int = 20
    step_epochs: int = 10
    tumor_fraction: float = 0.2
    hot_fraction: float = 0.5
    per_patch_dice: bool = False  # soft Dice per patch: a small tumor weighs as much as a large one
    augment: dict = field(default_factory=lambda: {"flip_lr": 0.5, "flip_si": 0.3, "rotate_p": 0.3,
                                                   "rotate_deg": 15.0, "gain": [0.8, 1.2], "phase_gain": 0.05,
                                                   "phase_dropout": 0.5})
    # augment may also hold "enhancement_gain": g -- in half the patches the contrast uptake is
    # scaled by k in [1 - g, 1 + g], consistently in every channel (dose, relaxivity, cardiac output).
    amp: bool = True  # CUDA only
    patience: int = 0  # epochs without improvement before stopping; 0 = never stop early
    threshold: float = 0.5
    threshold_candidates: list = field(default_factory=list)  # e.g. [0.3, 0.5, 0.7]: tune on validation
    val_max_cases: int = 0  # 0 = all
    log_every: int = 10
    seed: int = 0
    threads: int = 0  # torch CPU threads per process; 0 = torch's default
    device: str = "auto"
    cache_dir: str = ".cache/datasets"  # relative: under the run folder (--output); absolute: shared by runs
    init_from: str = ""  # model card (.json) whose weights start the training: fine-tuning
    description: str = ""
    version: str = "1"  # the card's version
    breast_model: str = ""  # whole-breast model the card names to gate this tumor model's lesions

    @classmethod
    def from_dict(cls, d: dict) -> "TrainerConfig":
        if not isinstance(d, dict):
            raise InputError(f"the config is a {type(d).__name__}, not a table of settings", "training config",
                             "write a JSON object / TOML table with keys such as task, architecture, data")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise InputError(f"unknown config key(s) {unknown}", "training config",
                             f"use only {sorted(known)}")
        check_types(d)
        cfg = cls(**{k: float(v) if _FIELD_TYPES[k] == "float" else v for k, v in d.items()})
        cfg.validate()
        return cfg

    def validate(self) -> None:
        """Every value checked before any data is prepared: types, finite numbers in range, names,
        and a memory estimate of one training step (a batch or patch far beyond this machine's
        memory is refused now, not after minutes of data preparation)."""
        check_types(asdict(self))
        if self.task not in TASKS:
            raise InputError(f"task {self.task!r}", "training config", f"use one of {TASKS}")
        if self.architecture.get("type") not in ("unet3d", "st_transformer"):
            raise InputError(f"architecture type {self.architecture.get('type')!r}", "training config",
                             "use 'unet3d' or 'st_transformer'")
        if self.task == "breast" and self.architecture["type"] != "unet3d":
            raise InputError("the breast task uses a unet3d", "training config")
        for key, (lo, hi) in RANGES.items():
            value = getattr(self, key)
            if not math.isfinite(value) or not lo <= value <= hi:
                raise InputError(f"{key} = {value!r} is out of range", "training config",
                                 f"give {key} from {lo:g} to {hi:g}")
        if not 0 <= self.lr <= 10:  # 0: the weights stay as they are (a run that only validates)
            raise InputError(f"lr = {self.lr!r} is not a learning rate", "training config",
                             "give lr from 0 to 10, e.g. 0.002")
        if not 0 < self.threshold < 1:
            raise InputError(f"threshold = {self.threshold!r} is out of range", "training config", "give it in (0, 1)")
        if self.optimizer not in OPTIMIZERS:
            raise InputError(f"optimizer {self.optimizer!r}", "training config", f"use one of {OPTIMIZERS}")
        if self.schedule not in SCHEDULES:
            raise InputError(f"schedule {self.schedule!r}", "training config", f"use one of {SCHEDULES}")
        if not all(isinstance(t, (int, float)) and not isinstance(t, bool) and 0 < t < 1
                   for t in self.threshold_candidates):
            raise InputError("threshold_candidates must be numbers in (0, 1)", "training config", "e.g. [0.3, 0.5, 0.7]")
        if not NAME_RE.match(self.name):
            raise InputError(f"name {self.name!r} is not a plain name (it names the output files)", "training config",
                             "use letters, digits, '.', '_' or '-'")
        from ..io.safety import check_device_name

        check_device_name(self.device, "training config: device")
        _check_augment(self.augment)
        if not isinstance(self.data.get("source", "phantom"), str):
            raise InputError("data.source must be a string", "training config", "e.g. \"phantom\" or \"folder\"")
        _check_architecture(self)
        _check_memory(self)

    @property
    def input_kind(self) -> str:
        if self.task == "breast":
            return "pre"
        return "phases" if self.architecture["type"] == "st_transformer" else "hirsch"


def load_config(path: str | os.PathLike, overrides: list[str] | None = None) -> TrainerConfig:
    """Read a JSON or TOML config; ``overrides`` are ``key=value`` strings (value parsed as JSON)."""
    path = Path(path)
    try:
        if path.suffix.lower() == ".toml":
            import tomllib
            data = tomllib.loads(path.read_text())
        else:
            data = json.loads(path.read_text())
    except FileNotFoundError:
        raise InputError("config file not found", path) from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot parse the config ({' '.join(str(exc).split())[:200]})", path,
                         "check the JSON/TOML syntax") from None
    if not isinstance(data, dict):
        raise InputError(f"the config is a {type(data).__name__}, not a table of settings", path,
                         "write a JSON object / TOML table with keys such as task, architecture, data")
    for item in overrides or []:
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise InputError(f"--set {item!r} is not KEY=VALUE", "--set", "write e.g. --set epochs=5 --set data.fold=2")
        try:
            val = json.loads(value)
        except ValueError:
            val = value
        target = data
        *parents, leaf = key.strip().split(".")
        if parents and _FIELD_TYPES.get(parents[0], "dict") != "dict":
            raise InputError(f"--set {item}: {parents[0]} is a {_FIELD_TYPES[parents[0]]}, not a table", "--set",
                             f"set it whole, e.g. --set {parents[0]}=VALUE")
        for i, p in enumerate(parents):
            target = target.setdefault(p, {})
            if not isinstance(target, dict):
                raise InputError(f"--set {item}: {'.'.join(parents[:i + 1])} is a {type(target).__name__}, not a table",
                                 "--set", f"set {'.'.join(parents[:i + 1])} itself, e.g. --set {parents[0]}=VALUE")
        target[leaf] = val
    return TrainerConfig.from_dict(data)


OPTIMIZERS = ("adamw", "adam")
NAME_RE = __import__("re").compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
# inclusive ranges of the numeric settings (lr and threshold are open intervals, checked apart)
RANGES = {"spacing_mm": (0.1, 20.0), "breast_spacing_mm": (0.1, 20.0), "patch": (8, 512), "batch": (1, 4096),
          "epochs": (1, 1_000_000), "steps_per_epoch": (1, 10_000_000), "weight_decay": (0.0, 1.0),
          "warmup_steps": (0, 10_000_000), "step_epochs": (1, 1_000_000), "tumor_fraction": (0.0, 1.0),
          "hot_fraction": (0.0, 1.0), "patience": (0, 1_000_000), "val_max_cases": (0, 10_000_000),
          "log_every": (1, 10_000_000), "seed": (0, 2**32 - 1), "threads": (0, 1024)}
_TYPE_NAMES = {"str": (str,), "int": (int,), "float": (int, float), "bool": (bool,), "dict": (dict,),
               "list": (list,)}
_FIELD_TYPES = {f.name: str(f.type) for f in fields(TrainerConfig)}
AUGMENT_PROBABILITIES = ("flip_lr", "flip_si", "rotate_p", "phase_dropout")
AUGMENT_KEYS = AUGMENT_PROBABILITIES + ("rotate_deg", "gain", "phase_gain", "enhancement_gain")
ACTIVATION_FACTOR = 48  # bytes of activations and gradients per input voxel and channel, measured generously


def check_types(d: dict) -> None:
    """Every config value has its field's type (a bool is not a number; an int is a float)."""
    for key, value in d.items():
        kind = _FIELD_TYPES.get(key)
        ok = _TYPE_NAMES.get(kind, (object,))
        if not isinstance(value, ok) or (isinstance(value, bool) and kind in ("int", "float")):
            example = {"str": '"text"', "int": "an integer such as 48", "float": "a number such as 0.002",
                       "bool": "true or false", "dict": "a table such as {...}", "list": "a list such as [...]"}
            raise InputError(f"{key} = {value!r} is a {type(value).__name__}, not {kind}", "training config",
                             f"give {key} as {example.get(kind, kind)}")
        if kind == "float" and not math.isfinite(value):
            raise InputError(f"{key} = {value!r} is not a finite number", "training config", f"give {key} as a number")


def _check_augment(aug: dict) -> None:
    unknown = sorted(set(aug) - set(AUGMENT_KEYS))
    if unknown:
        raise InputError(f"unknown augment key(s) {unknown}", "training config", f"use only {list(AUGMENT_KEYS)}")

    def number(key, lo, hi, hi_open=False):
        v = aug.get(key)
        if v is None:
            return
        if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v) or not lo <= v <= hi \
                or (hi_open and v == hi):
            raise InputError(f"augment.{key} = {v!r} is out of range", "training config",
                             f"give a number from {lo:g} to {hi:g}{' (exclusive)' if hi_open else ''}")

    for key in AUGMENT_PROBABILITIES:
        number(key, 0.0, 1.0)
    number("rotate_deg", 0.0, 180.0)
    number("phase_gain", 0.0, 1.0, hi_open=True)
    gain_k = aug.get("enhancement_gain", 0.0)
    if not isinstance(gain_k, (int, float)) or isinstance(gain_k, bool) or not 0 <= gain_k < 1:
        raise InputError("augment.enhancement_gain must be in [0, 1)", "training config",
                         "e.g. 0.3 scales the contrast uptake by 0.7-1.3")
    gain = aug.get("gain", [1.0, 1.0])
    if not (isinstance(gain, list) and len(gain) == 2
            and all(isinstance(g, (int, float)) and not isinstance(g, bool) and math.isfinite(g) for g in gain)
            and 0 < gain[0] <= gain[1] <= 10):
        raise InputError(f"augment.gain = {gain!r} is not [low, high]", "training config",
                         "give two numbers 0 < low <= high, e.g. [0.8, 1.2]")


def _check_architecture(cfg: "TrainerConfig") -> None:
    """The network is built once from the config (on the CPU, small): wrong keys or values fail now."""
    from ..models.nets import build_network

    arch = dict(cfg.architecture)
    if arch["type"] == "unet3d":
        arch.setdefault("in_channels", {"pre": 1, "hirsch": 3}[cfg.input_kind])
    try:
        with torch.device("meta"):
            build_network(arch)
    except (TypeError, ValueError, KeyError, RuntimeError, AssertionError, ZeroDivisionError) as exc:
        raise InputError(f"architecture {cfg.architecture!r} cannot be built ({type(exc).__name__}: "
                         f"{' '.join(str(exc).split())[:200]})", "training config",
                         "use the keys of configs/unet-demo.json or configs/st-demo.json") from None


def memory_estimate_bytes(cfg: "TrainerConfig") -> int:
    """A generous estimate of one training step's memory: input patches, their activations and gradients."""
    channels = {"pre": 1, "hirsch": 3, "phases": 16}[cfg.input_kind]
    return int(cfg.batch) * int(cfg.patch) ** 3 * 4 * channels * ACTIVATION_FACTOR


def _check_memory(cfg: "TrainerConfig") -> None:
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return
    need = memory_estimate_bytes(cfg)
    if need > total:
        raise InputError(f"batch {cfg.batch} x patch {cfg.patch}^3 needs about {need / 2**30:.0f} GiB per training "
                         f"step, more than this machine's {total / 2**30:.0f} GiB", "training config",
                         "lower batch or patch (e.g. batch 2, patch 48)")


def resolve_cache_dir(cfg: "TrainerConfig", out_dir: str | os.PathLike) -> Path:
    """The dataset cache: ``cache_dir`` as given when absolute, else under the run folder (*out_dir*),
    so a run writes nothing outside its --output."""
    cache = Path(cfg.cache_dir).expanduser()
    return cache if cache.is_absolute() else Path(out_dir) / cache


# ------------------------------------------------------------------------------ distributed
@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()


def setup_distributed(device: torch.device) -> Dist:
    """Join the process group when launched by torchrun (``WORLD_SIZE`` > 1)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Dist(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def _pick_device(name: str, d_local_rank: int) -> torch.device:
    from ..models.inference import select_device

    dev = select_device(name)
    if dev.type == "cuda":
        dev = torch.device("cuda", d_local_rank % torch.cuda.device_count())
        torch.cuda.set_device(dev)
    return dev


# ------------------------------------------------------------------------------ task arrays
@dataclass
class TaskCase:
    """What a sampler and the validation need of one case, for one task."""

    case_id: str
    x: np.ndarray  # (C, z, y, x) float16 (unscaled for "phases", scaled otherwise)
    y: np.ndarray  # (z, y, x) uint8
    gate: np.ndarray | None  # where predictions count (breast mask) or None
    times: np.ndarray | None  # post-contrast times (T,) for "phases"
    hot: np.ndarray  # indices of enhancing background voxels


def _hirsch(case: dict) -> np.ndarray:
    ph = case["phases"].astype(np.float32)
    posts = ph[0::2]
    slope = post_contrast_slope(posts, case["times"][1:])
    return np.stack([ph[0], ph[1], slope]).astype(np.float16)


def task_cases(cases: list[dict], kind: str) -> list[TaskCase]:
    out = []
    for c in cases:
        cid = str(c.get("case_id", "case"))
        if kind == "pre":
            if "pre_coarse" not in c:
                raise InputError(f"case {cid} has no whole-breast truth", "dataset",
                                 "add segmentations/breast/<case>.nii.gz to train the breast model")
            x, y, gate, times = c["pre_coarse"][None], c["breast_coarse"], None, None
            enh = None
        else:
            x = _hirsch(c) if kind == "hirsch" else c["phases"]
            y, gate, times = c["label"], c["breast"], c["times"][1:].astype(np.float32)
            enh = c["phases"][1]
        if enh is not None:
            cand = y == 0
            thr = np.percentile(enh[cand], 99.0) if cand.any() else np.inf
            hot = np.argwhere(cand & (enh >= thr))
        else:  # breast task: "hot" = the breast itself, so that half the background patches see its edges
            hot = np.argwhere(y > 0)
        out.append(TaskCase(cid, x, y, gate, times, hot))
    return out


def input_scales(cases: list[TaskCase], kind: str, max_voxels_per_case: int = 200_000) -> np.ndarray:
    """Channel scales: 99.5th percentile of |value| inside the breasts (pairs share one for "phases")."""
    if kind == "pre":
        return np.ones(1, np.float32)
    rng = np.random.default_rng(0)
    vals_by = {}
    for c in cases:
        idx = np.flatnonzero(c.gate > 0) if c.gate is not None else np.arange(c.y.size)
        if idx.size > max_voxels_per_case:  # a fixed random subset keeps memory small on big datasets
            idx = np.sort(rng.choice(idx, max_voxels_per_case, replace=False))
        for ch in range(c.x.shape[0]):
            key = ch % 2 if kind == "phases" else ch
            vals_by.setdefault(key, []).append(np.abs(c.x[ch].ravel()[idx].astype(np.float32)))
    return np.asarray([max(float(np.percentile(np.concatenate(vals_by[k]), 99.5)), 1e-3)
                       for k in sorted(vals_by)], np.float32)


# ------------------------------------------------------------------------------ sampling
def scale_hirsch_enhancement(x: np.ndarray, k: np.float32, scales: np.ndarray) -> np.ndarray:
    """Hirsch inputs (T1c, DCE-in, DCE-out, each divided by its scale) with the enhancement times k:
    DCE-in and DCE-out scale by k, T1c = pre + DCE-in keeps its pre-contrast part."""
    return np.stack([x[0] + (k - 1) * x[1] * (scales[1] / scales[0]), k * x[1], k * x[2]])


def loss_fn(logits: torch.Tensor, target: torch.Tensor, per_patch_dice: bool = False) -> torch.Tensor:
    """BCE + soft Dice. The Dice is over the whole batch, or (``per_patch_dice``) the mean of
    each patch's own, which weighs a small tumor as much as a large one."""
    bce = F.binary_cross_entropy_with_logits(logits, target)
    p = torch.sigmoid(logits)
    dims = tuple(range(1, p.ndim)) if per_patch_dice else tuple(range(p.ndim))
    inter = (p * target).sum(dims)
    soft_dice = 1 - (2 * inter + 1) / (p.sum(dims) + target.sum(dims) + 1)
    return bce + soft_dice.mean()


class PatchSampler:
    """Random training patches with the tumor : background ratio and augmentation of the config."""

    def __init__(self, cases: list[TaskCase], cfg: TrainerConfig, scales: np.ndarray, rng: np.random.Generator):
        self.cases, self.cfg, self.rng, self.kind = cases, cfg, rng, cfg.input_kind
        self.scales = scales if self.kind != "phases" else None  # the transformer scales its own inputs
        self.fg = [np.argwhere(c.y > 0) for c in cases]

    def _center(self, i: int) -> np.ndarray:
        r, tf = self.rng.random(), self.cfg.tumor_fraction
        if r < tf and len(self.fg[i]):
            return self.fg[i][self.rng.integers(len(self.fg[i]))]
        if r < tf + (1 - tf) * self.cfg.hot_fraction and len(self.cases[i].hot):
            return self.cases[i].hot[self.rng.integers(len(self.cases[i].hot))]
        return np.array([self.rng.integers(s) for s in self.cases[i].y.shape])

    def _crop(self, c: TaskCase, center: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        p = self.cfg.patch
        x = np.zeros((c.x.shape[0], p, p, p), np.float32)
        y = np.zeros((p, p, p), np.float32)
        src, dst = [], []
        for ax, s in enumerate(c.y.shape):
            lo = int(center[ax]) - p // 2 + int(self.rng.integers(-p // 4, p // 4 + 1))
            a, b = max(lo, 0), min(lo + p, s)
            src.append(slice(a, b))
            dst.append(slice(a - lo, b - lo))
        x[(slice(None),) + tuple(dst)] = c.x[(slice(None),) + tuple(src)]
        y[tuple(dst)] = c.y[tuple(src)]
        if self.scales is not None:
            x /= self.scales[:, None, None, None]
        return x, y

    def _phase_subset(self, t: int) -> np.ndarray:
        """Phase dropout: the first post-contrast phase plus a random subset of the others."""
        keep = np.ones(t, bool)
        if t > 1 and self.rng.random() < self.cfg.augment.get("phase_dropout", 0.0):
            k = int(self.rng.integers(1, t + 1))
            others = self.rng.permutation(np.arange(1, t))[: k - 1]
            keep[:] = False
            keep[0] = True
            keep[others] = True
        return keep

    def _scale_enhancement(self, x: np.ndarray, k: np.float32) -> np.ndarray:
        """Enhancement (post - pre) times k; the pre-contrast signal stays as it is."""
        if self.kind == "phases":  # channels [phase_t, phase_t - pre] per phase, unscaled
            x = x.reshape(-1, 2, *x.shape[1:])
            x = np.stack([x[:, 0] + (k - 1) * x[:, 1], k * x[:, 1]], axis=1)
            return x.reshape(-1, *x.shape[2:])
        if self.kind == "hirsch":
            return scale_hirsch_enhancement(x, k, self.scales)
        return x  # the breast task sees the pre-contrast image only

    def sample(self, batch: int) -> dict:
        aug = self.cfg.augment
        xs, ys, keeps, times = [], [], [], []
        for _ in range(batch):
            i = int(self.rng.integers(len(self.cases)))
            c = self.cases[i]
            x, y = self._crop(c, self._center(i))
            if self.kind == "phases":
                keep = self._phase_subset(len(c.times))
                # Present phases first (the network identifies phases by their times, not slots).
                idx = np.nonzero(keep)[0]
                x = x.reshape(len(c.times), 2, *x.shape[1:])[idx].reshape(-1, *x.shape[1:])
                keeps.append(len(idx))
                times.append(c.times[idx])
                gains = self.rng.uniform(1 - aug.get("phase_gain", 0.0), 1 + aug.get("phase_gain", 0.0), len(idx))
                x *= np.repeat(gains, 2).astype(np.float32)[:, None, None, None]
            if aug.get("enhancement_gain", 0.0) and self.rng.random() < 0.5:
                g = aug["enhancement_gain"]
                x = self._scale_enhancement(x, np.float32(self.rng.uniform(1 - g, 1 + g)))
            if self.rng.random() < aug.get("flip_lr", 0.0):
                x, y = x[..., ::-1], y[..., ::-1]
            if self.rng.random() < aug.get("flip_si", 0.0):
                x, y = x[:, ::-1], y[::-1]
            lo, hi = aug.get("gain", [1.0, 1.0])
            x = x * np.float32(self.rng.uniform(lo, hi))
            xs.append(np.ascontiguousarray(x))
            ys.append(np.ascontiguousarray(y))
        out = {}
        if self.kind == "phases":
            t = max(keeps)
            p = self.cfg.patch
            xb = np.zeros((batch, 2 * t, p, p, p), np.float32)
            mask = np.zeros((batch, t), bool)
            tb = np.zeros((batch, t), np.float32)
            for b, (x, n, tt) in enumerate(zip(xs, keeps, times)):
                xb[b, : 2 * n] = x
                mask[b, :n] = True
                tb[b, :n] = tt
                tb[b, n:] = tt[-1] + 1.5 * np.arange(1, t - n + 1)
            out.update(x=torch.from_numpy(xb), phase_mask=torch.from_numpy(mask), times=torch.from_numpy(tb))
        else:
            out["x"] = torch.from_numpy(np.stack(xs))
        out["y"] = torch.from_numpy(np.stack(ys))[:, None]
        if self.rng.random() < aug.get("rotate_p", 0.0):
            out["x"], out["y"] = _rotate_si(out["x"], out["y"], float(self.rng.uniform(-1, 1)) *
                                            math.radians(aug.get("rotate_deg", 0.0)))
        return out


def _rotate_si(x: torch.Tensor, y: torch.Tensor, angle: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotate a batch about the cranio-caudal (z) axis, i.e. in the axial (y, x) plane."""
    c, s = math.cos(angle), math.sin(angle)
    # affine_grid works in (x, y, z) order of the last three axes.
    theta = torch.tensor([[c, -s, 0, 0], [s, c, 0, 0], [0, 0, 1, 0]], dtype=x.dtype).expand(x.shape[0], 3, 4)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    xr = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    yr = (F.grid_sample(y, grid, mode="bilinear", padding_mode="zeros", align_corners=False) > 0.5).to(y.dtype)
    return xr, yr


# ------------------------------------------------------------------------------ models
def build_model(cfg: TrainerConfig, scales: np.ndarray) -> torch.nn.Module:
    from ..models.nets import build_network

    arch = dict(cfg.architecture)
    if arch["type"] == "unet3d":
        arch.setdefault("in_channels", {"pre": 1, "hirsch": 3}[cfg.input_kind])
    net = build_network(arch)
    if arch["type"] == "st_transformer":
        net.input_scale.copy_(torch.as_tensor(scales, dtype=torch.float32))
    return net


def load_initial_model(cfg: TrainerConfig) -> tuple[torch.nn.Module, np.ndarray]:
    """Network and input scales from the model card ``cfg.init_from`` (weights SHA-256 checked).

    Fine-tuning keeps the pretrained model's input normalization: the weights were learned
    for it. The architecture in the card must equal the config's.
    """
    from ..models.cards import read_card
    from ..models.network import load_network

    card_path = Path(cfg.init_from)
    card = read_card(card_path)
    arch = dict(cfg.architecture)
    if arch["type"] == "unet3d":
        arch.setdefault("in_channels", {"pre": 1, "hirsch": 3}[cfg.input_kind])
    if card["architecture"] != arch:
        raise InputError(f"the model to fine-tune has architecture {card['architecture']}, the config {arch}",
                         card_path, "copy the card's architecture block into the config")
    net, card = load_network(card_path)
    norm = card.get("normalization", {})
    if cfg.input_kind == "phases":
        scales = net.input_scale.numpy().copy()
    elif cfg.input_kind == "hirsch":
        scales = np.asarray(norm.get("channel_scale", [1.0, 1.0, 1.0]), np.float32)
    else:
        scales = np.ones(1, np.float32)
    return net, scales


def _forward(net, batch: dict, device: torch.device) -> torch.Tensor:
    x = batch["x"].to(device, non_blocking=True)
    if "phase_mask" in batch:
        return net(x, batch["phase_mask"].to(device), batch["times"].to(device))
    return net(x)


def _probabilities(net, cases: list[TaskCase], cfg: TrainerConfig, scales: np.ndarray, device):
    """(case, whole-volume probability) of every case, by the package's one whole-volume inference."""
    from ..models.inference import phase_kwargs, predict_probability

    for c in cases:
        x = c.x.astype(np.float32)
        if cfg.input_kind == "hirsch":
            x = x / scales[:, None, None, None]
        kwargs = phase_kwargs(c.times) if cfg.input_kind == "phases" else None
        yield c, predict_probability(net, x, device=device, net_kwargs=kwargs)


def validate(net, cases: list[TaskCase], cfg: TrainerConfig, scales: np.ndarray, device,
             thresholds: tuple[float, ...] | None = None) -> list[float] | dict[float, list[float]]:
    """Dice of every validation case (whole volume, gated by its breast mask when it has one) at
    ``cfg.threshold``; with *thresholds*: {threshold: Dice of every case}, one inference per case."""
    was_training = net.training
    ts = (cfg.threshold,) if thresholds is None else tuple(thresholds)
    out = {t: [] for t in ts}
    for c, prob in _probabilities(net, cases, cfg, scales, device):
        for t in ts:
            pred = prob >= t
            if c.gate is not None:
                pred &= c.gate > 0
            out[t].append(dice(pred, c.y > 0))
    net.train(was_training)
    return out[cfg.threshold] if thresholds is None else out


def tune_threshold(net, cases: list[TaskCase], cfg: TrainerConfig, scales: np.ndarray, device,
                   candidates=None) -> tuple[float, dict[str, float]]:
    """The candidate threshold with the best median validation Dice, and every candidate's median."""
    ts = tuple(candidates or cfg.threshold_candidates)
    by_t = validate(net, cases, cfg, scales, device, thresholds=ts)
    medians = {f"{t:g}": float(np.median(by_t[t])) for t in ts}
    best = max(ts, key=lambda t: medians[f"{t:g}"])
    return best, medians


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
    device = _pick_device(cfg.device, int(os.environ.get("LOCAL_RANK", "0")))
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
        (out_dir / "config.json").write_text(json.dumps(asdict(cfg), indent=2) + "\n")

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
                logits = _forward(model, batch, device)
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
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save({"model": net.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                "scaler": scaler.state_dict(), "best_state": best_state, "state_json": json.dumps(state)}, tmp)
    os.replace(tmp, path)


def write_model(cfg: TrainerConfig, out_dir: Path, weights: dict, n_params: int, scales: np.ndarray,
                state: dict, seconds: float, threshold: float | None = None) -> dict:
    """``<name>.safetensors`` + the model card ``<name>.json`` (the format :mod:`..models.cards` reads)."""
    from ..models.weights import save_state_dict

    weights_name = f"{cfg.name}.safetensors"
    digest = save_state_dict(weights, out_dir / weights_name)
    arch = dict(cfg.architecture)
    if arch["type"] == "unet3d":
        arch.setdefault("in_channels", {"pre": 1, "hirsch": 3}[cfg.input_kind])
    data = cfg.data
    families = None
    if data.get("source") == "phantom":
        def per_family(spec):
            return spec if isinstance(spec, dict) else {data.get("family", "phantom"): spec}
        families = per_family(data["train_seeds"])
        trained_on = ("synthetic DCE exams only (BreastTumorSegLib.training.phantom families: "
                      + "; ".join(f"{f} seeds {s}" for f, s in families.items())
                      + f"; phantom size '{data.get('size', 'small')}'); validation: "
                      + "; ".join(f"{f} seeds {s}" for f, s in per_family(data["val_seeds"]).items()))
    else:
        trained_on = f"dataset folder {data.get('root')} (fold {data.get('fold', 0)} of {data.get('folds', 5)})"
    card = {"name": cfg.name, "version": cfg.version, "task": "tumor" if cfg.task == "tumor" else "breast_mask",
            "description": cfg.description or f"{arch['type']} trained on {trained_on}",
            "architecture": arch, "parameters": n_params, "weights": weights_name, "sha256": digest}
    if families is not None:
        card["families_trained_on"] = sorted(families)
    if cfg.breast_model and cfg.task == "tumor":
        card["breast_model"] = cfg.breast_model
    if cfg.input_kind == "phases":
        card["inputs"] = {"kind": "phases", "names": "[phase_t, phase_t - pre] for every post-contrast phase t",
                          "spacing_mm": cfg.spacing_mm, "phase_mask": True, "times": True,
                          "orientation": "LPS (axes permuted/flipped from the acquisition, no rotation)",
                          "registration": "rigid then affine to the pre-contrast phase"}
        card["normalization"] = {"method": "every phase divided by the 95th percentile of the pre-contrast image "
                                           "inside the breast mask; inside the network the phase channels are "
                                           "divided by input_scale[0] and the subtractions by input_scale[1]",
                                 "input_scale": [round(float(s), 6) for s in scales]}
    elif cfg.input_kind == "hirsch":
        card["inputs"] = {"kind": "hirsch", "names": ["t1c", "dce_in", "dce_out"], "spacing_mm": cfg.spacing_mm,
                          "orientation": "LPS (axes permuted/flipped from the acquisition, no rotation)",
                          "registration": "rigid then affine to the pre-contrast phase"}
        card["normalization"] = {"method": "divide every phase by the 95th percentile of the pre-contrast image "
                                           "inside the breast mask, then each channel by channel_scale",
                                 "channel_scale": [round(float(s), 6) for s in scales]}
    else:
        card["inputs"] = {"kind": "pre", "names": ["pre"], "spacing_mm": cfg.breast_spacing_mm,
                          "orientation": "LPS (axes permuted/flipped from the acquisition, no rotation)"}
        card["normalization"] = {"method": "pre-contrast divided by the 95th percentile of its voxels > 0"}
    card["postprocess"] = {"threshold": cfg.threshold if threshold is None else threshold, "mode": "absolute",
                           "min_lesion_ml": 0.05}
    card["training"] = {"data": trained_on, "config": asdict(cfg), "epochs_run": state["epoch"],
                        "steps": state["step"], "seconds": round(seconds, 1), "torch": torch.__version__,
                        "script": "python -m BreastTumorSegLib.training.trainer --config <config>"}
    card["validation"] = dict(state["best"])
    card["intended_use"] = "demonstration, tests and tutorials of the BreastTumorSeg extension"
    if data.get("source") == "phantom":
        card["limitations"] = ("trained on synthetic phantoms only; it has never seen a real patient and is not "
                               "for clinical use; expect poor results on real exams until trained on real data")
    (out_dir / f"{cfg.name}.json").write_text(json.dumps(card, indent=2) + "\n")
    return card


THRESHOLD_CANDIDATES = (0.3, 0.4, 0.5, 0.6, 0.7)


def retune_card(card_path: str | os.PathLike, log=print) -> dict:
    """Re-tune the probability threshold of a card this trainer wrote, on its validation data."""
    from .datasets import load_split

    card_path = Path(card_path)
    card = json.loads(card_path.read_text())
    try:
        cfg = TrainerConfig.from_dict(dict(card["training"]["config"]))
    except (KeyError, TypeError, InputError):
        raise InputError("the card holds no config of this trainer", card_path,
                         "retrain the model with --config, then retune its card") from None
    cfg.init_from = str(card_path)  # the card's own verified weights and input scales
    net, scales = load_initial_model(cfg)
    device = _pick_device(cfg.device, 0)
    keys = {"pre_coarse", "breast_coarse"} if cfg.task == "breast" else {"phases", "times", "label", "breast"}
    _, val = load_split(cfg.data, cfg.spacing_mm, resolve_cache_dir(cfg, card_path.parent), log,
                        cfg.breast_spacing_mm, keys)
    best, medians = tune_threshold(net, task_cases(val, cfg.input_kind), cfg, scales, device,
                                   cfg.threshold_candidates or THRESHOLD_CANDIDATES)
    card["postprocess"]["threshold"] = best
    card["validation"]["threshold_tuning"] = {"median_dice_by_threshold": medians, "chosen": best}
    card_path.write_text(json.dumps(card, indent=2) + "\n")
    log(f"threshold {best} (median validation Dice by threshold: {medians})")
    return card


# ------------------------------------------------------------------------------ command line
def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m BreastTumorSegLib.training.trainer",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--config", type=Path, help="JSON or TOML file (keys of TrainerConfig), e.g. "
                   "configs/unet-demo.json")
    p.add_argument("--output", type=Path, help="run folder: checkpoint, logs, weights, card")
    p.add_argument("--resume", action="store_true", help="continue from <output>/checkpoint.pt")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config entry, e.g. --set epochs=5 --set data.fold=2")
    p.add_argument("--retune", type=Path, default=None, metavar="CARD",
                   help="only re-tune the threshold of a model this trainer wrote, on its validation data")
    a = p.parse_args(argv)
    try:
        if a.retune:
            retune_card(a.retune)
            return 0
        if a.config is None or a.output is None:
            p.error("--config and --output are required for training")
        cfg = load_config(a.config, a.set)
    except InputError as exc:  # a bad config or card: one message, exit code 2, nothing written
        p.error(str(exc))
    if (a.output / "checkpoint.pt").exists() and not a.resume:
        p.error(f"{a.output} holds a training run already; add --resume to continue it, or choose another --output")
    try:
        train(cfg, a.output, resume=a.resume, log=lambda *m: print(*m, flush=True))
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
