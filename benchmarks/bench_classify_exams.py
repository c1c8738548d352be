#!/usr/bin/env python
"""``bench_classify.py`` of any source tree, with each generated exam stored once and reused.

    OMP_NUM_THREADS=1 python benchmarks/bench_classify_exams.py --src /tmp/main_src --exam-dir /tmp/exams \
        -- --seeds 5300-5329 --cache-dir /tmp/before           # "before": main's code, stores the exams
    OMP_NUM_THREADS=1 python benchmarks/bench_classify_exams.py --src . --exam-dir /tmp/exams \
        --set engine.classify_region.BODY_EDGE=1 -- --seeds 5300-5329 --cache-dir /tmp/after

Generating an exam of the malignancy families costs 3-4 times its analysis, and the exam does not
depend on the classifier's code: a before/after comparison of a classifier change (on one machine,
once) can generate each exam once. The exam (the generator's phantom, pickled) is stored as
``<exam-dir>/<family>_<seed>.pkl.gz`` by the first run and read back by the next; ``bench_classify.py``
of *--src* then runs unchanged on it (its candidate cache ``--cache-dir`` must differ between the
runs: the candidates depend on the code). ``--set MODULE.NAME=VALUE`` sets a module-level setting of
*--src*'s package before the run (VALUE as a Python literal).
"""
from __future__ import annotations

import argparse
import ast
import gzip
import importlib
import pickle
import sys
from pathlib import Path


def stored(make, exam_dir: Path):
    """*make(family, seed)* reading/writing the pickled exam under *exam_dir*."""
    def make_stored(family: str, seed: int):
        path = exam_dir / f"{family}_{seed}.pkl.gz"
        if path.exists():
            with gzip.open(path, "rb") as f:
                return pickle.load(f)
        ph = make(family, seed)
        exam_dir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        with gzip.open(tmp, "wb", compresslevel=1) as f:
            pickle.dump(ph, f, protocol=pickle.HIGHEST_PROTOCOL)
        tmp.replace(path)
        return ph
    return make_stored


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    rest = argv[argv.index("--") + 1:] if "--" in argv else []
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--src", type=Path, required=True, help="the source tree whose package and benchmark run")
    p.add_argument("--exam-dir", type=Path, required=True)
    p.add_argument("--set", action="append", default=[], help="MODULE.NAME=VALUE under BreastTumorSegLib")
    a = p.parse_args(argv[:argv.index("--")] if "--" in argv else argv)
    src = a.src.resolve()
    sys.path[:0] = [str(src / "BreastTumorSeg"), str(src / "benchmarks")]
    for k in [m for m in sys.modules if m == "BreastTumorSegLib" or m.startswith("BreastTumorSegLib.")]:
        del sys.modules[k]
    cmip = importlib.import_module("BreastTumorSegLib.training.classify_mip")
    cmip.make_class_exam = stored(cmip.make_class_exam, a.exam_dir)
    for item in a.set:
        name, _, value = item.partition("=")
        mod, _, attr = name.rpartition(".")
        setattr(importlib.import_module(f"BreastTumorSegLib.{mod}"), attr, ast.literal_eval(value))
        print(f"set BreastTumorSegLib.{name} = {value}")
    import BreastTumorSegLib
    print(f"package {BreastTumorSegLib.__file__}", flush=True)
    bench = importlib.import_module("bench_classify")
    return bench.main(rest)


if __name__ == "__main__":
    raise SystemExit(main())
