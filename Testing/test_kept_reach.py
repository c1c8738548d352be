"""engine/kept_reach.py: more rounds of the kept-lesion growth, each from the grown lesion (issue 25, KEPT_REACH)."""
from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from BreastTumorSegLib.engine import kept_reach
from dev_exams import motion_free


def test_off_by_default_until_its_rule_passes():
    assert kept_reach.KEPT_REACH is False and kept_reach.REACH_ROUNDS == 2


def test_a_homogeneous_lesion_and_an_empty_map_are_unchanged():
    """A strongly enhancing homogeneous sphere (no moderate parts) is its own edge: no round grows it."""
    shape = (24, 40, 40)
    zz, yy, xx = np.indices(shape)
    sphere = (zz - 12) ** 2 + (yy - 20) ** 2 + (xx - 20) ** 2 <= 36
    pe = np.where(sphere, 150.0, 5.0).astype(np.float32)
    valid = np.ones(shape, bool)
    pre = np.full(shape, 100.0, np.float32)
    labels = sphere.astype(np.int32)
    out, added = kept_reach.reach_labels(labels, pe, valid, pre, (1.0, 1.0, 1.0))
    assert added == {} and np.array_equal(out, labels)
    out, added = kept_reach.reach_labels(np.zeros(shape, np.int32), pe, valid, pre, (1.0, 1.0, 1.0))
    assert added == {} and not out.any()


def test_the_pipeline_reaches_further_into_a_development_irregular_tumor(monkeypatch):
    """segment_exam on development irregular 7024 (ftv-outline, motion removed; a seed of the set the step was chosen
    on, 7010-7039): with the step on the found tumors' voxel recall rises by >= 0.05 and Dice does not fall; the
    lesions and FP lesions are the same in number and every table row matches the label map."""
    from BreastTumorSegLib.engine.pipeline import SegmentSettings, segment_exam
    from BreastTumorSegLib.evaluation.lesions import lesion_level
    from BreastTumorSegLib.evaluation.metrics import dice
    from BreastTumorSegLib.training.phantom.families import FAMILIES

    ph = FAMILIES["irregular"](7024)
    exam = motion_free(ph)
    runs = {}
    for on in (False, True):
        monkeypatch.setattr(kept_reach, "KEPT_REACH", on)
        runs[on] = segment_exam(exam, model="ftv-outline", device="cpu", settings=SegmentSettings(registration="none"))
    off, on = (lesion_level(runs[k].label, ph.tumor_labels, 0.1, ref_is_labels=True) for k in (False, True))
    assert on.n_found == off.n_found >= 1 and on.n_false_positive == off.n_false_positive
    assert on.voxel_recall >= off.voxel_recall + 0.05
    truth = sitk.Cast(ph.tumor_labels > 0, sitk.sitkUInt8)
    assert dice(runs[True].label, truth) >= dice(runs[False].label, truth)
    assert len(runs[True].lesions) == len(runs[False].lesions)
    arr = sitk.GetArrayFromImage(runs[True].label) > 0
    assert sum(les.voxels for les in runs[True].lesions) == np.count_nonzero(arr)
    assert any("engine/kept_reach.py" in n for les in runs[True].lesions for n in les.notes)
