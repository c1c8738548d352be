"""Issue 25: a breast gate that fails safe, and a breast region for thin slabs and single-breast
sagittal fields of view (real-anatomy hybrids: real breast MRI with inserted enhancing lesions)."""
import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from BreastTumorSegLib.engine import pipeline
from BreastTumorSegLib.engine.pipeline import SegmentSettings, segment_exam
from BreastTumorSegLib.engine.postprocess import OUTSIDE_BREAST, PostprocessSettings, postprocess
from BreastTumorSegLib.preprocess.breast_region import body_on_grid, breast_mask_qa, breast_region
from BreastTumorSegLib.training.phantom.hybrid import make_hybrid


def _arr(img):
    return sitk.GetArrayFromImage(img)


def _like(arr, ref, pixel=sitk.sitkUInt8):
    out = sitk.Cast(sitk.GetImageFromArray(arr.astype(np.float32)), pixel)
    out.CopyInformation(ref)
    return out


@pytest.fixture(scope="module")
def slab(real_anatomy_dir):
    """A single-breast sagittal thin slab: 12 slices of 3 mm, 0.94 mm in plane, one lesion."""
    ph = make_hybrid(5001, "sagittal", slab_slices=12, data_dir=real_anatomy_dir)
    return ph, breast_region(ph.exam.pre)


def _skin_rim(ph, context):
    """The skin in front of, above and below the breast (what the old classical mask gave on the issue's exam)."""
    body = _arr(body_on_grid(context, ph.exam.pre)) > 0
    front = _arr(breast_region(ph.exam.pre)[0]) > 0
    in_plane = np.zeros((3, 3, 3), bool)  # (slice, row, column): erode within each sagittal slice
    in_plane[1] = ndimage.generate_binary_structure(2, 1)
    return _like(front & body & ~ndimage.binary_erosion(body, in_plane, iterations=6), ph.exam.pre)


def _ball(ref, centre_lps, radius_mm):
    """Boolean (z, y, x) ball on *ref*'s grid (LPS centre)."""
    idx = np.stack(np.meshgrid(*(np.arange(n) for n in ref.GetSize()[::-1]), indexing="ij"), -1)[..., ::-1]
    m = np.asarray(ref.GetDirection()).reshape(3, 3) * np.asarray(ref.GetSpacing())
    lps = idx @ m.T + np.asarray(ref.GetOrigin())
    return np.linalg.norm(lps - np.asarray(centre_lps), axis=-1) <= radius_mm


def _work_point(context, z, y, x):
    return context["work"].TransformIndexToPhysicalPoint((int(x), int(y), int(z)))


def _confident(ph, extra=None):
    prob = (_arr(ph.tumor_mask) > 0).astype(np.float32) * 0.95
    if extra is not None:
        prob[extra] = 0.95
    return _like(prob, ph.exam.pre, sitk.sitkFloat32)


@pytest.mark.parametrize("wrong", ["skin rim", "empty"])
def test_confident_lesion_is_kept_and_flagged_when_the_breast_mask_is_wrong(slab, wrong):
    ph, (_, context) = slab
    mask = _skin_rim(ph, context) if wrong == "skin rim" else _like(np.zeros(ph.exam.pre.GetSize()[::-1]), ph.exam.pre)
    truth = int(np.count_nonzero(_arr(ph.tumor_mask)))
    for trusted in (True, False):
        label, lesions = postprocess(_confident(ph), PostprocessSettings(), mask, region=context, mask_trusted=trusted)
        assert len(lesions) == 1 and lesions[0].voxels == truth  # never deleted, never truncated
        assert OUTSIDE_BREAST in lesions[0].flags and "outside the breast mask" in lesions[0].notes[0]
        assert int(np.count_nonzero(_arr(label))) == truth
    # A doubtful component (p 0.6) outside a trusted mask is still removed; an untrusted mask removes nothing.
    weak = _like((_arr(ph.tumor_mask) > 0) * 0.6, ph.exam.pre, sitk.sitkFloat32)
    assert postprocess(weak, PostprocessSettings(), mask, region=context)[1] == []
    assert len(postprocess(weak, PostprocessSettings(), mask, region=context, mask_trusted=False)[1]) == 1


