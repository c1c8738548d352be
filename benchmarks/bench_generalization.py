#!/usr/bin/env python
"""Generalisation of the tumor models across synthetic families; prints a Markdown table.

    python benchmarks/bench_generalization.py                                # 5000-5009, all families
    python benchmarks/bench_generalization.py --models unet-demo,ftv --seeds 5000-5002
    python benchmarks/bench_generalization.py --families ellipse --hybrids

Per family and model, the whole pipeline (``segment_exam``, CPU, no registration: the known
motion of each exam is removed first with its ground-truth transforms) and per exam:

* Dice of the predicted tumor label against the truth (median over the exams that have a tumor:
  an exam without any tumor in truth has no Dice or voxel recall to give and is left out of
  those medians; it still counts in the false-positive lesion statistics, where everything it
  reports is a false positive; the table says how many exams were tumor-free);
* false-positive volume outside the TRUE breast mask (mL, median): what a model marks in the
  heart, vessels or chest wall;
* per lesion (:func:`~BreastTumorSegLib.evaluation.lesions.lesion_level`, the phantom's tumor labels
  as true lesions): lesion sensitivity for lesions >= 0.1 mL and >= 0.2 mL (a true lesion is found
  when a predicted component overlaps it), false-positive lesions per exam (predicted components
  overlapping no true lesion; median and mean), voxel recall (median);
* an FROC table per family and model: lesion sensitivity / mean FP lesions per exam when the
  pipeline's probability map, restricted to its label map, is cut at 0.5-0.95;
* s/exam: wall time of the whole pipeline per exam (generation excluded; shown separately).

``--compare-fp-reduction`` runs the pipeline once without the component-level false-positive
reduction (:mod:`BreastTumorSegLib.engine.fpreduce`; that is the pipeline before the stage existed)
and applies the stage to that very result, giving a "before" and an "after" row from one
prediction, with the stage's own time per exam. ``--compare-kept-hull`` likewise gives rows before (the pipeline
as it is) and after the fill of each kept lesion (:mod:`BreastTumorSegLib.engine.kept_hull`, ``KEPT_HULL`` off by
default) applied to that very result: what the pipeline gives with the step on, with one prediction;
``--compare-step kept-grow`` the same for the growth of each kept lesion (:mod:`BreastTumorSegLib.engine.kept_grow`),
``--compare-step kept-pieces`` for the dropped pieces joined to them (:mod:`BreastTumorSegLib.engine.kept_pieces`),
``--compare-step learned-outline`` for the learned band classifier (:mod:`BreastTumorSegLib.engine.learned_outline`),
``--compare-step kept-pieces-grow`` for both in the pipeline's order (pieces, then the growth on their result).
``--compare-step dark-before`` compares a step inside ``predict`` (:mod:`BreastTumorSegLib.engine.dark_before`): the
pipeline runs with its switch on, and only where the step changed the probability map is the exam segmented again with
it off for "before" (elsewhere both are the same computation; each "after" line says which).
``--compare-step dark-guard`` likewise for the guard on dark_before's components (:mod:`BreastTumorSegLib.engine.dark_guard`:
its ``add_dark_guard`` is watched, so an exam is segmented again only where the guard dropped a component).
``--compare-step curved-floor`` likewise for the band up to a curved chest wall in two-breast views
(:mod:`BreastTumorSegLib.engine.curved_floor`, ``CURVED_FLOOR``; watched through ``curved_floor_lesions``).
``--compare-step moderate`` likewise for compact moderate tumors above their own ring (:mod:`BreastTumorSegLib.engine.moderate`).
``--compare-step breast-reach`` likewise for the breast region's one-breast reach (``ONE_BREAST_WRAP`` of
:mod:`BreastTumorSegLib.preprocess.breast_region`): the pipeline runs with it on, and an exam is segmented again with it
off only where the region (mask, chest-wall level, floor) differs.
``--compare-step one-breast-band`` likewise for the deep zone of a one-breast view searched as its own band
(:mod:`BreastTumorSegLib.engine.one_breast_band`): segmented again with it off only where it added a lesion.
A step on by default (``KEPT_HULL``, ``KEPT_GROW``) is already in the "before" rows: give ``--set
engine.kept_grow.KEPT_GROW=false`` (or the step's switch) for a "before" without it.

Families (:mod:`BreastTumorSegLib.training.phantom.families`): ``phantom`` (our original
family), ``randomized`` (domain-randomised), ``ellipse`` (held out, mimics an independent
generator, never used for training), ``heterogeneous`` and ``vessels`` (heterogeneous tumors and
enhancing vessels inserted into lesion-free randomised anatomy; the component classifier was
trained on seeds 6000+ of these, never on the 5000s), ``irregular`` (held-out tumor shape model:
no model or classifier was trained on it). What each model was trained on is read from its card
(``families_trained_on``; cards without it were trained on "phantom" only) and printed above
the table: a family a model was not trained on is out-of-distribution for it. ``ftv`` is the classical (untrained) functional tumor volume.
``--set MODULE.NAME=VALUE`` (repeatable) sets a module-level setting of the package before the run, e.g.
``--set engine.behind_floor.BEHIND_FLOOR=false``: a before/after pair of one switch needs no wrapper script.
``--hybrids`` adds the hybrid family (synthetic lesions on real anatomy: axial bilateral, sagittal
single breast, that sagittal volume cut to thin slabs of 12 and 5 slices of 3 mm, and the irregular family's
heterogeneous random-walk tumors and vessels inserted into the axial and sagittal anatomy) when
``BreastTumorSegLib.training.phantom.hybrid`` exists, and says so when it does not.
Cost: a few seconds to generate and 5-60 s to segment an exam on 2 CPU threads.
"""
from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "BreastTumorSeg"))

