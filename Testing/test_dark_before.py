"""Issue 25: tumors darker before contrast than FTV's background level, in, beside and behind the breast region
(engine/dark_before.py, ``DARK_BEFORE``; the one step that replaced dark_fatsat, dark_beside and dark_behind, whose
assertions are kept here).

Synthetic exams with known truth (1 mm voxels): a tumor darker before contrast than FTV's level, enhancing strongly,
is missed by ``ftv-outline`` and found by the step inside the region of a fat-suppressed exam (patchy enhancement),
inside the region and wholly beside it; dark enhancing vessels and tubes are not taken and a tumor-free exam gains
nothing. Development exams (7000+): vessels 7030's and randomised 7028's dark tumors (the latter two thirds behind the
region's floor) are missed as shipped and found with the step on, keeping everything else; tumor-free randomised 7002
gains nothing, neither with a dark enhancing tube nor with a heart-like body inserted behind its floor.
"""
import numpy as np
import pytest
import SimpleITK as sitk

from BreastTumorSegLib.core.exam import DCEExam
from BreastTumorSegLib.engine import dark_before
from BreastTumorSegLib.engine.dark_before import add_dark_before
from BreastTumorSegLib.engine.pipeline import SegmentSettings, segment_exam
from BreastTumorSegLib.evaluation.metrics import dice
from BreastTumorSegLib.models.ftv_segmenter import FTVOutlineSegmenter
from BreastTumorSegLib.models.registry import get_segmenter
from BreastTumorSegLib.preprocess.breast_region import breast_region
from dev_exams import behind_floor_point, lps_grid, motion_free, tumor_free_7002, with_signal

TIMES = (0.0, 1.5, 3.0, 4.5)
RUN = SegmentSettings(registration="none")


def _phases(pre, pe, seed, spacing=(1.0, 1.0, 1.0)):
    rng = np.random.default_rng(seed)
    out = []
    for k in range(len(TIMES)):
        im = sitk.GetImageFromArray((pre * (1 + pe * (0.0 if k == 0 else 1.0)) + rng.normal(0, 1.0, pre.shape))
                                    .astype(np.float32))
        im.SetSpacing(spacing)
        out.append(im)
    return out


def _grid(shape):
    return np.meshgrid(*(np.arange(n, dtype=float) for n in shape), indexing="ij")


def whole(exam) -> sitk.Image:
    roi = sitk.Image(exam.reference.GetSize(), sitk.sitkUInt8) + 1
    roi.CopyInformation(exam.reference)
    return roi


def run(exam, bmask, enabled, **options):
    """(first probability, after the step, the segmenter): ``ftv-outline`` on *bmask*, then the step (no chest-wall
    level: the part behind the floor does not run on these synthetic grids)."""
    seg = FTVOutlineSegmenter()
    prob = seg.predict(exam, bmask, **options)
    after, region = add_dark_before(seg, exam, prob, bmask, None, None, options, enabled=enabled)
    assert region is None
    return sitk.GetArrayFromImage(prob), sitk.GetArrayFromImage(after), seg


# --- fat-suppressed exam, the exam's own fat level (was test_dark_fatsat) ---------------------------------------------
FAT_SHAPE = (34, 48, 80)


def fatsat_exam(tumor: bool = True, seed: int = 0):
    """Fat (pre 15, no uptake) everywhere but a parenchyma slab (pre 100, PE 10 %) at y < 12; in the fat a tumor of
    radius 7 mm at x = 22 mm (pre 40: under 0.6 x p95 = 60, over the fat) whose PE is 150 % in patches and 60 %
    between them; a dark vessel (pre 40, PE 200 %, radius 1.5 mm) along z at x = 60 mm. Noise SD 1."""
    zz, yy, xx = _grid(FAT_SHAPE)
    pre = np.where(yy < 12, 100.0, 15.0)
    pe = np.where(yy < 12, 0.10, 0.0)
    vessel = (yy - 28) ** 2 + (xx - 60) ** 2 <= 1.5 ** 2
    body = np.sqrt((zz - 17) ** 2 + (yy - 28) ** 2 + (xx - 22) ** 2) <= 7.0
    t = body if tumor else np.zeros(FAT_SHAPE, bool)
    patches = np.sin(zz / 2.2) * np.sin(yy / 1.9) * np.sin(xx / 2.5) > -0.3
    pre = np.where(vessel | t, 40.0, pre)
    pe = np.where(vessel, 2.0, np.where(t, np.where(patches, 1.5, 0.6), pe))
    return DCEExam(_phases(pre, pe, seed), list(TIMES), case_id="fatsat"), t, vessel