def test_components_behind_the_chest_wall_or_outside_the_body_are_removed(slab):
    ph, (_, context) = slab
    body, level = context["body"], context["level"]
    z = body.shape[0] // 2
    x = int(np.argmax(body[z].sum(axis=0)))
    behind_mm = context["chest_margin_mm"] + PostprocessSettings().posterior_margin_mm + 8  # ball radius 6
    deep = int(level[z, x] + behind_mm / context["work"].GetSpacing()[1])
    assert body[z, deep - 4:deep + 5, x].all()  # inside the body, behind the chest wall: heart / mediastinum
    air = int(np.argmax(body[z, :, x])) - 12  # 24 mm in front of the skin
    assert air > 6 and not body[z, :air + 6, x].any()
    behind = _ball(ph.exam.pre, _work_point(context, z, deep, x), 6.0)
    outside = _ball(ph.exam.pre, _work_point(context, z, air, x), 6.0)
    mask, _ = breast_region(ph.exam.pre)
    empty = _like(np.zeros(ph.exam.pre.GetSize()[::-1]), ph.exam.pre)  # a wrong mask does not protect them
    for extra in (behind, outside):
        log = []
        _, lesions = postprocess(_confident(ph, extra), PostprocessSettings(), empty, region=context, gate_log=log)
        assert len(lesions) == 1 and lesions[0].voxels == int(np.count_nonzero(_arr(ph.tumor_mask)))
        assert [e["decision"] for e in log].count("removed") == 1
    # With the right mask the lesion is not flagged at all.
    _, lesions = postprocess(_confident(ph, behind), PostprocessSettings(), mask, region=context)
    assert len(lesions) == 1 and lesions[0].flags == []


class Confident:
    """Stand-in network: p 0.95 on the true lesion (the network is not the subject here)."""

    model_id, card = "stand-in@0", {"postprocess": {"threshold": 0.5, "mode": "absolute"}}

    def __init__(self, truth):
        self.truth = truth

    def predict(self, exam, breast_mask, reporter, device="auto", **options):
        return _like((_arr(self.truth) > 0) * 0.95, exam.reference, sitk.sitkFloat32)


@pytest.mark.parametrize("wrong,model", [("skin rim", None), ("empty", None), ("empty", "ftv")])
def test_pipeline_keeps_and_flags_the_lesion_when_the_breast_mask_is_wrong(slab, monkeypatch, wrong, model):
    """The issue's real case: the breast mask is a rim of skin (and passes as plausible) or empty
    (not trustworthy, and said so); the lesion must stay, flagged. With no trustworthy mask the
    segmenter sees the whole body (FTV's region of interest is the body, not the empty mask)."""
    ph, _ = slab
    real = pipeline.breast_region

    def wrong_region(img, **kw):
        _, ctx = real(img, **kw)
        mask = _skin_rim(ph, ctx) if wrong == "skin rim" else _like(np.zeros(img.GetSize()[::-1]), img)
        return mask, ctx

    monkeypatch.setattr(pipeline, "breast_region", wrong_region)
    res = segment_exam(ph.exam, model=model or Confident(ph.tumor_mask), settings=SegmentSettings(registration="none"))
    assert res.breast_mask_qa["trusted"] is (wrong == "skin rim")
    assert ("not trustworthy" in res.settings["breast_mask"]) is (wrong == "empty")
    t, got = _arr(ph.tumor_mask) > 0, _arr(res.label) > 0
    assert 2 * np.count_nonzero(t & got) / (t.sum() + got.sum()) > 0.8
    assert res.lesions and all(OUTSIDE_BREAST in les.flags and les.notes for les in res.lesions)
    assert res.summary()["lesions"][0]["flags"] == [OUTSIDE_BREAST]
    assert any(e["decision"] == "kept" for e in res.settings["breast_gate"])


GEOMETRIES = {  # name: make_hybrid arguments (seed 5000 + i)
    "sagittal slab 12": dict(anatomy="sagittal", slab_slices=12),
    "sagittal slab 5": dict(anatomy="sagittal", slab_slices=5),
    "sagittal slab 12 fat-suppressed": dict(anatomy="sagittal", slab_slices=12, fat_suppressed="smooth"),
    "sagittal single breast": dict(anatomy="sagittal"),
    "axial single breast fat-suppressed": dict(anatomy="axial", unilateral=True, fat_suppressed="smooth"),
    "axial bilateral": dict(anatomy="axial"),
}


def _coverage(mask, tumor):
    t = _arr(tumor) > 0
    return np.count_nonzero(t & (_arr(mask) > 0)) / max(np.count_nonzero(t), 1)


@pytest.mark.parametrize("name", list(GEOMETRIES))
def test_breast_region_covers_the_lesion_for_every_field_of_view(real_anatomy_dir, name):
    ph = make_hybrid(5000 + list(GEOMETRIES).index(name), data_dir=real_anatomy_dir, **GEOMETRIES[name])
    mask, context = breast_region(ph.exam.pre)
    qa = breast_mask_qa(mask, context)
    assert qa["plausible"], qa
    assert _coverage(mask, ph.tumor_mask) >= 0.9
    # The breast, not a rim of skin: the reference breast (classical mask of the full volume, cut alike).
    assert _coverage(mask, ph.breast_mask) >= 0.9
    if ph.params["laterality"] != "both":
        assert {les["side"] for les in ph.tumors} == {ph.params["laterality"]}
        assert context["layout"]["unilateral_side"] == ph.params["laterality"]
    if name.startswith("sagittal slab"):
        assert context["slab"] == 2 and "sagittal slice" in context["method"]


