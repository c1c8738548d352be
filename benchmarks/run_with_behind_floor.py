"""``bench_generalization.py`` with the second look behind the floor on (engine/behind_floor.py, ``BEHIND_FLOOR``, off by default).

    python benchmarks/run_with_behind_floor.py --models ftv-outline --threads 1 --seeds 7000-7009 --hybrids

Takes exactly bench_generalization.py's arguments; used for the "after" runs of
docs/decisions/missed-randomized-issue25.md (v1: the guards ``MIN_IN_FRONT`` and ``MIN_BODY_SHARE`` were not there)
and docs/decisions/behind-floor-v2-issue25.md (v2: the module's settings as they are).
"""
import runpy
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "BreastTumorSeg"))
from BreastTumorSegLib.engine import behind_floor  # noqa: E402

behind_floor.BEHIND_FLOOR = True
print(f"second look behind the floor ON (engine/behind_floor.py; MIN_IN_FRONT={behind_floor.MIN_IN_FRONT}, "
      f"MIN_BODY_SHARE={behind_floor.MIN_BODY_SHARE})", flush=True)
sys.argv = [str(Path(__file__).with_name("bench_generalization.py"))] + sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
