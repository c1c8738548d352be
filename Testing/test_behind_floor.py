"""Issue 25: a second look, component by component, behind the breast region's floor (engine/behind_floor.py).

Development exam 7012 of the domain-randomised family (fat-suppressed, coronal): its 11.5 mL tumor lies
20-40 mm behind the region's floor and is lost to the region on main. With the step on, the pipeline
keeps it, in the label map and the lesion table, flagged ``outside_breast_mask``, and keeps everything
it found without the step. On a tumor-free exam (7002), a ball inserted behind the floor is kept and flagged,
an enhancing tube (a vessel) inserted beside it is not; the exam without them stays as it was.
v2 (docs/decisions/behind-floor-v2-issue25.md): a node-like ball beside the breast (no breast region in front
of it) and a compact piece of a heart-like enhancing body are not kept; with the guards off (v1) they were.
"""

import numpy as np
import pytest
import SimpleITK as sitk

from BreastTumorSegLib.engine import behind_floor
from BreastTumorSegLib.kinetics.deep_band import _on_exam
from BreastTumorSegLib.engine.pipeline import SegmentSettings, segment_exam
from BreastTumorSegLib.engine.postprocess import OUTSIDE_BREAST
from BreastTumorSegLib.preprocess.breast_region import breast_region
from dev_exams import behind_floor_point as _behind_floor_point, lps_grid as _lps_grid, motion_free, tumor_free_7002
from dev_exams import with_signal as _with_signal

HEART, LUNG = 4, 3  # randomised family's tissue labels (params["tissue_labels"])
RUN = SegmentSettings(registration="none")


@pytest.fixture(scope="module")
def exam7012():
    from BreastTumorSegLib.training.phantom.families import FAMILIES

    return FAMILIES["randomized"](7012)


def _both(exam, monkeypatch, **settings):
    """The pipeline off and on (v2's settings, or *settings* such as ``MIN_IN_FRONT=None``)."""
    with monkeypatch.context() as m:
        m.setattr(behind_floor, "BEHIND_FLOOR", False)
        off = segment_exam(exam, model="ftv-outline", device="cpu", settings=RUN)
    with monkeypatch.context() as m:
        m.setattr(behind_floor, "BEHIND_FLOOR", True)
        for k, v in settings.items():
            m.setattr(behind_floor, k, v)
        on = segment_exam(exam, model="ftv-outline", device="cpu", settings=RUN)
    return off, on


def test_on_by_default_with_v2_guards_and_no_band_without_chest_wall_level():
    assert behind_floor.BEHIND_FLOOR is True  # by the rule of docs/decisions/behind-floor-v2-issue25.md
    assert behind_floor.MIN_IN_FRONT == 0.5 and behind_floor.MIN_BODY_SHARE == 0.2  # v2's guards
    assert behind_floor.band_behind_floor({"level": None, "slab": None, "chest_wall_row": None}) is None


def test_band_lies_behind_the_region_and_holds_the_lost_tumor(exam7012):
    pre = exam7012.exam.phases[0]
    region, ctx = breast_region(pre)
    band_w, rim_w, _ = behind_floor.band_behind_floor(ctx)
    assert rim_w[band_w].any() and not rim_w[~band_w].any()
    band = _on_exam(band_w, ctx["work"], pre)
    inside = sitk.GetArrayFromImage(region) > 0
    tumor = sitk.GetArrayFromImage(exam7012.tumor_labels) == 1
    assert inside[tumor].mean() < 0.05 and band[tumor].mean() > 0.95
    assert not (band & inside).any()


def test_tumor_behind_the_floor_is_kept_and_flagged(exam7012, monkeypatch):
    exam = motion_free(exam7012)
    tumor = sitk.GetArrayFromImage(exam7012.tumor_labels) == 1
    off, on = _both(exam, monkeypatch)
    a, b = sitk.GetArrayFromImage(off.label) > 0, sitk.GetArrayFromImage(on.label) > 0
    assert not a[tumor].any()
    assert b[tumor].mean() > 0.7  # development: 0.78 of the tumor's voxels
    assert b[a].all()  # nothing the first run found changes
    labels = sitk.GetArrayFromImage(sitk.ConnectedComponent(on.label, True))
    hit = {int(v) for v in np.unique(labels[tumor & b])}
    assert len(hit) == 1
    # The lesion holding the tumor is in the lesion table with the flag and its reason.
    flagged = [les for les in on.lesions if OUTSIDE_BREAST in les.flags]
    assert len(flagged) == 1 and flagged[0].volume_ml > 0.7 * float(tumor.sum()) * np.prod(exam.reference.GetSpacing()) / 1000
    assert any("outside the breast mask" in n for n in flagged[0].notes)
    assert len(on.lesions) == len(off.lesions) + 1


