"""The bundled demo model end to end: accuracy on unseen phantoms, silence on real no-contrast anatomy."""
import numpy as np
import pytest
import SimpleITK as sitk

from BreastTumorSegLib.exam import DCEExam
from BreastTumorSegLib.metrics import dice
from BreastTumorSegLib.phantom import make_phantom
from BreastTumorSegLib.pipeline import segment_exam

# Training used seeds 1000-1159 and validation 2000-2007 (see the model card); these were never seen.
UNSEEN_SEEDS = [3000, 3001, 3002, 3003, 3004]


@pytest.fixture(scope="module")
def unseen_results():
    out = []
    for seed in UNSEEN_SEEDS:
        ph = make_phantom(seed, n_tumors=1)
        res = segment_exam(ph.exam, model="unet-demo", device="cpu")
        out.append((ph, res))
    return out


def test_demo_model_finds_tumors_in_unseen_phantoms(unseen_results):
    """Regression floor for the shipped model: measured median 0.67 (0.74, 0.58, 0.67, 0.84, 0.0)."""
    scores = [dice(res.label, ph.tumor_mask) for ph, res in unseen_results]
    print("Dice per unseen phantom:", np.round(scores, 3).tolist())
    assert np.median(scores) >= 0.6, scores
    assert sum(s > 0.5 for s in scores) >= 3, scores


@pytest.mark.xfail(reason="issue 2 target not met yet: the shipped demo U-Net reaches median Dice 0.67 on "
                          "these phantoms (misses a slowly enhancing 6.9 mL mass, under-segments sub-mL "
                          "tumors); the target stays here until a better-trained model meets it", strict=False)
def test_demo_model_median_dice_target_on_unseen_phantoms(unseen_results):
    scores = [dice(res.label, ph.tumor_mask) for ph, res in unseen_results]
    assert np.median(scores) >= 0.85, scores


def test_lesion_table_matches_truth(unseen_results):
    for ph, res in unseen_results:
        if not res.lesions:
            continue
        big = max(res.lesions, key=lambda les: les.volume_ml)
        truth = max(ph.tumors, key=lambda t: t["volume_ml"])
        dist = np.linalg.norm(np.subtract(big.centroid_lps, truth["center_lps"]))
        if dice(res.label, ph.tumor_mask) > 0.7:
            assert big.side == truth["side"]
            assert dist < 10.0
            assert big.volume_ml == pytest.approx(truth["volume_ml"], rel=0.35)


def _no_contrast_exam(path, n_phases=3, seed=0) -> DCEExam:
    """Every phase the same real volume plus independent Rician noise (no enhancement anywhere)."""
    img = sitk.ReadImage(str(path), sitk.sitkFloat32)
    arr = sitk.GetArrayFromImage(img)
    rng = np.random.default_rng(seed)
    sigma = 0.02 * float(np.percentile(arr, 95))
    phases = []
    for _ in range(n_phases):
        noisy = np.hypot(arr + rng.normal(0, sigma, arr.shape), rng.normal(0, sigma, arr.shape))
        p = sitk.GetImageFromArray(noisy.astype(np.float32))
        p.CopyInformation(img)
        phases.append(p)
    return DCEExam(phases, [0.0, 1.5, 3.0][:n_phases], case_id=path.name.split(".")[0])


@pytest.mark.parametrize("name", ["AX_T1_BILAT.nii.gz", "SAG_T1_3D_BILAT.nii.gz"])
def test_no_tumor_on_real_anatomy_without_contrast(real_anatomy_dir, name):
    exam = _no_contrast_exam(real_anatomy_dir / name)
    res = segment_exam(exam, model="unet-demo", device="cpu")
    big = [les.volume_ml for les in res.lesions if les.volume_ml > 0.5]
    assert big == [], f"false tumors (mL): {big}"
    # The outputs keep the input's geometry, including the sagittal direction matrix.
    ref = exam.reference
    for out in (res.label, res.probability):
        assert out.GetSize() == ref.GetSize()
        np.testing.assert_allclose(out.GetDirection(), ref.GetDirection(), atol=1e-9)
        np.testing.assert_allclose(out.GetOrigin(), ref.GetOrigin(), atol=1e-6)
        np.testing.assert_allclose(out.GetSpacing(), ref.GetSpacing(), atol=1e-9)
