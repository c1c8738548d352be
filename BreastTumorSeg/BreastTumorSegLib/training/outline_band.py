"""Train the band classifier of :mod:`BreastTumorSegLib.engine.learned_outline` (scikit-learn, numpy at run time).

    python -m BreastTumorSegLib.training.outline_band --cache DIR --data heterogeneous:7000-7007,... --out models/shipped

Each development exam is made as ``benchmarks/bench_generalization.py`` makes it (known motion removed), segmented by
the pipeline as shipped (``ftv-outline``, no registration), and cached (:func:`cache_exam`: the truth, the final
components, the probability map, the kinetic maps and the pre-contrast phase, cropped to the lesions' box + 20 mm).
Every band voxel of every kept lesion (:func:`..engine.learned_outline.band_features`) is a sample, labelled 1 when
it lies in the truth (the reader's outline), 0 otherwise. A ``GradientBoostingClassifier`` (log-loss) is fitted,
cross-validated grouped by exam, exported as node arrays (:func:`..models.trees.fitted_trees`, checked against
scikit-learn's decision function) and written as safetensors with a card holding its SHA-256.

Development seeds only (6000+ / 7000+); ``ellipse`` is refused. Version 2 trains on the irregular family's and the
irregular real-anatomy hybrids' development seeds too (version 1 refused them and failed its development gate:
docs/decisions/learned-outline-issue25.md). The threshold is chosen on the exam-grouped cross-validation
(:data:`MIN_CV_PRECISION`). Version 4 (``outlineband-v4``; v2's ``outlineband-demo`` weights are not replaced under
their name) adds the lesion's edge features and the band voxel's vesselness, and more homogeneous and vessel exams
(phantom 7000-7009, vessels 7000-7011).
"""
from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

import numpy as np

from ..engine.learned_outline import FEATURES, MODEL_NAME, MODEL_TASK, MODEL_VERSION, band_features

REFUSED = ("ellipse",)  # v2 trains on the irregular family's development seeds too (the brief; learned-outline-issue25.md)
CAP_PER_EXAM = 6_000  # at most this many band voxels per exam (random, fixed seed): no exam dominates
TREES = dict(n_estimators=100, max_depth=3, learning_rate=0.1, subsample=0.5, min_samples_leaf=200, random_state=0)
THRESHOLDS = tuple(round(0.5 + 0.05 * k, 2) for k in range(9))  # 0.50 ... 0.90
MIN_CV_PRECISION = 0.5  # the threshold: the lowest of THRESHOLDS whose cross-validated precision reaches this


def check_data(family: str, seeds) -> None:
    if family in REFUSED:
        raise SystemExit(f"refusing to train on {family}: an evaluation-only family (the step is judged on it)")
    bad = [s for s in seeds if s < 6000]
    if bad:
        raise SystemExit(f"refusing seeds {bad[:3]}...: held-out (training uses development seeds 6000+ only)")


def cache_exam(make, seed: int, out: Path) -> bool:
    """Segment the exam of *make(seed)* as the benchmark does and write its arrays to *out* (npz); False when it has
    neither a tumor nor a lesion."""
    import SimpleITK as sitk

    from ..engine.pipeline import SegmentSettings, segment_exam
    from ..models.registry import get_segmenter

    ph = make(seed)
    ref = ph.exam.reference
    exam = ph.exam.with_phases([p if k == 0 else sitk.Resample(p, ref, ph.motion[k], sitk.sitkLinear, 0.0)
                                for k, p in enumerate(ph.exam.phases)])
    seg = get_segmenter("ftv-outline")
    res = segment_exam(exam, model=seg, device="cpu", settings=SegmentSettings(registration="none"))
    maps = seg.kinetic_maps(exam)
    comps = sitk.RelabelComponent(sitk.ConnectedComponent(res.label, True), sortByObjectSize=True)
    a = sitk.GetArrayFromImage
    d = dict(truth=a(ph.tumor_labels).astype(np.int16), comps=a(comps).astype(np.int16),
             prob=a(res.probability).astype(np.float32), pre=a(exam.phases[0]).astype(np.float32),
             pe_early=maps.array("pe_early").astype(np.float32), valid=maps.array("valid").astype(np.uint8))
    if maps.array("ser") is not None:
        d["ser"] = maps.array("ser").astype(np.float32)
    spacing = np.asarray(comps.GetSpacing(), float)[::-1]
    any_ = (d["truth"] > 0) | (d["comps"] > 0)
    if not any_.any():
        return False
    idx = np.argwhere(any_)
    pad = np.ceil(20.0 / spacing).astype(int)
    box = tuple(slice(lo, hi) for lo, hi in zip(np.maximum(idx.min(0) - pad, 0), idx.max(0) + pad + 1))
    np.savez_compressed(out, spacing=spacing, **{k: v[box] for k, v in d.items()})
    return True


