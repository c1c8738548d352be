#!/usr/bin/env python
"""Same outputs, step by step: this tree's lesion-stage steps against another tree's (e.g. a ``git archive`` of main),
voxel by voxel, in one process; prints one line per exam and a summary.

    git archive 9042f0e | tar -x -C /tmp/main_src
    python benchmarks/same_outputs.py --old-src /tmp/main_src --seeds 7000-7009 --families randomized,vessels --hybrids
    python benchmarks/same_outputs.py --old-src /tmp/main_src --bench-exam   # bench_pipeline.py's clinical-size exam
    python benchmarks/same_outputs.py --old-src /tmp/main_src --bench-exam --write   # the written outputs too

The modules of :data:`MODULES` are loaded a second time from ``--old-src`` (under their own names, in that order, so
that the old modules import one another). The pipeline (``segment_exam``, ftv-outline, CPU, one thread, no
registration for the family exams: their known motion is removed as bench_generalization.py removes it) then runs
once per exam; each step of the lesion stage (``deep_band.deep_lesions`` whether on or off, ``behind_floor``,
``dark_before``, ``kept_hull``, ``kept_grow`` and ``fill_probability``) is called in both versions on the very same
inputs and its outputs compared (arrays and geometry, the gate's region, the notes, the lesion table), the old version's outputs going on;
and every call of the pure functions of :data:`PURE` anywhere in the pipeline (the first FTV run too) is compared
the same way; a helper with no old version (:data:`REPLACED`, e.g. ``labels_in_box``) is compared at every call with
the code it replaced. A call answered from memory (``core/memo.py``: the band beside the region, the band behind the
floor on the exam grid, the body) is compared with the old code computing it afresh. Identical lines for every exam
mean identical label and probability maps and lesion tables. The seconds of each
version of each step are printed beside (the pure functions' comparisons run inside them: read them as a rough
guide only, or pass ``--steps-only``; bench_pipeline.py measures the time).
"""
from __future__ import annotations

import argparse
import copy
import importlib.util
import sys
import time
import types
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch
from scipy import ndimage

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "BreastTumorSeg"))
sys.path.insert(0, str(ROOT / "benchmarks"))

MODULES = ["preprocess.breast_region", "kinetics.seeded", "kinetics.significance", "kinetics.outline_beyond",
           "kinetics.outline_islands", "kinetics.outline_concave", "kinetics.beside_region", "kinetics.outline_shells",
           "kinetics.deep_band", "kinetics.dark_lesions", "engine.behind_floor", "engine.dark_before",
           "engine.postprocess", "engine.kept_hull", "engine.kept_grow", "engine.overview", "engine.pipeline"]
PURE = [("kinetics.seeded", "open_and_regrow"), ("kinetics.outline_concave", "fill_concavities"),
        ("kinetics.beside_region", "band_outline"), ("kinetics.beside_region", "band_cores"),
        ("kinetics.deep_band", "band_components"), ("engine.postprocess", "lesion_table"),
        ("preprocess.breast_region", "breast_mask_qa"), ("engine.pipeline", "stored_probability"),
        ("kinetics.beside_region", "band_around"), ("kinetics.dark_lesions", "dark_seeds"),
        ("kinetics.dark_lesions", "dark_lesions"),
        # fourth pass (cpu19): the calls remembered across steps (core/memo.py: a remembered answer is compared with
        # the old code computing it afresh), the whole-grid labels taken in their box, the subtraction noise in place
        ("kinetics.deep_band", "_pair_on_exam"), ("kinetics.outline_shells", "body_of"),
        ("kinetics.outline_shells", "shell_seeds"), ("kinetics.outline_beyond", "growth_beyond_roi"),
        ("kinetics.outline_islands", "marked_islands"), ("kinetics.significance", "difference_noise")]
# New helpers with no old version: compared at every call with the code they replace.
REPLACED = [("core.imageutil", "labels_in_box", lambda mask, structure=None: ndimage.label(mask, structure=structure))]
# --timing: the calls compared (and timed) where no other timed call holds them: the postprocess's lesion table (not the
# kept steps' own), the mask check, the stored map; the steps and the overview as always.
TIMED = [("engine.postprocess", "lesion_table"), ("preprocess.breast_region", "breast_mask_qa"),
         ("engine.pipeline", "stored_probability")]
BAD: list[str] = []
SECS: dict[str, float] = {}


def load_old(src: Path) -> dict:
    """The modules of :data:`MODULES` as they are in the tree *src*, this tree's left in ``sys.modules``."""
    mine, old = {}, {}
    for name in (f"BreastTumorSegLib.{m}" for m in MODULES):
        importlib.import_module(name)
    for name in (f"BreastTumorSegLib.{m}" for m in MODULES):
        path = src / "BreastTumorSeg" / (name.replace(".", "/") + ".py")
        mine[name] = sys.modules[name]
        spec = importlib.util.spec_from_file_location(name, path)
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod
        spec.loader.exec_module(mod)
        old[name] = mod
    sys.modules.update(mine)
    return old


