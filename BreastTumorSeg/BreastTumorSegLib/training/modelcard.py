"""What a finished run leaves: ``<name>.safetensors`` and its model card (:func:`write_model`);
:func:`retune_card` re-tunes the threshold of such a card on its validation data
(``breasttumorseg train --retune CARD``)."""
from __future__ import annotations

import os
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from ..core.errors import InputError
from ..io.atomic import write_json
from .config import TrainerConfig, resolve_cache_dir
from .distributed import pick_device
from .patches import task_cases
from .validation import load_initial_model, tune_threshold


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
                        "script": "breasttumorseg train --config <config>"}
    card["validation"] = dict(state["best"])
    card["intended_use"] = "demonstration, tests and tutorials of the BreastTumorSeg extension"
    if data.get("source") == "phantom":
        card["limitations"] = ("trained on synthetic phantoms only; it has never seen a real patient and is not "
                               "for clinical use; expect poor results on real exams until trained on real data")
    write_json(out_dir / f"{cfg.name}.json", card)
    return card


THRESHOLD_CANDIDATES = (0.3, 0.4, 0.5, 0.6, 0.7)


def retune_card(card_path: str | os.PathLike, log=print) -> dict:
    """Re-tune the probability threshold of a card this trainer wrote, on its validation data."""
    from ..models.cards import read_card
    from .datasets import load_split

    card_path = Path(card_path)
    card = read_card(card_path)  # ModelError, one line, for a card that cannot be read
    try:
        cfg = TrainerConfig.from_dict(dict(card["training"]["config"]))
    except (KeyError, TypeError, InputError):
        raise InputError("the card holds no config of this trainer", card_path,
                         "retrain the model with --config, then retune its card") from None
    cfg.init_from = str(card_path)  # the card's own verified weights and input scales
    net, scales = load_initial_model(cfg)
    device = pick_device(cfg.device, 0)
    keys = {"pre_coarse", "breast_coarse"} if cfg.task == "breast" else {"phases", "times", "label", "breast"}
    _, val = load_split(cfg.data, cfg.spacing_mm, resolve_cache_dir(cfg, card_path.parent), log,
                        cfg.breast_spacing_mm, keys)
    best, medians = tune_threshold(net, task_cases(val, cfg.input_kind), cfg, scales, device,
                                   cfg.threshold_candidates or THRESHOLD_CANDIDATES)
    card["postprocess"]["threshold"] = best
    card["validation"]["threshold_tuning"] = {"median_dice_by_threshold": medians, "chosen": best}
    write_json(card_path, card)
    log(f"threshold {best} (median validation Dice by threshold: {medians})")
    return card
