"""Batch throughput and memory: exams per hour and peak RSS per worker, and a leak check.

    python benchmarks/bench_batch.py                      # (a) 448x448x160 x 6, (b) 256x256x96 x 4; workers 1, 2
    python benchmarks/bench_batch.py --exams 4 --device cuda
    python benchmarks/bench_batch.py --flat 100           # only the memory-flat check: 100 small exams
    python benchmarks/bench_batch.py --sizes b --workers 1

Each size gets one synthetic phantom (not timed), copied under new case names; then
``breasttumorseg batch`` runs on them in a fresh process per configuration, exactly as a user
runs it (default model, motion correction on). Exams/hour is the number of exams over the
batch's wall time (model loading and process start included); peak RSS per worker is the largest
``ru_maxrss`` a worker reported (``peak_rss_mb`` in its done events). The memory-flat check runs
``--flat`` small exams with one worker and compares the resident memory after the 10th exam with
the one after the last. Prints a table.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "BreastTumorSeg"))

SIZES = {
    "a": ("448x448x160 x 6", dict(size="clinical", n_phases=6)),
    "b": ("256x256x96 x 4", dict(shape_mm=(307.2, 307.2, 192.0), spacing=(1.2, 1.2, 2.0), n_phases=4)),
    "small": ("48x48x24 x 3", dict(shape_mm=(144, 144, 72), spacing=3.0, n_phases=3)),
}


def make_cases(root: Path, spec: dict, n: int, seed: int = 7) -> None:
    from BreastTumorSegLib.training.phantom import make_phantom, write_phantom

    template = root / "_template"
    ph = make_phantom(seed, n_tumors=1, **spec)
    write_phantom(ph, template / ph.case_id)
    src = template / ph.case_id
    for i in range(n):
        cid = f"case_{i:04d}"
        (root / "exams" / cid).mkdir(parents=True)
        for f in src.glob(f"{ph.case_id}_000*.nii.gz"):
            shutil.copyfile(f, root / "exams" / cid / f.name.replace(ph.case_id, cid))
        shutil.copyfile(src / f"{ph.case_id}.json", root / "exams" / cid / f"{cid}.json")
    shutil.rmtree(template)


def run_batch(exams: Path, out: Path, workers: int, device: str, model: str | None) -> tuple[float, list[dict]]:
    env = dict(os.environ, PYTHONPATH=str(ROOT / "BreastTumorSeg"))
    cmd = [sys.executable, "-m", "BreastTumorSegLib.cli", "batch", str(exams), "--output", str(out),
           "--workers", str(workers), "--device", device, "--progress", "none"]
    if model:
        cmd += ["--model", model]
    t0 = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    events = [json.loads(ln) for ln in (out / ".batch" / "events.jsonl").read_text().splitlines()]
    return wall, events


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="a,b", help="comma-separated: a, b, small (default: a,b)")
    p.add_argument("--workers", default="1,2", help="comma-separated worker counts (default: 1,2)")
    p.add_argument("--exams", type=int, default=2, help="exams per worker in each run (default: 2)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--model", default=None, help="default: the default model")
    p.add_argument("--flat", type=int, default=100, help="exams of the memory-flat check (0: skip)")
    p.add_argument("--only-flat", action="store_true")
    a = p.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_batch_") as tmp:
        tmp = Path(tmp)
        for size in ([] if a.only_flat else a.sizes.split(",")):
            label, spec = SIZES[size]
            counts = [int(w) for w in a.workers.split(",")]
            make_cases(tmp / size, spec, a.exams * max(counts))
            for w in counts:
                exams = tmp / size / f"w{w}"
                exams.mkdir()
                for case in sorted((tmp / size / "exams").iterdir())[: a.exams * w]:
                    os.symlink(case, exams / case.name)
                wall, events = run_batch(exams, tmp / size / f"out{w}", w, a.device, a.model)
                done = [e for e in events if e["event"] == "done"]
                peak = max((e.get("peak_rss_mb", 0) for e in done), default=0)
                per_exam = sorted(e["seconds"] for e in done)
                rows.append((label, w, len(done), wall, 3600 * len(done) / wall, per_exam[len(per_exam) // 2], peak))
                print(f"  {label}, {w} worker(s): {len(done)} exams in {wall:.0f} s", file=sys.stderr)
        flat = None
        if a.flat:
            make_cases(tmp / "flat", SIZES["small"][1], a.flat)
            wall, events = run_batch(tmp / "flat" / "exams", tmp / "flat" / "out", 1, a.device, a.model)
            rss = [e["rss_mb"] for e in events if e["event"] == "done" and "rss_mb" in e]
            flat = (len(rss), rss[min(9, len(rss) - 1)], rss[-1], max(rss), wall)

    print(f"\nbatch benchmark: {platform.processor() or platform.machine()}, {os.cpu_count()} CPU(s), "
          f"device {a.device}, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}")
    if rows:
        print("| exam | workers | exams | wall s | exams/hour | median s/exam (in worker) | peak RSS per worker (MB) |")
        print("| --- | --- | --- | --- | --- | --- | --- |")
        for label, w, n, wall, rate, med, peak in rows:
            print(f"| {label} | {w} | {n} | {wall:.0f} | {rate:.0f} | {med:.1f} | {peak:.0f} |")
    if flat:
        n, first, last, peak, wall = flat
        print(f"\nmemory over {n} small exams, 1 worker: RSS after exam 10 {first:.0f} MB, after exam {n} "
              f"{last:.0f} MB (max {peak:.0f} MB; {wall:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