def test_on_by_default_as_the_rule_decided():
    assert dark_before.DARK_BEFORE is True  # held-out 5128-5135 passed (docs/decisions/dark-before-issue25.md)


def test_a_patchy_dark_tumor_in_a_fat_suppressed_exam_is_found_and_the_vessel_is_not():
    exam, tumor, vessel = fatsat_exam()
    a, b, seg = run(exam, whole(exam), True)
    assert seg.last_result.fat_suppression["fat_suppressed"]
    a, b = a >= 0.5, b >= 0.5
    assert a[tumor].mean() < 0.05  # FTV's background condition removes it as shipped
    assert b[tumor].mean() >= 0.75  # most of the tumor: its patches and the moderate tissue the closing joins
    assert np.count_nonzero(b & ~a & ~tumor) <= 0.15 * np.count_nonzero(tumor)  # its edge, nothing else
    assert not (b & ~a)[vessel].any()  # the dark vessel is not taken
    assert any(n.startswith("dark in a fat-suppressed exam") and "1 added" in n for n in seg.last_result.notes)


def test_a_tumor_free_fat_suppressed_exam_gains_nothing():
    exam, _, _ = fatsat_exam(tumor=False, seed=1)
    a, b, seg = run(exam, whole(exam), True)
    assert np.array_equal(a, b)
    assert any(n.startswith("dark in a fat-suppressed exam") and "0 added" in n for n in seg.last_result.notes)


# --- in and beside the region (was test_dark_beside) -----------------------------------------------------------------
BESIDE_SHAPE = (30, 44, 90)


def beside_exam(tumor_x: float | None = 20.0, vessel: bool = True, tube: bool = False, seed: int = 0):
    """Fat-suppressed look: parenchyma (pre 100, BPE 10 %) for y < 34, dark fat (pre 15, no uptake) below; a bright
    tumor (pre 100, PE 150 %, radius 5 mm) at x = 75 mm that FTV finds; with *tumor_x* a tumor of radius 6 mm at that
    x (y = 16) as dark as fat before contrast enhancing at PE 200 %; with *vessel* a dark vessel (pre 15, PE 200 %,
    radius 1.5 mm) along z at x = 45 mm; with *tube* a dark tube (radius 3 mm) 40 mm long along x at y = 26, z = 8.
    Returns the exam, the dark tumor's mask and the mask of what must stay out."""
    zz, yy, xx = _grid(BESIDE_SHAPE)
    pre = np.where(yy >= 34, 15.0, 100.0)
    pe = np.where(yy >= 34, 0.0, 0.10)
    tumor = (np.sqrt((zz - 15) ** 2 + (yy - 16) ** 2 + (xx - tumor_x) ** 2) <= 6.0) if tumor_x is not None \
        else np.zeros(BESIDE_SHAPE, bool)
    out = np.zeros(BESIDE_SHAPE, bool)
    if vessel:
        out |= (yy - 16) ** 2 + (xx - 45) ** 2 <= 1.5 ** 2
    if tube:
        out |= ((zz - 8) ** 2 + (yy - 26) ** 2 <= 3.0 ** 2) & (xx >= 10) & (xx <= 50)
    for m in (out, tumor):
        pre, pe = np.where(m, 15.0, pre), np.where(m, 2.0, pe)
    pe = np.where(np.sqrt((zz - 15) ** 2 + (yy - 16) ** 2 + (xx - 75) ** 2) <= 5.0, 1.5, pe)
    return DCEExam(_phases(pre, pe, seed), list(TIMES), case_id="dark-beside"), tumor, out


def region_from(x_from: float = 0.0) -> sitk.Image:
    """The segmenter's breast region: the whole grid from x = *x_from* mm on."""
    _, _, xx = _grid(BESIDE_SHAPE)
    im = sitk.GetImageFromArray((xx >= x_from).astype(np.uint8))
    im.SetSpacing((1.0, 1.0, 1.0))
    return im


