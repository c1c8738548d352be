"""Model registry: every segmentation method the CLI and the Slicer panel can pick by name.

A *segmenter* turns a motion-corrected :class:`DCEExam` into a tumor probability map on the
exam's grid. Networks are found through their model cards (:mod:`.cards`: ``<name>.json``
beside ``<name>.safetensors`` in a models folder); classical methods (the kinetic FTV method)
register themselves in code.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Protocol, runtime_checkable

import SimpleITK as sitk

from ..core.errors import ModelError
from ..core.exam import DCEExam
from ..core.progress import Reporter
from .cards import ModelSummary, iter_cards, read_card, summarize

DEFAULT_MODEL = "st-demo"  # generalises best to exam families it was not trained on (README, bench_generalization)


@runtime_checkable
class Segmenter(Protocol):
    """What the pipeline needs from a method."""

    model_id: str  # name plus a short content hash, recorded in every output
    card: dict  # description shown to users (inputs, training data, limits, default threshold)

    def predict(self, exam: DCEExam, breast_mask: sitk.Image | None, reporter: Reporter,
                device: str = "auto", **options) -> sitk.Image:
        """Tumor probability (float32 in [0, 1]) on the exam grid. *exam* is already motion-corrected."""
        ...


@dataclass
class ModelEntry:
    name: str
    description: str
    factory: Callable[..., Segmenter]
    card_path: Path | None = None


# Methods implemented in code: name -> ("module:Class", description)
_CODE_MODELS: dict[str, tuple[str, str]] = {
    "ftv": ("BreastTumorSegLib.models.ftv_segmenter:FTVSegmenter",
            "Functional tumor volume from contrast kinetics (I-SPY PE/SER rules); no trained weights"),
}


def available_models(extra_dirs=None) -> dict[str, ModelEntry]:
    """Every tumor segmentation method that can be used now, by name (first card found wins).

    Cards with another ``task`` (e.g. ``"breast_mask"``, see :mod:`.breast_model`) are skipped.
    """
    out: dict[str, ModelEntry] = {}
    for card_path, card in iter_cards(extra_dirs):
        name = card["name"]
        if name in out or card.get("task", "tumor") != "tumor":
            continue  # first found wins; whole-breast models are not tumor segmenters
        out[name] = ModelEntry(name, card.get("description", ""), _network_factory(card_path), card_path)
    for name, (target, desc) in _CODE_MODELS.items():
        out.setdefault(name, ModelEntry(name, desc, _code_factory(target)))
    return out


def _code_factory(target: str):
    def factory(**kwargs):
        mod_name, cls_name = target.split(":")
        try:
            cls = getattr(importlib.import_module(mod_name), cls_name)
        except (ImportError, AttributeError) as exc:
            raise ModelError(f"method {target} is not available in this installation ({exc})") from None
        return cls(**kwargs)
    return factory


def _network_factory(card_path: Path):
    def factory(**kwargs):
        from .network import NetworkSegmenter  # torch imported only when a network is used
        return NetworkSegmenter.from_card(card_path, **kwargs)
    return factory


def _entry(name: str, extra_dirs=None) -> ModelEntry:
    models = available_models(extra_dirs)
    if name not in models:
        raise ModelError(f"unknown model '{name}'. Available: {', '.join(sorted(models)) or 'none'}. "
                         "Fix: pick one of these with --model, or add a folder with --models-dir")
    return models[name]


def get_segmenter(name: str = DEFAULT_MODEL, extra_dirs=None, **kwargs) -> Segmenter:
    """Instantiate the named method. Ensembles are written ``name1+name2`` (probabilities averaged)."""
    if "+" in name:
        from .network import EnsembleSegmenter
        return EnsembleSegmenter([get_segmenter(n, extra_dirs, **kwargs) for n in name.split("+")])
    return _entry(name, extra_dirs).factory(**kwargs)


def model_card(name: str, extra_dirs=None) -> dict:
    """The named model's card: a network's JSON card, or a code method's own card (building
    the method; one that cannot be built here gets a card with its one-line description)."""
    return _card(_entry(name, extra_dirs))


def _card(entry: ModelEntry) -> dict:
    if entry.card_path is not None:
        return read_card(entry.card_path)
    card = {"name": entry.name, "description": entry.description}
    try:
        card.update(getattr(entry.factory(), "card", {}) or {})
    except Exception:  # a method that cannot be built here still gets its one-line description
        pass
    return card


def model_summaries(extra_dirs=None) -> list[ModelSummary]:
    """A :class:`ModelSummary` of every installed model (with the registry's one-line
    description): networks first, then by name."""
    entries = available_models(extra_dirs)
    summaries = [replace(summarize(_card(e), e.card_path), name=e.name, description=e.description)
                 for e in entries.values()]
    return sorted(summaries, key=lambda s: (not s.needs_torch, s.name))


def needs_torch(name: str, extra_dirs=None) -> bool:
    """Whether the named model (``a+b`` for an ensemble) includes a network, which needs PyTorch."""
    entries = available_models(extra_dirs)
    return any(entries[n].card_path is not None for n in name.split("+") if n in entries)
