"""Model cards: the JSON file beside each network's weights, where they are found, and what
users are shown about a model.

A network is stored as ``<name>.safetensors`` plus its card ``<name>.json`` in a models folder
(the bundled one is ``models/shipped``; users add folders through ``BREASTTUMORSEG_MODELS`` or
``--models-dir``). :class:`ModelSummary` is what the CLI's ``models`` command and the Slicer
panel show about a model; :func:`.registry.model_summaries` lists them for every installed model.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from ..core.errors import ModelError

BUNDLED_MODELS_DIR = Path(__file__).resolve().parent / "shipped"
# What a rule-based method (no learned weights) was trained on.
NOT_TRAINED = "nothing (rule-based method, no learned weights)"


def model_dirs(extra: list[str | os.PathLike] | None = None) -> list[Path]:
    """Folders searched for model cards, in order: *extra*, ``BREASTTUMORSEG_MODELS``, the user's
    registered models (``breasttumorseg models add``), the bundled one."""
    from .byom.trust import user_models_dir

    dirs = [Path(p) for p in (extra or [])]
    env = os.environ.get("BREASTTUMORSEG_MODELS")
    if env:
        dirs += [Path(p) for p in env.split(os.pathsep) if p]
    dirs += [user_models_dir(), BUNDLED_MODELS_DIR]
    return dirs


def read_card(card_path: Path) -> dict:
    try:
        card = json.loads(Path(card_path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelError(f"{card_path}: cannot read model card ({exc})") from None
    # a registered foreign model (nnU-Net folder, MONAI bundle) is pinned file by file
    required = ("name", "format", "path", "sha256") if card.get("format") else ("name", "architecture", "weights", "sha256")
    for key in required:
        if key not in card:
            raise ModelError(f"{card_path}: model card lacks the '{key}' field")
    return card


def iter_cards(extra_dirs=None, unreadable: list | None = None):
    """(path, card) of every readable model card in the model folders, in search order; the
    problem of each unreadable one is appended to *unreadable* when given."""
    for d in model_dirs(extra_dirs):
        if not d.is_dir():
            continue
        for card_path in sorted(d.glob("*.json")):
            try:
                yield card_path, read_card(card_path)
            except ModelError as exc:
                if unreadable is not None:
                    unreadable.append(str(exc))


# ----------------------------------------------------------------------------------- summaries
def trained_on(card: dict) -> str | None:
    """The card's training data; :data:`NOT_TRAINED` for a rule-based method; None when unknown."""
    training = card.get("training")
    if isinstance(training, dict) and training.get("data"):
        return str(training["data"])
    if card.get("weights") is None and card.get("method"):
        return NOT_TRAINED
    return None


def default_threshold(card: dict, fallback: float | None = None) -> float | None:
    """The probability threshold the card's post-processing uses, or *fallback*."""
    threshold = (card.get("postprocess") or {}).get("threshold")
    return fallback if threshold is None else float(threshold)


@dataclass(frozen=True)
class ModelSummary:
    """What users are shown about one installed model."""

    name: str
    description: str
    trained_on: str | None
    default_threshold: float | None
    card_path: Path | None  # None for a method implemented in code

    @property
    def needs_torch(self) -> bool:
        """Networks (models with a card file) need PyTorch; methods implemented in code do not."""
        return self.card_path is not None


def summarize(card: dict, card_path: Path | None = None) -> ModelSummary:
    """The :class:`ModelSummary` of a model card (*card_path*: where a network's card lies)."""
    return ModelSummary(str(card.get("name", "")), str(card.get("description", "")), trained_on(card),
                        default_threshold(card), None if card_path is None else Path(card_path))
