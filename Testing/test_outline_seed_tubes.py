"""Tube-shaped outline seeds below the noise floor (kinetics/significance.py,
``outline_seed_max_elongation``, off by default): in a low-SNR exam a thick enhancing vessel below FTV's
noise floor seeds an outline of its own through the significance test; with the tube check the vessel
is left out while the tumor is still outlined."""
import numpy as np
import SimpleITK as sitk
from test_outline_significance import SPACING, TIMES, low_snr_exam

from BreastTumorSegLib.core.exam import DCEExam
from BreastTumorSegLib.models.ftv_segmenter import FTVOutlineSegmenter


def exam_with_vessel():
    exam, truth = low_snr_exam()
    arrays = [sitk.GetArrayFromImage(p) for p in exam.phases]
    shape = arrays[0].shape
    sz = np.asarray(SPACING)[::-1]
    zz, yy, xx = np.meshgrid(*(np.arange(n) * s for n, s in zip(shape, sz)), indexing="ij")
    # a vessel 6 mm thick (it survives the 2 mm vessel opening) running 50 mm along y in the
    # fibroglandular half, 18 mm below the tumor's centre (8 mm from its surface)
    x0, z0 = shape[2] * sz[2] * 0.72, shape[0] * sz[0] / 2 - 18.0
    tube = ((xx - x0) ** 2 + (zz - z0) ** 2 <= 3.0 ** 2) & (yy >= 6) & (yy <= 56)
    images = []
    for k, a in enumerate(arrays):
        a = a + (0.0 if k == 0 else 70.0 * 1.5) * tube
        im = sitk.GetImageFromArray(a.astype(np.float32))
        im.SetSpacing(SPACING)
        images.append(im)
    return DCEExam(images, list(TIMES), case_id="low-snr-vessel"), truth, tube


def outline(exam, **kw):
    seg = FTVOutlineSegmenter(**kw)
    seg.predict(exam, None)
    return sitk.GetArrayFromImage(seg.last_result.outline) > 0


def test_tube_check_leaves_the_vessel_out_and_keeps_the_tumor():
    exam, truth, tube = exam_with_vessel()
    assert tube.sum() > 200
    before = outline(exam)
    assert before[tube].mean() > 0.2  # without the check the vessel is outlined (the failure guarded against)
    after = outline(exam, outline_seed_max_elongation=3.0)
    assert after[tube].mean() < 0.05
    assert after[truth].mean() > 0.8
    assert np.count_nonzero(after & ~truth) < 0.3 * truth.sum()
