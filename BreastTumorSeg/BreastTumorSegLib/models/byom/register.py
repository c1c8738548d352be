"""``breasttumorseg models add``: pin a foreign model's files in a card in the user's models folder.

The card (``<name>.json``) records the folder, the SHA-256 of every file that defines the model
(JSON plans/configs and the pickled checkpoints), the licence and the training data; from then
on the model is listed by ``models``, offered by the Slicer panel and usable by name
(``--model NAME``) or by path (``--model nnunet:FOLDER``), and a changed file is refused.
"""
from __future__ import annotations

import re
from pathlib import Path

from ...core.errors import InputError
from ...io.atomic import write_json
from .trust import check_model_files, pin_files, user_models_dir

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def detect_format(path: Path) -> str:
    """``"monai"`` for a bundle (``configs/metadata.json``), else ``"nnunet"``."""
    return "monai" if (Path(path) / "configs" / "metadata.json").is_file() else "nnunet"


def register_model(path, name: str, license: str, trained_on: str, description: str | None = None,
                   fmt: str | None = None, overwrite: bool = False, models_dir: Path | None = None) -> Path:
    """Write the card of the nnU-Net folder or MONAI bundle at *path*; returns the card's path.

    The model is opened as for segmenting (folder layout, channel mapping) with the new pins, so
    a model that could not run is not registered.
    """
    from ..registry import available_models

    if not name:
        raise InputError("a registered model needs a name", "--name",
                         "give the name to use with --model, e.g. --name my-nnunet")
    if not _NAME.match(name):
        raise InputError(f"model name {name!r} is not a plain name", "--name",
                         "use letters, digits, '.', '_' or '-' (no ':', '+' or '/')")
    if not license or not trained_on:
        raise InputError("a registered model needs its licence and its training data", "--license/--trained-on",
                         "give both, e.g. --license 'CC BY-NC 4.0' --trained-on 'MAMA-MIA, 1506 DCE-MRI exams'")
    models_dir = Path(models_dir) if models_dir else user_models_dir()
    card_path = models_dir / f"{name}.json"
    existing = available_models()
    if name in existing and not (overwrite and existing[name].card_path == card_path):
        raise InputError(f"a model named {name!r} exists already ({existing[name].card_path or 'built in'})", "--name",
                         "choose another name" + ("" if existing[name].card_path != card_path else ", or pass --overwrite"))
    from ...io.safety import check_input_path

    check_input_path(path, "model folder", kind="dir")
    fmt = fmt or detect_format(Path(path))
    if fmt == "nnunet":
        from .nnunet import NnUNetSegmenter, dry_load, model_files, resolve_folder

        root = resolve_folder(path)
        files = check_model_files(root, model_files(root))
        pins = pin_files(root, files)
        seg = NnUNetSegmenter(root, card={"name": name, "sha256": pins})
        dry_load(seg)
    else:
        from .monai_bundle import MonaiBundleSegmenter, bundle_files, dry_load, resolve_bundle

        root = resolve_bundle(path)
        files = check_model_files(root, bundle_files(root))
        pins = pin_files(root, files)
        seg = MonaiBundleSegmenter(root, card={"name": name, "sha256": pins})
        dry_load(seg)
    from ...io.safety import check_output_location

    check_output_location(models_dir, [root], "models folder ($BREASTTUMORSEG_HOME/models)", "models folder")
    card = {"name": name, "format": fmt, "path": str(root), "task": "tumor",
            "description": description or f"{fmt} model {root.name} (registered)",
            "license": license, "training": {"data": trained_on}, "sha256": pins,
            "channels": seg.mapping.as_dict(), "postprocess": {"threshold": 0.5, "mode": "absolute"}}
    models_dir.mkdir(parents=True, exist_ok=True)
    write_json(card_path, card)
    return card_path
