"""Per-breast malignancy classifiers: model cards with ``"task": "classification"``.

A classification card lies beside its weights in a models folder like every network
(:mod:`.cards`); :func:`classification_models` lists them and :func:`load_classifier` loads one by
name. The shipped ``breastcls-demo`` is a standardisation + logistic regression over the
features of enhancing candidates (:data:`FEATURES`, computed by
:mod:`BreastTumorSegLib.engine.classify`), applied with numpy (:class:`.logistic.LogisticModel`).

``monai:PATH`` (a MONAI bundle) is recognised and refused with one line saying why and what to
use instead: a classification bundle's input convention (breast crop, channels, orientation)
differs from bundle to bundle, so there is no safe generic mapping from a DCE exam yet; a
segmentation bundle segments with ``segment --model monai:PATH``.
"""
from __future__ import annotations

import json
from pathlib import Path

from ..core.errors import InputError, ModelError
from .cards import iter_cards
from .logistic import LogisticModel

CLASSIFICATION_TASK = "classification"
DEFAULT_CLASSIFIER = "breastcls-demo"
# Features of one enhancing candidate (engine/classify.py computes them; this order is the card's).
FEATURES = ("log_volume_ml", "log_elongation", "roundness", "solidity", "pe_early_median", "pe_early_p90",
            "contrast_to_background", "washout_frac", "plateau_frac", "persistent_frac", "log_ser_median",
            "rim_ratio", "pe_cv", "background_pe")


class BreastClassifier(LogisticModel):
    """Candidate-level logistic model; a breast's probability is its most suspicious candidate's."""

    @property
    def model_id(self) -> str:
        return f"{self.card.get('name', '?')}@{str(self.card.get('sha256', ''))[:8]}"

    @property
    def no_candidate_probability(self) -> float:
        """P(malignant) of a breast without any enhancing candidate (from the card's training counts)."""
        return float(self.card.get("no_candidate_probability", 0.02))


def classification_models(extra_dirs=None) -> dict[str, Path]:
    """Name -> card path of every installed classification model (first found wins)."""
    out: dict[str, Path] = {}
    for card_path, card in iter_cards(extra_dirs):
        if card.get("task") == CLASSIFICATION_TASK:
            out.setdefault(card["name"], card_path)
    return out


def load_classifier(name: str = DEFAULT_CLASSIFIER, extra_dirs=None) -> BreastClassifier:
    """The named classification model (weights verified against the card's SHA-256)."""
    if name.startswith("monai:"):
        _refuse_monai(Path(name.split(":", 1)[1]))
    models = classification_models(extra_dirs)
    if name not in models:
        raise ModelError(f"unknown classification model '{name}'. Available: {', '.join(sorted(models)) or 'none'}. "
                         "Fix: pick one of these with --model, or add a folder with --models-dir")
    return BreastClassifier.read(models[name], CLASSIFICATION_TASK, FEATURES, "classification model")


def _refuse_monai(path: Path) -> None:
    from .byom.monai_bundle import METADATA, resolve_bundle

    root = resolve_bundle(path)  # one line when it is not a bundle
    try:
        meta = json.loads((root / METADATA).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"cannot read {METADATA} ({exc})", str(root), "check the bundle's files") from None
    pred = ((meta.get("network_data_format") or {}).get("outputs") or {}).get("pred") or {}
    kind = "a segmentation" if pred.get("type") == "image" else "a classification"
    raise InputError(f"MONAI bundle with {kind} output: per-breast classification with MONAI bundles is not "
                     "supported in this version (each bundle crops, orders channels and orients differently)",
                     str(root), "use --model breastcls-demo, or segment with --model monai:PATH and read the lesion table")
