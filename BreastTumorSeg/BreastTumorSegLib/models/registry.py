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

from ..core.errors import BreastTumorSegError, ModelError
from ..core.exam import DCEExam
from ..core.progress import Reporter
from .cards import ModelSummary, iter_cards, read_card, summarize

# The default is chosen by docs/decisions/default-model-issue25.md: on the families the networks
# were not trained on (randomised, ellipse, heterogeneous, vessels, irregular, real-anatomy hybrids)
# the rule-based FTV beat the networks (seeds 5000-5003), and its whole-tumor outline beat the plain
# FTV mask on five of seven, never lower (fresh seeds 5004-5007; README, Robustness).
DEFAULT_MODEL = "ftv-outline"


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
    foreign: bool = False  # an nnU-Net folder or MONAI bundle: takes the model options (folds, channels, ...)


# Methods implemented in code: name -> ("module:Class", description)
_CODE_MODELS: dict[str, tuple[str, str]] = {
    "ftv": ("BreastTumorSegLib.models.ftv_segmenter:FTVSegmenter",
            "Functional tumor volume from contrast kinetics (I-SPY PE/SER rules); no trained weights"),
    "ftv-outline": ("BreastTumorSegLib.models.ftv_segmenter:FTVOutlineSegmenter",
                    "The ftv core grown to the whole tumor (moderately enhancing parts, necrotic centre) "
                    "as a reader outlines it; no trained weights"),
}


def available_models(extra_dirs=None) -> dict[str, ModelEntry]:
    """Every tumor segmentation method that can be used now, by name (first card found wins).

    Cards with another ``task`` (e.g. ``"breast_mask"``, see :mod:`.breast_model`;
    ``"classification"``, per-breast malignancy models: :func:`.classifier.classification_models`)
    are skipped.
    """
    out: dict[str, ModelEntry] = {}
    for card_path, card in iter_cards(extra_dirs):
        name = card["name"]
        if name in out or card.get("task", "tumor") != "tumor":
            continue  # first found wins; whole-breast models are not tumor segmenters
        if card.get("format"):  # registered nnU-Net folder or MONAI bundle (models add)
            out[name] = ModelEntry(name, card.get("description", ""), _foreign_factory(card["format"], card["path"], card),
                                   card_path, foreign=True)
            continue
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


# Foreign model formats, used as ``--model FORMAT:PATH``: format -> "module:Class"
FOREIGN_MODELS = {
    "nnunet": "BreastTumorSegLib.models.byom.nnunet:NnUNetSegmenter",
    "monai": "BreastTumorSegLib.models.byom.monai_bundle:MonaiBundleSegmenter",
}


def _foreign_factory(fmt: str, path: str, card: dict | None = None):
    def factory(**options):
        mod_name, cls_name = FOREIGN_MODELS[fmt].split(":")
        cls = getattr(importlib.import_module(mod_name), cls_name)
        return cls(path, card=card, **options)
    return factory


def _foreign_entry(name: str, extra_dirs=None) -> ModelEntry:
    """``nnunet:PATH`` / ``monai:PATH``: a registered card for that folder when there is one
    (its SHA-256 pins apply), else the bare folder (needs ``trust_pickle``)."""
    from .byom.trust import find_registered

    fmt, path = name.split(":", 1)
    resolver = {"nnunet": "BreastTumorSegLib.models.byom.nnunet:resolve_folder",
                "monai": "BreastTumorSegLib.models.byom.monai_bundle:resolve_bundle"}[fmt].split(":")
    try:  # a Dataset### or results folder names the same registered model as its model folder
        where = getattr(importlib.import_module(resolver[0]), resolver[1])(path)
    except BreastTumorSegError:
        where = Path(path)  # the segmenter says what is wrong with it
    found = find_registered(where, iter_cards(extra_dirs))
    card = found[1] if found and found[1]["format"] == fmt else None
    return ModelEntry(name, f"{fmt} model {path}", _foreign_factory(fmt, path, card), None, foreign=True)


def _entry(name: str, extra_dirs=None) -> ModelEntry:
    if name.split(":", 1)[0] in FOREIGN_MODELS and ":" in name:
        return _foreign_entry(name, extra_dirs)
    models = available_models(extra_dirs)
    if name not in models:
        raise ModelError(f"unknown model '{name}'. Available: {', '.join(sorted(models)) or 'none'}. "
                         "Fix: pick one of these with --model, or add a folder with --models-dir")
    return models[name]


def get_segmenter(name: str = DEFAULT_MODEL, extra_dirs=None, model_options: dict | None = None,
                  **kwargs) -> Segmenter:
    """Instantiate the named method. Ensembles are written ``name1+name2`` (probabilities averaged).

    ``model_options`` go to foreign models only (nnU-Net/MONAI: ``trust_pickle``, ``folds``,
    ``mirroring``, ``channels``)."""
    if "+" in name:
        from .network import EnsembleSegmenter
        return EnsembleSegmenter([get_segmenter(n, extra_dirs, model_options, **kwargs) for n in name.split("+")])
    entry = _entry(name, extra_dirs)
    if entry.foreign:
        return entry.factory(**kwargs, **(model_options or {}))
    return entry.factory(**kwargs)


def is_foreign(name: str, extra_dirs=None) -> bool:
    """Whether *name* is an nnU-Net folder or MONAI bundle (``nnunet:PATH``, or registered by ``models add``)."""
    return _entry(name, extra_dirs).foreign


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
    return any((n in entries and entries[n].card_path is not None) or n.split(":", 1)[0] in FOREIGN_MODELS
               for n in name.split("+"))
