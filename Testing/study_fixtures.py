"""What the reader-study tests (test_study, test_study_designs, test_reader_mode, test_web_scores)
share: a settable clock and the small phantom exams they study, with a model's outputs for
``--model-outputs``."""
from pathlib import Path

import SimpleITK as sitk

from BreastTumorSegLib.training.phantom import make_phantom, write_phantom


class Clock:
    """A session clock the test moves by hand (``clock.t += 30``)."""

    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


def write_study_exam(root: Path, seed: int, n_phases: int = 3):
    """One small phantom exam (one 9 mm tumor, *n_phases* phases, 4 mm voxels) as ``root/P<seed>``:
    returns its case id, the phantom and its truth mask (uint8)."""
    ph = make_phantom(seed, n_phases=n_phases, motion_mm=0.0, spacing=4.0, n_tumors=1, tumor_radius_mm=9.0,
                      decoys=False, heart=False, vessels=False)
    case = f"P{seed:03d}"
    write_phantom(ph, root / case)
    return case, ph, sitk.Cast(ph.tumor_mask > 0, sitk.sitkUInt8)


def write_model_outputs(model_dir: Path, case: str, sim) -> None:
    """A simulated model's mask (probability >= 0.5) and probability map, named as `segment` does."""
    sitk.WriteImage(sitk.Cast(sim.model_prob >= 0.5, sitk.sitkUInt8), str(model_dir / f"{case}_seg.nii.gz"))
    sitk.WriteImage(sim.model_prob, str(model_dir / f"{case}_prob.nii.gz"))


def write_study_cases(root: Path, seeds, n_phases: int = 3) -> Path:
    """The exams of *seeds* under *root*, ``root/cases.csv`` listing them, and a model whose mask
    is each exam's truth in ``root/model``; returns *root*."""
    (root / "model").mkdir()
    rows = ["case,path"]
    for seed in seeds:
        case, _, truth = write_study_exam(root, seed, n_phases)
        rows.append(f"{case},{case}")
        sitk.WriteImage(truth, str(root / "model" / f"{case}_seg.nii.gz"))
    (root / "cases.csv").write_text("\n".join(rows) + "\n")
    return root
