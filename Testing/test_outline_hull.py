"""The inside of a found tumor (kinetics/outline_hull.py, ``outline_hull_mm``): on phantoms with known truth a
rim tumor's necrotic centre and a mixed tumor's moderate parts are filled, while a vessel beside a tumor, a vessel
touching it, two nearby lesions and a tumor-free exam gain nothing they should not."""
import numpy as np
import pytest
import SimpleITK as sitk

from BreastTumorSegLib.core.errors import InputError
from BreastTumorSegLib.core.exam import DCEExam
from BreastTumorSegLib.kinetics.outline_hull import hull_fill
from BreastTumorSegLib.models.ftv_segmenter import FTVOutlineSegmenter

SHAPE = (32, 48, 64)  # z, y, x; 1 mm voxels
SP = (1.0, 1.0, 1.0)
TIMES = (0.0, 1.5, 3.0, 4.5)
CURVE = (0.0, 1.0, 0.95, 0.9)


def _grid():
    return np.meshgrid(*(np.arange(n, dtype=float) for n in SHAPE), indexing="ij")


def rim_tumor(centre=(16, 24, 24), radius=8.0):
    """(truth sphere, strong rim with two moderate gaps, moderate gaps, necrotic centre)."""
    zz, yy, xx = _grid()
    r = np.sqrt((zz - centre[0]) ** 2 + (yy - centre[1]) ** 2 + (xx - centre[2]) ** 2)
    truth = r <= radius
    slot_a = (np.abs(zz - centre[0]) <= 1) & (xx > centre[2] + 1)  # two slots on opposite sides: the rim stays one piece
    slot_b = (np.abs(yy - centre[1]) <= 1) & (xx < centre[2] - 1)
    gaps = truth & (r > radius - 4) & (slot_a | slot_b)
    rim = truth & (r > radius - 4) & ~gaps
    return truth, rim, gaps, truth & (r <= radius - 4)


def _pe(regions_values, base=3.0):
    pe = np.full(SHAPE, base, np.float32)
    for region, value in regions_values:
        pe[region] = value
    return pe


def _recall(out, truth):
    return np.count_nonzero(out & truth) / np.count_nonzero(truth)


def test_a_rim_tumors_necrotic_centre_and_moderate_gaps_are_filled():
    truth, rim, gaps, centre = rim_tumor()
    pe = _pe([(rim, 150.0), (gaps, 45.0), (centre, 4.0)])
    valid = np.ones(SHAPE, bool)
    out, n_add, grown = hull_fill(rim, pe, valid, SP, 4.0)
    assert _recall(rim, truth) < 0.75
    assert _recall(out, truth) >= 0.9
    assert out[centre].mean() >= 0.9 and out[gaps].mean() >= 0.6  # the slots' mouths at the convex surface stay open
    assert not (out & ~truth).any()  # nothing beyond the tumor
    assert grown == 1 and n_add == np.count_nonzero(out & ~rim)
    # the same tumor with fewer enhancing gap voxels than HULL_MIN_PE: the closing alone does not take them
    dull = _pe([(rim, 150.0), (gaps, 10.0), (centre, 4.0)])
    assert hull_fill(rim, dull, valid, SP, 4.0)[0][gaps].mean() < 0.5


def test_a_mixed_tumors_moderate_parts_are_filled_in_the_whole_segmenter():
    """FTV outlines the strong parts (PE 150 %); the moderate parts between them (35 %) lie under the outline's
    level (40 %) and the necrotic centre is open to them: the option fills both (recall >= 0.9)."""
    truth, rim, gaps, centre = rim_tumor(radius=9.0)
    zz, yy, xx = _grid()
    far_bpe = xx >= 56  # background enhancement far away (a separate lesion-free strip)
    pe = _pe([(rim, 1.5), (gaps, 0.35), (centre, 0.04), (far_bpe, 0.2)], base=0.03)
    rng = np.random.default_rng(3)
    phases = [sitk.GetImageFromArray((100 * (1 + pe * g) + rng.normal(0, 1.5, SHAPE)).astype(np.float32))
              for g in CURVE]
    exam = DCEExam(phases, list(TIMES), case_id="mixed")
    off_seg, on_seg = FTVOutlineSegmenter(outline_hull_mm=0.0), FTVOutlineSegmenter(outline_hull_mm=4.0)
    off_seg.predict(exam, None)
    prob = on_seg.predict(exam, None)
    off = sitk.GetArrayFromImage(off_seg.last_result.outline) > 0
    on = sitk.GetArrayFromImage(on_seg.last_result.outline) > 0
    assert _recall(off, truth) < 0.8
    assert _recall(on, truth) >= 0.9
    assert np.count_nonzero(on & ~truth) <= np.count_nonzero(off & ~truth) + 0.05 * np.count_nonzero(truth)
    assert (sitk.GetArrayFromImage(prob)[on] >= 0.5).all()  # the added voxels are in the segmenter's mask
    assert any("outline_hull_mm" in n for n in on_seg.last_result.notes)


