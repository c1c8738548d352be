"""Bring-your-own-model overhead: nnU-Net's own predictor on a file vs `segment --model nnunet:...`.

    python benchmarks/bench_byom.py [--model-dir DIR] [--device cpu|cuda] [--repeats N]

Uses the tiny nnU-Net model of the tests (built with nnU-Net's own tools by
``Testing/byom_fixtures.py``, cached in the temp folder) or any nnU-Net folder (``--model-dir``,
one channel; the exam is then a phantom anyway). Times, for one phantom exam: nnUNetPredictor
(``predict_from_files_sequential`` on the first post-contrast file), `segment --raw` (the same
answer, plus loading the exam and writing all our outputs) and `segment` with our motion
correction, breast gating and post-processing; each with mirroring on and off. Prints a table.
Needs the ``nnunet`` extra.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "BreastTumorSeg"))
sys.path.insert(0, str(ROOT / "Testing"))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model-dir", type=Path, default=None)
    p.add_argument("--device", default="cpu")
    p.add_argument("--repeats", type=int, default=1)
    args = p.parse_args(argv)

    import torch
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    from BreastTumorSegLib.cli import main as cli
    from byom_fixtures import TEST_SEED, cached_nnunet, phantom_case

    work = Path(tempfile.mkdtemp(prefix="bench-byom-"))
    try:
        model = args.model_dir or cached_nnunet()
        exam = phantom_case(TEST_SEED, work / "exam")
        rows = []
        for mirroring in (False, True):
            for what in ("nnUNetPredictor", "segment --raw", "segment"):
                times = []
                for r in range(args.repeats):
                    out = work / f"out-{what.replace(' ', '')}-{mirroring}-{r}"
                    t0 = time.perf_counter()
                    if what == "nnUNetPredictor":
                        out.mkdir()
                        pred = nnUNetPredictor(device=torch.device(args.device), use_mirroring=mirroring,
                                               allow_tqdm=False)
                        pred.initialize_from_trained_model_folder(str(model), None)
                        pred.predict_from_files_sequential([[str(exam / f"{exam.name}_0001.nii.gz")]],
                                                           [str(out / "case")], False, True)
                    else:
                        extra = ["--raw"] if what.endswith("--raw") else []
                        code = cli(["segment", str(exam), "--output", str(out), "--model", f"nnunet:{model}",
                                    "--trust-pickle", "--channels", "phase1", "--device", args.device, "--quiet"]
                                   + extra + ([] if mirroring else ["--no-mirroring"]))
                        assert code == 0
                    times.append(time.perf_counter() - t0)
                rows.append((what, "on" if mirroring else "off", min(times)))
        shape = "x".join(str(s) for s in __import__("SimpleITK").ReadImage(
            str(exam / f"{exam.name}_0001.nii.gz")).GetSize())
        print(f"\nexam {exam.name} ({shape} voxels), model {model}, device {args.device}, "
              f"torch threads {torch.get_num_threads()}")
        print("| path | mirroring | seconds (best of %d) |" % args.repeats)
        print("| --- | --- | --- |")
        for what, mir, sec in rows:
            print(f"| {what} | {mir} | {sec:.1f} |")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
