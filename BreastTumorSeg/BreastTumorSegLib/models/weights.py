"""Safe weight files: safetensors only, verified against a SHA-256 before anything is parsed."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

from ..core.errors import ModelError


def load_verified_state_dict(path: str | os.PathLike, expected_sha256: str, framework: str = "torch") -> dict:
    """Read a ``.safetensors`` file, check its SHA-256, and return its tensors.

    The bytes are read once, hashed, and parsed from memory, so the file cannot change between
    the check and the load. Pickle-based formats (``.pt``/``.pth``/``.bin``) are refused.
    ``framework="numpy"`` returns numpy arrays and never imports PyTorch (the component classifier
    of the false-positive reduction runs where PyTorch is not installed, e.g. ``--model ftv`` in Slicer).
    """
    if framework == "numpy":
        from safetensors.numpy import load as load_safetensors
    else:
        from safetensors.torch import load as load_safetensors

    path = Path(path)
    if path.suffix != ".safetensors":
        raise ModelError(f"{path}: refusing to load weights that are not in safetensors format. "
                         "Fix: convert the checkpoint with safetensors.torch.save_file and record its SHA-256 in the model card")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ModelError(f"{path}: cannot read weight file ({exc.strerror})") from None
    digest = hashlib.sha256(data).hexdigest()
    if not expected_sha256 or digest.lower() != expected_sha256.lower():
        raise ModelError(f"{path}: SHA-256 mismatch (file {digest[:16]}…, model card {str(expected_sha256)[:16]}…); "
                         "the weights were modified or corrupted. Fix: reinstall the model; do not use this file")
    try:
        return load_safetensors(data)
    except Exception as exc:  # safetensors raises its own error types
        raise ModelError(f"{path}: not a valid safetensors file ({exc})") from None


def save_state_dict(state: dict, path: str | os.PathLike) -> str:
    """Write tensors to ``path`` (safetensors, atomic) and return the file's SHA-256."""
    from safetensors.torch import save as save_safetensors

    from ..io.atomic import write_bytes

    data = save_safetensors({k: v.detach().cpu().contiguous() for k, v in state.items()})
    write_bytes(path, data)
    return hashlib.sha256(data).hexdigest()


def read_numpy_model(card_path: str | os.PathLike, task: str, features: tuple[str, ...], what: str) -> tuple[dict, dict]:
    """(card, numpy tensors) of a small feature model (:mod:`.logistic`, :mod:`.trees`): the card's
    ``task`` and ``features`` must match, its weights are verified against the card's SHA-256."""
    import json

    card_path = Path(card_path)
    try:
        card = json.loads(card_path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelError(f"{card_path}: cannot read the {what}'s card ({exc})") from None
    if card.get("task") != task or tuple(card.get("features", ())) != tuple(features):
        raise ModelError(f"{card_path}: not a {what} for this engine's features "
                         f"(task {card.get('task')!r}). Fix: reinstall the model")
    return card, load_verified_state_dict(card_path.parent / card["weights"], card.get("sha256", ""), framework="numpy")
