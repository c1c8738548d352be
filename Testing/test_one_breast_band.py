"""Issue 25: the deep zone of a one-breast view searched as a band of its own (``ONE_BREAST_BAND`` of
:mod:`BreastTumorSegLib.engine.one_breast_band`, docs/decisions/one-breast-band-issue25.md).

In a one-breast view the breast region is a shell under the breast's own skin (the field of view's medial edge is
taken for the midline); the tumors behind it were lost (region19's census). Development seeds only."""
import numpy as np
import pytest
import SimpleITK as sitk

from BreastTumorSegLib.engine import one_breast_band
from BreastTumorSegLib.engine.pipeline import segment_exam
from BreastTumorSegLib.evaluation.lesions import lesion_level
from BreastTumorSegLib.preprocess.breast_region import breast_region
from BreastTumorSegLib.training.phantom.families import make_exam
from BreastTumorSegLib.training.phantom.randomized import make_randomized

from test_one_breast_reach import RUN, _inside, _motion_free  # the same exam helpers


def test_off_by_default():
    assert one_breast_band.ONE_BREAST_BAND is False


@pytest.fixture(scope="module")
def coronal_one_breast():
    return make_exam("heterogeneous", 6041)  # coronal, one breast (development seed of region19's census)


def test_off_leaves_the_pipeline_unchanged(coronal_one_breast, monkeypatch):
    exam = _motion_free(coronal_one_breast)
    off = segment_exam(exam, model="ftv-outline", device="cpu", settings=RUN)
    # the step taken out of the pipeline altogether: the very same outputs
    monkeypatch.setattr(one_breast_band, "add_one_breast_band",
                        lambda seg, exam, prob, context, region, gate, options: (prob, region, gate))
    without = segment_exam(exam, model="ftv-outline", device="cpu", settings=RUN)
    assert np.array_equal(sitk.GetArrayViewFromImage(off.label), sitk.GetArrayViewFromImage(without.label))
    assert np.array_equal(sitk.GetArrayViewFromImage(off.probability), sitk.GetArrayViewFromImage(without.probability))
    assert np.array_equal(sitk.GetArrayViewFromImage(off.breast_mask), sitk.GetArrayViewFromImage(without.breast_mask))


def test_tumor_in_the_shells_shadow_found_with_no_false_positive(coronal_one_breast, monkeypatch):
    ph = coronal_one_breast
    region, ctx = breast_region(ph.exam.pre)
    assert ctx["layout"]["unilateral_side"] and min(_inside(region, ph.tumor_labels)) < 0.05  # behind the shell
    exam = _motion_free(ph)
    before = lesion_level(segment_exam(exam, model="ftv-outline", device="cpu", settings=RUN).label,
                          ph.tumor_labels, 0.1, ref_is_labels=True)
    assert before.n_found < before.n_true
    monkeypatch.setattr(one_breast_band, "ONE_BREAST_BAND", True)
    res = segment_exam(exam, model="ftv-outline", device="cpu", settings=RUN)
    after = lesion_level(res.label, ph.tumor_labels, 0.1, ref_is_labels=True)
    assert after.n_found == after.n_true == 2 and after.n_false_positive == 0
    # kept as lesions inside the breast (the band's lesion joins the gate's mask), not flagged outside it
    assert not any("outside_breast_mask" in les.flags for les in res.lesions)


@pytest.mark.parametrize("seed,orientation", [(6101, "coronal"), (6103, "axial")])
def test_tumor_free_one_breast_gains_no_lesion(seed, orientation, monkeypatch):
    ph = make_randomized(seed, n_lesions=0, fov="unilateral", orientation=orientation)  # development seeds
    assert breast_region(ph.exam.pre)[1]["layout"]["unilateral_side"]
    exam = _motion_free(ph)
    off = segment_exam(exam, model="ftv-outline", device="cpu", settings=RUN)
    monkeypatch.setattr(one_breast_band, "ONE_BREAST_BAND", True)
    on = segment_exam(exam, model="ftv-outline", device="cpu", settings=RUN)
    assert len(on.lesions) <= len(off.lesions)
    grown = (sitk.GetArrayViewFromImage(on.label) > 0) & ~(sitk.GetArrayViewFromImage(off.label) > 0)
    assert not grown.any()  # no heart, axilla or chest wall taken


def test_compare_step_one_breast_band_is_registered():
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from bench_generalization import POST_STEPS, PREDICT_STEPS

    module = POST_STEPS["one-breast-band"][0]
    assert module == "one_breast_band" and hasattr(one_breast_band, PREDICT_STEPS[module])
