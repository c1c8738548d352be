"""Issue 25: a floor that curves with the chest wall in two-breast views (``CURVED_FLOOR`` of
:mod:`BreastTumorSegLib.engine.curved_floor`, docs/decisions/curved-floor-issue25.md).

The breast region's flat per-slice floor misses the back of the lateral breast where the chest wall curves back
(region19's census). The step traces the chest wall and hands the zone between the flat floor and it to the
behind-floor step's guards and classifier as a band of its own. Development seeds only."""
import numpy as np
import pytest
import SimpleITK as sitk

from BreastTumorSegLib.core.imageutil import resample_to
from BreastTumorSegLib.engine import curved_floor
from BreastTumorSegLib.engine.pipeline import SegmentSettings, segment_exam
from BreastTumorSegLib.preprocess.breast_region import breast_region
from BreastTumorSegLib.training.phantom.families import make_exam
from BreastTumorSegLib.training.phantom.randomized import TISSUES

RUN = SegmentSettings(registration="none")


def _motion_free(ph):
    ref = ph.exam.reference
    return ph.exam.with_phases([p if k == 0 else sitk.Resample(p, ref, ph.motion[k], sitk.sitkLinear, 0.0)
                                for k, p in enumerate(ph.exam.phases)])


def _on_work(img: sitk.Image, work: sitk.Image) -> np.ndarray:
    return sitk.GetArrayFromImage(resample_to(img, work, sitk.sitkNearestNeighbor))


def _band_and_truth(ph):
    _, ctx = breast_region(ph.exam.pre)
    got = curved_floor.curved_band(ctx)
    return ctx, got, _on_work(ph.tumor_labels, ctx["work"]), _on_work(ph.tissue_labels, ctx["work"])


def test_off_by_default_and_registered_in_the_benchmark():
    import importlib.util
    from pathlib import Path

    assert curved_floor.CURVED_FLOOR is False
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_generalization.py"
    spec = importlib.util.spec_from_file_location("bench_generalization_cf", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    assert bench.POST_STEPS["curved-floor"][0] == "curved_floor"
    assert bench.PREDICT_STEPS["curved_floor"] == "CURVED_FLOOR"


@pytest.mark.parametrize("family,seed,lesion", [("vessels", 7004, 2), ("randomized", 7033, 1)])
def test_band_holds_the_lesion_behind_the_flat_floor(family, seed, lesion):
    """Census two-breast exams: a lesion wholly behind the flat floor lies in the band; the heart and lungs stay out
    of it but for a trace where the band's 4 mm into the chest wall meets a thin wall (randomised 7033: 0.36 mL of
    lung in a 535 mL band; vessels 7004: none)."""
    ph = make_exam(family, seed)
    ctx, got, lab, tissue = _band_and_truth(ph)
    assert ctx["layout"]["n_breasts"] == 2 and got is not None
    band = got[0]
    zz, yy, xx = np.nonzero(lab == lesion)
    assert np.mean(yy <= ctx["chest_wall_row"][zz, xx]) < 0.05  # behind the flat floor
    assert np.mean(band[zz, yy, xx]) > 0.9
    vox_ml = float(np.prod(ctx["work"].GetSpacing())) / 1000.0
    inner = np.isin(tissue, [TISSUES.index("heart"), TISSUES.index("lung")])
    assert np.count_nonzero(band & inner) * vox_ml < 1.0


def test_one_breast_view_has_no_band():
    ph = make_exam("heterogeneous", 6032)  # coronal, one breast: region20's problem, not this step's
    _, ctx = breast_region(ph.exam.pre)
    assert ctx["layout"]["n_breasts"] != 2 and curved_floor.curved_band(ctx) is None


def test_tumor_free_two_breast_exam_gains_no_lesion(monkeypatch):
    """Tumor-free axial two-breast randomised 6105: the band is there, holds no heart or lung, and no lesion is added."""
    ph = make_exam("randomized", 6105)
    assert not np.any(sitk.GetArrayViewFromImage(ph.tumor_labels))
    ctx, got, _, tissue = _band_and_truth(ph)
    assert got is not None and got[0].sum() > 1000
    for name in ("heart", "lung"):
        assert not np.any(got[0] & (tissue == TISSUES.index(name))), name
    monkeypatch.setattr(curved_floor, "CURVED_FLOOR", True)
    res = segment_exam(_motion_free(ph), model="ftv-outline", device="cpu", settings=RUN)
    assert len(res.lesions) == 0


def test_off_leaves_the_pipeline_unchanged(monkeypatch):
    """Off, the step is never called and the pipeline gives main's result (vessels 7004, two-breast: main 8ccde49
    found 1 of 2 lesions with no false positive, Dice 0.821)."""
    def boom(*args, **kw):
        raise AssertionError("curved_floor_lesions called with the switch off")

    monkeypatch.setattr(curved_floor, "curved_floor_lesions", boom)
    ph = make_exam("vessels", 7004)
    res = segment_exam(_motion_free(ph), model="ftv-outline", device="cpu", settings=RUN)
    pred = sitk.GetArrayViewFromImage(res.label) > 0
    truth = sitk.GetArrayViewFromImage(ph.tumor_labels)
    dice = 2 * np.count_nonzero(pred & (truth > 0)) / (np.count_nonzero(pred) + np.count_nonzero(truth > 0))
    assert round(dice, 3) == 0.821 and len(res.lesions) == 1
