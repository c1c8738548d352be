"""``bench_followup.py`` with the moderate-tumor step on (engine/moderate.py, ``MODERATE``, off by default).

    OMP_NUM_THREADS=1 python benchmarks/followup_with_moderate.py --families ellipse,heterogeneous --seeds 7120-7129

Takes exactly bench_followup.py's arguments; used for the follow-up "after" runs of
docs/decisions/moderate-tumors-issue25.md. At the end it prints on how many visits the step changed the probability
map (a series where it changed none is the same computation as with the step off).
"""
import atexit
import runpy
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "BreastTumorSeg"))
from BreastTumorSegLib.engine import moderate  # noqa: E402

moderate.MODERATE = True
real = moderate.add_moderate
changed: list[bool] = []


def watched(seg, exam, prob, *args, **kw):
    out = real(seg, exam, prob, *args, **kw)
    changed.append(out is not prob)
    if out is not prob:
        print(f"  moderate step: added to {exam.case_id}", flush=True)
    return out


moderate.add_moderate = watched
atexit.register(lambda: print(f"moderate step ON: changed {sum(changed)} of {len(changed)} segmented visits", flush=True))
print("moderate step ON (engine/moderate.py)", flush=True)
sys.argv = [str(Path(__file__).with_name("bench_followup.py"))] + sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
