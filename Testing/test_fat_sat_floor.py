"""Post-contrast background condition in fat-suppressed exams (kinetics/fat_sat_floor.py)."""
import numpy as np
import pytest
import SimpleITK as sitk
from BreastTumorSegLib.core.exam import DCEExam
from BreastTumorSegLib.evaluation.metrics import dice
from BreastTumorSegLib.kinetics.fat_sat_floor import post_contrast_tissue
from BreastTumorSegLib.kinetics.ftv import FTVSettings, functional_tumor_volume

TIMES = (0.0, 1.5, 3.0, 4.5, 6.0)
CURVE = (0.0, 2.0, 1.9, 1.7, 1.5)  # PE 200 % early, washout


def dark_tumor_exam(tumor_pre=35.0, curve=CURVE, noise=1.5, seed=0, shape=(32, 48, 48), spacing=(0.9, 0.9, 1.2)):
    """Fat-suppressed look: parenchyma (pre 100, mild BPE) in the upper half, dark fat (pre 15, no uptake)
    in the lower half, and a 6 mm sphere of tumor whose pre-contrast signal is *tumor_pre*
    (below 0.6 x p95 = 60) in the parenchyma."""
    rng = np.random.default_rng(seed)
    zz, yy, xx = np.ogrid[tuple(slice(0, n) for n in shape)]
    c = (np.asarray(shape) - 1) / 2.0
    sz = np.asarray(spacing)[::-1]
    r = np.sqrt(((zz - c[0]) * sz[0]) ** 2 + ((yy - 14) * sz[1]) ** 2 + ((xx - c[2]) * sz[2]) ** 2)
    tumor = np.broadcast_to(r <= 6.0, shape)
    fat = np.broadcast_to(yy >= 28, shape)
    pre = np.where(fat, 15.0, 100.0)
    pre = np.where(tumor, tumor_pre, pre)
    images = []
    for k, e in enumerate(curve):
        bpe = np.where(fat, 0.0, 0.1 * TIMES[k] / 6.0)
        a = pre * (1 + np.where(tumor, e, bpe)) + rng.normal(0, noise, shape)
        im = sitk.GetImageFromArray(a.astype(np.float32))
        im.SetSpacing(spacing)
        images.append(im)
    return DCEExam(images, list(TIMES), case_id="dark-tumor"), np.ascontiguousarray(tumor)


def test_dark_strongly_enhancing_tumor_is_kept_only_with_the_setting():
    exam, truth = dark_tumor_exam()
    off = functional_tumor_volume(exam, settings=FTVSettings(fat_suppressed=True))
    assert off.ftv_ml == 0.0  # the I-SPY pre-contrast condition removes it (shipped behaviour)
    on = functional_tumor_volume(exam, settings=FTVSettings(fat_suppressed=True, fat_sat_post_floor=True))
    assert dice(on.mask, truth) > 0.85
    mask = sitk.GetArrayFromImage(on.mask) > 0
    assert not mask[:, 28:, :].any()  # dark, unenhancing fat stays out
    assert on.fat_suppression["post_contrast_floor"]["voxels_added"] > 0.8 * truth.sum()


def test_exams_not_fat_suppressed_are_unchanged():
    exam, _ = dark_tumor_exam()
    a = functional_tumor_volume(exam, settings=FTVSettings(fat_suppressed=False))
    b = functional_tumor_volume(exam, settings=FTVSettings(fat_suppressed=False, fat_sat_post_floor=True))
    assert np.array_equal(sitk.GetArrayFromImage(a.mask), sitk.GetArrayFromImage(b.mask))
    assert "post_contrast_floor" not in b.fat_suppression


def test_dark_voxels_need_a_bright_post_contrast_signal_and_significant_enhancement():
    rng = np.random.default_rng(1)
    shape = (20, 20, 20)
    pre = np.full(shape, 100.0, np.float32) + rng.normal(0, 2, shape).astype(np.float32)
    early = pre * np.float32(1.05) + rng.normal(0, 2, shape).astype(np.float32)
    region = np.ones(shape, bool)
    pre[0, 0, 0], early[0, 0, 0] = 30.0, 90.0  # dark before, bright after: tissue
    pre[0, 0, 1], early[0, 0, 1] = 3.0, 12.0  # PE 300 % but dark after contrast too (fat, noise)
    pre[0, 0, 2], early[0, 0, 2] = 80.0, 82.0  # bright after but hardly enhancing: not significant
    ok, info = post_contrast_tissue(pre, early, region, 0.6, 95.0, 3.0)
    assert ok[0, 0, 0] and not ok[0, 0, 1] and not ok[0, 0, 2]
    assert info["post_floor"] == pytest.approx(0.6 * np.percentile(early, 95), rel=0.05)