def same(a, b) -> bool:
    if isinstance(a, sitk.Image):
        return (a.GetSize() == b.GetSize() and a.GetOrigin() == b.GetOrigin() and a.GetSpacing() == b.GetSpacing()
                and a.GetDirection() == b.GetDirection() and a.GetPixelID() == b.GetPixelID()
                and np.array_equal(sitk.GetArrayViewFromImage(a), sitk.GetArrayViewFromImage(b)))
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and a.dtype == b.dtype and np.array_equal(a, b)
    if isinstance(a, (tuple, list)):
        return type(a) is type(b) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return a is b or repr(a) == repr(b)


def both(what: str, new_fn, old_fn, prepare=None):
    """A function calling *new_fn* then *old_fn* on the same arguments, recording a difference; it returns the old
    outputs. ``prepare(args)`` gives (the new call's arguments, what the new call changed read and undone, what the
    old call changed read)."""
    def run(*args, **kw):
        best = {"new": np.inf, "old": np.inf}
        for i in range(REPEAT[0]):  # --timing K: new and old in turn K times on the same inputs, the least CPU kept
            state = prepare(args) if prepare else None
            t = time.process_time()
            got_new = new_fn(*(state[0] if state else args), **kw)
            best["new"] = min(best["new"], time.process_time() - t)
            extra_new = state[1]() if state else None
            t = time.process_time()
            got_old = old_fn(*args, **kw)
            best["old"] = min(best["old"], time.process_time() - t)
            if i < REPEAT[0] - 1 and state:
                state[1]()  # undo the old call's change too, but for the last turn's
        for k, v in best.items():
            SECS[f"{what} {k}"] = SECS.get(f"{what} {k}", 0.0) + v
        if not same(got_new, got_old) or (state and not same(extra_new, state[2]())):
            BAD.append(f"{CASE[0]}: {what}")
        return got_old
    return run


REPEAT = [1]


CASE = [""]


