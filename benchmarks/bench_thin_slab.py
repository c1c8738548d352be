#!/usr/bin/env python
"""Thin slabs and single-breast sagittal exams from real anatomy: Dice and lesions found, before/after.

    OMP_NUM_THREADS=1 python benchmarks/bench_thin_slab.py                       # this checkout only
    OMP_NUM_THREADS=1 python benchmarks/bench_thin_slab.py --before /work/main/BreastTumorSeg

Issue 25. The exams are real-anatomy hybrids (:func:`~BreastTumorSegLib.training.phantom.hybrid.make_hybrid`,
seeds 5000-5003): axial bilateral, sagittal single breast, and the sagittal volume cut to 12 and 5
slices of 3 mm (0.94 mm in plane, one breast). They are made once with this checkout's generator and
written to a temporary folder; every code version given (``--before``: the package folder of another
checkout, e.g. main) segments the same files in its own process (``segment_exam``, no registration:
the hybrids do not move, CPU). Per geometry and model: median Dice, lesions found (a true lesion is
found when a reported lesion overlaps it) out of the true lesions, false-positive lesions (reported,
overlapping none) and lesions flagged ``outside_breast_mask``. ``st-demo:torso`` is ``st-demo`` whose
learned breast mask is rejected (a stand-in answering with the whole body), as on the issue's exam:
the classical mask then decides. A 1-slice exam is refused by the engine
(``DCEExam`` needs at least 2 slices per axis); its breast region is tested in Testing/test_breast_gate.py.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

GEOMETRIES = {
    "axial bilateral": dict(anatomy="axial", n_lesions=2),
    "sagittal single breast": dict(anatomy="sagittal", n_lesions=2),
    "sagittal slab 12 x 3 mm": dict(anatomy="sagittal", slab_slices=12),
    "sagittal slab 5 x 3 mm": dict(anatomy="sagittal", slab_slices=5),
}


def make_cases(folder: Path, seeds: list[int]) -> None:
    import SimpleITK as sitk

    from BreastTumorSegLib.training.phantom.hybrid import make_hybrid

    for g, (name, kw) in enumerate(GEOMETRIES.items()):
        for seed in seeds:
            ph = make_hybrid(seed, **kw)
            case = folder / f"g{g}-{seed}"
            case.mkdir(parents=True)
            for k, img in enumerate(ph.exam.phases):
                sitk.WriteImage(img, str(case / f"phase{k}.nii.gz"))
            sitk.WriteImage(ph.tumor_labels, str(case / "truth.nii.gz"))
            (case / "meta.json").write_text(json.dumps({"geometry": name, "seed": seed,
                                                        "times": list(ph.exam.times_min)}))


class Torso:
    """A learned whole-breast model that answers with the whole body: rejected as implausible (the
    issue's real exam: the learned mask was rejected and the classical fallback decided)."""

    card = {"name": "torso"}

    def predict(self, img, device="cpu"):
        from BreastTumorSegLib.preprocess.body import body_mask

        return body_mask(img, 2.0)


def run_cases(folder: Path, models: list[str]) -> None:
    """Segment every case of *folder* with the package on sys.path; one JSON line per case and model."""
    import SimpleITK as sitk

    from BreastTumorSegLib.core.exam import DCEExam
    from BreastTumorSegLib.engine.pipeline import SegmentSettings, segment_exam

    for case in sorted(p for p in folder.iterdir() if p.is_dir()):
        meta = json.loads((case / "meta.json").read_text())
        phases = [sitk.ReadImage(str(case / f"phase{k}.nii.gz")) for k in range(len(meta["times"]))]
        truth = sitk.GetArrayFromImage(sitk.ReadImage(str(case / "truth.nii.gz")))
        for model in models:
            name, _, variant = model.partition(":")
            extra = {"breast_model": Torso()} if variant == "torso" else {}
            res = segment_exam(DCEExam(phases, meta["times"], case_id=case.name), model=name, device="cpu",
                               settings=SegmentSettings(registration="none", **extra))
            got = sitk.GetArrayFromImage(res.label) > 0
            t = truth > 0
            dice = 2 * np.count_nonzero(got & t) / max(np.count_nonzero(got) + np.count_nonzero(t), 1)
            comps = sitk.GetArrayFromImage(sitk.RelabelComponent(sitk.ConnectedComponent(res.label, True),
                                                                sortByObjectSize=True))
            found = sum(bool(np.any(comps[truth == lab] > 0)) for lab in np.unique(truth[truth > 0]))
            fps = sum(not np.any(t[comps == c]) for c in np.unique(comps[comps > 0]))
            flagged = sum("outside_breast_mask" in getattr(les, "flags", []) for les in res.lesions)
            print(json.dumps({"case": case.name, "geometry": meta["geometry"], "model": model, "dice": dice,
                              "found": int(found), "truth": int(len(np.unique(truth[truth > 0]))),
                              "fp": int(fps), "flagged": int(flagged),
                              "breast_mask": str(res.settings.get("breast_mask"))}), flush=True)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--before", default=None, help="package folder of the code to compare with (e.g. main's)")
    p.add_argument("--models", default="st-demo,st-demo:torso,ftv",
                   help="registry names; NAME:torso = NAME with a learned breast mask that is rejected")
    p.add_argument("--seeds", default="5000-5003")
    p.add_argument("--run", default=None, help=argparse.SUPPRESS)  # internal: segment the cases of a folder
    a = p.parse_args()
    models = a.models.split(",")
    if a.run:
        run_cases(Path(a.run), models)
        return 0
    versions = {"after": str(ROOT / "BreastTumorSeg")}
    if a.before:
        versions = {"before": a.before, **versions}
    sys.path.insert(0, versions["after"])
    from BreastTumorSegLib.core.values import parse_seeds

    results: dict[str, list[dict]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        make_cases(Path(tmp), parse_seeds(a.seeds))
        for version, path in versions.items():
            env = dict(os.environ, PYTHONPATH=path)
            out = subprocess.run([sys.executable, __file__, "--run", tmp, "--models", a.models], env=env,
                                 capture_output=True, text=True, check=True).stdout
            results[version] = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    names = list(results)
    print(f"| geometry | model | median Dice ({' / '.join(names)}) | lesions found ({' / '.join(names)}) "
          f"| FP lesions | flagged outside_breast_mask |\n|---|---|---|---|---|---|")
    for geometry in GEOMETRIES:
        for model in models:
            rows = {v: [r for r in results[v] if r["geometry"] == geometry and r["model"] == model] for v in names}
            def cell(f):
                return " / ".join(f(rows[v]) for v in names)

            def median_dice(r):
                return f"{np.median([x['dice'] for x in r]):.3f}" if r else "-"

            def found(r):
                return f"{sum(x['found'] for x in r)}/{sum(x['truth'] for x in r)}"

            def total(key):
                return lambda r: str(sum(x[key] for x in r))

            print(f"| {geometry} | {model} | {cell(median_dice)} | {cell(found)} | {cell(total('fp'))} "
                  f"| {cell(total('flagged'))} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
