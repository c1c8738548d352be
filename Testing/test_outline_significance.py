"""Outline seeds in a low-SNR exam (kinetics/significance.py): a tumor whose pre-contrast signal lies
below FTV's noise floor is outlined when the local-mean significance test is on, and single noisy
voxels of the enhancing background do not become lesions."""
import numpy as np
import SimpleITK as sitk

from BreastTumorSegLib.core.exam import DCEExam
from BreastTumorSegLib.kinetics.ftv import count_neighbors
from BreastTumorSegLib.kinetics.significance import compact_islands, neighbourhood, significant_tissue
from BreastTumorSegLib.models.ftv_segmenter import FTVOutlineSegmenter

TIMES = (0.0, 1.5, 3.0, 4.5)
SPACING = (1.0, 1.0, 2.0)  # x, y, z


def low_snr_exam(seed=0, shape=(24, 64, 64), sigma=14.0, radius=7.0):
    """No fat suppression: bright fat (250, no uptake) in one half, fibroglandular tissue (70, PE 10 %)
    in the other, with a tumor ball of *radius* mm (pre 70, PE 150 %) in it; Gaussian noise *sigma*
    per phase, so FTV's noise floor (about 4.3 sd of the difference, ~85) lies above the tumor's
    signal. Returns the exam and the truth."""
    rng = np.random.default_rng(seed)
    sz = np.asarray(SPACING)[::-1]
    zz, yy, xx = np.meshgrid(*(np.arange(n) * s for n, s in zip(shape, sz)), indexing="ij")
    fat = xx < shape[2] * sz[2] / 2
    c = np.array([shape[0] * sz[0] / 2, shape[1] * sz[1] / 2, shape[2] * sz[2] * 0.72])
    truth = (zz - c[0]) ** 2 + (yy - c[1]) ** 2 + (xx - c[2]) ** 2 <= radius ** 2
    pre = np.where(fat, 250.0, 70.0)
    pe = np.where(fat, 0.0, np.where(truth, 1.5, 0.10))
    images = []
    for k in range(len(TIMES)):
        a = pre * (1 + pe * (0.0 if k == 0 else 1.0)) + rng.normal(0, sigma, shape)
        im = sitk.GetImageFromArray(np.abs(a).astype(np.float32))
        im.SetSpacing(SPACING)
        images.append(im)
    return DCEExam(images, list(TIMES), case_id="low-snr"), truth


def test_low_snr_tumor_is_outlined_with_the_significance_test():
    exam, truth = low_snr_exam()
    seg = FTVOutlineSegmenter()  # the default since the no-loss rule on development seeds
    mask = sitk.GetArrayFromImage(seg.predict(exam, None)) >= 0.5
    recall = np.count_nonzero(mask & truth) / np.count_nonzero(truth)
    precision = np.count_nonzero(mask & truth) / max(np.count_nonzero(mask), 1)
    assert recall >= 0.8 and precision >= 0.8, (recall, precision)
    assert seg.last_result.fat_suppression["significance"]["sd_local"] > 0
    # FTV's noise floor alone loses the tumor: the failure this guards against
    before = sitk.GetArrayFromImage(FTVOutlineSegmenter(outline_significance=False).predict(exam, None)) >= 0.5
    assert np.count_nonzero(before & truth) / np.count_nonzero(truth) < 0.3


def test_noise_and_single_bright_voxels_do_not_seed_an_outline():
    """Dark tissue (pre 10, PE 20 %, noise 14 per phase) with isolated voxels enhancing 100 %: after
    FTV's neighbour rule no voxel is strongly enhancing by its local mean, although dark tissue
    whose local mean is well above the noise counts as tissue."""
    rng = np.random.default_rng(3)
    shape = (12, 40, 40)
    pre = np.abs(10.0 + rng.normal(0, 14.0, shape)).astype(np.float32)
    early = np.abs(12.0 + rng.normal(0, 14.0, shape)).astype(np.float32)
    bright = np.zeros(shape, bool)
    bright[6, 10::10, 10::10] = True
    pre[bright], early[bright] = 200.0, 400.0  # PE 100 % in single voxels
    tissue, pe_m, info = significant_tissue(pre, early, np.ones(shape, bool), np.array([2.0, 1.0, 1.0]), 0.0, 3.0,
                                            70.0)
    assert info["neighbourhood"] == [3, 3, 3] and info["sd_local"] > 0
    assert tissue.mean() > 0.5  # the local mean of dark tissue is significant ...
    strong = tissue & (pe_m >= 70.0)
    assert not np.any(strong & (count_neighbors(strong) >= 4))  # ... its enhancement is not
    assert neighbourhood([3.0, 0.9, 0.9]) == (1, 3, 3)


def test_compact_islands_are_kept_and_tubes_are_not():
    """Of the strong structures an opening removed, a 3x3x2 blob counts as an island, a thin tube
    of the same volume does not; a structure the opening kept is not an island."""
    strong = np.zeros((10, 40, 40), bool)
    strong[4:6, 5:8, 5:8] = True  # compact blob
    strong[5, 20, 5:23] = True  # tube, 18 voxels
    strong[2:8, 25:35, 25:35] = True  # thick: survives the opening
    opened = np.zeros_like(strong)
    opened[2:8, 25:35, 25:35] = True
    isl = compact_islands(strong, opened, np.array([1.0, 1.0, 1.0]))
    assert isl[4:6, 5:8, 5:8].all()
    assert not isl[5, 20].any() and not isl[2:8, 25:35, 25:35].any()


def test_the_i_spy_mask_is_unchanged_by_the_test():
    """The significance test only seeds the outline: the FTV core (and ftv_ml) stay I-SPY's."""
    exam, _ = low_snr_exam(seed=1)
    on, off = FTVOutlineSegmenter(), FTVOutlineSegmenter(outline_significance=False)
    on.predict(exam, None)
    off.predict(exam, None)
    assert on.last_result.ftv_ml == off.last_result.ftv_ml
    assert on.last_result.outline_ml > off.last_result.outline_ml
    assert on.model_id != off.model_id
