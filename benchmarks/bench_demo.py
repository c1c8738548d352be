#!/usr/bin/env python
"""The demo's number in context: Dice of `breasttumorseg demo` over the whole seed range it is drawn from.

    python benchmarks/bench_demo.py                  # seeds 3000-3019, default model, CPU
    python benchmarks/bench_demo.py --seeds 3000-3004 --model ftv

Each seed is exactly what `breasttumorseg demo --seed N` does (phantom written to disk and read
back, motion correction, the model's breast gating and post-processing); the demo itself uses
the first seed. Prints one row per seed and the median, as Markdown.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "BreastTumorSeg"))

from BreastTumorSegLib.engine.pipeline import segment_exam  # noqa: E402
from BreastTumorSegLib.evaluation.metrics import dice  # noqa: E402
from BreastTumorSegLib.io.files import load_exam# noqa: E402
from BreastTumorSegLib.core.values import parse_seeds  # noqa: E402
from BreastTumorSegLib.training.phantom import make_phantom, write_phantom  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", default="3000-3019")
    p.add_argument("--model", default="unet-demo")
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    rows = []
    print("| seed | tumors | true mL | found mL | lesions found | Dice | s |\n|---|---|---|---|---|---|---|")
    for seed in parse_seeds(a.seeds):
        t0 = time.perf_counter()
        ph = make_phantom(seed)
        with tempfile.TemporaryDirectory() as tmp:
            write_phantom(ph, Path(tmp))
            exam = load_exam(tmp)
            res = segment_exam(exam, model=a.model, device="cpu")
        d = dice(res.label, ph.tumor_mask)
        true_ml = sum(t["volume_ml"] for t in ph.tumors)
        rows.append(d)
        print(f"| {seed} | {len(ph.tumors)} | {true_ml:.2f} | {sum(x.volume_ml for x in res.lesions):.2f} | "
              f"{len(res.lesions)} | {d:.3f} | {time.perf_counter() - t0:.0f} |", flush=True)
    v = np.asarray(rows)
    print(f"\nmodel {a.model}: median Dice {np.median(v):.3f} (mean {v.mean():.3f}, min {v.min():.3f}, "
          f"max {v.max():.3f}) over {len(v)} demo seeds; the demo exam is seed {parse_seeds(a.seeds)[0]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
