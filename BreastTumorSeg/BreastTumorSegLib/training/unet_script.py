"""Training the demo U-Net on synthetic phantoms (seeded, reproducible).

    python -m BreastTumorSegLib.training --output BreastTumorSeg/BreastTumorSegLib/models \
        --name unet-demo --train-seeds 1000-1039 --val-seeds 2000-2005 --steps 1500

The same preprocessing as inference is used for every case (motion correction, classical
breast mask, p95 harmonization, canonical LPS grid at the model spacing), so that the network
sees at training time exactly what it will see in use. Preprocessed cases are cached as
``.npz`` files so repeated runs do not regenerate phantoms.

Sampling after Hirsch et al.: patches centred on tumor with probability ``tumor_fraction``
(default 1/3; the paper used 1:4), the rest on background, half of which is drawn from the
most enhancing non-tumor voxels (heart, vessels, background parenchymal enhancement).
Loss: binary cross-entropy + soft Dice. Optimiser: AdamW with cosine decay.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch
import torch.nn.functional as F

from ..preprocess.breast_region import breast_mask as compute_breast_mask
from .datasets import parse_seeds
from ..preprocess.harmonize import to_model_grid
from ..core.imageutil import resample_to
from ..evaluation.metrics import dice


@dataclass
class TrainConfig:
    name: str = "unet-demo"
    train_seeds: list[int] = field(default_factory=lambda: list(range(1000, 1040)))
    val_seeds: list[int] = field(default_factory=lambda: list(range(2000, 2006)))
    spacing_mm: float = 1.5
    base: int = 8
    levels: int = 4
    patch: int = 64
    batch: int = 4
    steps: int = 1500
    lr: float = 2e-3
    weight_decay: float = 1e-4
    tumor_fraction: float = 0.33
    val_every: int = 250
    seed: int = 0
    threads: int = 2
    cache_dir: str = ".cache/phantom_cases"
    phantom_size: str = "small"
    per_patch_dice: bool = False  # soft Dice per patch (small tumors weigh as much as large ones)
    enhancement_gain: float = 0.0  # augmentation: enhancement scaled by 1 +/- this (half the patches)
    init_from: str = ""  # model card whose weights (SHA-256 checked) and channel scales start the run


# ------------------------------------------------------------------------------- data
def preprocess_case(seed: int, cfg: TrainConfig) -> dict:
    """Phantom → (inputs on the model grid, tumor label on the same grid), cropped to the breasts."""
    from .phantom import make_phantom

    ph = make_phantom(seed, size=cfg.phantom_size)
    # Motion is corrected with the phantom's known transforms (an ideal registration): the same
    # result the registration stage reaches within a voxel (Testing/test_registration.py), at a
    # fraction of the cost, so the network learns from exactly aligned labels.
    ref = ph.exam.reference
    exam = ph.exam.with_phases([p if k == 0 else sitk.Resample(p, ref, ph.motion[k], sitk.sitkLinear, 0.0)
                                for k, p in enumerate(ph.exam.phases)])
    bmask = compute_breast_mask(exam.pre)
    mg = to_model_grid(exam, cfg.spacing_mm, bmask)
    label = sitk.GetArrayFromImage(resample_to(ph.tumor_mask, mg.grid, sitk.sitkNearestNeighbor)) > 0
    bm = sitk.GetArrayFromImage(resample_to(bmask, mg.grid, sitk.sitkNearestNeighbor)) > 0
    margin = int(round(16.0 / cfg.spacing_mm))
    if bm.any():
        idx = np.nonzero(bm)
        crop = tuple(slice(max(0, int(i.min()) - margin), min(s, int(i.max()) + margin + 1))
                     for i, s in zip(idx, bm.shape))
    else:
        crop = tuple(slice(0, s) for s in bm.shape)
    return {"inputs": mg.inputs[(slice(None),) + crop].astype(np.float32),
            "label": label[crop].astype(np.uint8), "breast": bm[crop].astype(np.uint8)}


def load_cases(seeds: list[int], cfg: TrainConfig, log=print) -> list[dict]:
    cache = Path(cfg.cache_dir) / f"sp{cfg.spacing_mm:g}_{cfg.phantom_size}"
    cache.mkdir(parents=True, exist_ok=True)
    cases = []
    for n, s in enumerate(seeds):
        f = cache / f"case_{s:05d}.npz"
        if f.exists():
            with np.load(f) as z:
                cases.append({k: z[k] for k in z.files})
        else:
            t0 = time.perf_counter()
            c = preprocess_case(s, cfg)
            tmp = f.with_suffix(".tmp.npz")
            np.savez_compressed(tmp, **c)
            os.replace(tmp, f)
            cases.append(c)
            log(f"  prepared phantom {s} ({n + 1}/{len(seeds)}) in {time.perf_counter() - t0:.1f} s, "
                f"shape {c['inputs'].shape[1:]}, tumor voxels {int(c['label'].sum())}")
    return cases


def channel_scales(cases: list[dict]) -> list[float]:
    """Per-channel 99.5th percentile of |value| inside the breasts, so inputs are O(1)."""
    out = []
    for ch in range(cases[0]["inputs"].shape[0]):
        vals = np.concatenate([np.abs(c["inputs"][ch][c["breast"] > 0]) for c in cases])
        out.append(float(max(np.percentile(vals, 99.5), 1e-3)))
    return out


class PatchSampler:
    def __init__(self, cases: list[dict], patch: int, tumor_fraction: float, rng: np.random.Generator,
                 enhancement_gain: float = 0.0):
        self.cases, self.patch, self.tf, self.rng = cases, patch, tumor_fraction, rng
        self.enhancement_gain = enhancement_gain
        self.tumor_idx = [np.argwhere(c["label"] > 0) for c in cases]
        self.hot_idx = []
        for c in cases:
            dce_in = c["inputs"][1]
            cand = (c["label"] == 0)
            thr = np.percentile(dce_in[cand], 99.0) if cand.any() else np.inf
            self.hot_idx.append(np.argwhere(cand & (dce_in >= thr)))

    def _center(self, i: int) -> np.ndarray:
        c = self.cases[i]
        r = self.rng.random()
        if r < self.tf and len(self.tumor_idx[i]):
            return self.tumor_idx[i][self.rng.integers(len(self.tumor_idx[i]))]
        if r < self.tf + (1 - self.tf) / 2 and len(self.hot_idx[i]):
            return self.hot_idx[i][self.rng.integers(len(self.hot_idx[i]))]
        return np.array([self.rng.integers(s) for s in c["label"].shape])

    def sample(self, batch: int, scales: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        xs, ys = [], []
        p = self.patch
        for _ in range(batch):
            i = int(self.rng.integers(len(self.cases)))
            c = self.cases[i]
            center = self._center(i)
            x = np.zeros((c["inputs"].shape[0], p, p, p), np.float32)
            y = np.zeros((p, p, p), np.float32)
            src, dst = [], []
            for ax, s in enumerate(c["label"].shape):
                lo = int(center[ax]) - p // 2 + int(self.rng.integers(-p // 4, p // 4 + 1))
                a, b = max(lo, 0), min(lo + p, s)
                src.append(slice(a, b))
                dst.append(slice(a - lo, b - lo))
            x[(slice(None),) + tuple(dst)] = c["inputs"][(slice(None),) + tuple(src)]
            y[tuple(dst)] = c["label"][tuple(src)]
            x /= scales[:, None, None, None]
            # Augmentation: left-right flip (breasts are mirror images), intensity gain and offset.
            if self.rng.random() < 0.5:
                x, y = x[..., ::-1], y[..., ::-1]
            if self.rng.random() < 0.3:  # anterior-posterior flip is not anatomical; superior-inferior is
                x, y = x[:, ::-1], y[::-1]
            if self.enhancement_gain and self.rng.random() < 0.5:
                # Stronger or weaker contrast uptake (dose, relaxivity, cardiac output): the
                # enhancement scales by k in every channel, T1c = pre + enhancement included.
                k = np.float32(self.rng.uniform(1 - self.enhancement_gain, 1 + self.enhancement_gain))
                x = scale_hirsch_enhancement(x, k, scales)
            x = x * np.float32(self.rng.uniform(0.85, 1.15))
            xs.append(np.ascontiguousarray(x))
            ys.append(np.ascontiguousarray(y))
        return torch.from_numpy(np.stack(xs)), torch.from_numpy(np.stack(ys))[:, None]


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


# ------------------------------------------------------------------------------- validation
def validate(net, cases: list[dict], scales: np.ndarray, threshold: float = 0.5) -> list[float]:
    from ..models.inference import predict_probability

    net.eval()
    out = []
    for c in cases:
        x = c["inputs"] / scales[:, None, None, None]
        prob = predict_probability(net, x, device="cpu")
        pred = (prob >= threshold) & (c["breast"] > 0)
        out.append(dice(pred, c["label"]))
    net.train()
    return out


THRESHOLD_CANDIDATES = (0.3, 0.4, 0.5, 0.6, 0.7)


def tune_threshold(net, cases: list[dict], scales: np.ndarray) -> tuple[float, dict[str, float]]:
    """Probability threshold with the best median validation Dice (validation cases only)."""
    medians = {f"{t:.1f}": float(np.median(validate(net, cases, scales, threshold=t))) for t in THRESHOLD_CANDIDATES}
    best = max(THRESHOLD_CANDIDATES, key=lambda t: medians[f"{t:.1f}"])
    return best, medians


def retune_card(card_path: Path, log=print) -> dict:
    """Re-tune the post-processing threshold of a trained model on its validation phantoms."""
    from ..models.network import NetworkSegmenter

    seg = NetworkSegmenter.from_card(card_path)
    card = json.loads(Path(card_path).read_text())
    tc = card["training"]["config"]
    cfg = TrainConfig(**{k: v for k, v in tc.items() if k in TrainConfig.__dataclass_fields__})
    val_cases = load_cases(cfg.val_seeds, cfg, log)
    scales = np.asarray(card["normalization"]["channel_scale"], np.float32)
    best, medians = tune_threshold(seg.net, val_cases, scales)
    card["postprocess"]["threshold"] = best
    card["validation"]["threshold_tuning"] = {"median_dice_by_threshold": medians, "chosen": best}
    Path(card_path).write_text(json.dumps(card, indent=2) + "\n")
    log(f"threshold {best} (median validation Dice by threshold: {medians})")
    return card


# ------------------------------------------------------------------------------- training
def _init_from_card(card_path: Path, cfg: TrainConfig) -> tuple[torch.nn.Module, np.ndarray]:
    """A trained U-Net (verified weights) to continue from, and its channel scales.

    The scales stay those of the starting model: its weights were learned for them.
    """
    from ..core.errors import InputError
    from ..models.registry import read_card
    from ..models.network import load_network

    arch = read_card(card_path).get("architecture", {})
    if arch.get("type") != "unet3d" or (arch.get("base"), arch.get("levels")) != (cfg.base, cfg.levels):
        raise InputError(f"the model to continue from is {arch}, this run a U-Net with base {cfg.base} and "
                         f"{cfg.levels} levels", card_path, "use the same --base and --levels as that model")
    net, card = load_network(card_path)
    return net, np.asarray(card["normalization"]["channel_scale"], np.float32)


def train(cfg: TrainConfig, out_dir: Path, log=print) -> dict:
    from ..models.nets.unet import UNet3D, count_parameters
    from ..models.weights import save_state_dict

    torch.manual_seed(cfg.seed)
    torch.set_num_threads(cfg.threads)
    rng = np.random.default_rng(cfg.seed)
    log(f"preparing {len(cfg.train_seeds)} training and {len(cfg.val_seeds)} validation phantoms")
    train_cases = load_cases(cfg.train_seeds, cfg, log)
    val_cases = load_cases(cfg.val_seeds, cfg, log)
    if cfg.init_from:
        net, scales = _init_from_card(Path(cfg.init_from), cfg)
        log(f"continuing from {cfg.init_from}")
    else:
        net = UNet3D(in_channels=3, base=cfg.base, levels=cfg.levels)
        scales = np.asarray(channel_scales(train_cases), np.float32)
    # channels-last 3D lets oneDNN use its fast convolution kernels for these small channel counts
    # (about twice as fast per step on a 2-core CPU).
    net = net.to(memory_format=torch.channels_last_3d)
    log(f"U-Net: {count_parameters(net):,} parameters; channel scales {scales.round(4).tolist()}")
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=cfg.steps, pct_start=0.05)
    sampler = PatchSampler(train_cases, cfg.patch, cfg.tumor_fraction, rng, cfg.enhancement_gain)
    best = {"dice_median": -1.0}
    best_state = None
    history = []
    t0 = time.perf_counter()
    net.train()
    for step in range(1, cfg.steps + 1):
        x, y = sampler.sample(cfg.batch, scales)
        loss = loss_fn(net(x.to(memory_format=torch.channels_last_3d)), y, cfg.per_patch_dice)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        history.append({"step": step, "loss": float(loss.detach())})
        if step % 25 == 0:
            log(f"step {step}/{cfg.steps} loss {np.mean([h['loss'] for h in history[-25:]]):.4f} "
                f"({(time.perf_counter() - t0) / step:.2f} s/step)")
        if step % cfg.val_every == 0 or step == cfg.steps:
            d = validate(net, val_cases, scales)
            med = float(np.median(d))
            history[-1]["val_dice"] = d
            log(f"  validation Dice median {med:.3f} (per case {np.round(d, 3).tolist()})")
            if med > best["dice_median"]:
                best = {"dice_median": med, "dice_per_case": [round(v, 4) for v in d], "step": step}
                best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
    net.load_state_dict(best_state)
    threshold, medians = tune_threshold(net, val_cases, scales)
    log(f"threshold {threshold} (median validation Dice by threshold: {medians})")
    best["threshold_tuning"] = {"median_dice_by_threshold": medians, "chosen": threshold}
    out_dir.mkdir(parents=True, exist_ok=True)
    weights_name = f"{cfg.name}.safetensors"
    digest = save_state_dict(best_state, out_dir / weights_name)
    card = {
        "name": cfg.name,
        "version": "1",
        "description": "3D U-Net after Hirsch et al. 2022, trained ONLY on synthetic DCE phantoms "
                       "(BreastTumorSegLib.phantom). A demonstration model: it has never seen a real "
                       "patient and is not for clinical use.",
        "architecture": {"type": "unet3d", "in_channels": 3, "out_channels": 1, "base": cfg.base,
                         "levels": cfg.levels},
        "parameters": count_parameters(net),
        "weights": weights_name,
        "sha256": digest,
        "inputs": {"kind": "hirsch", "names": ["t1c", "dce_in", "dce_out"], "spacing_mm": cfg.spacing_mm,
                   "orientation": "LPS (axes permuted/flipped from the acquisition, no rotation)",
                   "registration": "rigid then affine to the pre-contrast phase"},
        "normalization": {"method": "divide every phase by the 95th percentile of the pre-contrast image "
                                    "inside the breast mask, then each channel by channel_scale",
                          "channel_scale": [round(float(s), 6) for s in scales]},
        "postprocess": {"threshold": threshold, "mode": "absolute", "min_lesion_ml": 0.05},
        "training": {"data": f"{len(cfg.train_seeds)} synthetic phantoms, seeds "
                             f"{cfg.train_seeds[0]}-{cfg.train_seeds[-1]} (size '{cfg.phantom_size}')",
                     "config": asdict(cfg), "script": "python -m BreastTumorSegLib.training",
                     "seconds": round(time.perf_counter() - t0, 1), "torch": torch.__version__},
        "validation": {"data": f"{len(cfg.val_seeds)} phantoms, seeds {cfg.val_seeds}", **best},
        "intended_use": "demonstration, tests and tutorials of the BreastTumorSeg extension",
        "limitations": "trained on synthetic phantoms only; expect poor results on real exams until "
                       "trained on real data (see the training section of the README)",
    }
    (out_dir / f"{cfg.name}.json").write_text(json.dumps(card, indent=2) + "\n")
    log(f"saved {out_dir / weights_name} (sha256 {digest[:16]}…), best validation Dice {best['dice_median']:.3f}")
    return card


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m BreastTumorSegLib.training", description=__doc__.split("\n\n")[0])
    p.add_argument("--output", type=Path, help="folder for <name>.safetensors and <name>.json")
    p.add_argument("--retune", type=Path, default=None, metavar="CARD",
                   help="only re-tune the threshold of a trained model on its validation phantoms")
    p.add_argument("--name", default=TrainConfig.name)
    p.add_argument("--train-seeds", type=parse_seeds, default=None, help="e.g. 1000-1039")
    p.add_argument("--val-seeds", type=parse_seeds, default=None, help="e.g. 2000-2005")
    for f in ("steps", "batch", "patch", "base", "levels", "val_every", "seed", "threads"):
        p.add_argument(f"--{f.replace('_', '-')}", type=int, default=getattr(TrainConfig, f))
    for f in ("lr", "spacing_mm", "tumor_fraction", "enhancement_gain"):
        p.add_argument(f"--{f.replace('_', '-')}", type=float, default=getattr(TrainConfig, f))
    p.add_argument("--cache-dir", default=TrainConfig.cache_dir)
    p.add_argument("--per-patch-dice", action="store_true", help="soft Dice per patch instead of per batch")
    p.add_argument("--init-from", default="", metavar="CARD",
                   help="start from this trained U-Net (its weights and channel scales) instead of random weights")
    a = p.parse_args(argv)
    if a.retune:
        retune_card(a.retune)
        return 0
    if a.output is None:
        p.error("--output is required for training")
    if not 0 <= a.enhancement_gain < 1:  # as the config trainer: k = 1 +/- g must stay positive
        p.error("--enhancement-gain must be in [0, 1), e.g. 0.3 scales the contrast uptake by 0.7-1.3")
    cfg = TrainConfig(name=a.name, steps=a.steps, batch=a.batch, patch=a.patch, base=a.base, levels=a.levels,
                      val_every=a.val_every, seed=a.seed, threads=a.threads, lr=a.lr, spacing_mm=a.spacing_mm,
                      tumor_fraction=a.tumor_fraction, cache_dir=a.cache_dir, init_from=a.init_from,
                      enhancement_gain=a.enhancement_gain, per_patch_dice=a.per_patch_dice)
    if a.train_seeds:
        cfg.train_seeds = a.train_seeds
    if a.val_seeds:
        cfg.val_seeds = a.val_seeds
    train(cfg, a.output)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
