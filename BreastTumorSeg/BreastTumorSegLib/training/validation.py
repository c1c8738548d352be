"""The network of a run (new, or a trained card to fine-tune) and its validation Dice on whole
cases, by the package's one whole-volume inference; the threshold with the best median Dice."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..core.errors import InputError
from ..evaluation.metrics import dice
from .config import TrainerConfig
from .patches import TaskCase


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


def forward_batch(net, batch: dict, device: torch.device) -> torch.Tensor:
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
