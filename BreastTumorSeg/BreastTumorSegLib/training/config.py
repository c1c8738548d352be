"""The training config: :class:`TrainerConfig` (every key of a JSON/TOML training file), its
checks (types, ranges, architecture, an estimate of the memory a patch batch needs) and
:func:`load_config` with ``--set KEY=VALUE`` overrides. Read by :mod:`.trainer`."""
from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch

from ..core.errors import InputError


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
        from ..core.values import check_device_name

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
            data = tomllib.loads(path.read_text(encoding="utf-8-sig"))
        else:  # utf-8-sig: a byte-order mark (Notepad's "UTF-8 with BOM") is read as the other tables are
            data = json.loads(path.read_text(encoding="utf-8-sig"))
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
