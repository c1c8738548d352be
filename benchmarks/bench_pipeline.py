"""End-to-end benchmark: seconds per stage and peak RAM for a clinical-size DCE exam.

    python benchmarks/bench_pipeline.py                # 448x448x160 x 6 phases, CPU
    python benchmarks/bench_pipeline.py --device cuda  # the same on a GPU
    python benchmarks/bench_pipeline.py --small        # a quick run on a small phantom
    python benchmarks/bench_pipeline.py --orientation sagittal  # the same exam stored as a sagittal acquisition

The exam is a synthetic phantom written to a temporary folder as NIfTI (not timed), then
loaded, registered, harmonized + segmented, post-processed and written, as the CLI does.
Peak RAM is the largest resident set size of the process during the pipeline (VmHWM, reset
after the phantom is written; ru_maxrss where that is not possible). Prints a table.
"""
from __future__ import annotations

import argparse
import gc
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "BreastTumorSeg"))


def reset_peak_rss() -> bool:
    """Start the peak-RSS count afresh (Linux: writing 5 to /proc/self/clear_refs resets VmHWM), so
    that the phantom's generation does not count; False where that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_rss_gb() -> float:
    """Peak resident memory (GB): VmHWM since :func:`reset_peak_rss`, else the process's ru_maxrss."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024 ** 2
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2  # ru_maxrss is in kB on Linux


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--model", default="st-demo", help="registry name (default: st-demo, the network; the engine's default model is ftv)")
    p.add_argument("--phases", type=int, default=6)
    p.add_argument("--small", action="store_true", help="small phantom instead of 448x448x160")
    p.add_argument("--repeat", type=int, default=1, help="run the engine this many times, report the last")
    p.add_argument("--orientation", choices=("axial", "sagittal", "coronal"), default="axial",
                   help="store the phantom's phases as this acquisition (axes permuted, geometry kept)")
    a = p.parse_args(argv)

    import torch

    from BreastTumorSegLib.core.memory import return_freed_memory
    from BreastTumorSegLib.io.files import load_exam
    from BreastTumorSegLib.training.phantom import make_phantom, write_phantom
    from BreastTumorSegLib.engine.pipeline import segment_exam, write_result

    return_freed_memory()  # as the command line does (core/memory.py)
    t = time.perf_counter()
    ph = make_phantom(11, size="small" if a.small else "clinical", n_phases=a.phases)
    if a.orientation != "axial":  # same voxels in patient space, array axes of a sagittal/coronal series
        import dataclasses

        import SimpleITK as sitk

        code = {"sagittal": "PIL", "coronal": "LIP"}[a.orientation]
        ph = dataclasses.replace(ph, exam=ph.exam.with_phases([sitk.DICOMOrient(img, code) for img in ph.exam.phases]),
                                 tumor_mask=sitk.DICOMOrient(ph.tumor_mask, code),
                                 tumor_labels=sitk.DICOMOrient(ph.tumor_labels, code),
                                 breast_mask=sitk.DICOMOrient(ph.breast_mask, code))
    t_make = time.perf_counter() - t
    with tempfile.TemporaryDirectory() as tmp:
        write_phantom(ph, Path(tmp) / "exam")
        del ph
        gc.collect()
        fresh_peak = reset_peak_rss()
        rows = []
        for _ in range(a.repeat):
            t0 = time.perf_counter()
            exam = load_exam(Path(tmp) / "exam")
            t_load = time.perf_counter() - t0
            res = segment_exam(exam, model=a.model, device=a.device)
            t1 = time.perf_counter()
            write_result(res, Path(tmp) / "out", overwrite=True)
            t_write = time.perf_counter() - t1
            rows = [("load", t_load)] + [(k, v) for k, v in res.timings.items()] + [("write", t_write)]
        total = sum(v for _, v in rows)
        size = exam.reference.GetSize()
        dev = a.device
        if dev.startswith("cuda") and torch.cuda.is_available():
            dev += f" ({torch.cuda.get_device_name(0)})"
        print(f"\nBreastTumorSeg pipeline benchmark — exam {size[0]}x{size[1]}x{size[2]} x {exam.n_phases} phases "
              f"({a.orientation}), "
              f"model {res.model_id}, device {dev}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
              f"{platform.processor() or platform.machine()}")
        print(f"(phantom generation, not part of the pipeline: {t_make:.1f} s)\n")
        print(f"| stage | seconds |\n| --- | ---: |")
        for k, v in rows:
            print(f"| {k} | {v:.2f} |")
        print(f"| **total** | **{total:.2f}** |")
        print(f"\npeak RAM (max RSS{' of the pipeline, phantom generation excluded' if fresh_peak else ', whole process'}): "
              f"{peak_rss_gb():.2f} GB")
        if dev.startswith("cuda") and torch.cuda.is_available():
            print(f"peak GPU memory: {torch.cuda.max_memory_allocated() / 1024 ** 3:.2f} GB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