def exam_samples(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(features, labels) of every band voxel of every lesion of one cached exam."""
    from scipy import ndimage

    from ..engine.learned_outline import BAND_MM, SHELL_MM, _box

    d = np.load(path)
    comps, sp = d["comps"].astype(np.int32), d["spacing"]
    ser = d["ser"] if "ser" in d.files else None
    pad = np.ceil((BAND_MM + SHELL_MM) / sp).astype(int) + 1
    xs, ys = [], []
    for lab, mbox in enumerate(ndimage.find_objects(comps), start=1):
        if mbox is None:
            continue
        box = _box(mbox, comps.shape, pad)
        band, x = band_features(comps, lab, box, d["pe_early"], d["valid"], d["pre"], ser, d["prob"], sp)
        if band is None:
            continue
        xs.append(x)
        ys.append((d["truth"][box][band] > 0).astype(np.int8))
    if not xs:
        return np.zeros((0, len(FEATURES)), np.float32), np.zeros(0, np.int8)
    return np.concatenate(xs), np.concatenate(ys)


def collect(paths: list[Path], cap: int = CAP_PER_EXAM):
    rng = np.random.default_rng(0)
    xs, ys, gs = [], [], []
    for g, p in enumerate(paths):
        x, y = exam_samples(p)
        if len(y) > cap:
            keep = rng.choice(len(y), cap, replace=False)
            x, y = x[keep], y[keep]
        xs.append(x), ys.append(y), gs.append(np.full(len(y), g))
    return np.concatenate(xs), np.concatenate(ys), np.concatenate(gs)


def fit(x, y, groups, folds: int = 3):
    """(fitted classifier, cross-validated numbers grouped by exam)."""
    from sklearn.ensemble import GradientBoostingClassifier
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import GroupKFold

    p = np.zeros(len(y))
    for tr, te in GroupKFold(folds).split(x, y, groups):
        p[te] = GradientBoostingClassifier(**TREES).fit(x[tr], y[tr]).predict_proba(x[te])[:, 1]
    cv = {"folds": folds, "grouped_by": "exam", "auc": round(float(roc_auc_score(y, p)), 4),
          "samples": int(len(y)), "tumor_share": round(float(y.mean()), 4), "by_threshold": {}}
    for t in THRESHOLDS:
        take = p >= t
        cv["by_threshold"][f"{t:.2f}"] = {
            "precision": round(float(y[take].mean()) if take.any() else 0.0, 4),
            "recall": round(float(take[y == 1].mean()) if (y == 1).any() else 0.0, 4)}
    ok = [t for t in THRESHOLDS if cv["by_threshold"][f"{t:.2f}"]["precision"] >= MIN_CV_PRECISION]
    cv["threshold"] = min(ok) if ok else THRESHOLDS[-1]
    cv["threshold_by"] = (f"the lowest of {THRESHOLDS[0]}-{THRESHOLDS[-1]} whose cross-validated precision is >= "
                          f"{MIN_CV_PRECISION}")
    return GradientBoostingClassifier(**TREES).fit(x, y), cv


def save(gbc, x, out_dir: Path, training: dict, name: str = MODEL_NAME, threshold: float = 0.5) -> Path:
    from safetensors.numpy import save as save_numpy

    from ..io.atomic import write_bytes, write_json
    from ..models.trees import TreeEnsemble, fitted_trees

    state = fitted_trees(gbc)
    if not np.allclose(TreeEnsemble(state).logit(x), gbc.decision_function(x), atol=1e-6):
        raise RuntimeError("the exported trees disagree with scikit-learn's decision function")
    blob = save_numpy(state)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_bytes(out_dir / f"{name}.safetensors", blob)
    card = {"name": name, "version": MODEL_VERSION, "task": MODEL_TASK,
            "description": "Whether a voxel in the band (<= 8 mm) around a found lesion belongs to the tumor as a "
                           "reader draws it: gradient-boosted trees (numpy at run time) over scale-free kinetic, "
                           "pre-contrast, distance and probability features, the lesion's PE drop across its own edge "
                           "and the Hessian vesselness of the band voxel (engine/learned_outline.py). Trained "
                           "only on synthetic and real-anatomy hybrid development exams; not for clinical use.",
            "architecture": {"type": "band_voxel_gradient_boosted_trees", "n_trees": int(len(state["roots"])),
                             "max_depth": TREES["max_depth"], "learning_rate": TREES["learning_rate"],
                             "min_samples_leaf": TREES["min_samples_leaf"], "subsample": TREES["subsample"],
                             "split": "left where x[feature] <= threshold"},
            "feature_importances": {f: round(float(v), 4) for f, v in zip(FEATURES, gbc.feature_importances_)},
            "features": list(FEATURES), "n_features": len(FEATURES), "threshold": float(threshold),
            "weights": f"{name}.safetensors", "sha256": hashlib.sha256(blob).hexdigest(),
            "intended_use": "research and software testing only: trained on synthetic phantoms and real-anatomy "
                            "hybrids, never validated on patients",
            "training": training}
    path = out_dir / f"{name}.json"
    write_json(path, card)
    return path


def main(argv=None) -> int:
    from ..core.values import parse_seeds

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, help="family:seeds,family:seeds (development seeds only)")
    p.add_argument("--cache", type=Path, required=True, help="folder of cached exams (<family>_<seed>.npz)")
    p.add_argument("--out", type=Path, required=True)
    a = p.parse_args(argv)
    paths = []
    for item in a.data.split(","):
        fam, _, seeds = item.partition(":")
        seeds = parse_seeds(seeds)
        check_data(fam, seeds)
        for s in seeds:
            path = a.cache / f"{fam}_{s}.npz"
            if not path.exists():
                from ..training.phantom.families import FAMILIES

                makers = dict(FAMILIES)
                import importlib
                import sys
                sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "benchmarks"))
                makers.update(importlib.import_module("bench_generalization").hybrid_makers())
                if not cache_exam(makers[fam], s, path):
                    continue
            paths.append(path)
    x, y, groups = collect(paths)
    gbc, cv = fit(x, y, groups)
    print("cross-validated:", cv, flush=True)
    path = save(gbc, x, a.out, threshold=cv["threshold"], training={"data": a.data, "exams": len(paths), "cap_per_exam": CAP_PER_EXAM,
                                "label": "band voxel inside the truth (the reader's outline)", "cv": cv,
                                "trees": {k: v for k, v in TREES.items()},
                                "refused_families": list(REFUSED)})
    print("wrote", path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