def install(old: dict, pure: bool = True) -> None:
    from BreastTumorSegLib.engine import pipeline

    pairs = [(mod, fname, getattr(old[f"BreastTumorSegLib.{mod}"], fname)) for mod, fname in
             (PURE if pure else TIMED if REPEAT[0] > 1 else [])] + (REPLACED if pure else [])
    for mod, fname, old_fn in pairs:
        new_fn = getattr(sys.modules[f"BreastTumorSegLib.{mod}"], fname)
        wrapped = both(fname, new_fn, old_fn)
        for m in list(sys.modules.values()) if pure else [sys.modules[f"BreastTumorSegLib.{mod}"]]:
            if getattr(m, "__name__", "").startswith("BreastTumorSegLib") and getattr(m, fname, None) is new_fn:
                setattr(m, fname, wrapped)
    new_db, old_db = sys.modules["BreastTumorSegLib.kinetics.deep_band"], old["BreastTumorSegLib.kinetics.deep_band"]
    new_bf, old_bf = sys.modules["BreastTumorSegLib.engine.behind_floor"], old["BreastTumorSegLib.engine.behind_floor"]
    new_kh, old_kh = sys.modules["BreastTumorSegLib.engine.kept_hull"], old["BreastTumorSegLib.engine.kept_hull"]
    new_kg, old_kg = sys.modules["BreastTumorSegLib.engine.kept_grow"], old["BreastTumorSegLib.engine.kept_grow"]
    new_dk, old_dk = sys.modules["BreastTumorSegLib.engine.dark_before"], old["BreastTumorSegLib.engine.dark_before"]
    new_ov, old_ov = sys.modules["BreastTumorSegLib.engine.overview"], old["BreastTumorSegLib.engine.overview"]
    new_render = new_ov.render_overview

    def render(fn):  # the overview written to a path; what is compared is the PNG's bytes
        return lambda result, path, *args, **kw: Path(path).read_bytes() if fn(result, path, *args, **kw) else None

    render_both = both("render_overview",
                       lambda res, path, *a, **kw: render(new_render)(res, str(path) + ".new.png", *a, **kw),
                       render(old_ov.render_overview))

    def write_both(result, path, *args, **kw):  # the overview PNG (write_result, --write): the same bytes
        render_both(result, path, *args, **kw)
        Path(str(path) + ".new.png").unlink()
        return Path(path)

    new_ov.render_overview = write_both  # write_result imports it when called

    def notes_of(args):  # the step writes its notes into the segmenter's last result: the new call's are read, then undone
        seg, first = args[0], args[0].last_result

        def new_notes():
            got, seg.last_result = getattr(seg.last_result, "notes", None), first
            return got
        return args, new_notes, lambda: getattr(seg.last_result, "notes", None)

    deep_lesions = both("deep_lesions", new_db.deep_lesions, old_db.deep_lesions)

    def deep(seg, exam, prob, context, region, options):
        first = seg.last_result
        if getattr(first, "outline", None) is not None and region is not None and region.get("level") is not None:
            deep_lesions(exam, first, seg.settings, seg.kinetic_maps(exam), context)  # compared even while off
        return old_db.add_deep_lesions(seg, exam, prob, context, region, options)

    pipeline.deep_band = types.SimpleNamespace(add_deep_lesions=deep)
    pipeline.behind_floor = types.SimpleNamespace(add_behind_floor=both(
        "behind_floor", new_bf.add_behind_floor, old_bf.add_behind_floor, notes_of))
    pipeline.dark_before = types.SimpleNamespace(add_dark_before=both(
        "dark_before", new_dk.add_dark_before, old_dk.add_dark_before, notes_of))
    pipeline.kept_hull = types.SimpleNamespace(
        add_kept_hull=both("kept_hull", new_kh.add_kept_hull, old_kh.add_kept_hull,
                           lambda a: (a[:3] + (copy.deepcopy(a[3]),) + a[4:], lambda: None, lambda: None)),
        fill_probability=both("fill_probability", new_kh.fill_probability, old_kh.fill_probability))
    pipeline.kept_grow = types.SimpleNamespace(
        add_kept_grow=both("kept_grow", new_kg.add_kept_grow, old_kg.add_kept_grow,
                           lambda a: (a[:3] + (copy.deepcopy(a[3]),) + a[4:], lambda: None, lambda: None)))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--old-src", required=True, type=Path, help="the other tree (e.g. a git archive of main)")
    p.add_argument("--seeds", default="7000-7009")
    p.add_argument("--families", default="randomized,vessels,heterogeneous,irregular,ellipse,phantom")
    p.add_argument("--hybrids", action="store_true", help="add the hybrid rows of bench_generalization.py")
    p.add_argument("--bench-exam", action="store_true", help="bench_pipeline.py's clinical-size exam instead")
    p.add_argument("--write", action="store_true",
                   help="also write each result (write_result): the stored probability map and the overview compared")
    p.add_argument("--timing", type=int, default=1, metavar="K",
                   help="K > 1: each compared call runs new and old in turn K times, the least CPU seconds of each "
                        "printed (the steps, the overview with --write, and TIMED; not PURE)")
    p.add_argument("--steps-only", action="store_true",
                   help="compare the steps only, not the calls of PURE inside them: their CPU seconds then compare")
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    old = load_old(a.old_src)
    REPEAT[0] = max(1, a.timing)
    install(old, pure=not a.steps_only and a.timing <= 1)
    from BreastTumorSegLib.engine.pipeline import SegmentSettings, segment_exam, write_result

    def run(case: str, exam, **kw) -> None:
        CASE[0], n, secs = case, len(BAD), dict(SECS)
        res = segment_exam(exam, model="ftv-outline", device="cpu", **kw)
        if a.write:
            import tempfile

            with tempfile.TemporaryDirectory() as out:
                write_result(res, Path(out) / "result")
        d = {k: SECS[k] - secs.get(k, 0.0) for k in SECS}
        steps = ", ".join(f"{s} {d.get(s + ' old', 0):.2f}/{d.get(s + ' new', 0):.2f}"
                          for s in ("behind_floor", "dark_before", "deep_lesions", "kept_hull", "kept_grow",
                                   "fill_probability"))
        print(f"  {case}: {'identical' if len(BAD) == n else 'DIFFERENT: ' + '; '.join(BAD[n:])}, "
              f"{len(res.lesions)} lesion(s); CPU s old/new: {steps}", flush=True)

    if a.bench_exam:
        import tempfile

        from BreastTumorSegLib.io.files import load_exam
        from BreastTumorSegLib.training.phantom import make_phantom, write_phantom

        with tempfile.TemporaryDirectory() as tmp:
            write_phantom(make_phantom(11, size="clinical", n_phases=6), Path(tmp) / "exam")
            run("bench_pipeline exam", load_exam(Path(tmp) / "exam"))
    else:
        from bench_generalization import hybrid_makers, motion_free
        from BreastTumorSegLib.core.values import parse_seeds
        from BreastTumorSegLib.training.phantom.families import FAMILIES

        makers = {f: FAMILIES[f] for f in a.families.split(",") if f}
        if a.hybrids:
            makers.update(hybrid_makers())
        for fam, make in makers.items():
            for s in parse_seeds(a.seeds):
                run(f"{fam} {s}", motion_free(make(s)), settings=SegmentSettings(registration="none"))
    print(f"\n{len(BAD)} difference(s). CPU s old/new in all: "
          + ", ".join(f"{k} {v:.2f}" for k, v in sorted(SECS.items())))
    for b in BAD:
        print("  DIFFERENT", b)
    return 1 if BAD else 0


if __name__ == "__main__":
    raise SystemExit(main())
