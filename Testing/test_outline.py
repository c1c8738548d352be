"""The whole-tumor outline of "ftv-outline" (kinetics/outline.py) on small phantoms with known truth:
a tumor whose strongly enhancing parts are islands thinner than the vessel ball (the vessel opening
used to delete them and the whole tumor with them), a thin vessel nearby that must stay out, and
the half-maximum edge (the partial-volume layer a reader's outline includes)."""
import numpy as np
import pytest
import SimpleITK as sitk

from BreastTumorSegLib.core.exam import DCEExam
from BreastTumorSegLib.evaluation.metrics import dice
from BreastTumorSegLib.kinetics.outline import half_maximum_edge, thick_regions
from BreastTumorSegLib.models.ftv_segmenter import FTVOutlineSegmenter

TIMES = (0.0, 1.5, 3.0, 4.5)
SPACING = (0.9, 0.9, 2.5)  # x, y, z: thick slices as in the heterogeneous families


def patchy_exam(seed=0, shape=(20, 64, 72), radius=8.0, moderate=0.5, strong=1.5, vessel=True, island_mm=1.3):
    """Tissue (pre 100, noise 2, faint BPE) with one partial-volume sphere of *radius* mm enhancing
    moderately (PE *moderate*) around strong islands (PE *strong*, balls of *island_mm* every 4.5 mm),
    and, 12 mm beside it, a straight vessel 2 mm wide (PE 200 %) running 40 mm. Returns the exam,
    the tumor truth (signed distance <= 0) and the vessel mask."""
    rng = np.random.default_rng(seed)
    sz = np.asarray(SPACING)[::-1]
    zz, yy, xx = np.meshgrid(*(np.arange(n) * s for n, s in zip(shape, sz)), indexing="ij")
    c = (np.asarray(shape) - 1) * sz / 2.0
    c[2] -= 12.0
    d = np.sqrt((zz - c[0]) ** 2 + (yy - c[1]) ** 2 + (xx - c[2]) ** 2) - radius
    frac = np.clip(0.5 - d / sz.min(), 0, 1)  # partial volume, truth where d <= 0
    islands = np.zeros(shape, bool)
    for oz in np.arange(-6.0, 6.1, 4.5):
        for oy in np.arange(-6.75, 6.8, 4.5):
            for ox in np.arange(-6.75, 6.8, 4.5):
                islands |= (zz - c[0] - oz) ** 2 + (yy - c[1] - oy) ** 2 + (xx - c[2] - ox) ** 2 <= island_mm ** 2
    pe = frac * np.where(islands & (d <= 0), strong, moderate)
    tube = np.zeros(shape, bool)
    if vessel:
        vx = c[2] + radius + 12.0
        tube = ((xx - vx) ** 2 + (zz - c[0]) ** 2 <= 1.0 ** 2) & (np.abs(yy - c[1]) <= 20.0)
        pe = np.where(tube, 2.0, pe)
    images = []
    for k in range(len(TIMES)):
        level = 0.0 if k == 0 else 1.0
        a = 100.0 * (1 + (pe + 0.05) * level) + rng.normal(0, 2.0, shape)
        im = sitk.GetImageFromArray(a.astype(np.float32))
        im.SetSpacing(SPACING)
        images.append(im)
    return DCEExam(images, list(TIMES), case_id="patchy"), d <= 0, tube


def test_tumor_with_patchy_strong_parts_is_outlined_and_the_vessel_left_out():
    """Islands of strong enhancement thinner than the 2 mm vessel ball inside a moderately
    enhancing tumor: with ``outline_thick_regions`` (off by default) the tumor is outlined whole
    (without it the opening removes every island and the lesion with them, Dice 0), the thin
    vessel 12 mm away is not."""
    exam, truth, tube = patchy_exam()
    seg = FTVOutlineSegmenter(outline_thick_regions=True)
    mask = sitk.GetArrayFromImage(seg.predict(exam, None)) >= 0.5
    assert dice(mask, truth) >= 0.8
    assert not np.any(mask & tube)
    old = FTVOutlineSegmenter()
    before = sitk.GetArrayFromImage(old.predict(exam, None)) >= 0.5
    assert dice(before, truth) < 0.3  # the failure this guards against


