"""ctest: the headless entry point under Slicer (``Slicer --no-main-window --python-script``).

Writes a synthetic DCE exam (the engine's phantom, fixed seed), runs
``Scripts/segment_headless.py`` on it with the kinetic method (no weights, no PyTorch), and
checks the CLI's four output files and the saved scene bundle. Exits non-zero on failure.
"""
import sys
import tempfile
from pathlib import Path

MODULE_DIR = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(MODULE_DIR))
sys.path.insert(0, str(MODULE_DIR / "Scripts"))


def run_check() -> int:
    import segment_headless
    from BreastTumorSegLib.training.phantom import make_phantom, write_phantom

    work = Path(tempfile.mkdtemp(prefix="BreastTumorSeg-ctest-"))
    phantom = make_phantom(11, motion_mm=0.0)
    write_phantom(phantom, work / "exam")
    case = phantom.exam.case_id
    code = segment_headless.main(["--input", str(work / "exam"), "--output", str(work / "out"),
                                  "--model", "ftv", "--device", "cpu", "--no-register",
                                  "--scene", str(work / "out" / f"{case}.mrb")])
    expected = [f"{case}_seg.nii.gz", f"{case}_prob.nii.gz", f"{case}.seg.nrrd", f"{case}.json", f"{case}.mrb"]
    missing = [name for name in expected if not (work / "out" / name).is_file()]
    if code != 0 or missing:
        print(f"segment_headless failed: exit code {code}, missing {missing}", file=sys.stderr)
        return 1
    print(f"segment_headless wrote {', '.join(expected)} into {work / 'out'}")
    return 0


if __name__ == "__main__":
    sys.exit(run_check())
