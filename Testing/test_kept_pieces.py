"""engine/kept_pieces.py: pieces of a kept lesion that the outline dropped are given back to it (issue 25)."""
from types import SimpleNamespace

import numpy as np
import pytest
import SimpleITK as sitk

from BreastTumorSegLib.core.imageutil import from_array
from BreastTumorSegLib.engine import kept_pieces
from BreastTumorSegLib.engine.kept_pieces import add_kept_pieces, elongation, join_pieces, piece_labels
from BreastTumorSegLib.engine.postprocess import lesion_table

SP = (2.0, 1.0, 1.0)  # z, y, x (mm): thick slices as in our exams
SHAPE = (30, 90, 90)


def _ball(center_mm, radius_mm):
    z, y, x = np.indices(SHAPE).astype(float)
    z, y, x = z * SP[0], y * SP[1], x * SP[2]
    return (z - center_mm[0]) ** 2 + (y - center_mm[1]) ** 2 + (x - center_mm[2]) ** 2 <= radius_mm ** 2


def _world(seed=0, background_pe=5.0):
    """PE, valid and SER maps of quiet breast tissue (noise), no tumor."""
    rng = np.random.default_rng(seed)
    pe = (background_pe + rng.normal(0, 4, SHAPE)).astype(np.float32)
    return pe, np.ones(SHAPE, bool), (0.9 + rng.normal(0, 0.03, SHAPE)).astype(np.float32)


def _two_lobes():
    """A two-lobed tumor: lobe A (the kept lesion) and lobe B beside it, 2 mm apart (the dropped piece)."""
    a = _ball((30, 45, 35), 7.0)
    b = _ball((30, 45, 49), 5.0)
    assert not (a & b).any()
    return a, b


def _enhance(pe, ser, mask, level, ser_level=1.2, seed=1):
    rng = np.random.default_rng(seed)
    pe[mask] = level + rng.normal(0, 10, int(mask.sum()))
    ser[mask] = ser_level


def test_two_lobed_tumor_gets_its_dropped_lobe_back():
    pe, valid, ser = _world()
    a, b = _two_lobes()
    _enhance(pe, ser, a | b, 130.0)
    out, added = piece_labels(a.astype(np.int64), pe, valid, ser, SP)
    truth = a | b
    got = out == 1
    assert (a & truth).sum() / truth.sum() < 0.8  # before: lobe A only
    assert (got & truth).sum() / truth.sum() >= 0.97
    assert (got & ~truth).sum() <= 0.02 * truth.sum()
    assert set(added) == {1} and int(out.max()) == 1  # the lesion count never rises


def test_a_vessel_beside_a_tumor_stays_out():
    pe, valid, ser = _world()
    a, _ = _two_lobes()
    _enhance(pe, ser, a, 130.0)
    z, y, x = np.indices(SHAPE).astype(float)
    vessel = ((z * SP[0] - 30) ** 2 + (y * SP[1] - 45) ** 2 <= 1.6 ** 2) & (x >= 44) & (x <= 74)  # 2 mm from lobe A
    assert not (vessel & a).any()
    _enhance(pe, ser, vessel, 130.0, seed=2)
    assert elongation(np.argwhere(vessel) * np.asarray(SP)) > kept_pieces.PIECES_MAX_ELONGATION
    out, added = piece_labels(a.astype(np.int64), pe, valid, ser, SP)
    assert added == {} and np.array_equal(out, a.astype(np.int64))


def test_unlike_pieces_stay_out():
    """A compact piece beside the lesion that enhances far less (background), or washes out unlike it, stays out."""
    pe, valid, ser = _world()
    a, b = _two_lobes()
    _enhance(pe, ser, a, 160.0)
    _enhance(pe, ser, b, 50.0, seed=3)  # moderate background: median under half the lesion's, no strong part
    assert piece_labels(a.astype(np.int64), pe, valid, ser, SP)[1] == {}
    _enhance(pe, ser, b, 160.0, ser_level=0.6, seed=3)  # as strong, but a persistent curve beside a washout lesion
    assert piece_labels(a.astype(np.int64), pe, valid, ser, SP)[1] == {}
    assert piece_labels(a.astype(np.int64), pe, valid, None, SP)[1] == {1: int(b.sum())}  # no late phase: PE only


def test_a_small_speck_beside_a_tumor_stays_out():
    """A compact enhancing speck beside the lesion, far smaller than it (and under 0.1 mL), is not a lobe."""
    pe, valid, ser = _world()
    a, _ = _two_lobes()
    speck = _ball((30, 45, 45.5), 2.0)
    assert not (speck & a).any() and speck.sum() * np.prod(SP) / 1000.0 < kept_pieces.PIECES_MIN_ML
    _enhance(pe, ser, a | speck, 130.0)
    assert piece_labels(a.astype(np.int64), pe, valid, ser, SP)[1] == {}


