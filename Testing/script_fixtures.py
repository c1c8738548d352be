"""Import the module's stand-alone scripts (``BreastTumorSeg/Scripts``, ``BreastTumorSeg/Testing/Python``)
in tests, without leaving their folder on ``sys.path``."""
from __future__ import annotations

import importlib
import sys
from pathlib import Path

MODULE_DIR = Path(__file__).resolve().parents[1] / "BreastTumorSeg"


def import_script(name: str, *folders: str):
    """The module *name* found in *folders* (relative to ``BreastTumorSeg/``; default ``Scripts``)."""
    paths = [str(MODULE_DIR / f) for f in (folders or ("Scripts",))]
    sys.path[:0] = paths
    try:
        return importlib.import_module(name)
    finally:
        del sys.path[:len(paths)]


def headless_script():
    """``Scripts/segment_headless.py``, the headless Slicer entry point."""
    return import_script("segment_headless")
