"""Issue 25: the breast region of a one-breast field of view reaches the chest wall (``ONE_BREAST_WRAP`` of
:mod:`BreastTumorSegLib.preprocess.breast_region`, docs/decisions/breast-region-reach-issue25.md).

In a one-breast view the sternum rule's "midline band" is the field of view's medial border, which cuts the breast:
the region was a shell under the breast's own skin and the tumors behind it were never searched (development
census: the coronal one-breast heterogeneous phantoms of the follow-up series, e.g. 6032). Development seeds only."""
import numpy as np
import pytest
import SimpleITK as sitk

from BreastTumorSegLib.evaluation.lesions import lesion_level
from BreastTumorSegLib.engine.pipeline import SegmentSettings, segment_exam
from BreastTumorSegLib.preprocess import breast_region as region_module
from BreastTumorSegLib.preprocess.breast_region import breast_mask_qa, breast_region
from BreastTumorSegLib.training.phantom.families import make_exam
from BreastTumorSegLib.training.phantom.randomized import TISSUES, make_randomized

RUN = SegmentSettings(registration="none")


def _motion_free(ph):
    ref = ph.exam.reference
    return ph.exam.with_phases([p if k == 0 else sitk.Resample(p, ref, ph.motion[k], sitk.sitkLinear, 0.0)
                                for k, p in enumerate(ph.exam.phases)])


def _inside(mask: sitk.Image, labels: sitk.Image) -> list[float]:
    m, lab = sitk.GetArrayViewFromImage(mask) > 0, sitk.GetArrayViewFromImage(labels)
    return [float(np.count_nonzero(m & (lab == i)) / np.count_nonzero(lab == i)) for i in np.unique(lab) if i > 0]


def _found(label: sitk.Image, labels: sitk.Image) -> list[bool]:
    pred, lab = sitk.GetArrayViewFromImage(label) > 0, sitk.GetArrayViewFromImage(labels)
    return [bool(np.any(pred[lab == i])) for i in np.unique(lab) if i > 0]


def test_off_by_default_and_only_in_the_pipeline():
    assert region_module.ONE_BREAST_WRAP is False
    ph = make_exam("heterogeneous", 6032)
    plain = sitk.GetArrayFromImage(breast_region(ph.exam.pre)[0])
    assert np.array_equal(plain, sitk.GetArrayFromImage(breast_region(ph.exam.pre, one_breast_wrap=False)[0]))


@pytest.fixture(scope="module")
def coronal_one_breast():
    return make_exam("heterogeneous", 6032)  # coronal, one breast (development seed)


def test_coronal_one_breast_tumors_inside_the_region(coronal_one_breast):
    ph = coronal_one_breast
    off, ctx = breast_region(ph.exam.pre)
    assert ctx["layout"]["unilateral_side"] and max(_inside(off, ph.tumor_labels)) < 0.05  # behind the shell
    on, ctx_on = breast_region(ph.exam.pre, one_breast_wrap=True)
    assert breast_mask_qa(on, ctx_on)["plausible"]
    assert min(_inside(on, ph.tumor_labels)) > 0.5, _inside(on, ph.tumor_labels)
    tissue = sitk.GetArrayViewFromImage(ph.tissue_labels)
    grown = (sitk.GetArrayViewFromImage(on) > 0) & ~(sitk.GetArrayViewFromImage(off) > 0)
    for name in ("heart", "lung"):  # nothing of the heart or the lungs is taken
        assert not np.any(grown & (tissue == TISSUES.index(name))), name


def test_coronal_one_breast_tumors_found_with_the_reach(coronal_one_breast, monkeypatch):
    exam = _motion_free(coronal_one_breast)
    before = segment_exam(exam, model="ftv-outline", device="cpu", settings=RUN)
    assert not any(_found(before.label, coronal_one_breast.tumor_labels))
    monkeypatch.setattr(region_module, "ONE_BREAST_WRAP", True)
    after = segment_exam(exam, model="ftv-outline", device="cpu", settings=RUN)
    assert all(_found(after.label, coronal_one_breast.tumor_labels))
    per_lesion = lesion_level(after.label, coronal_one_breast.tumor_labels, 0.1, ref_is_labels=True)
    assert per_lesion.n_found == per_lesion.n_true == 2 and per_lesion.n_false_positive == 0


def test_tumor_free_one_breast_wider_region_adds_no_lesion(monkeypatch):
    ph = make_randomized(6101, n_lesions=0, fov="unilateral", orientation="coronal")  # development seed
    off = sitk.GetArrayViewFromImage(breast_region(ph.exam.pre)[0]) > 0
    on = sitk.GetArrayViewFromImage(breast_region(ph.exam.pre, one_breast_wrap=True)[0]) > 0
    assert np.count_nonzero(on) > 1.5 * np.count_nonzero(off)  # the region does grow
    tissue = sitk.GetArrayViewFromImage(ph.tissue_labels)
    for name in ("heart", "lung"):
        assert not np.any(on & ~off & (tissue == TISSUES.index(name))), name
    exam = _motion_free(ph)
    monkeypatch.setattr(region_module, "ONE_BREAST_WRAP", True)
    res = segment_exam(exam, model="ftv-outline", device="cpu", settings=RUN)
    assert not np.any(sitk.GetArrayViewFromImage(res.label)) and not res.lesions


def test_reach_left_out_where_the_region_would_not_be_plausible():
    # Development vessels 6032 (coronal, one breast): the wrapped region lies "deep near the midline" for
    # breast_mask_qa; used, it made the region untrusted and the heart (75 mL) a lesion. The reach is left out.
    ph = make_exam("vessels", 6032)
    off = sitk.GetArrayFromImage(breast_region(ph.exam.pre)[0])
    on, ctx = breast_region(ph.exam.pre, one_breast_wrap=True)
    assert np.array_equal(off, sitk.GetArrayFromImage(on))
    assert "left out" in ctx["method"] and breast_mask_qa(on, ctx)["plausible"]


def test_compare_step_breast_reach_is_registered(coronal_one_breast):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from bench_generalization import POST_STEPS, REGION_STEPS, _same_region

    module, switch = POST_STEPS["breast-reach"][0], REGION_STEPS["breast_region"]
    assert module == "breast_region" and hasattr(region_module, switch)
    pre = coronal_one_breast.exam.pre
    off = breast_region(pre)
    assert _same_region(off, breast_region(pre)) and not _same_region(off, breast_region(pre, one_breast_wrap=True))