def test_breast_region_on_a_single_sagittal_slice(slab):
    """One sagittal slice through the lesion (the engine refuses 1-slice exams, the region does not)."""
    ph, _ = slab
    k = int(np.argmax((_arr(ph.tumor_mask) > 0).sum(axis=(1, 2))))
    one = ph.exam.pre[:, :, k:k + 1]
    mask, context = breast_region(one)
    assert breast_mask_qa(mask, context)["plausible"]
    assert _coverage(mask, ph.tumor_mask[:, :, k:k + 1]) >= 0.9
    assert _coverage(mask, ph.breast_mask[:, :, k:k + 1]) >= 0.9


def test_overview_mip_follows_the_slice_axis_and_draws_flagged_lesions_apart(slab, monkeypatch, tmp_path):
    import matplotlib.image as mpimg

    from BreastTumorSegLib.engine.overview import mip_axis, render_overview

    ph, _ = slab
    assert mip_axis(ph.exam.pre) == 2  # 12 sagittal slices: a sagittal MIP (along patient x), not a strip
    axial = sitk.Image([448, 448, 160], sitk.sitkUInt8)
    axial.SetSpacing((0.75, 0.75, 1.5))
    assert mip_axis(axial) == 0
    axial.SetSpacing((1.25, 1.25, 1.0))  # thinner slices than pixels: the slice (third) axis still
    assert mip_axis(axial) == 0
    real = pipeline.breast_region
    monkeypatch.setattr(pipeline, "breast_region", lambda img, **kw: (
        _like(np.zeros(img.GetSize()[::-1]), img), real(img, **kw)[1]))
    res = segment_exam(ph.exam, model=Confident(ph.tumor_mask), settings=SegmentSettings(registration="none"))
    assert res.lesions[0].flags == [OUTSIDE_BREAST]
    png = mpimg.imread(render_overview(res, tmp_path / "overview.png"))
    magenta = (png[..., 0] > 0.8) & (png[..., 1] < 0.3) & (png[..., 2] > 0.8)
    assert magenta.sum() > 200  # outline and table row of the flagged lesion
    res.lesions[0].flags, res.lesions[0].notes = [], []
    png = mpimg.imread(render_overview(res, tmp_path / "plain.png"))
    assert not ((png[..., 0] > 0.8) & (png[..., 1] < 0.3) & (png[..., 2] > 0.8)).any()


def test_st_demo_on_a_sagittal_thin_slab_whose_learned_mask_is_rejected(slab, monkeypatch):
    """The issue's exam end to end with the default network: the learned mask is rejected (here: a
    stand-in that returns the whole body), the classical fallback must hold the breast, and the
    lesion must be found (before this work the fallback was a rim of skin and Dice 0)."""
    from BreastTumorSegLib.models import breast_model as bm
    from BreastTumorSegLib.preprocess.body import body_mask

    class Torso:
        card = {"name": "torso"}

        @classmethod
        def load(cls, *a, **k):
            return cls()

        def predict(self, img, device):
            return body_mask(img, 2.0)

    monkeypatch.setattr(bm, "BreastMaskModel", Torso)
    ph, _ = slab
    res = segment_exam(ph.exam, model="st-demo", device="cpu", settings=SegmentSettings(registration="none"))
    qa = res.breast_mask_qa
    assert qa["fallback"] and not qa["learned"]["plausible"] and qa["classical"]["plausible"] and qa["trusted"]
    t, got = _arr(ph.tumor_mask) > 0, _arr(res.label) > 0
    dice = 2 * np.count_nonzero(t & got) / (t.sum() + got.sum())
    print(f"st-demo Dice on the 12-slice sagittal slab (learned mask rejected): {dice:.3f}")
    assert dice >= 0.85 and len(res.lesions) == 1 and not res.lesions[0].flags


def test_panel_warns_about_a_lesion_kept_outside_the_breast_mask():
    from BreastTumorSegLib.slicer.logic import result_warnings

    note = "outside the breast mask (5.78 mL, 0 % inside the breast mask): the network is confident"
    summary = {"breast_mask_qa": {"used": "classical", "classical": {"plausible": True}}, "settings": {},
               "registration_qa": [], "lesions": [{"label": 1, "flags": [OUTSIDE_BREAST], "notes": [note]},
                                                  {"label": 2, "flags": []}]}
    warnings = result_warnings(summary)
    assert len(warnings) == 1 and "Lesion 1" in warnings[0] and note in warnings[0]
