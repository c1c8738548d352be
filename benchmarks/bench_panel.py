"""What the Slicer panel costs in the GUI thread, on a clinical-size exam (slicer-core MRML, no Qt).

    python benchmarks/bench_panel.py            # 448x448x160 phantom (size "clinical")
    python benchmarks/bench_panel.py --small    # a quick run on a small phantom

Measured (seconds, wall clock), each the work the panel does while the user waits:

* starting a background run: volumes loaded from files (handed to the engine by path) versus
  volumes made in the scene (exported as uncompressed NRRD first; MB written shown);
* after a result is in: re-threshold the stored probability map (a slider step), re-measure the
  lesion table (after a Segment Editor stroke), a lesion click's curve and SER bands (first click:
  kinetic maps computed; second click: cached).

The result comes from an in-process ``ftv`` run without registration (not timed). Prints a table.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "BreastTumorSeg"))


def _timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--small", action="store_true", help="small phantom (seconds) instead of clinical size")
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args(argv)

    import SimpleITK as sitk

    from BreastTumorSegLib.slicer import mrml_bridge as mb
    from BreastTumorSegLib.slicer.logic import SegmentationLogic, guess_phases
    from BreastTumorSegLib.training.phantom import make_phantom

    ph = make_phantom(args.seed, size="small" if args.small else "clinical", motion_mm=0.0)
    exam = ph.exam
    rows = [("exam", f"{'x'.join(map(str, exam.pre.GetSize()))} x {exam.n_phases} phases")]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        ctx = mb.MRMLContext.headless()
        logic = SegmentationLogic(ctx)
        files = []
        for i, img in enumerate(exam.phases):
            files.append(tmp / f"bench_{i:04d}.nii.gz")
            sitk.WriteImage(img, str(files[-1]))
        loaded = [ctx.volumes_logic.AddArchetypeVolume(str(f), f.name.split(".")[0]) for f in files]
        made = [mb.image_to_volume_node(ctx, img, f"made_{i:04d}") for i, img in enumerate(exam.phases)]
        for label, nodes in (("start run: volumes from files (by path)", loaded),
                             ("start run: volumes made in the scene (exported)", made)):
            seconds, run = _timed(lambda: logic.start_background(guess_phases(nodes), model="ftv", device="cpu",
                                                                 workdir=tmp))
            written = sum(f.stat().st_size for f in (run.workdir / "exam").glob("*")) \
                if (run.workdir / "exam").exists() else 0
            run.process.cancel()
            run.process.wait(timeout=60)
            run.cleanup()
            rows.append((label, f"{seconds:.2f} s, {written / 1e6:.0f} MB written"))

        phases = guess_phases(loaded)
        outputs, _ = logic.segment(phases, model="ftv", device="cpu", register=False)
        n = outputs.lesion_table.GetNumberOfRows()
        rows.append(("result (ftv, not timed)", f"{n} lesion(s)"))
        seconds, _ = _timed(lambda: logic.rethreshold(outputs, 0.3))
        rows.append(("re-threshold (slider step)", f"{seconds:.2f} s"))
        seconds, _ = _timed(lambda: logic.lesions_from_segmentation(outputs))
        rows.append(("lesion table after an edit", f"{seconds:.2f} s"))
        if outputs.lesion_table.GetNumberOfRows():
            for which in ("first", "second"):
                seconds, _ = _timed(lambda: (logic.lesion_curve(phases, outputs, 0),
                                             logic.ser_overlay(phases, outputs)))
                rows.append((f"lesion click, curve + SER ({which})", f"{seconds:.2f} s"))
    width = max(len(r[0]) for r in rows)
    print(f"{'step'.ljust(width)}  result")
    for name, value in rows:
        print(f"{name.ljust(width)}  {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
