"""``breasttumorseg models``: list the installed methods with what they were trained on;
``models add PATH``: register an nnU-Net v2 model folder or a MONAI bundle (SHA-256 pins)."""
from __future__ import annotations

import json
import sys

from ..core.errors import InputError


def register(sub) -> None:
    p = sub.add_parser("models", help="list installed models and their cards; `models add PATH` registers your own",
                       description="List the installed models, or register an nnU-Net v2 model folder or MONAI "
                                   "bundle: `breasttumorseg models add PATH --name NAME --license L --trained-on D` "
                                   "pins the SHA-256 of its files in a card in the user's models folder "
                                   "($BREASTTUMORSEG_HOME/models, default ~/.config/breasttumorseg/models).")
    p.add_argument("action", nargs="?", choices=["list", "add"], default="list")
    p.add_argument("path", nargs="?", default=None, help="with add: the nnU-Net model folder or MONAI bundle")
    p.add_argument("--models-dir", default=None, help="extra folder with model cards")
    p.add_argument("--json", action="store_true", help="print the full model cards as JSON")
    p.add_argument("--name", default=None, help="with add: the name to use with --model")
    p.add_argument("--license", default=None, help="with add: the weights' licence (e.g. 'CC BY-NC 4.0')")
    p.add_argument("--trained-on", default=None, help="with add: the data the model was trained on")
    p.add_argument("--description", default=None, help="with add: one line shown in lists")
    p.add_argument("--overwrite", action="store_true", help="with add: replace your earlier card of that name")
    p.set_defaults(func=run)


def add(args) -> int:
    from ..models.byom.register import register_model

    if not args.path:
        raise InputError("`models add` needs the model folder", "PATH", "write `breasttumorseg models add FOLDER --name NAME ...`")
    card_path = register_model(args.path, args.name, args.license, args.trained_on, args.description,
                               overwrite=args.overwrite)
    card = json.loads(card_path.read_text())
    print(f"registered {card['name']} ({card['format']}, {len(card['sha256'])} files pinned) in {card_path}")
    print(f"use it with --model {card['name']}; channels: {', '.join(card['channels']['channels'])}")
    return 0


def run(args) -> int:
    from ..models.breast_model import BREAST_TASK
    from ..models.registry import iter_cards, model_card, model_summaries

    if args.action == "add":
        return add(args)
    if args.models_dir is not None:  # as segment and classify check it: a mistyped folder is not "no extra models"
        from ..io.safety import check_input_path

        check_input_path(args.models_dir, "--models-dir", kind="dir")
    extra = [args.models_dir] if args.models_dir else None
    summaries = sorted(model_summaries(extra), key=lambda s: s.name)
    unreadable: list[str] = []
    for _ in iter_cards(extra, unreadable):
        pass
    for problem in unreadable:  # listed without it: say why, not silently
        print(f"breasttumorseg: warning: {problem}; not listed. Fix: repair the JSON of this card or remove it",
              file=sys.stderr)
    if args.json:
        print(json.dumps({s.name: model_card(s.name, extra) for s in summaries}, indent=2))
        return 0
    breast = {}
    for path, card in iter_cards(extra):  # whole-breast models (first card found wins)
        if card.get("task") == BREAST_TASK:
            breast.setdefault(card["name"], (path, card))
    width = max(len(n) for n in [s.name for s in summaries] + list(breast))
    for s in summaries:
        where = f" [{s.card_path.parent}]" if s.card_path else " [built in]"
        print(f"{s.name:<{width}}  {s.description}{where}")
        facts = [f"trained on: {s.trained_on or 'not stated on its card'}"]
        if s.default_threshold is not None:
            facts.append(f"default threshold {s.default_threshold:.2f}")
        if s.card_path is not None:
            card = model_card(s.name, extra)
            if card.get("license"):
                facts.append(f"licence: {card['license']}")
            if card.get("format"):
                facts.append(f"{card['format']} model at {card['path']}")
        if s.needs_torch:
            facts.append("needs PyTorch")
        print(f"{'':<{width}}  " + "; ".join(facts))
    if breast:
        print("whole-breast models (for --breast-model NAME; the learned mask gates the lesions):")
        for name, (path, card) in sorted(breast.items()):
            print(f"{name:<{width}}  {card.get('description', '')} [{path.parent}]")
    from ..models.classifier import classification_models

    classifiers = classification_models(extra)
    if classifiers:
        print("classification models (task: classification; for `classify --model NAME`, `segment --classify`):")
        for name, path in sorted(classifiers.items()):
            print(f"{name:<{width}}  {model_card_text(path)} [{path.parent}]")
    return 0


def model_card_text(card_path) -> str:
    from ..models.cards import read_card, trained_on

    card = read_card(card_path)
    return f"{card.get('description', '')} Trained on: {trained_on(card) or 'not stated on its card'}"
