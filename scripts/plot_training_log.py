#!/usr/bin/env python
"""Plot a training run's ``log.jsonl`` (written by ``breasttumorseg train``).

    python scripts/plot_training_log.py runs/st-demo/log.jsonl -o st-demo.png
    python scripts/plot_training_log.py runs/a/log.jsonl runs/b/log.jsonl -o compare.png

Left: training loss per logged step (thin) and per epoch (thick). Right: validation Dice per
epoch (median, and the range over the validation cases). Several logs are overlaid.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def read_log(path: Path) -> tuple[list[dict], list[dict]]:
    steps, epochs = [], []
    for n, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            sys.exit(f"{path}: line {n} is not JSON (is this a trainer log.jsonl?)")
        (epochs if rec.get("type") == "epoch" else steps).append(rec)
    return steps, epochs


def plot(logs: list[Path], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_loss, ax_dice) = plt.subplots(1, 2, figsize=(11, 4))
    for path in logs:
        steps, epochs = read_log(path)
        label = path.parent.name or path.stem
        if steps:
            ax_loss.plot([s["step"] for s in steps], [s["loss"] for s in steps], lw=0.8, alpha=0.4)
        if epochs:
            line, = ax_loss.plot([e["step"] for e in epochs], [e["train_loss"] for e in epochs], "o-", lw=2,
                                 label=label)
            x = [e["epoch"] for e in epochs]
            med = [e.get("val_dice_median") for e in epochs]
            ax_dice.plot(x, med, "o-", color=line.get_color(), label=f"{label} (median)")
            lo = [min(e["val_dice"]) if e.get("val_dice") else float("nan") for e in epochs]
            hi = [max(e["val_dice"]) if e.get("val_dice") else float("nan") for e in epochs]
            ax_dice.fill_between(x, lo, hi, color=line.get_color(), alpha=0.15)
    ax_loss.set(xlabel="step", ylabel="loss (BCE + soft Dice)", title="training loss")
    ax_dice.set(xlabel="epoch", ylabel="Dice", ylim=(0, 1), title="validation Dice")
    for ax in (ax_loss, ax_dice):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    print(f"wrote {out}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("logs", nargs="+", type=Path, help="log.jsonl file(s)")
    p.add_argument("-o", "--output", type=Path, default=Path("training_log.png"))
    a = p.parse_args(argv)
    missing = [str(x) for x in a.logs if not x.exists()]
    if missing:
        sys.exit(f"log file(s) not found: {', '.join(missing)}")
    plot(a.logs, a.output)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
