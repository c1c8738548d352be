"""``bench_generalization.py`` with the deep band on (kinetics/deep_band.py, ``DEEP_BAND``, off by default).

    python benchmarks/run_with_deep_band.py --models ftv-outline --threads 1 --seeds 7000-7009 --hybrids

Takes exactly bench_generalization.py's arguments; used for the "after" runs of
docs/decisions/deep-band-issue25.md.
"""
import runpy
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "BreastTumorSeg"))
from BreastTumorSegLib.kinetics import deep_band  # noqa: E402

deep_band.DEEP_BAND = True
print("deep band ON (kinetics/deep_band.py)", flush=True)
sys.argv = [str(Path(__file__).with_name("bench_generalization.py"))] + sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