@pytest.fixture(scope="module")
def free7002():
    return tumor_free_7002()


def _insert_behind_floor(exam, depth_mm=20.0, ball_x=-60.0, tube_x=-25.0):
    """*exam* with a ball (radius 6 mm) and a tube along z (radius 2 mm, 80 mm long) inserted *depth_mm*
    behind the breast region's floor in the middle slice of its work grid, at LPS x *ball_x* and *tube_x*,
    both with the tissue's own pre-contrast signal and PE 150 % after contrast; (exam, ball, tube)."""
    lps = _lps_grid(exam.reference)
    ball = np.linalg.norm(lps - _behind_floor_point(exam, ball_x, depth_mm), axis=-1) <= 6.0
    t = _behind_floor_point(exam, tube_x, depth_mm)
    tube = (np.linalg.norm((lps - t)[..., :2], axis=-1) <= 2.0) & (np.abs(lps[..., 2] - t[2]) <= 40.0)
    base = float(np.median(sitk.GetArrayViewFromImage(exam.phases[0])[ball]))
    return _with_signal(exam, [(ball | tube, base, 2.5 * base)]), ball, tube


def test_ball_behind_the_floor_kept_and_flagged_tube_not(free7002, monkeypatch):
    exam, ball, tube = _insert_behind_floor(free7002)
    region, _ = breast_region(exam.phases[0])
    assert not (sitk.GetArrayFromImage(region) > 0)[ball | tube].any()  # both behind the region's floor
    off, on = _both(exam, monkeypatch)
    a, b = sitk.GetArrayFromImage(off.label) > 0, sitk.GetArrayFromImage(on.label) > 0
    assert not a[ball].any() and not a[tube].any()
    assert b[ball].mean() > 0.9 and not b[tube].any()
    assert b[a].all() and not (b & ~a & ~ball).any()  # the ball is all the step adds
    flagged = [les for les in on.lesions if OUTSIDE_BREAST in les.flags]
    assert len(flagged) == 1 and abs(flagged[0].volume_ml - float(ball.sum()) * np.prod(exam.reference.GetSpacing()) / 1000) < 0.2


def test_tumor_free_exam_stays_free(free7002, monkeypatch):
    off, on = _both(free7002, monkeypatch)
    assert np.array_equal(sitk.GetArrayFromImage(off.label), sitk.GetArrayFromImage(on.label))
    assert len(on.lesions) == len(off.lesions)


def test_node_beside_the_breast_not_kept(free7002, monkeypatch):
    """A node-like ball (radius 5 mm, PE 150 %) behind the floor lateral of the breast, in work columns
    that hold no breast region (the axilla of exam 7002): v1 kept such nodes, v2 does not."""
    lps = _lps_grid(free7002.reference)
    node = np.linalg.norm(lps - _behind_floor_point(free7002, -143.0, 74.0, kz=46), axis=-1) <= 5.0
    base = float(np.median(sitk.GetArrayViewFromImage(free7002.phases[0])[node]))
    exam = _with_signal(free7002, [(node, base, 2.5 * base)])
    _, ctx = breast_region(exam.phases[0])
    cols = behind_floor.region_columns(ctx)
    assert behind_floor.in_front_share(node, (0, 0, 0), exam.reference, ctx["work"], cols) < 0.2
    off, v1 = _both(exam, monkeypatch, MIN_IN_FRONT=None, MIN_BODY_SHARE=None)
    _, v2 = _both(exam, monkeypatch)
    a, b1, b2 = (sitk.GetArrayFromImage(r.label) > 0 for r in (off, v1, v2))
    assert not a[node].any()
    assert b1[node].mean() > 0.9  # the guard is what keeps it out
    assert not b2[node].any() and np.array_equal(a, b2)
    assert len(v2.lesions) == len(off.lesions)


