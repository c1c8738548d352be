"""Cached records of the segmenter's lesions as classifier candidates (classify-v10, issue 29).

:func:`segmenter_record` generates a malignancy-family exam once, runs the shipped segmenter on it
(``segment_exam``, default model, no registration: the exams are motion-free) and keeps every
lesion as a candidate with version 3's features (:func:`..engine.classify.segmenter_candidates`)
and the trainer's label (:func:`.classify.candidate_labels`); the exam's
:func:`.classify_mip.mip_record` (the finder's candidates) is written from the same generated exam
when missing, so ``bench_classify.py --segmenter-candidates`` generates each exam only once.
Cached as ``<cache_dir>/<family>_<seed>.seglesions.npz``.

A refit on them (classify-v11, ``docs/decisions/classify-v11.md``: tried, failed its development rule
with 189 of the 376 training exams segmented, not shipped):

    OMP_NUM_THREADS=1 python -m BreastTumorSegLib.training.classify_segmenter train [--weight-segmented] \
        --data malignancy:100-335,malignancy-randomized:6000-6139 --cache-dir DIR --out DIR \
        --model "trees no-mask 300x depth 4 lr 0.03 leaf 5" --card-version 4

(:func:`collect_with_segmenter`: the exams' segmenter records must be cached first; none is computed
while training.)
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..engine.classify import exam_candidates, segmenter_candidates
from ..engine.classify_lesions import segmenter_label
from .classify import candidate_labels
from .classify_mip import analyse_phantom, mip_record
from .phantom.malignancy import make_class_exam


def _save(path: Path, rec: dict, compressed: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name[:-4] + ".tmp.npz")
    (np.savez_compressed if compressed else np.savez)(tmp, **rec)
    tmp.replace(path)


def segmenter_record(family: str, seed: int, cache_dir: Path) -> dict:
    """``{"x", "y", "keys"}`` of the segmenter's lesions of one exam (module docstring); a
    RuntimeError when the generator cannot build the exam."""
    path = Path(cache_dir) / f"{family}_{seed}.seglesions.npz"
    if path.exists():
        d = np.load(path, allow_pickle=False)
        return {k: d[k] for k in d.files}
    ph = make_class_exam(family, seed)
    mip_path = Path(cache_dir) / f"{family}_{seed}.npz"
    if not mip_path.exists():
        _save(mip_path, analyse_phantom(ph), compressed=True)
    exam, sides, _, maps, context = exam_candidates(ph.exam, register=False)
    cands = segmenter_candidates(exam, maps, sides, context["breast_hint"], context, segmenter_label(exam))
    x, y, where = candidate_labels(ph, cands)
    rec = {"x": x, "y": y, "keys": np.array([k for k, _ in where], dtype="U64")}
    _save(path, rec)
    return rec


def seeds_text(seeds) -> str:
    """``[1, 2, 3, 7]`` -> ``"1-3,7"`` (what the card lists)."""
    out, seeds = [], sorted(int(s) for s in seeds)
    for s in seeds:
        if out and s == out[-1][1] + 1:
            out[-1][1] = s
        else:
            out.append([s, s])
    return ",".join(f"{a}-{b}" if b > a else f"{a}" for a, b in out)


def collect_with_segmenter(data_spec, cache_dir: Path, log=print, only_segmented: bool = False,
                           weight_segmented: bool = False) -> dict:
    """Version 4's training data (classify-v11): every training exam's finder candidates
    (:func:`.classify_mip.mip_record`, version 3's features) plus, where the exam's segmenter record is
    cached (:func:`segmenter_record`, never computed here), its segmenter lesions as more candidates,
    as ``classify_exam`` takes them at run time; with *only_segmented* the exams without a cached
    segmenter record are left out; with *weight_segmented* each segmenter lesion weighs (exams) /
    (segmented exams) in the fit (``data["w"]``), as if every exam had been segmented.
    ``data["segmented"]``: {family: seeds with segmenter lesions}."""
    from ..models.classifier import FEATURES

    xs, ys, keys, truth, segmented, from_seg = [], [], [], {}, {}, []
    for family, seeds in data_spec:
        for seed in seeds:
            seg_path = Path(cache_dir) / f"{family}_{seed}.seglesions.npz"
            if only_segmented and not seg_path.exists():
                continue
            try:
                raw = mip_record(family, seed, cache_dir)
            except RuntimeError:
                log(f"  {family} {seed}: not buildable, skipped")
                continue
            parts = [(np.asarray(raw["x"]).reshape(-1, len(FEATURES)), raw["y"], raw["keys"])]
            if seg_path.exists():
                seg = segmenter_record(family, seed, cache_dir)
                parts.append((np.asarray(seg["x"]).reshape(-1, len(FEATURES)), seg["y"], seg["keys"]))
                segmented.setdefault(family, []).append(seed)
            for i, (x, y, k) in enumerate(parts):
                from_seg.append(np.full(len(y), i == 1))
                xs.append(x)
                ys.append(np.asarray(y, int))
                keys += np.asarray(k).tolist()
            truth.update(dict(zip(raw["truth_keys"].tolist(), raw["truth_values"].tolist())))
    n_exams, n_seg = len({k.split(":")[0] for k in truth}), sum(len(v) for v in segmented.values())
    seg_rows = np.concatenate(from_seg)
    w = np.where(seg_rows, n_exams / max(n_seg, 1), 1.0) if weight_segmented else None
    return {"x": np.concatenate(xs).reshape(-1, len(FEATURES)), "y": np.concatenate(ys).astype(int),
            "keys": np.array(keys), "truth": truth, "segmented": segmented, "w": w, "from_segmenter": seg_rows}


def main(argv=None) -> int:
    """``train [--only-segmented | --weight-segmented] ARGS``: :func:`.classify.main` (same options) on
    :func:`collect_with_segmenter`'s data; the card says which exams gave segmenter lesions."""
    import sys

    from .classify import main as train_main

    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] != ["train"]:
        print("usage: python -m BreastTumorSegLib.training.classify_segmenter train [--only-segmented] "
              "--data ... --cache-dir DIR --out DIR [--model NAME] [--card-version 4]", file=sys.stderr)
        return 2
    only, weigh = "--only-segmented" in argv, "--weight-segmented" in argv
    held = {}

    def collect(spec, cache):
        held["data"] = collect_with_segmenter(spec, cache, only_segmented=only, weight_segmented=weigh)
        return held["data"]

    def card_extra():
        seg = held["data"]["segmented"]
        return {"segmenter_candidates": {
            "training": "the shipped segmenter's lesions (engine/classify_lesions.py) of these training exams were "
                        "candidates beside the finder's, as classify_exam takes them at run time: "
                        + "; ".join(f"{f}:{seeds_text(s)} ({len(s)} exams)" for f, s in seg.items())
                        + ("; only those exams were used" if only else
                           "; the other training exams gave the finder's candidates only")
                        + (f"; each segmenter lesion weighed {float(held['data']['w'].max()):.3g} in the fit (exams / "
                           "segmented exams)" if weigh else ""),
            "run_time": "classify_lesions.SEGMENTER_CANDIDATES: every connected lesion of the shipped segmenter is "
                        "one more candidate of its breast"}}

    return train_main([a for a in argv[1:] if a not in ("--only-segmented", "--weight-segmented")], collect=collect,
                      card_extra=card_extra)


if __name__ == "__main__":
    raise SystemExit(main())