def test_a_dark_tumor_in_the_region_missed_as_shipped_is_found_and_the_dark_vessel_stays_out():
    exam, tumor, out = beside_exam()
    before, after, seg = run(exam, region_from(), True)
    assert (before[tumor] >= 0.5).mean() < 0.05  # FTV's background condition removes it
    assert (after[tumor] >= 0.5).mean() >= 0.9
    assert np.count_nonzero((after >= 0.5) & ~(before >= 0.5) & ~tumor) <= 0.1 * np.count_nonzero(tumor)
    assert not (after[out] >= 0.5).any()
    assert any("dark before contrast, in and" in n and "1 added" in n for n in seg.last_result.notes)


def test_a_dark_tumor_beside_the_region_is_found():
    exam, tumor, _ = beside_exam(tumor_x=20.0)
    before, after, _ = run(exam, region_from(30.0), True)  # the region ends 4 mm beyond the tumor's edge
    assert not (before[tumor] >= 0.5).any()
    assert (after[tumor] >= 0.5).mean() >= 0.9


def test_a_tumor_free_exam_gains_nothing_and_a_dark_tube_is_not_taken():
    exam, _, out = beside_exam(tumor_x=None, vessel=True, tube=True)
    before, after, _ = run(exam, region_from(), True)
    assert (before >= 0.5).any()  # the bright tumor is found
    assert np.array_equal(before, after)
    assert not (after[out] >= 0.5).any()


def test_off_and_never_for_a_reader_seed_roi_or_another_segmenter(monkeypatch):
    exam, _, _ = beside_exam()
    before, after, _ = run(exam, region_from(), False)
    assert np.array_equal(before, after)
    monkeypatch.setattr(dark_before, "DARK_BEFORE", False)  # the switch off: the default of enabled follows it
    before, after, _ = run(exam, region_from(), None)
    assert np.array_equal(before, after)
    monkeypatch.undo()
    before, after, _ = run(exam, region_from(), True, roi=region_from())
    assert np.array_equal(before, after)
    seg = FTVOutlineSegmenter()
    prob = seg.predict(exam, region_from(), seed_lps=(20.0, 16.0, 15.0))
    got = add_dark_before(seg, exam, prob, region_from(), None, None, {"seed_lps": (20.0, 16.0, 15.0)}, enabled=True)
    assert got[0] is prob

    class NoFTV:
        last_result = None

    one = sitk.Image(4, 4, 4, sitk.sitkFloat32)
    assert add_dark_before(NoFTV(), None, one, one, None, None, {}, enabled=True)[0] is one


# --- development exams: the whole pipeline off / on (was test_dark_fatsat, test_dark_behind) -------------------------
def _both(exam, monkeypatch):
    """(off, on, the first run's background threshold) of the pipeline with the step off and on."""
    seg = get_segmenter("ftv-outline")
    runs = []
    for on in (False, True):
        with monkeypatch.context() as m:
            m.setattr(dark_before, "DARK_BEFORE", on)
            runs.append(segment_exam(exam, model=seg, device="cpu", settings=RUN))
            if not on:
                bg = float(seg.last_result.background_threshold)
    return runs[0], runs[1], bg


def test_vessels_7030_dark_tumor_in_the_region_missed_as_shipped_is_found(monkeypatch):
    from BreastTumorSegLib.training.phantom.families import FAMILIES

    ph = FAMILIES["vessels"](7030)
    truth = sitk.GetArrayFromImage(ph.tumor_labels) > 0
    off, on, _ = _both(motion_free(ph), monkeypatch)
    a, b = (sitk.GetArrayFromImage(r.label) > 0 for r in (off, on))
    assert not a[truth].any()  # the pipeline as shipped misses it
    assert b[a].all()  # nothing found without the step is lost
    assert len(on.lesions) == len(off.lesions) + 1
    assert dice(on.label, ph.tumor_labels > 0) > 0.85  # development: 0.925 (dark_fatsat alone)


