"""Issue 29, version 6's trial (docs/decisions/classify-v6-region.md): the classifier's region reaches
back to the chest wall found from the lungs (``classify_region.LUNG_REGION``), lateral of the central
band, so that a malignant lesion behind the breast mask's chest-wall level becomes a candidate, while
the heart and mediastinum (behind the sternum, the central band) do not.

Exams of the domain-randomised malignancy family's development seeds (generator truth: lesion labels
and tissue labels), whose malignant lesion has no candidate with main's region
(``benchmarks/diag_classify_region.py``).
"""
from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from BreastTumorSegLib.core.imageutil import resample_to, voxel_volume_ml
from BreastTumorSegLib.engine import classify_region
from BreastTumorSegLib.engine.classify import exam_candidates
from BreastTumorSegLib.engine.classify_region import anterior_body, lesions_in_body
from BreastTumorSegLib.training.classify import candidate_labels
from BreastTumorSegLib.training.phantom.malignancy import make_class_exam

HEART = 4  # the randomised family's tissue label (params["tissue_labels"])


def _analysed(ph, lungs: bool, monkeypatch):
    monkeypatch.setattr(classify_region, "LUNG_REGION", lungs)
    exam, sides, cands, maps, context = exam_candidates(ph.exam, register=False)
    _, y, _ = candidate_labels(ph, cands)
    return sides, cands, y, context


@pytest.fixture(scope="module", params=[7005])
def deep_lesion(request):
    """A randomised development exam (axial) whose malignant lesion lies ~11 mm behind main's region,
    in front of the pectoral muscle."""
    return make_class_exam("malignancy-randomized", request.param)


def test_deep_malignant_lesion_becomes_a_candidate_and_the_heart_does_not(deep_lesion, monkeypatch):
    ph = deep_lesion
    heart = sitk.GetArrayFromImage(resample_to(ph.tissue_labels, ph.exam.pre, sitk.sitkNearestNeighbor)) == HEART
    ml = voxel_volume_ml(ph.exam.pre)
    off_sides, off_cands, off_y, _ = _analysed(ph, False, monkeypatch)
    on_sides, on_cands, on_y, context = _analysed(ph, True, monkeypatch)
    assert ph.breast_truth["left"] == 1
    assert not any(y for c, y in zip(off_cands, off_y) if c.side == "left")  # main's region: never a candidate
    assert any(y for c, y in zip(on_cands, on_y) if c.side == "left")  # to the lungs: the lesion is one
    assert (on_sides[off_sides > 0] > 0).all()  # the region only grows
    added = (on_sides > 0) & (off_sides == 0)
    assert added.sum() * ml > 5.0  # it did reach back
    assert np.count_nonzero(added & heart) * ml < 0.5  # ... not into the heart
    # no new candidate is the heart (main's region already reaches the front of the heart on this
    # exam, 10 mm behind the sternum's level: that candidate stays the same)
    def hearts(cands):
        return sorted(round(float(heart[c.box][c.mask].sum() * ml), 2) for c in cands if heart[c.box][c.mask].mean() >= 1 / 3)

    assert hearts(on_cands) == hearts(off_cands)
    # segment's lesions still follow the lesion gate's depth rule, whatever the setting
    lab = sitk.Cast(ph.tumor_labels > 0, sitk.sitkUInt8)
    monkeypatch.setattr(classify_region, "LUNG_REGION", True)
    on_gate = lesions_in_body(ph.exam.pre, context, lab)
    monkeypatch.setattr(classify_region, "LUNG_REGION", False)
    assert np.array_equal(on_gate, lesions_in_body(ph.exam.pre, context, lab))
    assert np.array_equal(anterior_body(ph.exam.pre, context, lungs=False),
                          anterior_body(ph.exam.pre, context))  # off by default


def test_keeping_the_statistics_of_main_region(deep_lesion, monkeypatch):
    """LUNG_KEEPS_STATISTICS (the second trial): the lesion behind main's region is still found, and
    every breast's background level is main's (read on main's region, not on the larger one)."""
    from BreastTumorSegLib.models.classifier import FEATURES

    ph = deep_lesion
    bg = FEATURES.index("background_pe")
    _, off_cands, _, _ = _analysed(ph, False, monkeypatch)
    monkeypatch.setattr(classify_region, "LUNG_KEEPS_STATISTICS", True)
    _, keep_cands, keep_y, _ = _analysed(ph, True, monkeypatch)
    assert any(y for c, y in zip(keep_cands, keep_y) if c.side == "left")
    for side in ("left", "right"):
        main = {round(float(c.features[bg]), 6) for c in off_cands if c.side == side}
        kept = {round(float(c.features[bg]), 6) for c in keep_cands if c.side == side}
        assert kept == main and len(main) == 1
