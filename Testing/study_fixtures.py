"""What the reader-study tests (test_study, test_study_designs) share: a settable clock and the
small phantom exams they study, with a simulated model's outputs for ``--model-outputs``."""
from pathlib import Path

import SimpleITK as sitk

from BreastTumorSegLib.training.phantom import make_phantom, write_phantom


class Clock:
    """A session clock the test moves by hand (``clock.t += 30``)."""

    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


def write_study_exam(root: Path, seed: int):
    """One small phantom exam (one 9 mm tumor, 3 phases, 4 mm voxels) as ``root/P<seed>``:
    returns its case id, the phantom and its truth mask (uint8)."""
    ph = make_phantom(seed, n_phases=3, motion_mm=0.0, spacing=4.0, n_tumors=1, tumor_radius_mm=9.0,
                      decoys=False, heart=False, vessels=False)
    case = f"P{seed:03d}"
    write_phantom(ph, root / case)
    return case, ph, sitk.Cast(ph.tumor_mask > 0, sitk.sitkUInt8)


def write_model_outputs(model_dir: Path, case: str, sim) -> None:
    """A simulated model's mask (probability >= 0.5) and probability map, named as `segment` does."""
    sitk.WriteImage(sitk.Cast(sim.model_prob >= 0.5, sitk.sitkUInt8), str(model_dir / f"{case}_seg.nii.gz"))
    sitk.WriteImage(sim.model_prob, str(model_dir / f"{case}_prob.nii.gz"))
