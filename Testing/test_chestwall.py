"""Issue 25: the tissue wrap (preprocess/chestwall.py) adds lateral breast tissue in front of the
chest-wall muscle to the breast region, never the muscle, the lungs, the heart or the fat behind
the muscle; the context the lesion gate and the classifier read (body, level, layout) is unchanged.

A small hand-made axial torso (2 mm voxels) with real layers: skin, 14 mm of subcutaneous fat, an
8 mm muscle sheet, then the thoracic cavity (mediastinal fat as bright as the subcutaneous fat, two
dark lungs, a heart). Two breast domes hang in front. A lateral lesion lies 7 mm under the skin of
the patient's left side, ~50 mm deeper than the skin over the sternum, outside the sternum rule's
region. Without fat suppression fat is bright and the muscle half as bright; with it, the fat is
dark and the muscle brighter than the fat. Plus the two real-anatomy volumes (no lesion).
"""

import numpy as np
import pytest
import SimpleITK as sitk

from BreastTumorSegLib.core.imageutil import resample_to
from BreastTumorSegLib.preprocess.breast_region import breast_mask_qa, breast_region
from BreastTumorSegLib.preprocess.chestwall import WRAP_DEPTH_MM, fat_level, in_front_of_muscle

SHAPE = (24, 100, 130)  # z, y (anterior -> posterior), x (right -> left)
CY, CX, AY, AX = 62.0, 65.0, 42.0, 60.0  # torso ellipse (voxels)
FAT_VOX, MUSCLE_VOX = 7, 4


def _torso(fat_suppressed: bool):
    z, y, x = np.mgrid[:SHAPE[0], :SHAPE[1], :SHAPE[2]].astype(np.float32)
    r = np.sqrt(((x - CX) / AX) ** 2 + ((y - CY) / AY) ** 2)  # 1 on the torso's skin
    depth = (1 - r) * min(AX, AY)  # ~ voxels under the torso's skin
    torso = r <= 1
    front = CY - AY
    domes = np.zeros(SHAPE, bool)
    for bx in (CX - 30, CX + 30):
        domes |= (((x - bx) / 18) ** 2 + ((y - front) / 14) ** 2 + ((z - 12) / 20) ** 2 <= 1) & (y <= front + 2)
    muscle = torso & (depth > FAT_VOX) & (depth <= FAT_VOX + MUSCLE_VOX)
    cavity = torso & (depth > FAT_VOX + MUSCLE_VOX)
    lungs = np.zeros(SHAPE, bool)
    for lx in (CX - 27, CX + 27):
        lungs |= (((x - lx) / 16) ** 2 + ((y - CY - 6) / 22) ** 2 <= 1) & cavity
    heart = (((x - CX - 5) / 14) ** 2 + ((y - CY + 2) / 12) ** 2 <= 1) & cavity
    ly = CY - 14  # the lesion: 7 mm under the skin of the left side
    lx = CX + AX * np.sqrt(1 - ((ly - CY) / AY) ** 2) - 3.5
    lesion = (x - lx) ** 2 + (y - ly) ** 2 + (z - 12) ** 2 <= 2.0 ** 2
    fat, mus = (20.0, 50.0) if fat_suppressed else (100.0, 50.0)
    img = np.full(SHAPE, 2.0, np.float32)
    img[torso | domes] = fat
    img[muscle] = mus
    img[lungs] = 6.0
    img[heart] = 75.0
    img[lesion] = 65.0
    img += np.random.default_rng(3).normal(0, 1.5, SHAPE).astype(np.float32)
    deep_muscle = muscle & (depth > FAT_VOX + 1)  # beyond the muscle's first voxel (partial volume)
    return img, {"lesion": lesion, "deep_muscle": deep_muscle, "cavity": cavity, "heart": heart, "lungs": lungs}


