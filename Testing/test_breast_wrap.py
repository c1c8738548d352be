"""Issue 25: with the lateral wrap on, breast tissue wrapping laterally around the chest wall is inside the breast region,
the back and the heart are not; a confident lesion there is kept; the benchmark's tumor-free convention.

A small hand-made axial torso (2 mm voxels): an elliptic body with two breast domes in front, two
dark lungs and a bright heart inside it. The lateral lesion lies 8 mm under the skin of the side of
the chest, ~50 mm deeper than the skin over the sternum: outside the old mask (sternum level + 12 mm).
"""
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from BreastTumorSegLib.engine.postprocess import PostprocessSettings, postprocess
from BreastTumorSegLib.preprocess.breast_region import breast_mask_qa, breast_region

SHAPE = (30, 100, 130)  # z, y (anterior -> posterior), x (right -> left)
CY, CX, AY, AX = 62.0, 65.0, 42.0, 60.0  # torso ellipse (voxels)


def _torso():
    z, y, x = np.mgrid[:SHAPE[0], :SHAPE[1], :SHAPE[2]].astype(np.float32)
    torso = ((x - CX) / AX) ** 2 + ((y - CY) / AY) ** 2 <= 1
    front = CY - AY
    domes = np.zeros(SHAPE, bool)
    for bx in (CX - 30, CX + 30):
        domes |= (((x - bx) / 18) ** 2 + ((y - front) / 14) ** 2 + ((z - 15) / 20) ** 2 <= 1) & (y <= front + 2)
    lungs = np.zeros(SHAPE, bool)
    for lx in (CX - 27, CX + 27):
        lungs |= ((x - lx) / 20) ** 2 + ((y - CY - 4) / 28) ** 2 <= 1
    heart = ((x - CX - 5) / 18) ** 2 + ((y - CY + 8) / 16) ** 2 <= 1
    img = np.where(torso | domes, 100.0, 2.0).astype(np.float32)
    img[lungs] = 6.0
    img[heart] = 160.0
    # the lateral lesion: 8 mm under the skin of the patient's left side, level with the torso centre - 14 mm
    ly = CY - 14
    lx = CX + AX * np.sqrt(1 - ((ly - CY) / AY) ** 2) - 4
    lesion = (x - lx) ** 2 + (y - ly) ** 2 + (z - 15) ** 2 <= 2.5 ** 2
    return img, lesion, heart, torso | domes


def _image(arr):
    out = sitk.GetImageFromArray(arr.astype(np.float32))
    out.SetSpacing((2.0, 2.0, 2.0))
    out.SetOrigin((-130.0, -124.0, -30.0))  # LPS: x through the isocentre between the breasts
    return out


@pytest.fixture(scope="module")
def torso():
    img, lesion, heart, body = _torso()
    pre = _image(img)
    return pre, lesion, heart, body, breast_region(pre, lateral_wrap_mm=20.0)


def test_lateral_wrap_covers_the_side_of_the_chest_not_the_back_or_the_heart(torso):
    pre, lesion, heart, body, (mask, context) = torso
    m = sitk.GetArrayFromImage(mask) > 0
    old = sitk.GetArrayFromImage(breast_region(pre, lateral_wrap_mm=0)[0]) > 0  # the sternum rule alone
    assert not (old & lesion).any()  # the sternum rule alone misses it
    assert (m & lesion).sum() >= 0.9 * lesion.sum()
    assert (m & old).sum() == old.sum()  # the wrap only adds
    assert not (m & heart).any()
    back = np.zeros_like(m)
    back[:, int(CY) + 4:, :] = True  # behind the widest row of the torso (the mid-axillary line)
    assert not (m & back).any()
    assert breast_mask_qa(mask, context)["plausible"]
    assert "lateral wrap" in context["method"]


