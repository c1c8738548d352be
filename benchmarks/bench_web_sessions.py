"""Memory and time per reader session of the web reader station (``study serve``).

    python benchmarks/bench_web_sessions.py            # 448x448x160 clinical phantom, 2 phases, 3 readers
    python benchmarks/bench_web_sessions.py --small    # a quick run on a small phantom

Makes a one-case study (phantom written as NIfTI, not timed), then opens one reader workspace
after the other in this process -- each with its own MRML scene holding the registered
subtraction, first post-contrast and pre-contrast and the reader's segmentation, as the station
does -- and reports the resident memory each adds (VmRSS after the case is open, minus before),
the time to open the case (registration included), to apply one paint stroke through the MRML
segment and to render one slice PNG, and the memory given back when the sessions are released.
Prints a table.
"""
from __future__ import annotations

import argparse
import gc
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "BreastTumorSeg"))


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--small", action="store_true", help="a small phantom instead of a clinical-size one")
    p.add_argument("--readers", type=int, default=3)
    args = p.parse_args(argv)

    import SimpleITK as sitk

    from BreastTumorSegLib.study.coordinator import init_study
    from BreastTumorSegLib.training.phantom import make_phantom, write_phantom
    from BreastTumorSegLib.web.workspace import ReaderWorkspace

    readers = [f"r{i + 1}" for i in range(args.readers)]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        ph = make_phantom(7, n_phases=2, n_tumors=1, motion_mm=0, size="small" if args.small else "clinical")
        write_phantom(ph, root / "exams", layout="mamamia")
        (root / "cases.csv").write_text(f"case,path\n{ph.case_id},exams/images/{ph.case_id}\n")
        init_study(root / "cases.csv", readers, ["unaided"], root / "study", seed=1)
        size = ph.exam.pre.GetSize()
        del ph
        gc.collect()
        rows, spaces = [], []
        base = rss_mb()
        for r in readers:
            before = rss_mb()
            t0 = time.perf_counter()
            ws = ReaderWorkspace(root / "study", r)
            ws.ensure_open(0)
            t_open = time.perf_counter() - t0
            gc.collect()
            after = rss_mb()
            k = ws.info()["start_slice"]
            rows_, cols_ = ws.info()["rows"], ws.info()["cols"]
            t0 = time.perf_counter()
            ws.stroke("paint", k, [[rows_ * 0.4, cols_ * 0.4], [rows_ * 0.5, cols_ * 0.6]], radius_mm=4.0)
            t_stroke = time.perf_counter() - t0
            t0 = time.perf_counter()
            ws.slice_png("sub", k, None, None, True)
            t_png = time.perf_counter() - t0
            spaces.append(ws)
            rows.append((r, after - before, t_open, t_stroke, t_png))
        peak = rss_mb()
        for ws in spaces:
            ws.release()
        spaces.clear()
        gc.collect()
        released = rss_mb()

    print(f"exam {size[0]}x{size[1]}x{size[2]} voxels, {len(readers)} reader sessions in one process")
    print(f"| reader | RSS added (MB) | open case (s) | paint stroke (s) | slice PNG (s) |")
    print(f"| --- | --- | --- | --- | --- |")
    for r, mb, to, ts, tp in rows:
        print(f"| {r} | {mb:.0f} | {to:.1f} | {ts:.2f} | {tp:.3f} |")
    print(f"RSS: {base:.0f} MB before the first session, {peak:.0f} MB with all open, "
          f"{released:.0f} MB after releasing them")
    return 0


if __name__ == "__main__":
    sys.exit(main())
