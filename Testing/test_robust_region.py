"""Issue 12: breast masks that cannot swallow the torso, lesion sides from patient coordinates,
FTV on raw-scale, zero-background, unilateral sagittal exams (hybrids from real anatomy)."""
import numpy as np
import pytest
import SimpleITK as sitk

from BreastTumorSegLib.engine.pipeline import SegmentSettings, segment_exam
from BreastTumorSegLib.kinetics.ftv import FTVSettings, functional_tumor_volume
from BreastTumorSegLib.models.ftv_segmenter import FTVSegmenter
from BreastTumorSegLib.preprocess.body import body_mask
from BreastTumorSegLib.preprocess.breast_region import breast_mask_qa, breast_region
from BreastTumorSegLib.training.phantom.hybrid import make_hybrid


def _dice(a, b):
    a, b = sitk.GetArrayViewFromImage(a) > 0, sitk.GetArrayViewFromImage(b) > 0
    return 2 * np.count_nonzero(a & b) / max(np.count_nonzero(a) + np.count_nonzero(b), 1)


def test_torso_mask_flagged_and_classical_accepted_on_axial_hybrid(real_anatomy_dir):
    ph = make_hybrid(0, "axial", data_dir=real_anatomy_dir)
    mask, ctx = breast_region(ph.exam.pre)
    qa = breast_mask_qa(mask, ctx)
    assert qa["plausible"], qa
    assert set(qa["per_side_ml"]) == {"left", "right"} and min(qa["per_side_ml"].values()) > 200
    torso = breast_mask_qa(body_mask(ph.exam.pre, 2.0), ctx)
    assert not torso["plausible"] and torso["reasons"]


def test_pipeline_falls_back_from_an_implausible_learned_mask(real_anatomy_dir, monkeypatch):
    from BreastTumorSegLib.models import breast_model as bm

    class Fake:
        @classmethod
        def load(cls, *a, **k):
            return cls()

        def predict(self, img, device):
            return body_mask(img, 2.0)

    monkeypatch.setattr(bm, "BreastMaskModel", Fake)
    ph = make_hybrid(0, "axial", data_dir=real_anatomy_dir)
    res = segment_exam(ph.exam, FTVSegmenter(), settings=SegmentSettings(registration="none", breast_model="torso"))
    assert "fallback" in res.settings["breast_mask"]
    qa = res.summary()["breast_mask_qa"]
    assert qa["used"] == "classical" and qa["fallback"] and not qa["learned"]["plausible"]
    assert qa["classical"]["plausible"]


@pytest.mark.parametrize("side", ["left", "right"])
def test_unilateral_sagittal_lesions_get_the_kept_side(real_anatomy_dir, side):
    ph = make_hybrid(3, "sagittal", side=side, n_lesions=3, scale=1e6, zero_background=True,
                     fat_suppressed=True, data_dir=real_anatomy_dir)
    assert ph.params["laterality"] == side
    res = segment_exam(ph.exam, FTVSegmenter(), settings=SegmentSettings(registration="none"))
    assert res.lesions
    assert {les.side for les in res.lesions} == {side}


@pytest.mark.parametrize("seed,fat", [(1, True), (2, False)])
def test_ftv_dice_on_raw_scale_zero_background_sagittal_hybrids(real_anatomy_dir, seed, fat):
    ph = make_hybrid(seed, "sagittal", scale=1e6, zero_background=True, fat_suppressed=fat,
                     data_dir=real_anatomy_dir)
    roi, _ = breast_region(ph.exam.pre)
    settings = FTVSettings(skin_margin_mm=8.0, vessel_radius_mm=2.0)
    res = functional_tumor_volume(ph.exam, roi, settings)
    assert _dice(res.mask, ph.tumor_mask) >= 0.7
    assert res.fat_suppression["fat_suppressed"] is fat
    # Same mask at another intensity scale (1e6 -> 1e-2).
    small = ph.exam.with_phases([p * 1e-8 for p in ph.exam.phases])
    res_small = functional_tumor_volume(small, roi, settings)
    assert np.array_equal(sitk.GetArrayViewFromImage(res.mask), sitk.GetArrayViewFromImage(res_small.mask))


def test_panel_warnings_name_the_breast_mask_fallback_and_assumed_times():
    """What the panel shows under 'Done': the fallback note, assumed times, unregistered phases."""
    from BreastTumorSegLib.slicer.logic import result_warnings

    summary = {"breast_mask_qa": {"used": "classical", "fallback": True,
                                  "note": "learned mask rejected (covers 98 % of the body); fell back"},
               "settings": {"times_assumed": True},
               "registration_qa": [{"phase": 1, "accepted": True}, {"phase": 2, "accepted": False}]}
    warnings = result_warnings(summary)
    assert any("fell back" in w for w in warnings)
    assert any("assumed" in w for w in warnings)
    assert any("phase(s) 2" in w for w in warnings)
    assert result_warnings({"breast_mask_qa": {"used": "classical", "classical": {"plausible": True}},
                            "settings": {}, "registration_qa": []}) == []


@pytest.mark.parametrize("seed", [12, 13])
def test_coronal_exam_breast_region_and_sides(seed):
    """Coronal acquisition: both breasts found, the true breast mask plausible, sides from patient space
    (these two exams have both their lesions in the left breast)."""
    from BreastTumorSegLib.training.phantom.randomized import make_randomized

    ph = make_randomized(seed, orientation="coronal", fov="bilateral", n_lesions=2, motion_mm=0, nonrigid_mm=0)
    assert {t["side"] for t in ph.tumors} == {"left"}
    classical, context = breast_region(ph.exam.pre)
    assert context["layout"]["n_breasts"] == 2
    assert breast_mask_qa(ph.breast_mask, context)["plausible"]
    assert breast_mask_qa(classical, context)["plausible"]
    res = segment_exam(ph.exam, model="ftv", settings=SegmentSettings(registration="none"))
    assert res.lesions and {les.side for les in res.lesions} == {"left"}
