"""Time and memory of synthetic phantom generation; prints a table.

    python benchmarks/bench_phantom.py                 # small phantoms, seeds 0-9
    python benchmarks/bench_phantom.py --clinical 3    # plus 3 clinical-size phantoms

Targets: a small phantom in <= 2 s; a clinical one (448 x 448 x 160, 0.75 x 0.75 x 1.25 mm)
in <= 20 s and <= 6 GB. Each phantom is made in a fresh process so that peak memory is its own.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

_CHILD = r"""
import json, resource, sys, time
sys.path.insert(0, {root!r})
from BreastTumorSegLib.training.phantom import make_phantom
t0, c0 = time.perf_counter(), time.process_time()
ph = make_phantom({seed}, size={size!r}, n_phases={n_phases})
wall, cpu = time.perf_counter() - t0, time.process_time() - c0
print(json.dumps({{"wall_s": wall, "cpu_s": cpu, "peak_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6,
                  "size": list(ph.exam.pre.GetSize()), "phases": ph.exam.n_phases,
                  "orientation": ph.params["orientation"], "tumors": len(ph.tumors)}}))
"""


def run_one(seed: int, size: str, n_phases) -> dict:
    code = _CHILD.format(root=str(ROOT / "BreastTumorSeg"), seed=seed, size=size, n_phases=n_phases)
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--small", type=int, default=10, help="number of small phantoms (seeds 0..n-1)")
    ap.add_argument("--clinical", type=int, default=0, help="number of clinical-size phantoms (7 phases)")
    args = ap.parse_args()
    rows = [("small", s, None) for s in range(args.small)] + [("clinical", s, 7) for s in range(args.clinical)]
    print(f"{'size':9s} {'seed':>4s} {'grid':>16s} {'ph':>3s} {'orient':>9s} {'tum':>3s} {'wall s':>7s} "
          f"{'cpu s':>6s} {'peak GB':>7s}")
    for size, seed, n in rows:
        r = run_one(seed, size, n)
        grid = "x".join(str(v) for v in r["size"])
        print(f"{size:9s} {seed:4d} {grid:>16s} {r['phases']:3d} {r['orientation']:>9s} {r['tumors']:3d} "
              f"{r['wall_s']:7.2f} {r['cpu_s']:6.2f} {r['peak_gb']:7.2f}", flush=True)


if __name__ == "__main__":
    main()
