"""Exams of the malignancy families with the second-subtraction MIP features (:mod:`..engine.classify_mip`).

    OMP_NUM_THREADS=1 python -m BreastTumorSegLib.training.classify_mip \
        --data malignancy:100-335,malignancy-randomized:6000-6139 --cache-dir /tmp/cls6        # cache
    ... classify_mip --data ... --dev malignancy:7000-7029,malignancy-randomized:7000-7029 \
        --models "trees no-mask 300x depth 4 lr 0.03 leaf 5;trees no-mask+mip2 300x depth 4 lr 0.03 leaf 5"
    ... classify_mip train --data ... --cache-dir /tmp/cls6 --out DIR --model "..."            # fit a card

Each exam is generated and analysed once (:func:`mip_record`): its candidates as
:func:`.classify.labelled_candidates` labels them (the version-3 features, labels, breast keys and
truth) plus the 2D arrays the MIP features are computed from (each breast's MIP and footprint, each
candidate's projected footprint and side), cached as ``<cache_dir>/<family>_<seed>.npz`` (about
0.1-1 MB an exam; a cache of :func:`.classify.exam_record` is a subset of it). :func:`with_mip`
adds the MIP features to a record, so the features can change without regenerating any exam.
Training families and seeds only, as :mod:`.classify` (held-out seeds are refused by ``--data``);
the benchmark reads the same cache for its held-out exams.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ..engine.classify import exam_candidates
from ..engine.classify_mip import BreastMIP, candidate_footprint, exam_mips, mip_feature_rows, projection_axis, \
    second_subtraction_index
from ..engine.classify_context import context_features
from ..engine.classify_grid import HARMONISED, REFERENCE_SPACING_MM, grid_features, harmonised, spacing_from_record
from ..models.classifier import CONTEXT_FEATURES, FEATURES, GRID_FEATURES, MIP_FEATURES, WITH_GRID
from .classify import breast_table, candidate_labels, parse_data
from .phantom.malignancy import make_class_exam

SIDES = ("left", "right")


def _analyse(family: str, seed: int) -> dict:
    return analyse_phantom(make_class_exam(family, seed))


def analyse_phantom(ph) -> dict:
    """The record of :func:`mip_record` for an exam already generated (*ph*, a phantom with truth)."""
    exam, sides, cands, maps, context = exam_candidates(ph.exam, register=False)
    x, y, where = candidate_labels(ph, cands)
    post = sitk.GetArrayFromImage(exam.phases[second_subtraction_index(exam.n_phases)])
    mips = exam_mips(sitk.GetArrayFromImage(exam.pre), post, sides, exam.pre, maps.array("valid") > 0,
                     context["breast_hint"])
    axis = projection_axis(exam.pre)
    shape2d = tuple(n for i, n in enumerate(sides.shape) if i != axis)
    feet = np.stack([candidate_footprint(sides.shape, c.box, c.mask, axis) for c in cands]) if cands \
        else np.zeros((0, *shape2d), bool)
    rec = {"x": x, "y": y, "keys": np.array([k for k, _ in where], dtype="U64"),
           "truth_keys": np.array(list(breast_table(ph)), dtype="U64"),
           "truth_values": np.array(list(breast_table(ph).values()), int),
           "cand_side": np.array([c.side for c in cands], dtype="U8"), "cand_foot": feet,
           "spacing2d": np.array(next(iter(mips.values())).spacing if mips else (1.0, 1.0))}
    for side in SIDES:
        if side in mips:
            m = mips[side]
            rec[f"mip_{side}"], rec[f"foot_{side}"] = m.mip, m.footprint
            rec[f"tissue_{side}"], rec[f"tissue_foot_{side}"] = m.tissue, m.tissue_footprint
    return rec


def mip_record(family: str, seed: int, cache_dir: Path | None = None) -> dict:
    """The cached arrays of one exam (module docstring); generated and analysed on a cache miss."""
    path = None if cache_dir is None else Path(cache_dir) / f"{family}_{seed}.npz"
    if path is not None and path.exists():
        d = np.load(path, allow_pickle=False)
        if "cand_foot" in d.files and all(f"tissue_{k[4:]}" in d.files for k in d.files if k.startswith("mip_")):
            return {k: d[k] for k in d.files}
    rec = _analyse(family, seed)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npz")
        np.savez_compressed(tmp, **rec)
        tmp.replace(path)
    return rec


def with_mip(rec: dict, context: bool = False, grid: bool = False) -> dict:
    """An :func:`.classify.exam_record`-like dict whose ``x`` has the MIP features appended
    (``FEATURES + MIP_FEATURES``), and with *context* the breast-context features after them
    (:mod:`..engine.classify_context`: ``WITH_CONTEXT``), and with *grid* (and *context*) the
    grid-relative margin features after those (:mod:`..engine.classify_grid`: ``WITH_GRID``; the
    exam's voxel sides from the record, :func:`~..engine.classify_grid.spacing_from_record`)."""
    spacing = tuple(float(v) for v in rec["spacing2d"])
    mips = {s: BreastMIP(rec[f"mip_{s}"], rec[f"foot_{s}"], spacing, rec[f"tissue_{s}"], rec[f"tissue_foot_{s}"])
            for s in SIDES if f"mip_{s}" in rec}
    extra = mip_feature_rows(mips, rec["cand_side"].tolist(), list(rec["cand_foot"]))
    x = np.concatenate([np.asarray(rec["x"]).reshape(-1, len(FEATURES)), extra], axis=1)
    if context or grid:
        x = np.concatenate([x, context_features(x[:, :len(FEATURES)], rec["keys"])], axis=1)
    if grid:
        g = (grid_features(x[:, :len(FEATURES)], spacing_from_record(x[:, :len(FEATURES)], rec["spacing2d"]))
             if len(x) else np.zeros((0, len(GRID_FEATURES))))
        x = np.concatenate([x, g], axis=1)
    return {"x": x, "y": rec["y"], "keys": rec["keys"],
            "truth": dict(zip(rec["truth_keys"].tolist(), rec["truth_values"].tolist()))}


def collect_mip(data_spec, cache_dir: Path | None = None, log=print, skip_unbuildable: bool = False,
                context: bool = False, grid: bool = False) -> dict:
    """:func:`.classify.collect_all` with the MIP features (``x`` has FEATURES + MIP_FEATURES), and
    with *context* the breast-context features after them, with *grid* the grid-relative margin too."""
    xs, ys, keys, truth = [], [], [], {}
    for family, seeds in data_spec:
        for seed in seeds:
            try:
                rec = with_mip(mip_record(family, seed, cache_dir), context, grid)
            except RuntimeError:
                if not skip_unbuildable:
                    raise
                log(f"  {family} {seed}: not buildable, skipped")
                continue
            xs.append(rec["x"])
            ys.append(rec["y"])
            keys += rec["keys"].tolist()
            truth.update(rec["truth"])
            log(f"  {family} {seed}: {len(rec['y'])} candidates, {int(np.sum(rec['y']))} malignant")
    n = len(FEATURES) + len(MIP_FEATURES) + (len(CONTEXT_FEATURES) if context or grid else 0) + \
        (len(GRID_FEATURES) if grid else 0)
    return {"x": np.concatenate(xs).reshape(-1, n), "y": np.concatenate(ys).astype(int), "keys": np.array(keys),
            "truth": truth}


def harmonise_record(raw: dict, rec: dict, reference=REFERENCE_SPACING_MM) -> dict:
    """*rec* (:func:`with_mip` of the cached *raw*) with its :data:`~..engine.classify_grid.HARMONISED`
    features read as on the *reference* grid (:func:`~..engine.classify_grid.harmonised`; the exam's
    voxel sides from the raw record, before the voxel count is rewritten), as a card with
    ``grid_harmonisation`` reads them at run time; other columns kept."""
    x = np.asarray(rec["x"], np.float64)
    if len(x):
        x = harmonised(x, spacing_from_record(np.asarray(raw["x"]).reshape(-1, len(FEATURES)), raw["spacing2d"]),
                       reference)
    return {**rec, "x": x}


def collect_harmonised(data_spec, cache_dir: Path | None = None, log=print, reference=REFERENCE_SPACING_MM,
                       grid: bool = False) -> dict:
    """The training data of a card with ``grid_harmonisation`` (version 9 trial, classify-v9.md): each
    exam's candidate rows, :data:`FEATURES` only (with *grid*: the :data:`WITH_GRID` columns), the
    features counted in voxels read as on *reference* (:func:`harmonise_record`)."""
    xs, ys, keys, truth = [], [], [], {}
    for family, seeds in data_spec:
        for seed in seeds:
            try:
                raw = mip_record(family, seed, cache_dir)
            except RuntimeError:
                log(f"  {family} {seed}: not buildable, skipped")
                continue
            rec = with_mip(raw, context=grid, grid=grid)
            if not grid:
                rec["x"] = np.asarray(rec["x"])[:, :len(FEATURES)]
            rec = harmonise_record(raw, rec, reference)
            xs.append(rec["x"])
            ys.append(rec["y"])
            keys += rec["keys"].tolist()
            truth.update(rec["truth"])
    n = len(WITH_GRID) if grid else len(FEATURES)
    return {"x": np.concatenate(xs).reshape(-1, n), "y": np.concatenate(ys).astype(int), "keys": np.array(keys),
            "truth": truth}


def harmonisation_card(reference=REFERENCE_SPACING_MM) -> dict:
    """The card field that makes the run time read the features as the trainer did."""
    return {"grid_harmonisation": {
        "reference_spacing_mm": [float(v) for v in reference], "features": list(HARMONISED),
        "why": "trained and run on radial_cv (outline irregularity) and log_n_voxels read as on one reference "
               "grid (the middle of our phantom family's drawn grids): a coarse or anisotropic grid makes any "
               "outline ragged and changes the voxel count of the same lesion (classify-v8.md, classify-v9.md)"}}


def cv_family_aucs(data: dict, spec: tuple, repeats: int = 2) -> dict:
    """The exam-grouped 5-fold cross-validated breast AUC of the entry *spec* of
    :data:`.classify.CANDIDATE_MODELS` on *data*, mean over *repeats* shuffles of the folds, overall
    and per training family."""
    from sklearn.model_selection import PredefinedSplit, cross_val_predict

    from .classify import _exam_folds, _pipeline, breast_scores

    names, cv = sorted(data["truth"]), []
    for r in range(repeats):
        p = cross_val_predict(_pipeline(*spec), data["x"], data["y"], cv=PredefinedSplit(_exam_folds(data["keys"], r)),
                              method="decision_function")
        yb, sb = breast_scores(p, data["keys"], data["truth"], float(p.min()) - 1.0)
        cv.append(_family_aucs(yb, sb, names))
    return {str(k): round(float(np.mean([c[k] for c in cv])), 4) for k in cv[0]}


def cv_by_family(datasets: dict, repeats: int = 2) -> dict:
    """``{name: (data, spec)}`` -> :func:`cv_family_aucs` of each (training exams only)."""
    out = {}
    for name, (data, spec) in datasets.items():
        out[name] = cv_family_aucs(data, spec, repeats)
        print(name, out[name], flush=True)
    return out


def _family(key: str) -> str:
    return "malignancy-randomized" if key.startswith("randomized") else "malignancy"


def _family_aucs(y: np.ndarray, s: np.ndarray, names: list[str]) -> dict:
    from sklearn.metrics import roc_auc_score

    fam = np.array([_family(k) for k in names])
    out = {"all": float(roc_auc_score(y, s))}
    for f in sorted(set(fam)):
        if 0 < y[fam == f].sum() < (fam == f).sum():
            out[f] = float(roc_auc_score(y[fam == f], s[fam == f]))
    return out


def compare(train: dict, dev: dict, specs, repeats: int = 2) -> dict:
    """For each entry of :data:`.classify.CANDIDATE_MODELS` in *specs*: the exam-grouped 5-fold
    cross-validated breast AUC on *train* (mean over *repeats* shuffles, overall and per family)
    and the breast AUC on *dev* per family when fitted on all of *train*."""
    from .classify import _name, _pipeline, breast_scores

    names_d = sorted(dev["truth"])
    out = {}
    for spec in specs:
        model = _pipeline(*spec).fit(train["x"], train["y"])
        z = model.decision_function(dev["x"])
        yb, sb = breast_scores(z, dev["keys"], dev["truth"], float(min(z.min(), -10)) - 1.0)
        out[_name(*spec)] = {"cv": cv_family_aucs(train, spec, repeats),
                             "dev": {k: round(v, 4) for k, v in _family_aucs(yb, sb, names_d).items()}}
        print(_name(*spec), out[_name(*spec)], flush=True)
    return out


def main(argv=None) -> int:
    """``train ARGS``: :func:`.classify.main` on the exams with the MIP features (same options;
    ``train --context ARGS``: and the breast-context features; ``train --grid ARGS``: and the
    grid-relative margin features too; ``train --harmonise ARGS``: :data:`FEATURES` read as on the
    reference grid, :func:`collect_harmonised`, and the card says so); ``cv ARGS``: the version 9
    trial's cross-validation (:func:`cv_by_family`: version 3's trees on the raw and on the harmonised
    features, and the grid-relative feature set); otherwise cache exams (``--data``) and
    compare models (``--dev``, ``--models``; every feature set, the context ones included)."""
    from ..core.errors import InputError
    from .classify import CANDIDATE_MODELS, _name
    from .classify import main as train_main

    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["train"] and "--harmonise" in argv:
        return train_main([a for a in argv[1:] if a != "--harmonise"], collect=collect_harmonised,
                          card_extra=harmonisation_card())
    if argv[:1] == ["cv"]:
        return _cv_main(argv[1:])
    if argv[:1] == ["train"]:
        context, grid = "--context" in argv, "--grid" in argv
        return train_main([a for a in argv[1:] if a not in ("--context", "--grid")],
                          collect=lambda spec, cache: collect_mip(spec, cache, context=context, grid=grid))

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, help="FAMILY:SEEDS[,FAMILY:SEEDS] of the training families")
    p.add_argument("--cache-dir", type=Path, required=True)
    p.add_argument("--dev", help="development exams FAMILY:SEEDS[,...]: compare --models by CV on --data and AUC here")
    p.add_argument("--models", default="", help="';'-separated names of CANDIDATE_MODELS to compare (with --dev)")
    a = p.parse_args(argv)
    try:
        spec = parse_data(a.data)
        dev = parse_data(a.dev) if a.dev else None
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    train = collect_mip(spec, a.cache_dir, skip_unbuildable=True, log=(lambda *_: None) if dev else print, grid=bool(dev))
    if dev:
        wanted = [m for m in CANDIDATE_MODELS if _name(*m) in a.models.split(";")]
        compare(train, collect_mip(dev, a.cache_dir, skip_unbuildable=True, log=lambda *_: None, grid=True), wanted)
    return 0


V3_TREES = ("trees", "no-mask", 300, 4, 0.03, 5)
GRID_TREES = ("trees", "no-mask-grid", 300, 4, 0.03, 5)


def _cv_main(argv) -> int:
    import json

    from ..core.errors import InputError

    p = argparse.ArgumentParser(description="version 9 trial: exam-grouped CV on the training exams")
    p.add_argument("--data", required=True)
    p.add_argument("--cache-dir", type=Path, required=True)
    p.add_argument("--json", type=Path)
    a = p.parse_args(argv)
    try:
        spec = parse_data(a.data)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    raw = collect_mip(spec, a.cache_dir, skip_unbuildable=True, log=lambda *_: None, grid=True)
    harm = collect_harmonised(spec, a.cache_dir, log=lambda *_: None, grid=True)
    out = cv_by_family({"version 3 trees, raw features": (raw, V3_TREES),
                        "version 3 trees, harmonised features (refit)": (harm, V3_TREES),
                        "trees no-mask-grid (refit)": (raw, GRID_TREES)})
    if a.json:
        a.json.write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
