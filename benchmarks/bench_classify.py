#!/usr/bin/env python
"""Per-breast malignancy AUC of a classification model on every malignancy family; prints Markdown.

    OMP_NUM_THREADS=1 python benchmarks/bench_classify.py                       # seeds 5000-5029
    python benchmarks/bench_classify.py --seeds 5000-5029 --seeds 5100-5129 --cache-dir /tmp/cls-cache

Families (:mod:`BreastTumorSegLib.training.phantom.malignancy`): ``malignancy`` and
``malignancy-randomized`` (domain-randomised anatomy, contrast, grids and phase timings), the
training families (the shipped model saw their seeds 100-335 and 6000-6139; the seeds measured here,
5000-5029 and 5100-5129, are unseen), and the held-out families ``malignancy-ellipse`` (the independent ellipse
generator) and ``malignancy-hybrid`` (real breast anatomy with benign and malignant inserts,
``../shared/data/real-anatomy``). Neither the held-out families nor the evaluation seeds of any
family (5000-5029, and the fresh set 5100-5129 first measured on Dec 6) were used for training or
for choosing anything (features, thresholds, model). ``--seeds`` may be given once per seed set:
one table each.

Per breast in the field of view (since classify-v10 with the shipped segmenter's lesions as more
candidates, as ``classify_exam`` takes them: ``--no-segmenter-candidates`` for the classifier's own
candidates only, version 3's numbers before Dec 7 evening): the model's probability, computed exactly as
:func:`~BreastTumorSegLib.engine.classify.classify_exam` does (candidates from
:func:`~BreastTumorSegLib.engine.classify.exam_candidates` with the phases already aligned: the
exams are motion-free; the model's candidate probabilities; the breast's maximum), against the
breast's truth (malignant lesion placed in it or not). AUC (scikit-learn) with a 95 % bootstrap
interval (2000 resamples of the breasts, percentile), sensitivity and specificity at the card's
threshold (its operating point, chosen on the training cross-validation) and at 0.5. An exam the
generator cannot build for a seed (a lesion that does not fit) is skipped and counted. Each exam's candidates and second-subtraction MIPs are cached (``--cache-dir``,
model-independent: :mod:`BreastTumorSegLib.training.classify_mip`), so a second model (version 3's
features or version 4's with the MIP features) or a rerun costs seconds. Cost: 5-30 s per exam to generate and analyse on one thread.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "BreastTumorSeg"))

from BreastTumorSegLib.models.classifier import (ALL_FEATURES, DEFAULT_CLASSIFIER, FEATURES, WITH_CONTEXT,  # noqa: E402
                                                 WITH_MEASURE, load_classifier)
from BreastTumorSegLib.training.classify import breast_scores  # noqa: E402
from BreastTumorSegLib.engine.classify_grid import card_harmonises, harmonised, spacing_from_record  # noqa: E402
from BreastTumorSegLib.training.classify_mip import mip_record, with_mip  # noqa: E402
from BreastTumorSegLib.training.classify_segmenter import segmenter_record  # noqa: E402
from BreastTumorSegLib.engine import classify_lesions  # noqa: E402
from BreastTumorSegLib.core.values import parse_seeds  # noqa: E402
from BreastTumorSegLib.training.phantom.malignancy import CLASS_FAMILIES  # noqa: E402


def auc_ci(y: np.ndarray, s: np.ndarray, n_boot: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """AUC and its 95 % percentile-bootstrap interval (resampling breasts)."""
    from sklearn.metrics import roc_auc_score

    auc = float(roc_auc_score(y, s))
    rng = np.random.default_rng(seed)
    boots = []
    for _ in range(n_boot):
        i = rng.integers(0, len(y), len(y))
        if 0 < y[i].sum() < len(i):
            boots.append(roc_auc_score(y[i], s[i]))
    lo, hi = np.percentile(boots, [2.5, 97.5])
    return auc, float(lo), float(hi)


def collect_buildable(family: str, seeds, cache_dir: Path, n_features: int, reference=None,
                      segmenter: bool = False) -> tuple[dict, list[int]]:
    """The candidates of every exam of *seeds* that the generator can build (their first
    *n_features* features: the model's; with a *reference* spacing, the features counted in the
    exam's voxels read as on that grid, :func:`~BreastTumorSegLib.engine.classify_grid.harmonised`),
    and the skipped seeds; with *segmenter*, the segmenter's lesions are more candidates
    (``engine/classify_lesions.py``, classify-v10: a card reading version 3's features only)."""
    xs, ys, keys, truth, skipped = [], [], [], {}, []
    for seed in seeds:
        try:
            seg = segmenter_record(family, seed, cache_dir) if segmenter else None
            raw = mip_record(family, seed, cache_dir)
            rec = with_mip(raw, context=n_features > len(ALL_FEATURES), grid=n_features > len(WITH_CONTEXT))
            rec["x"] = rec["x"][:, :n_features]
            if reference is not None and len(rec["x"]):
                rec["x"] = harmonised(rec["x"], spacing_from_record(rec["x"], raw["spacing2d"]), reference)
        except RuntimeError:  # the generator could not place a lesion for this seed
            skipped.append(seed)
            continue
        xs.append(rec["x"])
        ys.append(rec["y"])
        keys += rec["keys"].tolist()
        truth.update(rec["truth"])
        if seg is not None and len(seg["y"]):
            xs.append(np.asarray(seg["x"]).reshape(-1, len(FEATURES)))
            ys.append(seg["y"])
            keys += seg["keys"].tolist()
    return {"x": np.concatenate(xs), "y": np.concatenate(ys), "keys": np.array(keys), "truth": truth}, skipped


def collect_measured(family: str, seeds, records: Path, n_features: int, segmenter: bool) -> tuple[dict, list[int]]:
    """:func:`collect_buildable` from measurement records (``census_classify_measure.py record``,
    classify-v12: the finder's candidates and the segmenter's lesions of each exam with version 3's
    features and the measurement features): the first *n_features* columns of FEATURES +
    MEASURE_FEATURES (a card reading FEATURES or WITH_MEASURE); a seed not recorded is an error, an
    unbuildable one is skipped."""
    from BreastTumorSegLib.training.classify_measure import collect_records

    seeds = list(seeds)
    missing = [s for s in seeds if not (records / f"{family}_{s}.measure.npz").exists()]
    if missing:
        raise SystemExit(f"error: {family} {missing} not recorded in {records}")
    data = collect_records(records, [(family, s) for s in seeds], finder_only=not segmenter)
    found = {s for _, s in data["exams"]}
    data["x"] = data["x"][:, :n_features]
    return data, [s for s in seeds if s not in found]


def family_row(clf, family: str, seeds: str, cache_dir: Path, segmenter: bool = False,
               measure_records: Path | None = None) -> dict:
    """One family's evaluation on one seed set (what the table and the card show)."""
    if measure_records is not None:
        data, skipped = collect_measured(family, parse_seeds(seeds), measure_records, len(clf.feature_names), segmenter)
    else:
        data, skipped = collect_buildable(family, parse_seeds(seeds), cache_dir, len(clf.feature_names),
                                          card_harmonises(clf.card), segmenter)
    p_cand = clf.probability(data["x"]) if len(data["x"]) else np.zeros(0)
    y, s = breast_scores(p_cand, data["keys"], data["truth"], clf.no_candidate_probability)
    auc, lo, hi = auc_ci(y, s)

    def rates(t):
        return (float(np.mean(s[y == 1] >= t)) if (y == 1).any() else float("nan"),
                float(np.mean(s[y == 0] < t)) if (y == 0).any() else float("nan"))

    (sens, spec), (sens5, spec5) = rates(clf.threshold), rates(0.5)
    return {"seeds": seeds, "exams": len({k.split(":")[0] for k in data["truth"]}), "skipped_seeds": skipped,
            "breasts": len(y), "malignant_breasts": int(y.sum()), "auc": round(auc, 3), "auc_unrounded": auc,
            "auc_95ci": [round(lo, 3), round(hi, 3)], "threshold": clf.threshold,
            "sensitivity_at_threshold": round(sens, 3), "specificity_at_threshold": round(spec, 3),
            "sensitivity_at_0.5": round(sens5, 3), "specificity_at_0.5": round(spec5, 3)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--families", default=",".join(CLASS_FAMILIES))
    p.add_argument("--seeds", action="append", help="a seed set (repeat for several; default 5000-5029)")
    p.add_argument("--model", default=DEFAULT_CLASSIFIER)
    p.add_argument("--models-dir", default=None)
    p.add_argument("--cache-dir", type=Path, default=Path("/tmp/bench_classify_cache"))
    p.add_argument("--update-card", action="store_true",
                   help="write the tables into the model card's 'evaluation' (the weights and their SHA-256 stay)")
    p.add_argument("--segmenter-candidates", action=argparse.BooleanOptionalAction,
                   default=classify_lesions.SEGMENTER_CANDIDATES,
                   help="the shipped segmenter's lesions as more candidates, as classify_exam takes them "
                        "(engine/classify_lesions.py, docs/decisions/classify-v10.md; default: its switch, on; "
                        "cached beside the exams); --no-segmenter-candidates: the classifier's own candidates only")
    p.add_argument("--measure-records", type=Path, default=None,
                   help="read each exam's candidates from measurement records (benchmarks/census_classify_measure.py "
                        "record; classify-v12), for a card reading FEATURES or FEATURES + MEASURE_FEATURES")
    a = p.parse_args(argv)
    evaluation = {}
    clf = load_classifier(a.model, [a.models_dir] if a.models_dir else None)
    if a.measure_records is not None and tuple(clf.feature_names) not in (FEATURES, WITH_MEASURE):
        p.error("measurement records carry FEATURES and MEASURE_FEATURES only")
    if a.segmenter_candidates and len(clf.feature_names) != len(FEATURES) and a.measure_records is None:
        p.error("the segmenter's lesions are cached with version 3's features only: "
                "add --no-segmenter-candidates for a card reading more features")
    print(f"model {clf.model_id}; threshold {clf.threshold:g}; trained on: {clf.card.get('training', {}).get('data', '?')}")
    print(f"candidates: {'measurement records ' + str(a.measure_records) if a.measure_records else 'cache ' + str(a.cache_dir)}"
          f"{', with the segmenter lesions' if a.segmenter_candidates else ''}")
    for seeds in a.seeds or ["5000-5029"]:
        print(f"\nseeds {seeds}\n")
        print("| family | exams | breasts (malignant) | AUC [95 % CI] | sensitivity / specificity at the threshold | at 0.5 |")
        print("|---|---|---|---|---|---|")
        table = evaluation.setdefault(seeds, {})
        for fam in a.families.split(","):
            r = table[fam] = family_row(clf, fam, seeds, a.cache_dir, a.segmenter_candidates, a.measure_records)
            skipped = f" ({len(r['skipped_seeds'])} seed(s) not buildable)" if r["skipped_seeds"] else ""
            print(f"| {fam} | {r['exams']}{skipped} | {r['breasts']} ({r['malignant_breasts']}) | {r['auc']:.3f} "
                  f"[{r['auc_95ci'][0]:.3f}-{r['auc_95ci'][1]:.3f}] | {r['sensitivity_at_threshold']:.2f} / "
                  f"{r['specificity_at_threshold']:.2f} | {r['sensitivity_at_0.5']:.2f} / {r['specificity_at_0.5']:.2f} |")
        print("\nunrounded AUC: " + ", ".join(f"{fam} {r['auc_unrounded']:.4f}" for fam, r in table.items()))
    if a.update_card:
        from BreastTumorSegLib.io.atomic import write_json
        from BreastTumorSegLib.models.classifier import classification_models

        card_path = classification_models([a.models_dir] if a.models_dir else None)[a.model]
        card = json.loads(card_path.read_text())
        card["evaluation"] = {"benchmark": "benchmarks/bench_classify.py (per breast; bootstrap over breasts)",
                              "by_seeds": evaluation,
                              "caveat": "synthetic exams only, classes drawn by our own rules; not a clinical "
                                        "classifier; probabilities not calibrated for any population. The "
                                        "malignancy and malignancy-randomized rows are unseen seeds of the two "
                                        "training families; only the ellipse and hybrid rows are families the "
                                        "model never saw. The seeds 5000-5029 had been measured with earlier "
                                        "models (README); 5100-5129 were first measured with this one, once. "
                                        "Features, training mix, tree setting and threshold were chosen on "
                                        "training-seed cross-validation and development seeds 7000-7029 alone"}
        write_json(card_path, card)
        print(f"\nevaluation written into {card_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
