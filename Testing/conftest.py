"""Shared pytest set-up: the package is imported from this checkout, whatever is installed."""
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "BreastTumorSeg"))
os.environ.setdefault("OMP_NUM_THREADS", "2")

SHARED = ROOT.parent / "shared"
REAL_ANATOMY = SHARED / "data" / "real-anatomy"


@pytest.fixture(scope="session")
def real_anatomy_dir() -> Path:
    if not REAL_ANATOMY.exists():
        pytest.skip(f"real anatomy data not found at {REAL_ANATOMY}")
    return REAL_ANATOMY