from BreastTumorSegLib.core.imageutil import voxel_volume_ml  # noqa: E402
from BreastTumorSegLib.evaluation.lesions import froc, lesion_level  # noqa: E402
from BreastTumorSegLib.evaluation.metrics import dice  # noqa: E402
from BreastTumorSegLib.core.values import parse_seeds  # noqa: E402


# --compare-step: module of BreastTumorSegLib.engine (its add_<module> is the step), the stage's name, the column.
POST_STEPS = {"kept-hull": ("kept_hull", "fill of the kept lesions (engine/kept_hull.py)", "kept-lesion fill"),
              "kept-grow": ("kept_grow", "growth of the kept lesions (engine/kept_grow.py)", "kept-lesion growth"),
              "kept-pieces": ("kept_pieces", "dropped pieces joined to the kept lesions (engine/kept_pieces.py)",
                              "kept-lesion pieces"),
              "kept-reach": ("kept_reach", "more rounds of the kept-lesion growth (engine/kept_reach.py)",
                             "kept-lesion reach"),
              # the same step with its stop (REACH_FADE, REACH_BG: a round's layer must stand out as tumor; irr18)
              "kept-reach-stop": ("kept_reach", "more rounds of the kept-lesion growth, each layer kept only where it "
                                  "enhances like the lesion and above the tissue around it (engine/kept_reach.py)",
                                  "kept-lesion reach with stop"),
              "learned-outline": ("learned_outline", "a learned band classifier outlines each kept lesion "
                                  "(engine/learned_outline.py)", "learned outline"),
              # both optional steps in the pipeline's order (pieces, then growth), each on the other's result
              "kept-pieces-grow": ("kept_pieces+kept_grow", "dropped pieces joined, then growth of the kept lesions "
                                   "(engine/kept_pieces.py, engine/kept_grow.py)", "kept-lesion pieces + growth"),
              # a step inside the predict stage (its switch in PREDICT_STEPS): "after" is the pipeline run with it on
              "dark-before": ("dark_before", "tumors dark before contrast (engine/dark_before.py)",
                              "dark before contrast"),
              # the guard on dark_before's components (inside predict): "before" = dark_before as it is (guard off)
              "dark-guard": ("dark_guard", "guard on the dark-before components (engine/dark_guard.py)",
                             "dark-before guard"),
              # the breast region's one-breast reach (preprocess/breast_region.py ONE_BREAST_WRAP; the region, not a step)
              "breast-reach": ("breast_region", "the breast region's one-breast reach (preprocess/breast_region.py)",
                               "one-breast reach"),
              # a one-breast view's deep zone as its own band (engine/one_breast_band.py, inside predict)
              "one-breast-band": ("one_breast_band", "the deep zone of a one-breast view searched as its own band "
                                  "(engine/one_breast_band.py)", "one-breast band"),
              # the band up to a curved chest wall in two-breast views (inside predict, engine/curved_floor.py, floor20)
              "curved-floor": ("curved_floor", "the band between the flat floor and the curved chest wall, two-breast "
                               "views (engine/curved_floor.py)", "curved floor"),
              "moderate": ("moderate", "compact moderate tumors above their own ring (engine/moderate.py)",
                           "moderate tumors"),
              "vessel-open": ("vessel_open", "what the vessel opening took from small tumors (engine/vessel_open.py)",
                              "vessel-opening pieces")}