def _sphere(centre, radius):
    zz, yy, xx = _grid()
    return (zz - centre[0]) ** 2 + (yy - centre[1]) ** 2 + (xx - centre[2]) ** 2 <= radius ** 2


def test_a_vessel_beside_a_tumor_and_the_tissue_between_them_are_not_closed_into_it():
    tumor = _sphere((16, 24, 24), 7.0)
    zz, yy, xx = _grid()
    vessel = (np.abs(zz - 16) <= 1) & (np.abs(yy - 24) <= 1) & (xx >= 34) & (xx <= 60)  # 3 mm from the tumor
    vessel |= (np.abs(zz - 16) <= 1) & (np.abs(xx - 34) <= 1) & (yy >= 4) & (yy <= 44)  # and a branch across
    between = ~tumor & ~vessel & (xx > 24) & (xx < 34) & (np.abs(zz - 16) <= 6) & (np.abs(yy - 24) <= 10)
    pe = _pe([(tumor, 150.0), (vessel, 150.0), (between, 40.0)])
    outline = tumor | vessel
    out, n_add, _ = hull_fill(outline, pe, np.ones(SHAPE, bool), SP, 5.0)
    assert n_add == 0 and not out[between].any()


def test_a_vessel_touching_a_tumor_is_not_closed_into_it():
    tumor = _sphere((16, 24, 20), 7.0)
    zz, yy, xx = _grid()
    vessel = (np.abs(zz - 16) <= 1) & (np.abs(yy - 31) <= 1) & (xx >= 10) & (xx <= 60)  # runs along its surface
    corner = ~tumor & ~vessel & (np.abs(zz - 16) <= 3) & (yy >= 26) & (yy <= 30) & (xx >= 10) & (xx <= 60)
    pe = _pe([(tumor, 150.0), (vessel, 150.0), (corner, 45.0)])
    out, _, _ = hull_fill(tumor | vessel, pe, np.ones(SHAPE, bool), SP, 5.0)
    far = corner & ((xx < 12) | (xx > 28))  # the corner between the vessel and the tissue away from the tumor
    assert not out[far].any()
    assert np.count_nonzero(out & corner) <= 0.1 * np.count_nonzero(corner)


def test_two_nearby_lesions_are_not_bridged():
    a, b = _sphere((16, 24, 18), 6.0), _sphere((16, 24, 34), 6.0)  # 4 mm apart
    zz, yy, xx = _grid()
    gap = ~a & ~b & (xx > 18) & (xx < 34) & (np.abs(zz - 16) <= 4) & (np.abs(yy - 24) <= 4)
    pe = _pe([(a, 150.0), (b, 150.0), (gap, 45.0)])
    out, _, _ = hull_fill(a | b, pe, np.ones(SHAPE, bool), SP, 6.0)
    from scipy import ndimage

    assert ndimage.label(out, np.ones((3, 3, 3)))[1] == 2
    assert out[gap].mean() < 0.2


def test_a_tumor_free_exam_is_unchanged_and_a_negative_radius_is_refused():
    empty = np.zeros(SHAPE, bool)
    pe = _pe([(xx_strip(), 60.0)])
    out, n_add, grown = hull_fill(empty, pe, np.ones(SHAPE, bool), SP, 4.0)
    assert out is empty and n_add == 0 and grown == 0
    rng = np.random.default_rng(1)
    bpe = np.full(SHAPE, 0.03, np.float32)
    bpe[xx_strip()] = 0.3
    phases = [sitk.GetImageFromArray((100 * (1 + bpe * g) + rng.normal(0, 1.5, SHAPE)).astype(np.float32)) for g in CURVE]
    exam = DCEExam(phases, list(TIMES), case_id="free")
    off = sitk.GetArrayFromImage(FTVOutlineSegmenter(outline_hull_mm=0.0).predict(exam, None))
    on = sitk.GetArrayFromImage(FTVOutlineSegmenter(outline_hull_mm=4.0).predict(exam, None))
    assert np.array_equal(off, on)
    with pytest.raises(InputError, match="outline_hull_mm"):
        hull_fill(empty | _sphere((16, 24, 24), 5.0), pe, np.ones(SHAPE, bool), SP, -1.0)


def xx_strip():
    return _grid()[2] >= 56


def test_default_follows_the_decision_record():
    """docs/decisions/hull-fill-issue25.md: off in "ftv-outline" (it failed its held-out rule) and in "ftv"."""
    from BreastTumorSegLib.models.ftv_segmenter import FTVSegmenter

    assert FTVOutlineSegmenter().settings.outline_hull_mm == 0.0
    assert FTVSegmenter().settings.outline_hull_mm == 0.0