def _image(arr):
    out = sitk.GetImageFromArray(arr.astype(np.float32))
    out.SetSpacing((2.0, 2.0, 2.0))
    out.SetOrigin((-130.0, -124.0, -24.0))  # LPS: x through the isocentre between the breasts
    return out


@pytest.mark.parametrize("fat_suppressed", [False, True])
def test_tissue_wrap_covers_lateral_breast_tissue_not_muscle_lungs_or_heart(fat_suppressed):
    arr, parts = _torso(fat_suppressed)
    pre = _image(arr)
    old, old_ctx = breast_region(pre)  # off by default: the sternum rule
    mask, ctx = breast_region(pre, tissue_wrap_mm=WRAP_DEPTH_MM)
    o, m = sitk.GetArrayFromImage(old) > 0, sitk.GetArrayFromImage(mask) > 0
    lesion = parts["lesion"]
    assert not (o & lesion).any()  # the sternum rule misses the lateral lesion
    assert (m & lesion).sum() >= 0.9 * lesion.sum()
    added = m & ~o
    assert added.sum() * 0.008 >= 20.0  # mL of lateral breast tissue
    assert not (added & (parts["deep_muscle"] | parts["cavity"] | parts["heart"] | parts["lungs"])).any()
    assert (m & o).sum() >= 0.99 * o.sum()  # the wrap only adds (the final opening may round a corner)
    assert breast_mask_qa(mask, ctx)["plausible"]
    assert "tissue wrap" in ctx["method"]
    # What the lesion gate and the classifier read does not change.
    assert np.array_equal(ctx["level"], old_ctx["level"]) and np.array_equal(ctx["body"], old_ctx["body"])
    assert ctx["layout"] == old_ctx["layout"]
    # The new key: the region's floor per column, deeper than the sternum level at the side of the chest.
    floor = ctx["chest_wall_row"]
    assert floor.shape == ctx["level"].shape and (floor >= old_ctx["chest_wall_row"]).all()
    assert floor.max() > old_ctx["chest_wall_row"].max() + 10


def test_fat_level_is_the_most_frequent_intensity_and_no_fat_means_no_wrap():
    rng = np.random.default_rng(0)
    vals = np.concatenate([rng.normal(100, 3, 500), rng.normal(50, 3, 200)]).astype(np.float32)
    assert fat_level(vals, np.ones(vals.shape, bool)) == pytest.approx(100, rel=0.06)
    assert fat_level(vals, np.zeros(vals.shape, bool)) is None
    work = _image(np.full((4, 10, 10), 50.0))
    zone = np.zeros((4, 10, 10), bool)
    zone[:, 2:4, 2:4] = True
    out = in_front_of_muscle(work, zone, np.zeros_like(zone), np.zeros(zone.shape))
    assert not out.any()  # too few voxels to measure a fat level: nothing added


@pytest.mark.parametrize("name", ["AX_T1_BILAT.nii.gz", "SAG_T1_3D_BILAT.nii.gz"])
def test_tissue_wrap_on_real_anatomy_adds_fat_beside_the_breasts_never_the_deep_chest(name, real_anatomy_dir):
    """Real bilateral volumes (no lesion): the wrap adds a little lateral tissue, bright like the
    subcutaneous fat (no fat suppression), never deeper than the sternum level + 40 mm, and the
    mask stays plausible."""
    img = sitk.ReadImage(str(real_anatomy_dir / name))
    old, old_ctx = breast_region(img)
    mask, ctx = breast_region(img, tissue_wrap_mm=WRAP_DEPTH_MM)
    work = ctx["work"]
    o = sitk.GetArrayFromImage(resample_to(old, work, sitk.sitkNearestNeighbor)) > 0
    m = sitk.GetArrayFromImage(resample_to(mask, work, sitk.sitkNearestNeighbor)) > 0
    added = m & ~o
    ml = added.sum() * np.prod(work.GetSpacing()) / 1000
    assert 5.0 <= ml <= 0.3 * o.sum() * np.prod(work.GetSpacing()) / 1000
    w = sitk.GetArrayFromImage(sitk.SmoothingRecursiveGaussian(work, 1.5))
    assert np.median(w[added]) >= 0.6 * np.median(w[o])  # fat-bright, not the dark chest behind
    rows = np.nonzero(added)[1]
    assert rows.max() <= np.max(ctx["level"]) + 40.0 / work.GetSpacing()[1]
    assert breast_mask_qa(mask, ctx)["plausible"]
    assert np.array_equal(ctx["level"], old_ctx["level"])


