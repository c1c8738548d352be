"""What several benchmarks start with: the thread count for PyTorch and SimpleITK, and seeds that
must be development seeds (the held-out seeds 5000-5099 are spent only by a decision's one
held-out run, through ``bench_generalization.py``, ``bench_followup.py`` or ``bench_classify.py``).

A benchmark run as ``python benchmarks/bench_x.py`` finds this module beside it."""
from __future__ import annotations

import SimpleITK as sitk

from BreastTumorSegLib.core.values import parse_seeds

HELD_OUT = range(5000, 5100)


def set_threads(n: int) -> None:
    """Use *n* threads in PyTorch and in SimpleITK's filters."""
    import torch

    torch.set_num_threads(n)
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(n)


def development_seeds(spec: str) -> list[int]:
    """The seeds of *spec* (``"7000-7009,7012"``); stops the benchmark when one is held out."""
    seeds = parse_seeds(spec, option="--seeds")
    if any(s in HELD_OUT for s in seeds):
        raise SystemExit("held-out seeds 5000-5099 are not for this benchmark: use development seeds (6000+, 7000+)")
    return seeds
