"""``breasttumorseg models``: list the installed methods with what they were trained on."""
from __future__ import annotations

import json


def register(sub) -> None:
    p = sub.add_parser("models", help="list installed models and their cards")
    p.add_argument("--models-dir", default=None, help="extra folder with model cards")
    p.add_argument("--json", action="store_true", help="print the full model cards as JSON")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..models.registry import available_models, read_card

    entries = available_models([args.models_dir] if args.models_dir else None)
    if args.json:
        out = {n: (read_card(e.card_path) if e.card_path else {"name": n, "description": e.description})
               for n, e in sorted(entries.items())}
        print(json.dumps(out, indent=2))
        return 0
    width = max(len(n) for n in entries)
    for name, e in sorted(entries.items()):
        where = f" [{e.card_path.parent}]" if e.card_path else " [built in]"
        print(f"{name:<{width}}  {e.description}{where}")
    return 0
