"""Shared pytest set-up: the package is imported from this checkout, whatever is installed."""
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "BreastTumorSeg"))
os.environ.setdefault("OMP_NUM_THREADS", "2")


@pytest.fixture(scope="session")
def real_anatomy_dir() -> Path:
    """The two real breast MRI volumes (``AX_T1_BILAT.nii.gz``, ``SAG_T1_3D_BILAT.nii.gz``).

    Their source publishes them without a licence, so they cannot ship with this repository; a
    test that needs them fails (never skips) until they are in place."""
    from BreastTumorSegLib.training.phantom.hybrid import ANATOMY_FILES, real_anatomy_dir

    where = real_anatomy_dir()
    missing = [name for name in ANATOMY_FILES.values() if not (where / name).is_file()]
    if missing:
        pytest.fail(f"real-anatomy volumes {', '.join(missing)} not found in {where}. Fix: "
                    f"`git clone https://github.com/CBICA/DeepSeA` and run `python scripts/get_real_anatomy.py "
                    f"DeepSeA` (converts its demoData DICOM series into {where}), or set "
                    f"BREASTTUMORSEG_REAL_ANATOMY to a folder holding them; see docs/real-anatomy.md",
                    pytrace=False)
    return where


# ------------------------------------------------------------------ leaving the test process
# The web-station tests run trame-slicer sessions (VTK views with EGL OpenGL contexts) on the
# station's loop thread. Whatever VTK still holds when the interpreter shuts down is destroyed on
# the main thread, without its context ("Unable to eglMakeCurrent"), and that crashed the process
# with a segmentation fault in about one run of two, after every test had passed (exit 139). The
# station's own command (`study serve`) never shuts the interpreter down with views alive: it leaves
# through the command line's os._exit path (cli._exit_now). The test process does the same, once
# pytest has reported, and only when trame-slicer was used; the exit status is pytest's own.
_SESSION = {}


def pytest_sessionfinish(session, exitstatus):
    _SESSION["exitstatus"] = int(exitstatus)


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config):
    if "trame_slicer" in sys.modules and "exitstatus" in _SESSION:
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        os._exit(_SESSION["exitstatus"])