def test_confident_lateral_lesion_is_kept_unflagged_and_a_trusted_mask_still_gates(torso):
    pre, lesion, heart, body, (mask, context) = torso
    prob = np.zeros(SHAPE, np.float32)
    prob[lesion] = 0.95
    blob = np.zeros(SHAPE, bool)  # a doubtful component in the heart: removed
    blob[13:17, int(CY) - 10:int(CY) - 6, int(CX):int(CX) + 4] = True
    prob[blob] = 0.6
    p = _image(prob)
    log = []
    label, lesions = postprocess(p, PostprocessSettings(), mask, region=context, gate_log=log)
    assert len(lesions) == 1 and lesions[0].voxels == int(lesion.sum()) and lesions[0].flags == []
    assert [e["decision"] for e in log] == ["removed"]
    # Fail safe: given a mask that misses it (the sternum rule alone), the confident lateral lesion
    # is still kept, flagged: the chest-wall level the gate removes behind follows the side of the chest.
    old = breast_region(pre, lateral_wrap_mm=0)[0]
    label, lesions = postprocess(_image(prob * lesion), PostprocessSettings(), old, region=context)
    assert len(lesions) == 1 and lesions[0].voxels == int(lesion.sum()) and lesions[0].flags == ["outside_breast_mask"]


def test_benchmark_leaves_tumor_free_exams_out_of_dice_and_counts_their_false_positives():
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from bench_generalization import summary_row

    def row(dice, fp, free=False):
        return {"dice": float("nan") if free else dice, "fp_ml": 0.0, "found1": 0 if free else 1,
                "true1": 0 if free else 1, "found2": 0 if free else 1, "true2": 0 if free else 1, "fp": fp,
                "recall": float("nan") if free else dice, "tumor_free": free}

    rows = [row(0.9, 0), row(0.8, 0), row(0.0, 3, free=True)]
    out = summary_row("fam", "m", "pipeline", rows, [1.0] * 3, [1.0] * 3)
    assert out[3] == "0.850"  # median Dice of the two exams with a tumor, not 0.8
    assert out[5] == "2/2 (1.00)"  # lesion sensitivity >= 0.2 mL
    assert out[6] == "0" and out[7] == "1.00"  # FP lesions per exam over all three exams
    assert out[8] == "0.850" and out[10] == 3 and out[11] == "1 (3 FP)"


def test_gate_keeps_a_confident_lesion_on_the_side_of_the_chest_and_removes_the_heart(torso):
    """Region without the lateral wrap, gate with ``lateral_skin_mm`` 30 (off by default): the
    confident lateral lesion, ~50 mm deeper than the skin over the sternum but 8 mm under the skin
    of the side of the chest, is kept and flagged; a confident blob in the heart and one at the
    side behind the mid-axillary line are removed."""
    pre, lesion, heart, body, _ = torso
    mask, context = breast_region(pre, lateral_wrap_mm=0)
    assert not (sitk.GetArrayFromImage(mask) > 0)[lesion].any()
    blob = np.zeros(SHAPE, bool)  # confident (p 0.95, 0.5 mL) in the heart, ~10 mm left of the midline
    blob[13:18, int(CY) - 12:int(CY) - 2, int(CX):int(CX) + 10] = True
    assert heart[blob].all()
    back = np.zeros(SHAPE, bool)  # confident, 6-16 mm under the skin of the side, behind the mid-axillary line
    back[13:18, int(CY) + 16:int(CY) + 21, int(CX) + 44:int(CX) + 49] = True
    assert body[back].all()
    prob = np.zeros(SHAPE, np.float32)
    prob[lesion | blob | back] = 0.95
    log = []
    side = PostprocessSettings(lateral_skin_mm=30.0)
    _, lesions = postprocess(_image(prob), side, mask, region=context, gate_log=log)
    assert len(lesions) == 1 and lesions[0].voxels == int(lesion.sum())
    assert lesions[0].flags == ["outside_breast_mask"] and "side of the chest" in lesions[0].notes[0]
    removed = [e for e in log if e["decision"] == "removed"]
    assert len(removed) == 2 and all("behind the chest-wall level" in e["reason"] for e in removed)
    # The flat chest-wall level (lateral_skin_mm 0, the default) removes the lateral lesion too.
    assert PostprocessSettings().lateral_skin_mm == 0
    assert postprocess(_image(prob), PostprocessSettings(), mask, region=context)[1] == []
    # A doubtful lateral component (p 0.6) is still removed.
    assert postprocess(_image(0.6 * lesion), side, mask, region=context)[1] == []