def test_heart_like_body_behind_thin_chest_not_kept(free7002, monkeypatch):
    """A heart-like body behind the floor under the breast (clear of the exam's own heart): a large ball (radius 25 mm, 65 mL) dark before
    contrast and strongly enhancing after, with a compact piece in front of it (radius 7 mm) bright before
    contrast; the band's outline (pre-contrast at least the background level) holds the piece alone. v1
    kept it; v2 sees that it is a small part of a large enhancing body and does not."""
    lps = _lps_grid(free7002.reference)
    heart = np.linalg.norm(lps - _behind_floor_point(free7002, -75.0, 62.0), axis=-1) <= 25.0
    piece = (np.linalg.norm(lps - _behind_floor_point(free7002, -75.0, 31.0), axis=-1) <= 7.0) & ~heart
    base = float(np.median(sitk.GetArrayViewFromImage(free7002.phases[0])[piece]))
    exam = _with_signal(free7002, [(heart, 0.1 * base, 2.5 * base), (piece, base, 2.5 * base)])
    off, v1 = _both(exam, monkeypatch, MIN_IN_FRONT=None, MIN_BODY_SHARE=None)
    _, v2 = _both(exam, monkeypatch)
    a, b1, b2 = (sitk.GetArrayFromImage(r.label) > 0 for r in (off, v1, v2))
    assert not a[piece | heart].any()
    assert b1[piece].mean() > 0.5  # the guard is what keeps it out
    assert not b2[piece | heart].any() and np.array_equal(a, b2)
    assert len(v2.lesions) == len(off.lesions)


def test_band_outline_in_boxes_around_cores_is_the_whole_box_outline(free7002, monkeypatch):
    """CPU time (issue 25): the band's outline computed only in boxes around its cores (the default) gives the very
    label map, first outline and outer layer that the outline over the band's whole box gives, on an exam with a
    tumor-like ball and a vessel-like tube behind the floor; the ball is outlined, and the boxes are smaller than
    the whole box."""
    from BreastTumorSegLib.kinetics import deep_band

    exam, ball, _ = _insert_behind_floor(free7002)
    seen, parts = [], []
    components, core_parts = deep_band.band_components, deep_band.core_parts

    def both(*args):
        seen.append((components(*args), components(*args, parts=False)))
        return seen[-1][0]

    monkeypatch.setattr(deep_band, "band_components", both)
    monkeypatch.setattr(deep_band, "core_parts", lambda *a: parts.append(core_parts(*a)) or parts[-1])
    segment_exam(exam, model="ftv-outline", device="cpu", settings=RUN)
    assert len(seen) == 1 and len(parts) == 1
    (box, labels, before, rim, _), (box_w, labels_w, before_w, rim_w, _) = seen[0]
    assert box == box_w and np.array_equal(labels, labels_w) and np.array_equal(before, before_w) and np.array_equal(rim, rim_w)
    assert (labels[ball[box]] > 0).mean() > 0.9
    size = lambda b: int(np.prod([s.stop - s.start for s in b]))  # noqa: E731
    assert sum(size(p) for p in parts[0]) < size(box)


def test_core_parts_boxes_hold_each_core_with_its_margin_and_stay_apart():
    """The boxes of :func:`deep_band.core_parts`: each core grown by the pad (2.5 mm: 4 voxels of 1 mm), boxes that
    overlap or touch joined (also through a third), boxes one voxel apart not."""
    from BreastTumorSegLib.kinetics.deep_band import core_parts

    core = np.zeros((40, 60, 200), bool)
    core[20, 30, [10, 14, 23]] = True  # x boxes 6-15 and 10-19 overlap, 19-28 touches them: one box
    core[20, 30, 33] = True  # x box 29-38: one voxel apart, alone
    core[5:7, 3:5, 100:103] = True
    core[8, 6, 110] = True  # its box overlaps the one before: joined
    core[20, 30, 190] = True  # alone
    got = sorted(tuple((s.start, s.stop) for s in b) for b in core_parts(core, (1.0, 1.0, 1.0), 2.5))
    assert got == [((1, 13), (0, 11), (96, 115)), ((16, 25), (26, 35), (6, 28)), ((16, 25), (26, 35), (29, 38)),
                   ((16, 25), (26, 35), (186, 195))]
    assert core_parts(np.zeros((5, 5, 5), bool), (1.0, 1.0, 1.0), 2.0) == []