def test_half_maximum_edge_takes_the_partial_volume_layer():
    """The partial-volume voxels of a tumor (half or more of them inside) have PE between the
    tumor's and the surroundings': the edge layer (``outline_half_maximum``, off by default) adds
    them, and no voxel further out."""
    exam, truth, _ = patchy_exam(seed=1, vessel=False, island_mm=2.6, moderate=0.45)  # islands survive the opening
    # Both without the bay closing (outline_close_mm, on by default since issue 25's outline_concave step;
    # it takes some of the same partial-volume voxels): this test measures the edge layer alone.
    with_edge = sitk.GetArrayFromImage(FTVOutlineSegmenter(outline_half_maximum=True, outline_close_mm=0).predict(
        exam, None)) >= 0.5
    without = sitk.GetArrayFromImage(FTVOutlineSegmenter(outline_close_mm=0).predict(exam, None)) >= 0.5  # edge off
    recall = lambda m: np.count_nonzero(m & truth) / np.count_nonzero(truth)  # noqa: E731
    assert recall(with_edge) >= 0.955  # measured 0.961; without the edge layer 0.947
    assert recall(with_edge) > recall(without) + 0.01
    assert np.count_nonzero(with_edge & ~truth) <= 0.02 * np.count_nonzero(truth)


def test_thick_regions_keep_blobs_and_drop_tubes():
    """A ball with strong tissue is kept whole with its thin lobe; a tube and a ball without
    enough strong tissue are not."""
    shape, sp = (30, 60, 60), np.array([1.0, 1.0, 1.0])
    zz, yy, xx = np.ogrid[:30, :60, :60]
    ball = (zz - 15) ** 2 + (yy - 20) ** 2 + (xx - 20) ** 2 <= 36
    lobe = (np.abs(zz - 15) <= 0) & (np.abs(yy - 20) <= 0) & (xx > 20) & (xx < 32)
    tube = (np.abs(zz - 15) <= 1) & (np.abs(yy - 45) <= 1) & (xx > 5) & (xx < 55)
    weak = (zz - 15) ** 2 + (yy - 20) ** 2 + (xx - 48) ** 2 <= 25
    region = ball | lobe | tube | weak
    strong = (ball & (xx < 20)) | tube | (weak & (xx == 48) & (yy == 20))
    kept = thick_regions(region, strong, sp, 2.0, 0.05)
    assert np.array_equal(kept & (ball | lobe), ball | lobe)
    assert not np.any(kept & (tube | weak))


def test_half_maximum_edge_respects_the_surroundings():
    """A voxel next to the region counts when its PE is at least half-way between the region's PE
    next to it and the surroundings' (here 20 %): 61 % counts next to 100 %, 59 % does not."""
    pe = np.full((9, 9, 9), 20.0, np.float32)
    region = np.zeros(pe.shape, bool)
    region[4, 4, 4] = True
    pe[4, 4, 4] = 100.0
    pe[4, 4, 5], pe[4, 4, 3] = 61.0, 59.0
    out = half_maximum_edge(region, pe, np.ones(pe.shape, bool), np.array([1.0, 1.0, 1.0]))
    assert out[4, 4, 5] and not out[4, 4, 3]
    assert np.count_nonzero(out) == 2
    # next to strongly enhancing tissue (PE >= below_pe) the layer is left to the core's own edge rule
    strong_only = half_maximum_edge(region, pe, np.ones(pe.shape, bool), np.array([1.0, 1.0, 1.0]), below_pe=70.0)
    assert np.array_equal(strong_only, region)


@pytest.mark.parametrize("option", [{"outline_thick_regions": True}, {"outline_half_maximum": True}])
def test_outline_switches_change_the_model_id(option):
    assert FTVOutlineSegmenter(**option).model_id != FTVOutlineSegmenter().model_id