# --compare-step of a step inside ``predict`` (it changes the probability map the post-processing reads): module, switch.
PREDICT_STEPS = {"dark_before": "DARK_BEFORE", "dark_guard": "DARK_GUARD", "vessel_open": "VESSEL_OPEN",
                 "one_breast_band": "ONE_BREAST_BAND", "curved_floor": "CURVED_FLOOR",
                 "moderate": "MODERATE"}
# A predict step watched through another function than ``add_<module>`` (it gives the components it adds, first).
PREDICT_WATCH = {"curved_floor": "curved_floor_lesions"}


def _watched_pair(run, mod, switch: str, holder, name: str, real, watched, changed: list):
    """(before, after, s before, s after, segmented twice): ``run()`` with *mod*'s *switch* on and *holder*'s
    *name* replaced by *watched* (which appends to *changed*); ``run()`` again with the switch off only when
    *changed* holds a True. Everything is put back afterwards."""
    was = getattr(mod, switch)
    try:
        setattr(mod, switch, True)
        setattr(holder, name, watched)
        t0 = time.perf_counter()
        after = run()
        secs_after = time.perf_counter() - t0
        setattr(holder, name, real)
        if not any(changed):
            return after, after, secs_after, secs_after, False
        setattr(mod, switch, False)
        t0 = time.perf_counter()
        before = run()
        return before, after, time.perf_counter() - t0, secs_after, True
    finally:
        setattr(mod, switch, was)
        setattr(holder, name, real)


def predict_step_pair(module: str, run):
    """(result before, result after, s before, s after, segmented twice) for a step inside ``predict``: ``run()``
    (the whole pipeline on one exam) once with the step's switch on, its ``add_<module>`` watched; only when the
    step changed the probability map is the exam segmented again with the switch off (elsewhere the two pipelines
    are the same computation, so "before" is that very result)."""
    mod = importlib.import_module(f"BreastTumorSegLib.engine.{module}")
    name = PREDICT_WATCH.get(module, f"add_{module}")
    switch, real = PREDICT_STEPS[module], getattr(mod, name)
    changed = []

    def watched(seg, exam, prob, *args, **kw):
        out = real(seg, exam, prob, *args, **kw)
        if module in PREDICT_WATCH:  # the components it adds (exam grid): a change when any
            changed.append(bool(np.asarray(out[0]).any()))
        else:
            changed.append((out[0] if isinstance(out, tuple) else out) is not prob)
        return out

    return _watched_pair(run, mod, switch, mod, name, real, watched, changed)


# --compare-step of a switch of the breast region (preprocess/breast_region.py, passed by the pipeline): module, switch.
REGION_STEPS = {"breast_region": "ONE_BREAST_WRAP"}


def _same_region(a: tuple, b: tuple) -> bool:
    """Two :func:`breast_region` results (mask, context) give the pipeline the same region: mask, level, floor."""
    (ma, ca), (mb, cb) = a, b
    if not np.array_equal(sitk.GetArrayViewFromImage(ma), sitk.GetArrayViewFromImage(mb)):
        return False
    for key in ("level", "chest_wall_row"):
        x, y = ca.get(key), cb.get(key)
        if (x is None) != (y is None) or (x is not None and not np.array_equal(x, y)):
            return False
    return True