def test_randomized_7028_dark_tumor_behind_the_floor_is_found(monkeypatch):
    from BreastTumorSegLib.training.phantom.families import FAMILIES

    ph = FAMILIES["randomized"](7028)
    exam = motion_free(ph)
    tumor = sitk.GetArrayFromImage(ph.tumor_labels) == 1
    off, on, bg = _both(exam, monkeypatch)
    assert np.median(sitk.GetArrayViewFromImage(exam.phases[0])[tumor]) < bg  # darker than the background level
    a, b = sitk.GetArrayFromImage(off.label) > 0, sitk.GetArrayFromImage(on.label) > 0
    assert not a[tumor].any()
    assert b[tumor].mean() > 0.8  # development: 0.996 of its voxels (dark_behind alone)
    assert (b & tumor).sum() > 0.8 * b.sum()  # and little else
    assert b[a].all()  # nothing found without the step changes
    assert len(on.lesions) == len(off.lesions) + 1


@pytest.fixture(scope="module")
def free7002():
    return tumor_free_7002()


def test_tumor_free_exam_gains_nothing(free7002, monkeypatch):
    off, on, _ = _both(free7002, monkeypatch)
    assert np.array_equal(sitk.GetArrayFromImage(off.label), sitk.GetArrayFromImage(on.label))
    assert len(on.lesions) == len(off.lesions)


def test_dark_tube_behind_the_floor_not_taken(free7002, monkeypatch):
    """A tube along z (radius 2 mm, 80 mm long, a vessel) 20 mm behind the floor, at 0.6 x the background level
    before contrast and 5 x that after (PE 400 %): dark and strongly enhancing, but not a lesion."""
    _, _, bg = _both(free7002, monkeypatch)
    lps = lps_grid(free7002.reference)
    t = behind_floor_point(free7002, -25.0, 20.0)
    tube = (np.linalg.norm((lps - t)[..., :2], axis=-1) <= 2.0) & (np.abs(lps[..., 2] - t[2]) <= 40.0)
    exam = with_signal(free7002, [(tube, 0.6 * bg, 3.0 * bg)])
    region, _ = breast_region(exam.phases[0])
    assert not (sitk.GetArrayFromImage(region) > 0)[tube].any()  # behind the region's floor
    off, on, _ = _both(exam, monkeypatch)
    a, b = sitk.GetArrayFromImage(off.label) > 0, sitk.GetArrayFromImage(on.label) > 0
    assert not b[tube].any()
    assert np.array_equal(a, b) and len(on.lesions) == len(off.lesions)


def test_dark_heart_like_body_not_taken(free7002, monkeypatch):
    """A large body (radius 25 mm, 65 mL) behind the floor, dark before contrast and strongly enhancing (the heart or
    a blood pool of a fat-suppressed exam): not a lesion."""
    _, _, bg = _both(free7002, monkeypatch)
    lps = lps_grid(free7002.reference)
    heart = np.linalg.norm(lps - behind_floor_point(free7002, -75.0, 62.0), axis=-1) <= 25.0
    exam = with_signal(free7002, [(heart, 0.6 * bg, 3.0 * bg)])
    off, on, _ = _both(exam, monkeypatch)
    a, b = sitk.GetArrayFromImage(off.label) > 0, sitk.GetArrayFromImage(on.label) > 0
    assert np.array_equal(a, b) and len(on.lesions) == len(off.lesions)


def test_compare_step_segments_again_only_where_the_step_changed_the_map(monkeypatch):
    """``bench_generalization.py --compare-step dark-before``: the pipeline with the step on; the exam is segmented
    again with it off only when the step changed the probability map, and the switch is left as it was."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from bench_generalization import POST_STEPS, PREDICT_STEPS, predict_step_pair

    assert POST_STEPS["dark-before"][0] == "dark_before" and PREDICT_STEPS["dark_before"] == "DARK_BEFORE"
    calls = []

    def pipeline():
        prob = object()
        out = dark_before.add_dark_before(None, None, prob, None, None, None, {})  # no region: unchanged
        calls.append(dark_before.DARK_BEFORE)
        return {"on": dark_before.DARK_BEFORE, "changed": out[0] is not prob}

    before, after, _, _, twice = predict_step_pair("dark_before", pipeline)
    assert not twice and before is after and calls == [True]
    monkeypatch.setattr(dark_before, "DARK_BEFORE", False)
    monkeypatch.setattr(dark_before, "add_dark_before", lambda seg, exam, prob, *a, **k: (object(), None))
    calls.clear()
    before, after, _, _, twice = predict_step_pair("dark_before", pipeline)
    assert twice and calls == [True, False] and after["changed"] and before["on"] is False
    assert dark_before.DARK_BEFORE is False  # restored
