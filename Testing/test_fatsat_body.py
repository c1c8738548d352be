"""Issue 25: the breast region's body on fat-suppressed exams and on a field of view that cuts the body.

A small hand-made axial torso (2 mm voxels) as a fat-suppressed exam shows it: bright skin, DARK
subcutaneous fat (12 mm, 0.1 of the brightest tissue), muscle, dark lungs, a bright heart, two
breast domes of dark fat with bright glandular tissue. The layout's body (half of Otsu's threshold,
tuned on fat-bright exams) loses the dark fat; the skin line (air against tissue, Otsu on log
intensity) holds it, so the lateral wrap (30 mm) stays in the subcutaneous tissue
and muscle of the side of the chest and never reaches the heart.
"""
import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from BreastTumorSegLib.preprocess.body import body_mask_lps, lps_image
from BreastTumorSegLib.preprocess.breast_region import breast_mask_qa, breast_region

WRAP_MM = 30.0
SHAPE = (24, 100, 130)  # z, y (anterior -> posterior), x (right -> left)
CY, CX, AY, AX = 62.0, 65.0, 42.0, 60.0


def _fatsat_torso(seed=0):
    z, y, x = np.mgrid[:SHAPE[0], :SHAPE[1], :SHAPE[2]].astype(np.float32)
    torso = ((x - CX) / AX) ** 2 + ((y - CY) / AY) ** 2 <= 1
    front = CY - AY
    domes = np.zeros(SHAPE, bool)
    for bx in (CX - 30, CX + 30):
        domes |= (((x - bx) / 18) ** 2 + ((y - front) / 14) ** 2 + ((z - 12) / 16) ** 2 <= 1) & (y <= front + 2)
    body = torso | domes
    inner = ((x - CX) / (AX - 6)) ** 2 + ((y - CY) / (AY - 6)) ** 2 <= 1  # under 12 mm of fat
    cavity = ((x - CX) / (AX - 10)) ** 2 + ((y - CY) / (AY - 10)) ** 2 <= 1  # under 8 mm of muscle
    lungs = np.zeros(SHAPE, bool)
    for lx in (CX - 27, CX + 27):
        lungs |= ((x - lx) / 18) ** 2 + ((y - CY - 4) / 24) ** 2 <= 1
    heart = ((x - CX - 5) / 18) ** 2 + ((y - CY + 6) / 15) ** 2 <= 1
    skin = body & ~ndimage.binary_erosion(body, np.ones((1, 3, 3)))
    glands = domes & (np.sin(x / 3.0) * np.sin(z / 2.0) > 0.3)
    img = np.full(SHAPE, 2.0, np.float32)  # air
    img[body] = 10.0  # fat-suppressed fat
    img[glands] = 70.0
    img[inner] = 10.0
    img[inner & ~cavity] = 45.0  # chest-wall muscle
    img[cavity] = 12.0  # mediastinal fat
    img[cavity & lungs] = 3.0
    img[cavity & heart] = 100.0
    img[skin] = 30.0
    img += np.random.default_rng(seed).normal(0.0, 1.0, SHAPE).astype(np.float32)
    sub_fat = body & ~inner & ~skin & ~domes
    return np.abs(img), body, sub_fat, heart & cavity


def _image(arr, origin=(-130.0, -124.0, -24.0)):
    out = sitk.GetImageFromArray(arr.astype(np.float32))
    out.SetSpacing((2.0, 2.0, 2.0))
    out.SetOrigin(origin)
    return out


@pytest.fixture(scope="module")
def fatsat():
    img, body, sub_fat, heart = _fatsat_torso()
    pre = _image(img)
    return pre, body, sub_fat, heart, breast_region(pre, lateral_wrap_mm=WRAP_MM)


def test_the_skin_line_holds_the_dark_subcutaneous_fat_of_a_fat_suppressed_exam(fatsat):
    pre, body, sub_fat, heart, (mask, context) = fatsat
    slab = context["slab"]  # 48 mm thick: an axial slab, processed slice by slice
    old = body_mask_lps(lps_image(pre), slab=slab)  # the layout's body: half of Otsu's threshold
    new = body_mask_lps(lps_image(pre), slab=slab, skin_line=True)
    assert old[sub_fat].mean() < 0.5  # the problem: most of the dark fat is not body
    assert new[sub_fat].mean() > 0.97
    # no leak into the air: beyond the partial-volume voxel at the skin only the creases the closing fills
    assert np.count_nonzero(new & ~ndimage.binary_dilation(body)) < 0.01 * body.sum()
    # the breast region's body (work grid = this grid) holds the fat too where the wrap is made;
    # without the wrap the region keeps the body it always had
    assert context["body"][sub_fat].mean() > 0.97
    assert np.array_equal(breast_region(pre, lateral_wrap_mm=0)[1]["body"], old)


def test_lateral_wrap_is_on_and_does_not_reach_the_heart_of_a_fat_suppressed_exam(fatsat):
    pre, body, sub_fat, heart, (mask, context) = fatsat
    assert "lateral wrap" in context["method"]
    m = sitk.GetArrayFromImage(mask) > 0
    sternum = sitk.GetArrayFromImage(breast_region(pre, lateral_wrap_mm=0, skin_line=True)[0]) > 0
    assert (m & sternum).sum() == sternum.sum()  # the wrap only adds
    side = np.zeros_like(m)  # the subcutaneous fat at the side of the chest, beside the breasts
    side[6:18, int(CY) - 20:int(CY) - 4, :int(CX) - 45] = True
    side[6:18, int(CY) - 20:int(CY) - 4, int(CX) + 45:] = True
    assert m[side & sub_fat].mean() > 0.9 and not sternum[side & sub_fat].any()
    assert not (m & heart).any()
    assert breast_mask_qa(mask, context)["plausible"]


def test_a_field_of_view_that_cuts_the_body_is_not_air_for_the_wrap():
    """A single-breast view: the field of view cuts the torso through the heart. The cut is not air
    outside the skin (no strip peeled off by the closing), so the wrap does not run along it to the heart."""
    img, body, sub_fat, heart = _fatsat_torso(seed=1)
    cut = slice(int(CX) - 2, None)  # the patient's left half and the heart's left part
    pre = _image(np.ascontiguousarray(img[..., cut]), origin=(-130.0 + 2.0 * (int(CX) - 2), -124.0, -24.0))
    mask, context = breast_region(pre, laterality="L", lateral_wrap_mm=WRAP_MM)
    m = sitk.GetArrayFromImage(mask) > 0
    assert heart[..., cut].any() and not (m & heart[..., cut]).any()