def region_step_pair(module: str, run):
    """As :func:`predict_step_pair` for a switch of the breast region: ``run()`` once with the switch on, the
    pipeline's ``breast_region`` watched (each call made again with the switch's keyword off and compared); only
    when the region changed is the exam segmented again with the switch off."""
    mod = importlib.import_module(f"BreastTumorSegLib.preprocess.{module}")
    pipe = importlib.import_module("BreastTumorSegLib.engine.pipeline")
    switch, real, changed = REGION_STEPS[module], pipe.breast_region, []
    keyword = switch.lower()

    def watched(img, *args, **kw):
        out = real(img, *args, **kw)
        if kw.get(keyword):
            changed.append(not _same_region(out, real(img, *args, **dict(kw, **{keyword: False}))))
        return out

    return _watched_pair(run, mod, switch, pipe, "breast_region", real, watched, changed)


def post_step(modules: str):
    """The step of ``--compare-step``: ``add_<module>`` of each module of *modules* (``a+b``: a, then b on a's result)."""
    steps = [getattr(importlib.import_module(f"BreastTumorSegLib.engine.{m}"), f"add_{m}") for m in modules.split("+")]

    def run(seg, exam, label, lesions, components, prob, options, enabled=True):
        for step in steps:
            label, lesions, components = step(seg, exam, label, lesions, components, prob, options, enabled=enabled)
        return label, lesions, components
    return run


def motion_free(ph):
    """The exam with each phase put back on phase 0 by its ground-truth transform."""
    ref = ph.exam.reference
    return ph.exam.with_phases([p if k == 0 else sitk.Resample(p, ref, ph.motion[k], sitk.sitkLinear, 0.0)
                                for k, p in enumerate(ph.exam.phases)])


def hybrid_makers() -> dict:
    """``{"hybrid-axial": fn, "hybrid-sagittal": fn, "hybrid-sagittal-slab12": fn, "hybrid-sagittal-slab5": fn,
    "hybrid-axial-irregular": fn, "hybrid-sagittal-irregular": fn}``
    when the hybrid module exists, else {}."""
    try:
        mod = importlib.import_module("BreastTumorSegLib.training.phantom.hybrid")
    except ImportError:
        return {}
    make = getattr(mod, "make_hybrid", None)
    if make is None:
        return {}
    out = {f"hybrid-{a}": (lambda seed, a=a: make(seed, anatomy=a)) for a in ("axial", "sagittal")}
    # Thin single-breast sagittal slabs (issue 25): the sagittal volume cut to 12 and 5 slices of 3 mm.
    # A single slice is refused by the engine (an exam needs 2 slices per axis): tested in test_breast_gate.
    out.update({f"hybrid-sagittal-slab{n}": (lambda seed, n=n: make(seed, anatomy="sagittal", slab_slices=n))
                for n in (12, 5)})
    # Real tumor shapes in a real breast: the irregular family's random-walk tumors with heterogeneous
    # enhancement (and its vessels) inserted into the lesion-free axial / sagittal anatomy.
    het = importlib.import_module("BreastTumorSegLib.training.phantom.heterogeneous")
    if hasattr(het, "make_hybrid_heterogeneous"):
        # The axial volume at its own resolution (1.25 x 1.25 x 1 mm, clinical; binned 2 x 2 x 2 these
        # tumors of 0.2-3 mL span 20-200 voxels), the sagittal one binned in-plane only (0.94 x 0.94 x 3 mm).
        out.update({f"hybrid-{a}-irregular": (lambda seed, a=a, s=s: het.make_hybrid_heterogeneous(seed, anatomy=a,
                                                                                                  shrink=s))
                    for a, s in (("axial", (1, 1, 1)), ("sagittal", None))})
    return out


