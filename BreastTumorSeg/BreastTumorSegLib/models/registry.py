"""Model registry: every segmentation method the CLI and the Slicer panel can pick by name.

A *segmenter* turns a motion-corrected :class:`DCEExam` into a tumor probability map on the
exam's grid. Networks are stored as ``<name>.safetensors`` plus a JSON model card
``<name>.json`` in a models folder (the bundled one is ``BreastTumorSegLib/models``; users add
folders through ``BREASTTUMORSEG_MODELS`` or ``--models-dir``). Classical methods (the
kinetic FTV method) register themselves in code.
"""
from __future__ import annotations

import hashlib
import importlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol, runtime_checkable

import SimpleITK as sitk

from ..core.errors import ModelError
from ..core.exam import DCEExam
from ..core.progress import Reporter

BUNDLED_MODELS_DIR = Path(__file__).resolve().parent / "shipped"
DEFAULT_MODEL = "unet-demo"


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


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def model_dirs(extra: list[str | os.PathLike] | None = None) -> list[Path]:
    dirs = [Path(p) for p in (extra or [])]
    env = os.environ.get("BREASTTUMORSEG_MODELS")
    if env:
        dirs += [Path(p) for p in env.split(os.pathsep) if p]
    dirs.append(BUNDLED_MODELS_DIR)
    return dirs


def read_card(card_path: Path) -> dict:
    try:
        card = json.loads(Path(card_path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelError(f"{card_path}: cannot read model card ({exc})") from None
    for key in ("name", "architecture", "weights", "sha256"):
        if key not in card:
            raise ModelError(f"{card_path}: model card lacks the '{key}' field")
    return card


def iter_cards(extra_dirs=None):
    """(path, card) of every readable model card in the model folders, in search order."""
    for d in model_dirs(extra_dirs):
        if not d.is_dir():
            continue
        for card_path in sorted(d.glob("*.json")):
            try:
                yield card_path, read_card(card_path)
            except ModelError:
                continue


def available_models(extra_dirs=None) -> dict[str, ModelEntry]:
    """Every tumor segmentation method that can be used now, by name (first card found wins).

    Cards with another ``task`` (e.g. ``"breast_mask"``, see :mod:`.breastmask_model`) are skipped.
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


def get_segmenter(name: str = DEFAULT_MODEL, extra_dirs=None, **kwargs) -> Segmenter:
    """Instantiate the named method. Ensembles are written ``name1+name2`` (probabilities averaged)."""
    if "+" in name:
        from .network import EnsembleSegmenter
        return EnsembleSegmenter([get_segmenter(n, extra_dirs, **kwargs) for n in name.split("+")])
    models = available_models(extra_dirs)
    if name not in models:
        raise ModelError(f"unknown model '{name}'. Available: {', '.join(sorted(models)) or 'none'}. "
                         "Fix: pick one of these with --model, or add a folder with --models-dir")
    return models[name].factory(**kwargs)