def test_tissue_wrap_is_off_by_default_and_a_setting_a_card_or_an_option_turns_it_on():
    from BreastTumorSegLib.cli import build_parser
    from BreastTumorSegLib.cli.segment import engine_kwargs
    from BreastTumorSegLib.engine.pipeline import _tissue_wrap_mm
    from BreastTumorSegLib.engine.settings import SegmentSettings
    from BreastTumorSegLib.models.registry import get_segmenter

    outline = get_segmenter("ftv-outline")
    assert _tissue_wrap_mm(outline, SegmentSettings()) == 0.0
    assert _tissue_wrap_mm(outline, SegmentSettings(tissue_wrap=True)) == WRAP_DEPTH_MM
    outline.card["postprocess"]["tissue_wrap_mm"] = 25.0  # a card that asks for it
    assert _tissue_wrap_mm(outline, SegmentSettings()) == 25.0
    assert _tissue_wrap_mm(outline, SegmentSettings(tissue_wrap=False)) == 0.0
    args = build_parser().parse_args(["segment", "in.nrrd", "--output", "out", "--tissue-wrap"])
    assert engine_kwargs(args)["settings"].tissue_wrap is True
    args = build_parser().parse_args(["segment", "in.nrrd", "--output", "out"])
    assert engine_kwargs(args)["settings"].tissue_wrap is None


def test_ftv_outline_finds_the_lateral_tumor_with_the_tissue_wrap_and_never_the_heart():
    """The whole pipeline on a DCE exam of the layered torso: an enhancing lateral tumor (PE ~150 %,
    wash-out), a strongly enhancing heart, slowly enhancing muscle. The sternum rule alone (the
    default) never searches the tumor; with ``tissue_wrap=True`` ftv-outline finds it, and nothing in
    the heart or the muscle."""
    from BreastTumorSegLib.core.exam import DCEExam
    from BreastTumorSegLib.engine.pipeline import segment_exam
    from BreastTumorSegLib.engine.settings import SegmentSettings

    arr, parts = _torso(False)
    lesion, heart = parts["lesion"], parts["heart"]
    muscle = parts["deep_muscle"]
    rng = np.random.default_rng(5)
    curves = {"lesion": [0.0, 1.5, 1.4, 1.2], "heart": [0.0, 2.0, 1.6, 1.3], "muscle": [0.0, 0.15, 0.25, 0.3]}
    phases = []
    for k in range(4):
        img = arr * (1 + sum(c[k] * m for c, m in ((curves["lesion"], lesion), (curves["heart"], heart),
                                                     (curves["muscle"], muscle))))
        phases.append(_image(img + rng.normal(0, 1.0, img.shape)))
    exam = DCEExam(phases, [0.0, 1.5, 3.0, 6.0], "torso")
    off = segment_exam(exam, model="ftv-outline", device="cpu", settings=SegmentSettings(registration="none"))
    on = segment_exam(exam, model="ftv-outline", device="cpu",
                      settings=SegmentSettings(registration="none", tissue_wrap=True))
    label_off, label_on = (sitk.GetArrayFromImage(r.label) > 0 for r in (off, on))
    assert not (label_off & lesion).any()
    dice = 2 * (label_on & lesion).sum() / (label_on.sum() + lesion.sum())
    assert dice >= 0.7 and len(on.lesions) == 1, (dice, len(on.lesions))
    assert not (label_on & (heart | muscle)).any()
