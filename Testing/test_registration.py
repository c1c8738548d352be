"""Motion correction recovers known phantom motion within one voxel."""
import numpy as np
import SimpleITK as sitk

from BreastTumorSegLib.core.exam import DCEExam
from BreastTumorSegLib.training.phantom import make_phantom
from BreastTumorSegLib.preprocess.registration import displacement_at, register_exam


def test_recovers_known_phantom_motion_within_one_voxel():
    ph = make_phantom(31, motion_mm=2.0, n_phases=4)
    corrected, qa = register_exam(ph.exam)
    voxel = min(ph.exam.reference.GetSpacing())
    center = ph.tumors[0]["center_lps"] if ph.tumors else ph.exam.reference.TransformContinuousIndexToPhysicalPoint(
        [s / 2 for s in ph.exam.reference.GetSize()])
    assert len(qa) == 3
    for q in qa:
        true = np.asarray(ph.motion[q["phase"]].TransformPoint(center)) - np.asarray(center)
        est = displacement_at(q["transform"], center) if q["accepted"] else np.zeros(3)
        assert np.linalg.norm(true - est) < voxel, (q, true, est)
        assert q["mi_after"] >= q["mi_before"]
    assert corrected.metadata["motion_corrected"]


def test_recovers_a_known_shift_on_real_anatomy(real_anatomy_dir):
    img = sitk.ReadImage(str(real_anatomy_dir / "AX_T1_BILAT.nii.gz"), sitk.sitkFloat32)
    img = img[32:224, 24:200, 40:150]  # crop for speed; geometry follows the crop
    shift = (2.5, -1.5, 1.0)  # mm
    moved = sitk.Resample(img, img, sitk.TranslationTransform(3, shift), sitk.sitkLinear, 0.0)
    corrected, qa = register_exam(DCEExam([img, moved], [0.0, 1.5]))
    est = displacement_at(qa[0]["transform"], img.TransformContinuousIndexToPhysicalPoint([96, 88, 55]))
    # The transform maps reference points into the moved phase: the displacement is -shift.
    np.testing.assert_allclose(est, -np.asarray(shift), atol=min(img.GetSpacing()))
