#!/usr/bin/env python
"""Compare the shipped tumor models on unseen phantoms; prints Markdown tables.

    python benchmarks/bench_models.py                       # seeds 3000-3009, CPU
    python benchmarks/bench_models.py --seeds 3000-3019 --json bench_models.json

Tables:

1. Dice per model (U-Net, spatial-temporal transformer, their ensemble) on phantoms with
   their own random protocol (2-7 post-contrast phases), whole pipeline after an ideal motion
   correction (the phantom's known transforms), classical breast mask, card thresholds.
2. Missing phases: the same patients acquired with 6 phases, then only the first 2, 3, 4
   (and all 6) given to the models.
3. Whole-breast masks: Dice of the learned model and of the classical mask against the
   phantom truth; tumor Dice of the transformer gated by each.
4. Speed: training throughput (patches/s with each model's demo training config) and
   inference seconds per exam (network stage) on this machine.

Evaluation seeds (3000+) are never used for training (1000-1999) or validation (2000-2999).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "BreastTumorSeg"))

from BreastTumorSegLib.core.values import parse_seeds  # noqa: E402
from BreastTumorSegLib.evaluation.metrics import dice  # noqa: E402


def corrected_phantom(seed: int, **overrides):
    from BreastTumorSegLib.training.phantom import make_phantom

    ph = make_phantom(seed, **overrides)
    ref = ph.exam.reference
    exam = ph.exam.with_phases([p if k == 0 else sitk.Resample(p, ref, ph.motion[k], sitk.sitkLinear, 0.0)
                                for k, p in enumerate(ph.exam.phases)])
    return ph, exam


def load_models(names: list[str]) -> dict:
    """The named registry models (phase-aware ones get the exam's times from the registry's
    segmenter), plus their ensemble when there are several."""
    from BreastTumorSegLib.models.network import EnsembleSegmenter
    from BreastTumorSegLib.models.registry import get_segmenter

    models = {n: get_segmenter(n) for n in names}
    if len(models) >= 2:
        models["+".join(names)] = EnsembleSegmenter([models[n] for n in names])
    return models


def run_model(seg, exam, truth: sitk.Image, **kw) -> tuple[float, float, sitk.Image]:
    from BreastTumorSegLib.engine.pipeline import SegmentSettings, segment_exam

    res = segment_exam(exam, model=seg, device="cpu", settings=SegmentSettings(registration="none"), **kw)
    d = dice(sitk.GetArrayViewFromImage(res.label) > 0, sitk.GetArrayViewFromImage(truth) > 0)
    return d, res.timings.get("predict", float("nan")), res.probability


def fmt(vals: list[float]) -> str:
    v = np.asarray(vals, float)
    return f"{np.median(v):.3f} ({np.mean(v):.3f} ± {np.std(v):.3f})"


def table(header: list[str], rows: list[list]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def bench_dice(models: dict, seeds: list[int], results: dict) -> None:
    from BreastTumorSegLib.preprocess.breast_region import breast_mask

    per = {n: [] for n in models}
    secs = {n: [] for n in models}
    breast = {"learned": [], "classical": []}
    gated = {"classical": [], "learned": []}
    learned = _breast_model()
    st_name = next((n for n in models if "st" in n and "+" not in n), None)
    for s in seeds:
        ph, exam = corrected_phantom(s)
        for n, seg in models.items():
            d, t, prob = run_model(seg, exam, ph.tumor_mask)
            per[n].append(d)
            secs[n].append(t)
            if n == st_name and learned is not None:
                gated["classical"].append(d)
                mask = learned.predict(exam.pre, "cpu")
                breast["learned"].append(dice(sitk.GetArrayViewFromImage(mask) > 0,
                                              sitk.GetArrayViewFromImage(ph.breast_mask) > 0))
                # tumor Dice when the lesions are gated by the learned mask instead (as the
                # pipeline does with --breast-model: whole components, at least a quarter inside)
                from BreastTumorSegLib.engine.postprocess import PostprocessSettings, postprocess
                label, _ = postprocess(prob, PostprocessSettings(**seg.card.get("postprocess", {})), mask)
                gated["learned"].append(dice(sitk.GetArrayViewFromImage(label) > 0,
                                             sitk.GetArrayViewFromImage(ph.tumor_mask) > 0))
        cm = breast_mask(exam.pre)
        breast["classical"].append(dice(sitk.GetArrayViewFromImage(cm) > 0,
                                        sitk.GetArrayViewFromImage(ph.breast_mask) > 0))
        print(f"  seed {s}: " + ", ".join(f"{n} {per[n][-1]:.3f}" for n in models), flush=True)
    results["dice"] = {n: per[n] for n in models}
    results["predict_seconds"] = {n: secs[n] for n in models}
    print(f"\n### Tumor Dice on {len(seeds)} unseen phantoms (seeds {seeds[0]}-{seeds[-1]}), median (mean ± sd)\n")
    print(table(["model", "Dice", "inference s/exam (network stage)"],
                [[n, fmt(per[n]), f"{np.median(secs[n]):.2f}"] for n in models]))
    if gated["learned"]:
        results["breast"] = breast
        results["gating"] = gated
        print("\n### Whole-breast masks against the phantom truth, and tumor Dice of the transformer gated by them\n")
        print(table(["breast mask", "breast Dice", f"tumor Dice ({st_name})"],
                    [["classical (breastmask.breast_mask)", fmt(breast["classical"]), fmt(gated["classical"])],
                     ["learned (breastmask-demo)", fmt(breast["learned"]), fmt(gated["learned"])]]))


def _breast_model():
    from BreastTumorSegLib.models.breast_model import BreastMaskModel
    from BreastTumorSegLib.core.errors import ModelError

    try:
        return BreastMaskModel.load("breastmask-demo")
    except ModelError:
        return None


def bench_phases(models: dict, seeds: list[int], keep: list[int], results: dict) -> None:
    names = [n for n in models if "+" not in n]
    per = {(n, k): [] for n in names for k in keep}
    for s in seeds:
        ph, exam6 = corrected_phantom(s, n_phases=6)
        for k in keep:
            exam = exam6.subset(list(range(k)))
            for n in names:
                per[(n, k)].append(run_model(models[n], exam, ph.tumor_mask)[0])
        print(f"  seed {s}: " + ", ".join(f"{n}/{k} {per[(n, k)][-1]:.3f}" for n in names for k in keep), flush=True)
    results["phases"] = {f"{n}|{k}": v for (n, k), v in per.items()}
    print(f"\n### Missing phases: {len(seeds)} phantoms acquired with 6 phases, the first k given "
          "(median Dice (mean ± sd))\n")
    print(table(["phases kept"] + names, [[f"{k} of 6"] + [fmt(per[(n, k)]) for n in names] for k in keep]))


def bench_training_speed(results: dict, steps: int) -> None:
    from BreastTumorSegLib.training.datasets import prepare_phantom
    from BreastTumorSegLib.training.config import load_config
    from BreastTumorSegLib.training.patches import PatchSampler, input_scales, loss_fn, task_cases
    from BreastTumorSegLib.training.validation import build_model, forward_batch

    case = prepare_phantom(1000, 1.5)
    configs = {name: load_config(ROOT / "configs" / f"{name}.json")
               for name in ("st-demo", "unet-demo", "breastmask-demo")}
    rows = []
    for name, cfg in configs.items():
        tc = task_cases([case], cfg.input_kind)
        scales = input_scales(tc, cfg.input_kind)
        net = build_model(cfg, scales).train()
        channels_last = cfg.architecture["type"] == "unet3d"  # as the trainer does on a CPU
        if channels_last:
            net = net.to(memory_format=torch.channels_last_3d)
        opt = torch.optim.AdamW(net.parameters(), lr=1e-4)
        sampler = PatchSampler(tc, cfg, scales, np.random.default_rng(0))
        t_total = 0.0
        for i in range(steps + 1):
            b = sampler.sample(cfg.batch)
            if channels_last:
                b["x"] = b["x"].contiguous(memory_format=torch.channels_last_3d)
            t0 = time.perf_counter()
            loss = loss_fn(forward_batch(net, b, torch.device("cpu")), b["y"])
            opt.zero_grad()
            loss.backward()
            opt.step()
            if i:  # the first step warms up the kernels
                t_total += time.perf_counter() - t0
        pps = steps * cfg.batch / t_total
        rows.append([name, f"{cfg.patch}^3", cfg.batch, f"{pps:.2f}"])
        results.setdefault("train_patches_per_s", {})[name] = pps
    print(f"\n### Training throughput on this CPU ({torch.get_num_threads()} threads, {steps} steps, "
          "sampling excluded)\n")
    print(table(["model", "patch", "batch", "patches/s"], rows))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", default="3000-3009")
    p.add_argument("--models", default="unet-demo,st-demo")
    p.add_argument("--keep", default="2,3,4,6", help="phase counts for the missing-phase table")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--train-steps", type=int, default=5)
    p.add_argument("--skip", default="", help="comma list of sections to skip: dice,phases,speed")
    p.add_argument("--json", type=Path, default=None, help="also write the raw numbers here")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    seeds = parse_seeds(a.seeds)
    if min(seeds) < 3000:
        p.error("evaluation seeds must be >= 3000 (1000-2999 are training and validation phantoms)")
    skip = set(a.skip.split(","))
    models = load_models(a.models.split(","))
    results: dict = {"seeds": seeds, "torch_threads": a.threads}
    if "dice" not in skip:
        bench_dice(models, seeds, results)
    if "phases" not in skip:
        bench_phases(models, seeds, [int(k) for k in a.keep.split(",")], results)
    if "speed" not in skip:
        bench_training_speed(results, a.train_steps)
    if a.json:
        a.json.write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
