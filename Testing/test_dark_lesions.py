"""Tumors dark before contrast (kinetics/dark_lesions.py, ``FTVSettings.dark_lesion_min_pe``): with the setting a
dark, strongly enhancing tumor that FTV's background condition removes is outlined as its own lesion, while a dark
vessel beside it, dark tissue enhancing moderately (PE 110 %) and a tumor-free exam gain nothing, and an existing
lesion is never joined."""
import numpy as np
import pytest
import SimpleITK as sitk

from BreastTumorSegLib.core.exam import DCEExam
from BreastTumorSegLib.kinetics.dark_lesions import dark_seeds
from BreastTumorSegLib.models.ftv_segmenter import FTVOutlineSegmenter

TIMES = (0.0, 1.5, 3.0, 4.5)
SHAPE = (30, 40, 80)  # z, y, x; 1 mm voxels


def _grid(shape=SHAPE):
    return np.meshgrid(*(np.arange(n, dtype=float) for n in shape), indexing="ij")


def dark_exam(tumor: bool = True, bright_tumor: bool = False, seed: int = 0):
    """Fat-suppressed look: parenchyma (pre 100, BPE 10 %) above y = 32, dark fat (pre 15, no uptake) below;
    in the parenchyma a tumor of radius 6 mm at x = 20 mm (noise SD 1) that is as dark as fat before contrast (pre 15) and
    enhances at PE 200 %; a dark vessel (pre 15, PE 200 %, radius 1.5 mm) along z 3.5 mm beside it (x = 31 mm);
    dark tissue enhancing moderately (pre 15, PE 110 %, radius 6 mm) at x = 55 mm; with *bright_tumor* a bright
    tumor (pre 100, PE 150 %, radius 5 mm) at x = 70 mm. Returns the exam and the masks of the dark tumor, of
    what must stay out (vessel and moderate dark tissue) and of the bright tumor."""
    zz, yy, xx = _grid()
    r_t = np.sqrt((zz - 15) ** 2 + (yy - 16) ** 2 + (xx - 20) ** 2)
    r_m = np.sqrt((zz - 15) ** 2 + (yy - 16) ** 2 + (xx - 55) ** 2)
    r_b = np.sqrt((zz - 15) ** 2 + (yy - 16) ** 2 + (xx - 70) ** 2)
    vessel = (yy - 16) ** 2 + (xx - 31) ** 2 <= 1.5 ** 2
    fat = yy >= 32
    pre = np.where(fat, 15.0, 100.0)
    pe = np.where(fat, 0.0, 0.10)
    dark_t = (r_t <= 6.0) if tumor else np.zeros(SHAPE, bool)
    for m, p in ((vessel, 2.0), (r_m <= 6.0, 1.1), (dark_t, 2.0)):
        pre, pe = np.where(m, 15.0, pre), np.where(m, p, pe)
    bright = (r_b <= 5.0) if bright_tumor else np.zeros(SHAPE, bool)
    pe = np.where(bright, 1.5, pe)
    rng = np.random.default_rng(seed)
    phases = []
    for k in range(len(TIMES)):
        a = pre * (1 + pe * (0.0 if k == 0 else 1.0)) + rng.normal(0, 1.0, SHAPE)
        im = sitk.GetImageFromArray(a.astype(np.float32))
        im.SetSpacing((1.0, 1.0, 1.0))
        phases.append(im)
    return DCEExam(phases, list(TIMES), case_id="dark"), dark_t, vessel | (r_m <= 6.0), bright


def _outline(seg, exam):
    seg.predict(exam, None)
    return sitk.GetArrayFromImage(seg.last_result.outline) > 0


def test_a_dark_enhancing_tumor_missed_as_shipped_is_outlined_and_dark_non_tumor_stays_out():
    exam, tumor, out_, _ = dark_exam()
    off = _outline(FTVOutlineSegmenter(dark_lesion_min_pe=0.0), exam)  # step off: the background condition removes it
    assert off[tumor].mean() < 0.05
    seg = FTVOutlineSegmenter(dark_lesion_min_pe=140.0)
    on = _outline(seg, exam)
    assert on[tumor].mean() >= 0.9
    assert np.count_nonzero(on & ~tumor & ~off) <= 0.1 * np.count_nonzero(tumor)
    assert not (on & out_).any()  # the dark vessel beside it and the moderately enhancing dark tissue
    assert any("dark_lesion_min_pe" in n for n in seg.last_result.notes)
    # The PE condition keeps the moderate dark tissue out: at 80 % it seeds.
    assert _outline(FTVOutlineSegmenter(dark_lesion_min_pe=80.0), exam)[out_].any()


def test_a_tumor_free_exam_is_unchanged_and_a_found_tumor_is_not_touched():
    exam, _, _, bright = dark_exam(tumor=False, bright_tumor=True)
    off = _outline(FTVOutlineSegmenter(dark_lesion_min_pe=0.0), exam)
    assert off[bright].mean() > 0.9  # the bright tumor is found without the step
    seg = FTVOutlineSegmenter(dark_lesion_min_pe=140.0)
    on = _outline(seg, exam)
    assert np.array_equal(on, off)
    assert not any("dark_lesion_min_pe" in n for n in seg.last_result.notes)


@pytest.mark.parametrize("case", ["kept", "touches_first", "tube", "bright", "small", "skin"])
def test_dark_seeds_keep_only_separate_compact_dark_components(case):
    shape = (24, 24, 60)
    zz, yy, xx = _grid(shape)
    ball = np.sqrt((zz - 12) ** 2 + (yy - 12) ** 2 + (xx - 20) ** 2) <= (1.5 if case == "small" else 5.0)
    strong = ball.copy()
    if case == "tube":  # a thick (5 mm) tube 40 mm long: survives the opening but is not compact
        strong = ((zz - 12) ** 2 + (yy - 12) ** 2 <= 2.5 ** 2) & (xx >= 10) & (xx <= 50)
    dark = np.zeros(shape, bool) if case == "bright" else np.ones(shape, bool)
    keep_out = np.zeros(shape, bool)
    if case == "touches_first":
        keep_out[12, 12, 26:30] = True  # the first run's outline, one voxel from the ball's surface
    body = np.ones(shape, bool)
    if case == "skin":
        body = np.sqrt((zz - 12) ** 2 + (yy - 12) ** 2 + (xx - 20) ** 2) <= 7.0  # the ball's centre 7 mm deep
    seeds, n = dark_seeds(strong, dark, keep_out, body, np.array([1.0, 1.0, 1.0]), 2.0, 8.0)
    assert n == (1 if case == "kept" else 0)
    if case == "kept":
        assert np.array_equal(seeds, ball)
