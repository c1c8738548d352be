"""ctest: the headless entry point under Slicer (``Slicer --no-main-window --python-script``).

Writes a synthetic DCE exam (the engine's phantom, fixed seed), runs
``Scripts/segment_headless.py`` on it with the kinetic method (no weights, no PyTorch), and
checks what it wrote: the label map against the phantom's truth (Dice, measured 0.919), on
the exam's grid; the segmentation file and the summary agree with it; the scene bundle holds the
segmentation. Exits non-zero on failure.
"""
import sys
import tempfile
from pathlib import Path

MODULE_DIR = Path(__file__).resolve().parents[2]
MIN_DICE = 0.80
sys.path.insert(0, str(MODULE_DIR))
sys.path.insert(0, str(MODULE_DIR / "Scripts"))


def check_phantom():
    from BreastTumorSegLib.training.phantom import make_phantom

    return make_phantom(11, motion_mm=0.0)


def run_check(work: Path | None = None) -> int:
    import segment_headless
    from BreastTumorSegLib.training.phantom import write_phantom

    work = Path(work) if work is not None else Path(tempfile.mkdtemp(prefix="BreastTumorSeg-ctest-"))
    phantom = check_phantom()
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
    problems = check_content(work / "out", case, phantom)
    if problems:
        print("segment_headless wrote wrong outputs:\n  " + "\n  ".join(problems), file=sys.stderr)
        return 1
    print(f"segment_headless wrote {', '.join(expected)} into {work / 'out'}; contents checked")
    return 0


def check_content(out: Path, case: str, phantom) -> list:
    """What is wrong with the outputs in *out* (empty: nothing)."""
    import json
    import zipfile

    import numpy as np
    import SimpleITK as sitk

    problems = []
    label_img = sitk.ReadImage(str(out / f"{case}_seg.nii.gz"))
    ref = phantom.exam.reference
    if label_img.GetSize() != ref.GetSize() or not np.allclose(label_img.GetOrigin(), ref.GetOrigin(), atol=1e-3) \
            or not np.allclose(label_img.GetDirection(), ref.GetDirection(), atol=1e-6):
        problems.append(f"label map not on the exam's grid: {label_img.GetSize()} vs {ref.GetSize()}")
        return problems
    label = sitk.GetArrayFromImage(label_img) > 0
    truth = sitk.GetArrayFromImage(phantom.tumor_mask) > 0
    dice = 2.0 * np.logical_and(label, truth).sum() / max(1, label.sum() + truth.sum())
    if dice < MIN_DICE:
        problems.append(f"Dice {dice:.3f} against the phantom's truth, below {MIN_DICE}")
    seg = sitk.GetArrayFromImage(sitk.ReadImage(str(out / f"{case}.seg.nrrd"))) > 0
    if seg.shape != label.shape or not np.array_equal(seg, label):
        problems.append(f"{case}.seg.nrrd differs from {case}_seg.nii.gz")
    summary = json.loads((out / f"{case}.json").read_text())
    voxel_ml = float(np.prod(label_img.GetSpacing())) / 1000.0
    if summary.get("n_lesions", 0) < 1 or abs(summary.get("total_volume_ml", 0.0) - label.sum() * voxel_ml) > 0.01:
        problems.append(f"summary says {summary.get('n_lesions')} lesion(s), {summary.get('total_volume_ml')} mL; "
                        f"the label map holds {label.sum() * voxel_ml:.2f} mL")
    with zipfile.ZipFile(out / f"{case}.mrb") as bundle:
        if not any(name.endswith(".seg.nrrd") for name in bundle.namelist()):
            problems.append(f"{case}.mrb holds no segmentation: {bundle.namelist()}")
    return problems


if __name__ == "__main__":
    sys.exit(run_check())