def score(ph, label: sitk.Image) -> tuple[float, float, int, int]:
    """(Dice, false-positive mL outside the true breast, lesions found, lesions)."""
    pred = sitk.GetArrayViewFromImage(label) > 0
    truth = sitk.GetArrayViewFromImage(ph.tumor_labels)
    breast = sitk.GetArrayViewFromImage(ph.breast_mask) > 0
    fp_ml = float(np.count_nonzero(pred & ~breast & (truth == 0)) * voxel_volume_ml(label))
    ids = [i for i in np.unique(truth) if i > 0]
    found = sum(bool(np.any(pred[truth == i])) for i in ids)
    return float(dice(pred, truth > 0)), fp_ml, found, len(ids)


def trained_on(model: str) -> str:
    """The phantom families a registry model was trained on, from its card (and its breast model's)."""
    from BreastTumorSegLib.models.registry import get_segmenter

    card = get_segmenter(model).card
    if "architecture" not in card:
        return "nothing (rule-based)"
    fams = card.get("families_trained_on", ["phantom"])
    text = ", ".join(fams) + " families"
    if card.get("breast_model"):
        from BreastTumorSegLib.models.breast_model import BreastMaskModel

        gate = BreastMaskModel.load(card["breast_model"]).card
        text += f"; its breast model {card['breast_model']}: {', '.join(gate.get('families_trained_on', ['phantom']))}"
    return text


