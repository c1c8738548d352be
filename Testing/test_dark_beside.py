"""Tumors dark before contrast in and beside the breast region (engine/dark_beside.py, ``DARK_BESIDE``): with the step
a dark, strongly enhancing tumor that FTV's background condition removes is found (inside the region and in the band
beside it), while a tumor-free exam gains nothing, a dark enhancing vessel and a dark enhancing tube are not taken,
and the step off, a reader's seed or ROI change nothing."""
import numpy as np
import SimpleITK as sitk

from BreastTumorSegLib.core.exam import DCEExam
from BreastTumorSegLib.engine import dark_beside
from BreastTumorSegLib.engine.dark_beside import add_dark_beside
from BreastTumorSegLib.models.ftv_segmenter import FTVOutlineSegmenter

TIMES = (0.0, 1.5, 3.0, 4.5)
SHAPE = (30, 44, 90)  # z, y, x; 1 mm voxels


def _grid(shape=SHAPE):
    return np.meshgrid(*(np.arange(n, dtype=float) for n in shape), indexing="ij")


def make_exam(tumor_x: float | None = 20.0, vessel: bool = True, tube: bool = False, seed: int = 0):
    """Fat-suppressed look: parenchyma (pre 100, BPE 10 %) for y < 34, dark fat (pre 15, no uptake) below; a bright
    tumor (pre 100, PE 150 %, radius 5 mm) at x = 75 mm that FTV finds; with *tumor_x* a tumor of radius 6 mm at that
    x (y = 16) as dark as fat before contrast (pre 15) enhancing at PE 200 % (noise SD 1); with *vessel* a dark vessel
    (pre 15, PE 200 %, radius 1.5 mm) along z at x = 45 mm; with *tube* a dark tube (pre 15, PE 200 %, radius 3 mm)
    40 mm long along x at y = 26, z = 8. Returns the exam, the dark tumor's mask and the mask of what must stay out."""
    zz, yy, xx = _grid()
    pre = np.where(yy >= 34, 15.0, 100.0)
    pe = np.where(yy >= 34, 0.0, 0.10)
    tumor = (np.sqrt((zz - 15) ** 2 + (yy - 16) ** 2 + (xx - tumor_x) ** 2) <= 6.0) if tumor_x is not None \
        else np.zeros(SHAPE, bool)
    out = np.zeros(SHAPE, bool)
    if vessel:
        out |= (yy - 16) ** 2 + (xx - 45) ** 2 <= 1.5 ** 2
    if tube:
        out |= ((zz - 8) ** 2 + (yy - 26) ** 2 <= 3.0 ** 2) & (xx >= 10) & (xx <= 50)
    for m in (out, tumor):
        pre, pe = np.where(m, 15.0, pre), np.where(m, 2.0, pe)
    bright = np.sqrt((zz - 15) ** 2 + (yy - 16) ** 2 + (xx - 75) ** 2) <= 5.0
    pe = np.where(bright, 1.5, pe)
    rng = np.random.default_rng(seed)
    phases = []
    for k in range(len(TIMES)):
        a = pre * (1 + pe * (0.0 if k == 0 else 1.0)) + rng.normal(0, 1.0, SHAPE)
        im = sitk.GetImageFromArray(a.astype(np.float32))
        im.SetSpacing((1.0, 1.0, 1.0))
        phases.append(im)
    return DCEExam(phases, list(TIMES), case_id="dark-beside"), tumor, out


def region(x_from: float = 0.0) -> sitk.Image:
    """The segmenter's breast region: the whole grid from x = *x_from* mm on."""
    _, _, xx = _grid()
    im = sitk.GetImageFromArray((xx >= x_from).astype(np.uint8))
    im.SetSpacing((1.0, 1.0, 1.0))
    return im


def run(exam, bmask, enabled, **options):
    seg = FTVOutlineSegmenter()
    prob = seg.predict(exam, bmask, **options)
    after = add_dark_beside(seg, exam, prob, bmask, options, enabled=enabled)
    return sitk.GetArrayFromImage(prob), sitk.GetArrayFromImage(after), seg


def test_a_dark_tumor_in_the_region_missed_as_shipped_is_found_and_the_dark_vessel_stays_out():
    exam, tumor, out = make_exam()
    before, after, seg = run(exam, region(), True)
    assert (before[tumor] >= 0.5).mean() < 0.05  # FTV's background condition removes it
    assert (after[tumor] >= 0.5).mean() >= 0.9
    assert np.count_nonzero((after >= 0.5) & ~(before >= 0.5) & ~tumor) <= 0.1 * np.count_nonzero(tumor)
    assert not (after[out] >= 0.5).any()
    assert any("dark before contrast, in and" in n and "1 added" in n for n in seg.last_result.notes)


def test_a_dark_tumor_beside_the_region_is_found():
    exam, tumor, _ = make_exam(tumor_x=20.0)
    bmask = region(x_from=30.0)  # the region ends 4 mm beyond the tumor's edge: the tumor lies wholly beside it
    before, after, _ = run(exam, bmask, True)
    assert not (before[tumor] >= 0.5).any()
    assert (after[tumor] >= 0.5).mean() >= 0.9


def test_a_tumor_free_exam_gains_nothing_and_a_dark_tube_is_not_taken():
    exam, _, out = make_exam(tumor_x=None, vessel=True, tube=True)
    before, after, seg = run(exam, region(), True)
    assert (before >= 0.5).any()  # the bright tumor is found
    assert np.array_equal(before, after)
    assert not (after[out] >= 0.5).any()


def test_off_by_default_and_never_for_a_reader_seed_or_roi(monkeypatch):
    assert dark_beside.DARK_BESIDE is False
    exam, tumor, _ = make_exam()
    before, after, _ = run(exam, region(), None)
    assert np.array_equal(before, after)
    before, after, _ = run(exam, region(), True, roi=region())
    assert np.array_equal(before, after)
    seg = FTVOutlineSegmenter()
    prob = seg.predict(exam, region(), seed_lps=(20.0, 16.0, 15.0))
    assert add_dark_beside(seg, exam, prob, region(), {"seed_lps": (20.0, 16.0, 15.0)}, enabled=True) is prob
