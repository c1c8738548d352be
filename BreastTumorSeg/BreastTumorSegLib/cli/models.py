"""``breasttumorseg models``: list the installed methods with what they were trained on."""
from __future__ import annotations

import json


def register(sub) -> None:
    p = sub.add_parser("models", help="list installed models and their cards")
    p.add_argument("--models-dir", default=None, help="extra folder with model cards")
    p.add_argument("--json", action="store_true", help="print the full model cards as JSON")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..models.breast_model import BREAST_TASK
    from ..models.registry import iter_cards, model_card, model_summaries

    extra = [args.models_dir] if args.models_dir else None
    summaries = sorted(model_summaries(extra), key=lambda s: s.name)
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
        if s.needs_torch:
            facts.append("needs PyTorch")
        print(f"{'':<{width}}  " + "; ".join(facts))
    if breast:
        print("whole-breast models (for --breast-model NAME; the learned mask gates the lesions):")
        for name, (path, card) in sorted(breast.items()):
            print(f"{name:<{width}}  {card.get('description', '')} [{path.parent}]")
    return 0