def table(header: list[str], rows: list[list]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return "\n".join(out + ["| " + " | ".join(str(c) for c in r) + " |" for r in rows])


FROC_THRESHOLDS = (0.5, 0.7, 0.8, 0.9, 0.95)


def exam_scores(ph, label: sitk.Image) -> dict:
    """Every per-exam number of the tables for one predicted label map."""
    d, fp_ml, _, _ = score(ph, label)
    l1 = lesion_level(label, ph.tumor_labels, 0.1, ref_is_labels=True)
    l2 = lesion_level(label, ph.tumor_labels, 0.2, ref_is_labels=True)
    has_tumor = bool(np.any(sitk.GetArrayViewFromImage(ph.tumor_labels)))
    return {"dice": d if has_tumor else float("nan"), "fp_ml": fp_ml, "found1": l1.n_found, "true1": l1.n_true,
            "found2": l2.n_found, "true2": l2.n_true, "fp": l1.n_false_positive,
            "recall": l1.voxel_recall if has_tumor else float("nan"), "tumor_free": not has_tumor}


def components_of(label: sitk.Image) -> sitk.Image:
    return sitk.RelabelComponent(sitk.ConnectedComponent(label, True), sortByObjectSize=True)


def summary_row(fam: str, model: str, stage: str, rows: list[dict], secs: list[float], gen: list[float]) -> list:
    def sens(f, t):
        found, true = sum(r[f] for r in rows), sum(r[t] for r in rows)
        return f"{found}/{true} ({found / true:.2f})" if true else "n/a"

    fps = [r["fp"] for r in rows]  # every exam, tumor-free ones included
    recall = [r["recall"] for r in rows if not np.isnan(r["recall"])]
    dices = [r["dice"] for r in rows if not np.isnan(r["dice"])]  # exams with a tumor only
    free = [r["fp"] for r in rows if r.get("tumor_free")]
    return [fam, model, stage, f"{np.median(dices):.3f}" if dices else "n/a", sens("found1", "true1"),
            sens("found2", "true2"), f"{np.median(fps):g}", f"{np.mean(fps):.2f}",
            f"{np.median(recall):.3f}" if recall else "n/a", f"{np.median([r['fp_ml'] for r in rows]):.1f}",
            len(rows), f"{len(free)} ({sum(free)} FP)", f"{np.mean(secs):.1f}", f"{np.mean(gen):.1f}"]


def apply_setting(item: str) -> str:
    """``--set MODULE.NAME=VALUE``: set ``BreastTumorSegLib.MODULE.NAME`` (an existing module-level setting) to
    VALUE read as JSON (``true``, ``0.5``, ``null``); returns what was set. A typo is refused, never a new name."""
    key, sep, value = item.partition("=")
    mod_name, _, name = key.strip().rpartition(".")
    if not sep or not mod_name or not name:
        raise SystemExit(f"--set {item!r}: write MODULE.NAME=VALUE, e.g. --set engine.behind_floor.BEHIND_FLOOR=false")
    try:
        mod = importlib.import_module(f"BreastTumorSegLib.{mod_name}")
    except ImportError:
        raise SystemExit(f"--set {item!r}: no module BreastTumorSegLib.{mod_name} (e.g. engine.behind_floor)")
    if not hasattr(mod, name):
        raise SystemExit(f"--set {item!r}: BreastTumorSegLib.{mod_name} has no setting {name}")
    try:
        val = json.loads(value)
    except json.JSONDecodeError:
        raise SystemExit(f"--set {item!r}: {value!r} is not a JSON value (true, false, null, a number, a \"string\")")
    setattr(mod, name, val)
    return f"BreastTumorSegLib.{mod_name}.{name} = {val!r}"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default="unet-demo,st-demo,ftv")
    p.add_argument("--seeds", default="5000-5009")
    p.add_argument("--families", default="phantom,randomized,ellipse,heterogeneous,vessels,irregular")
    p.add_argument("--hybrids", action="store_true", help="add hybrid rows if the hybrid module exists")
    p.add_argument("--compare-fp-reduction", action="store_true",
                   help="rows before (pipeline without the stage) and after the false-positive reduction")
    p.add_argument("--compare-kept-hull", action="store_true",
                   help="rows before and after filling each kept lesion (engine/kept_hull.py); = --compare-step kept-hull")
    p.add_argument("--compare-step", choices=sorted(POST_STEPS),
                   help="rows before (the pipeline as it is) and after one of its steps on the kept lesions, applied "
                        "to that very result with the step on")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--set", action="append", default=[], metavar="MODULE.NAME=VALUE",
                   help="set a module-level setting of BreastTumorSegLib before the run (value read as JSON), "
                        "e.g. --set engine.behind_floor.BEHIND_FLOOR=false")
    a = p.parse_args(argv)
    for item in a.set:
        print(f"setting {apply_setting(item)}", flush=True)
    if a.compare_kept_hull:
        if a.compare_step not in (None, "kept-hull"):
            p.error("--compare-kept-hull and --compare-step are two separate comparisons: give one")
        a.compare_step = "kept-hull"
    if a.compare_fp_reduction and a.compare_step:
        p.error("--compare-fp-reduction and --compare-step are two separate comparisons: give one")
    torch.set_num_threads(a.threads)
    from BreastTumorSegLib.engine.fpreduce import reduce_false_positives
    step_module, step_name, step_what = POST_STEPS[a.compare_step] if a.compare_step else (None, "", "FP reduction")
    add_step = post_step(step_module) if step_module and step_module not in REGION_STEPS and step_module not in PREDICT_STEPS \
        else None
    from BreastTumorSegLib.engine.pipeline import SegmentSettings, segment_exam
    from BreastTumorSegLib.engine.postprocess import lesion_table
    from BreastTumorSegLib.models.registry import get_segmenter
    from BreastTumorSegLib.training.phantom.families import FAMILIES

    seeds = parse_seeds(a.seeds)
    models = [m for m in a.models.split(",") if m]
    makers = {f: FAMILIES[f] for f in a.families.split(",") if f}
    if a.hybrids:
        extra = hybrid_makers()
        if extra:
            makers.update(extra)
        else:
            print("(--hybrids: BreastTumorSegLib.training.phantom.hybrid is not available; no hybrid rows)")
    stages = ["before", "after"] if a.compare_fp_reduction or a.compare_step else ["pipeline"]
    rows, froc_rows, stage_secs = [], [], []
    for fam, make in makers.items():
        per = {(m, st): {"rows": [], "secs": [], "probs": [], "refs": []} for m in models for st in stages}
        gen = []
        for s in seeds:
            t0 = time.perf_counter()
            ph = make(s)
            exam = motion_free(ph)
            gen.append(time.perf_counter() - t0)
            for m in models:
                t0 = time.perf_counter()
                seg = get_segmenter(m) if a.compare_step else m  # its kinetic maps serve the step
                twice = None
                if step_module in PREDICT_STEPS or step_module in REGION_STEPS:
                    pair = region_step_pair if step_module in REGION_STEPS else predict_step_pair
                    res, res_after, secs, secs_after, twice = pair(step_module, lambda: segment_exam(
                        exam, model=seg, device="cpu", settings=SegmentSettings(registration="none")))
                else:
                    res = segment_exam(exam, model=seg, device="cpu", settings=SegmentSettings(
                                       registration="none", **({"fp_reduction": False} if a.compare_fp_reduction else {})))
                    secs = time.perf_counter() - t0
                labels = {stages[0]: res.label}
                if twice is not None:
                    labels["after"] = res_after.label
                    stage_secs.append(secs_after - secs if twice else 0.0)
                elif a.compare_fp_reduction:
                    t1 = time.perf_counter()
                    labels["after"] = reduce_false_positives(components_of(res.label), res.probability,
                                                             list(exam.phases), exam.effective_times(),
                                                             res.lesions)[0]
                    stage_secs.append(time.perf_counter() - t1)
                elif a.compare_step:
                    t1 = time.perf_counter()
                    comps = components_of(res.label)
                    labels["after"] = add_step(seg, exam, res.label, lesion_table(comps, res.probability), comps,
                                               res.probability, {}, enabled=True)[0]
                    stage_secs.append(time.perf_counter() - t1)
                for st, label in labels.items():
                    r = per[(m, st)]
                    r["secs"].append(secs + (stage_secs[-1] if st == "after" else 0.0))
                    r["rows"].append(exam_scores(ph, label))
                    prob = res_after.probability if twice is not None and st == "after" else res.probability
                    r["probs"].append(sitk.Mask(sitk.Cast(prob, sitk.sitkFloat32), label))
                    r["refs"].append(ph.tumor_labels)
                    x = r["rows"][-1]
                    print(f"  {fam} seed {s} {m} {st}: " + ("no tumor in truth" if x["tumor_free"] else
                                                             f"Dice {x['dice']:.3f}") + f", found {x['found1']}/{x['true1']}, "
                          f"FP lesions {x['fp']}, voxel recall {x['recall']:.3f}, {r['secs'][-1]:.1f} s"
                          + ("" if twice is None or st == "before" else
                             " (segmented again: the step changed it)" if twice else " (the step added nothing)"),
                          flush=True)
        for (m, st), r in per.items():
            rows.append(summary_row(fam, m, st, r["rows"], r["secs"], gen))
            curve = froc(r["probs"], r["refs"], FROC_THRESHOLDS, ref_is_labels=True)
            froc_rows.append([fam, m, st] + [f"{c.sensitivity:.2f} / {c.mean_fp_per_exam:.2f}" for c in curve])
            r["probs"].clear()
    print(f"\n### Generalisation across synthetic families (seeds {a.seeds}, CPU, {a.threads} threads)\n")
    for m in models:
        print(f"- {m}: trained on {trained_on(m)}")
    if stage_secs:
        stage = step_name or "false-positive reduction"
        print(f"- {stage} stage: {np.mean(stage_secs):.2f} s/exam mean, {np.max(stage_secs):.2f} max")
    print()
    print("Median Dice and voxel recall over the exams with a tumor; tumor-free exams are left out of them and "
          "counted in the false-positive lesion columns (every lesion they report is a false positive).\n")
    what = step_what
    print(table(["family", "model", what, "median Dice", "lesion sens. >= 0.1 mL",
                 "lesion sens. >= 0.2 mL", "FP lesions/exam (median)", "FP lesions/exam (mean)",
                 "median voxel recall", "median FP outside breast (mL)", "n exams",
                 "tumor-free exams (their FP lesions)", "s/exam (pipeline)",
                 "s/exam (generation)"], rows))
    print("\nFROC (lesions >= 0.1 mL): lesion sensitivity / mean FP lesions per exam, the pipeline's probability "
          "map inside its label map cut at p >= threshold\n")
    print(table(["family", "model", what] + [f"p >= {t:g}" for t in FROC_THRESHOLDS], froc_rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
