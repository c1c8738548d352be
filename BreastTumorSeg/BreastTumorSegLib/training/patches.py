"""What the network sees in training: each case's input arrays for its task (:class:`TaskCase`,
:func:`input_scales`), the patch sampler with its augmentations, and the loss."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..core.errors import InputError
from ..preprocess.harmonize import post_contrast_slope
from .config import TrainerConfig


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
