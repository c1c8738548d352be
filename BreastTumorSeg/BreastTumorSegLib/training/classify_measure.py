"""Version 5's training data and fit (classify-v12, issue 29): version 3's features plus the
measurement features (:mod:`..engine.classify_measure`) of every candidate.

The candidates come from measurement records (``benchmarks/census_classify_measure.py record``: one
``<family>_<seed>.measure.npz`` per exam, the generated exam's finder candidates and, where recorded,
the shipped segmenter's lesions, each with :data:`~..models.classifier.FEATURES` in ``x``,
:data:`~..models.classifier.MEASURE_FEATURES` in ``m`` and the trainer's label in ``y``).

    OMP_NUM_THREADS=1 python -m BreastTumorSegLib.training.classify_measure train \
        --records /work/runs/cls20/rec --jobs ORDER_FILE --out DIR --feature-set no-mask+measure --name breastcls-v5

Only training families and seeds (:func:`.classify.parse_data`'s refusals: never a held-out family
nor an evaluation seed).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from ..models.classifier import FEATURES, MEASURE_FEATURES
from .phantom.malignancy import HELD_OUT, held_out_seed


def read_record(records: Path, family: str, seed: int) -> dict | None:
    """One exam's measurement record (None when missing or unbuildable): x (FEATURES + MEASURE_FEATURES
    columns), y, keys, src (0 finder, 1 segmenter), truth {breast key: 0/1}."""
    path = Path(records) / f"{family}_{seed}.measure.npz"
    meta = path.with_name(path.name[:-4] + ".json")
    if not path.exists() or not meta.exists():
        return None
    info = json.loads(meta.read_text())
    if info.get("unbuildable"):
        return None
    d = np.load(path)
    n = len(d["y"])
    x = np.concatenate([np.asarray(d["x"]).reshape(n, len(FEATURES)), np.asarray(d["m"]).reshape(n, len(MEASURE_FEATURES))], 1)
    truth = {f"{info['case_id']}:{'L' if s == 'left' else 'R'}": int(v) for s, v in info["breast_truth"].items()}
    return {"x": x, "y": np.asarray(d["y"], int), "keys": np.asarray(d["keys"]), "src": np.asarray(d["src"], int),
            "truth": truth, "info": info}


def collect_records(records: Path, jobs, finder_only: bool = False) -> dict:
    """The concatenated candidates of the recorded exams of *jobs* ([(family, seed)]); *finder_only*:
    without the segmenter's lesions. ``data["exams"]``: the (family, seed) pairs found."""
    xs, ys, keys, truth, found = [], [], [], {}, []
    for family, seed in jobs:
        rec = read_record(records, family, seed)
        if rec is None:
            continue
        keep = rec["src"] == 0 if finder_only else np.ones(len(rec["y"]), bool)
        xs.append(rec["x"][keep])
        ys.append(rec["y"][keep])
        keys += rec["keys"][keep].tolist()
        truth.update(rec["truth"])
        found.append((family, seed))
    width = len(FEATURES) + len(MEASURE_FEATURES)
    return {"x": np.concatenate(xs).reshape(-1, width) if xs else np.zeros((0, width)),
            "y": np.concatenate(ys).astype(int) if ys else np.zeros(0, int), "keys": np.array(keys),
            "truth": truth, "exams": found}


def refuse_held_out(jobs) -> None:
    from ..core.errors import InputError

    for family, seed in jobs:
        if family in HELD_OUT or held_out_seed(seed):
            raise InputError(f"refusing to train on {family} {seed} (held-out family or evaluation seed)", "--jobs",
                             "list training exams only")


def main(argv=None) -> int:
    from .classify import MEASURE_SETS, _name, fit, save
    from .classify_segmenter import seeds_text

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("what", choices=["train"])
    p.add_argument("--records", type=Path, required=True)
    p.add_argument("--jobs", type=Path, required=True, help="file of 'family seed' lines: the training exams")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--name", required=True)
    p.add_argument("--feature-set", choices=sorted(MEASURE_SETS) + ["no-mask"], default="no-mask+measure")
    p.add_argument("--card-version", default="5")
    a = p.parse_args(argv)
    jobs = [(f, int(s)) for f, s in (line.split()[:2] for line in a.jobs.read_text().splitlines() if line.strip())]
    refuse_held_out(jobs)
    data = collect_records(a.records, jobs, finder_only=True)
    spec = ("trees", a.feature_set, 300, 4, 0.03, 5)
    model, no_candidate, report = fit(data, spec)
    by_family: dict[str, list[int]] = {}
    for f, s in data["exams"]:
        by_family.setdefault(f, []).append(s)
    training = {"data": "synthetic exams only: " + "; ".join(f"{f}:{seeds_text(s)} ({len(s)} exams)" for f, s in
                                                           by_family.items())
                + " (the finder's candidates; training/phantom/malignancy.py); held-out families and evaluation "
                  "seeds never used", **report, "sklearn": _name(*spec)}
    print(json.dumps(training, indent=2))
    print(save(model, spec, data, a.out, a.name, training, no_candidate, a.card_version,
               {"measurement_features": "engine/classify_measure.py (docs/decisions/classify-v12.md)"}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
