#!/usr/bin/env python
"""Each exam generated once, its classifier candidates cached with every variant of the region (issue 29).

    OMP_NUM_THREADS=1 python benchmarks/cache_classify_variants.py \
        --data malignancy:7000-7029,malignancy-randomized:7000-7029 --out /tmp/cls14/dev
    python benchmarks/bench_classify.py --families malignancy,malignancy-randomized --seeds 7000-7029 \
        --cache-dir /tmp/cls14/dev/<variant>

The variants are those of ``benchmarks/time_classify_region.py`` (main's region and the trials of
``docs/decisions/classify-v7-body.md``); each one's records go to ``<out>/<variant>/`` in the format of
:func:`~BreastTumorSegLib.training.classify_mip.mip_record`, which ``bench_classify.py --cache-dir``
reads. Per exam one line: candidates per variant and whether the body out to the skin line was used
(:func:`~BreastTumorSegLib.engine.classify_body.skin_body`: its added share of the context's body and
the air share of its guard). Training and development seeds only: the evaluation seeds are refused.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "BreastTumorSeg"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from BreastTumorSegLib.engine.classify_body import skin_body  # noqa: E402
from BreastTumorSegLib.preprocess.breast_region import breast_region  # noqa: E402
from BreastTumorSegLib.training.classify import parse_data  # noqa: E402
from BreastTumorSegLib.training.classify_mip import analyse_phantom  # noqa: E402
from BreastTumorSegLib.training.phantom.malignancy import make_class_exam  # noqa: E402
from time_classify_region import VARIANTS, apply  # noqa: E402

SHORT = dict(zip(VARIANTS, ("main", "body", "lungs2mm", "lungs4mm", "body+lungs4mm")))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, help="family:seeds[,family:seeds] (training / development seeds)")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--variants", default="main,body,lungs4mm,body+lungs4mm")
    a = p.parse_args(argv)
    wanted = [v for v in VARIANTS if SHORT[v] in a.variants.split(",")]
    for family, seeds in parse_data(a.data):
        for seed in seeds:
            try:
                ph = make_class_exam(family, seed)
            except RuntimeError as e:
                print(f"{family} {seed}: not buildable ({e})", flush=True)
                continue
            counts = {}
            for name in wanted:
                apply(VARIANTS[name])
                rec = analyse_phantom(ph)
                path = a.out / SHORT[name] / f"{family}_{seed}.npz"
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_suffix(".tmp.npz")
                np.savez_compressed(tmp, **rec)
                tmp.replace(path)
                counts[SHORT[name]] = f"{len(rec['y'])} ({int(np.sum(rec['y']))} malignant)"
            apply(VARIANTS["main's region"])
            _, context = breast_region(ph.exam.pre, laterality=ph.exam.metadata.get("laterality") or ph.exam.metadata.get("Laterality"))
            skin_body(context)
            info = context.get("classify_body_info")
            print(f"{family} {seed} {ph.params.get('orientation', '?')}: candidates {counts}; body {info}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