def test_a_piece_beside_another_lesion_does_not_join_or_bridge():
    pe, valid, ser = _world()
    a, b = _two_lobes()
    _enhance(pe, ser, a | b, 130.0)
    labels = a.astype(np.int64)
    other = _ball((30, 45, 58), 4.0) & ~b  # a second lesion touching lobe B
    labels[other] = 2
    _enhance(pe, ser, other, 130.0, seed=4)
    out, added = piece_labels(labels, pe, valid, ser, SP)
    assert 1 not in added  # lobe B touches lesion 2: lesion 1 does not reach through it
    assert int(out.max()) == 2 and np.array_equal(out == 1, a)


def test_tumor_free_exam_and_off_change_nothing():
    pe, valid, ser = _world()
    labels = np.zeros(SHAPE, np.int64)
    out, added = piece_labels(labels, pe, valid, ser, SP)
    assert added == {} and not out.any()
    comps = from_array(labels.astype(np.uint32), _like())
    label = sitk.Cast(comps > 0, sitk.sitkUInt8)
    assert add_kept_pieces(_Seg(pe, valid, ser), None, label, [], comps, _like(), {})[0] is label
    a, _ = _two_lobes()
    comps = from_array(a.astype(np.uint32), _like())
    les = lesion_table(comps, _like())
    assert add_kept_pieces(_Seg(pe, valid, ser), None, label, les, comps, _like(), {}, enabled=False)[2] is comps
    assert add_kept_pieces(_Seg(pe, valid, ser), None, label, les, comps, _like(), {"seed_lps": (0, 0, 0)},
                           enabled=True)[2] is comps


def test_join_pieces_measures_the_table_on_the_final_map():
    pe, valid, ser = _world()
    a, b = _two_lobes()
    _enhance(pe, ser, a | b, 130.0)
    comps = from_array(a.astype(np.uint32), _like())
    prob = from_array(np.where(a, 0.9, 0.0).astype(np.float32), _like())
    les = lesion_table(comps, prob)
    les[0].side = "left"
    label, table, new = join_pieces(comps, les, prob, pe, valid, ser)
    arr = sitk.GetArrayFromImage(new)
    assert len(table) == 1 and table[0].side == "left" and "pieces beside it joined" in table[0].notes[-1]
    assert table[0].voxels == int(np.count_nonzero(arr == 1)) == int((a | b).sum())
    assert table[0].volume_ml == pytest.approx((a | b).sum() * np.prod(SP) / 1000.0, rel=1e-6)
    assert int(sitk.GetArrayFromImage(label).sum()) == int((a | b).sum())


def _like():
    img = sitk.Image(SHAPE[::-1], sitk.sitkFloat32)
    img.SetSpacing(SP[::-1])
    img.SetOrigin((-40.0, 10.0, 3.0))
    return img


class _Maps:
    def __init__(self, pe, valid, ser):
        self._a = {"pe_early": pe, "valid": valid.astype(np.uint8), "ser": ser}

    def array(self, name):
        return self._a.get(name)


class _Seg:
    settings = SimpleNamespace(outline_pe=40.0)  # an outlining segmenter: plain "ftv" gets no kept-lesion step

    def __init__(self, pe, valid, ser):
        self.maps = _Maps(pe, valid, ser)

    def kinetic_maps(self, exam):
        return self.maps


def test_the_pipeline_gives_a_development_tumor_its_dropped_lobe(monkeypatch):
    """segment_exam on development irregular 7002 (ftv-outline, motion removed): its 5 mL tumor is outlined to about a
    quarter without the step (the vessel opening dropped a lobe); with the step the voxel recall rises, the lesions and
    FP lesions are the same in number and every table row matches the label map."""
    from BreastTumorSegLib.engine.pipeline import SegmentSettings, segment_exam
    from BreastTumorSegLib.evaluation.lesions import lesion_level
    from BreastTumorSegLib.training.phantom.families import FAMILIES

    ph = FAMILIES["irregular"](7002)
    ref = ph.exam.reference
    exam = ph.exam.with_phases([p if k == 0 else sitk.Resample(p, ref, ph.motion[k], sitk.sitkLinear, 0.0)
                                for k, p in enumerate(ph.exam.phases)])
    runs = {}
    for on in (False, True):
        monkeypatch.setattr(kept_pieces, "KEPT_PIECES", on)
        runs[on] = segment_exam(exam, model="ftv-outline", device="cpu", settings=SegmentSettings(registration="none"))
    off, on = (lesion_level(runs[k].label, ph.tumor_labels, 0.1, ref_is_labels=True) for k in (False, True))
    assert on.n_found == off.n_found >= 1 and on.n_false_positive == off.n_false_positive
    assert on.voxel_recall >= off.voxel_recall + 0.2
    assert len(runs[True].lesions) == len(runs[False].lesions)
    arr = sitk.GetArrayFromImage(runs[True].label) > 0
    assert sum(les.voxels for les in runs[True].lesions) == np.count_nonzero(arr)
    assert any("engine/kept_pieces.py" in n for les in runs[True].lesions for n in les.notes)
