"""Pickled checkpoints are code: SHA-256 pins, the user's models folder and registration.

nnU-Net checkpoints (``checkpoint_final.pth``) and MONAI ``model.pt`` files are Python pickles;
loading one (``torch.load(weights_only=False)``) can run any code its author put in it. Such a
file is only loaded when it was *registered* (``breasttumorseg models add``: its SHA-256 and the
model's other files are pinned in a card in the user's models folder, and the bytes that are
loaded are the bytes that were hashed) or when the user says ``--trust-pickle``.
"""
from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

from ...core.errors import ModelError
from ...io.atomic import sha256_file

HOME_ENV = "BREASTTUMORSEG_HOME"  # overrides ~/.config/breasttumorseg (tests, shared installs)
FOREIGN_FORMATS = ("nnunet", "monai")


def user_models_dir() -> Path:
    """Where ``models add`` writes cards: ``$BREASTTUMORSEG_HOME/models`` or ``~/.config/breasttumorseg/models``."""
    home = os.environ.get(HOME_ENV)
    base = Path(home) if home else Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "breasttumorseg"
    return base / "models"


def require_package(module: str, extra: str) -> None:
    """A one-line error naming the extra to install when *module* (nnunetv2, monai) is missing."""
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise ModelError(f"{module} is not installed, and this model needs it. Fix: "
                         f"pip install -e \".[{extra}]\" together with your torch version, e.g. "
                         f"pip install -e \".[{extra}]\" \"torch==<your torch version>\" (see README, Bring your own model)")


def refuse_untrusted(path: Path, kind: str) -> ModelError:
    return ModelError(
        f"{path}: refusing to load {kind} checkpoints that are not registered: they are Python pickles, and "
        "loading one can run any code its author put in it. Fix: register the folder once with "
        f"`breasttumorseg models add {path} --name NAME --license LICENSE --trained-on DATA` (pins the SHA-256 "
        "of its files), or pass --trust-pickle if you trust where it came from")


MAX_JSON_BYTES = 64 << 20  # plans.json, dataset.json, MONAI configs: kilobytes to a few MB
MAX_CHECKPOINT_BYTES = 16 << 30  # the largest nnU-Net checkpoints are a few GB


def check_model_files(root: Path, files: list[Path]) -> list[Path]:
    """Every file of a model before it is hashed or read: a regular file (no pipe, device or socket,
    which would block or never end), inside the model folder once links are followed, and below a
    size limit (JSON files 64 MB, checkpoints 16 GB). Returns *files*."""
    from ...io.safety import check_regular_file

    for f in files:
        is_json = f.suffix.lower() == ".json"
        check_regular_file(f, "model file", MAX_JSON_BYTES if is_json else MAX_CHECKPOINT_BYTES, inside=root)
    return files


def check_json_object(data: bytes, path: Path, keys: tuple[str, ...] = ()) -> dict:
    """Parse a model's JSON file (already read and pinned); it must be an object with *keys*."""
    import json

    try:
        obj = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ModelError(f"{path}: not valid JSON ({exc}). Fix: use the model's original files") from None
    if not isinstance(obj, dict):
        raise ModelError(f"{path}: expected a JSON object, found {type(obj).__name__}. "
                         "Fix: use the model's original files")
    missing = [k for k in keys if k not in obj]
    if missing:
        raise ModelError(f"{path}: lacks {', '.join(missing)}. Fix: use the model's original files")
    return obj


# A checkpoint saved by torch.save is a zip archive (PyTorch >= 1.6) or a pickle (older, legacy
# format); TorchScript (model.ts) is a zip archive too.
CHECKPOINT_MAGIC = (b"PK\x03\x04", b"\x80")


def check_checkpoint_header(path: Path) -> None:
    """Read the first bytes of a checkpoint (never unpickled here) and refuse what is no checkpoint."""
    with open(path, "rb") as fh:
        head = fh.read(4)
    if not head.startswith(CHECKPOINT_MAGIC):
        raise ModelError(f"{path}: not a PyTorch checkpoint (the file starts with {head!r}, not a zip archive or "
                         "a pickle). Fix: use the model's original checkpoint files")


def pin_files(root: Path, files: list[Path]) -> dict[str, str]:
    """``{path relative to root: sha256}`` of *files*."""
    return {str(f.relative_to(root)): sha256_file(f) for f in files}


def read_pinned(root: Path, rel: str, pins: dict[str, str] | None) -> bytes:
    """The bytes of ``root/rel``, checked against ``pins[rel]`` when *pins* is given (None: trusted)."""
    path = root / rel
    check_model_files(root, [path])  # a pipe or device would block: refused before reading
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ModelError(f"{path}: cannot read model file ({exc.strerror}). Fix: check the model folder") from None
    if pins is not None:
        expected = pins.get(rel)
        if expected is None:
            raise ModelError(f"{path}: this file was not pinned when the model was registered. "
                             "Fix: register the model again (`breasttumorseg models add`) or choose registered folds")
        digest = hashlib.sha256(data).hexdigest()
        if digest != expected:
            raise ModelError(f"{path}: SHA-256 mismatch (file {digest[:16]}…, registered {expected[:16]}…); the file "
                             "changed since it was registered and, being a pickle, could run code. Fix: restore the "
                             "original file, or register it again if you trust the new one")
    return data


def load_pickle_bytes(data: bytes, path: Path):
    """``torch.load`` of bytes already checked (or trusted) — never of the file again."""
    import torch

    try:
        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=False)
    except Exception as exc:  # any unpickling failure
        raise ModelError(f"{path}: not a readable PyTorch checkpoint ({type(exc).__name__}: "
                         f"{str(exc).splitlines()[0] if str(exc) else ''}). Fix: use the model's original files") from None


def find_registered(path: Path, cards) -> tuple[Path, dict] | None:
    """The registered card (path, card) whose model folder is *path*, if any."""
    target = path.resolve()
    for card_path, card in cards:
        if card.get("format") in FOREIGN_FORMATS and Path(card.get("path", "")).resolve() == target:
            return card_path, card
    return None
