"""Issues 25 and 31: compact, moderately enhancing tumors that stand out from their own ring (engine/moderate.py, off).

Development exam 7122 of the ellipse family (a follow-up development baseline, docs/decisions/moderate-tumors-issue25.md):
its 5.1 mL tumor enhances at a median PE of 62 % (FTV's level is 70 %), lies beside the other, found tumor and is
missed whole by ``ftv-outline`` as shipped. With the step on the pipeline finds it and keeps everything it found.
Tumor-free exams with background enhancement (randomised 7002; a heterogeneous exam drawn without tumors) gain no
lesion, with ``ftv-outline`` and with the follow-up's ``ftv``.
"""
import numpy as np
import pytest
import SimpleITK as sitk

from BreastTumorSegLib.engine import moderate
from BreastTumorSegLib.engine.pipeline import SegmentSettings, segment_exam
from BreastTumorSegLib.evaluation.metrics import dice
from BreastTumorSegLib.models.registry import get_segmenter
from dev_exams import motion_free, tumor_free_7002

RUN = SegmentSettings(registration="none")


def _both(exam, monkeypatch, model="ftv-outline"):
    """The pipeline with the step off and on."""
    runs = []
    for on in (False, True):
        with monkeypatch.context() as m:
            m.setattr(moderate, "MODERATE", on)
            runs.append(segment_exam(exam, model=model, device="cpu", settings=RUN))
    return runs


def test_off_until_its_rule_passes():
    assert moderate.MODERATE is False  # docs/decisions/moderate-tumors-issue25.md


def test_a_component_stands_out_only_from_a_quiet_ring():
    sp = (2.0, 1.0, 1.0)
    pe = np.full((20, 40, 40), 10.0, np.float32)
    comp = np.zeros(pe.shape, bool)
    comp[8:12, 15:25, 15:25] = True
    pe[comp] = 60.0
    judged = np.ones(pe.shape, bool)
    sl = tuple(slice(0, n) for n in pe.shape)
    assert moderate.stands_out(comp, sl, pe, judged, sp)  # 60 over a ring at 10: 50 points
    pe[~comp] = 35.0
    assert not moderate.stands_out(comp, sl, pe, judged, sp)  # 25 points over its ring
    pe[~comp] = 10.0
    assert not moderate.stands_out(comp, sl, pe, np.zeros(pe.shape, bool), sp)  # a ring not judged is not seen


def test_moderate_tumor_beside_a_found_one_is_found(monkeypatch):
    from BreastTumorSegLib.training.phantom.families import FAMILIES

    ph = FAMILIES["ellipse"](7122)
    labels = sitk.GetArrayFromImage(ph.tumor_labels)
    off, on = _both(motion_free(ph), monkeypatch)
    a, b = sitk.GetArrayFromImage(off.label) > 0, sitk.GetArrayFromImage(on.label) > 0
    missed = [t for t in range(1, int(labels.max()) + 1) if not a[labels == t].any()]
    assert len(missed) == 1  # main's pipeline misses one of the two tumors whole
    t = labels == missed[0]
    pe = get_segmenter("ftv-outline").kinetic_maps(motion_free(ph)).array("pe_early")
    assert 50.0 < float(np.median(pe[t])) < 70.0  # moderate: under FTV's level as a whole
    assert b[t].mean() > 0.8  # found with the step: most of it, not a speck
    assert b[a].all()  # nothing the pipeline found without the step is lost
    assert len(on.lesions) == len(off.lesions) + 1
    assert dice(on.label, ph.tumor_labels > 0) > 0.9


def _tumor_free_heterogeneous():
    from BreastTumorSegLib.training.phantom.heterogeneous import make_heterogeneous

    ph = make_heterogeneous(7139, n_tumors=0)  # background enhancement: compact blobs of 0.8-8 mL at PE 44-45 %
    assert not sitk.GetArrayViewFromImage(ph.tumor_labels).any()
    return ph.exam


@pytest.mark.parametrize("model", ["ftv-outline", "ftv"])
@pytest.mark.parametrize("make", [tumor_free_7002, _tumor_free_heterogeneous], ids=["randomized-7002", "heterogeneous"])
def test_tumor_free_exam_with_background_enhancement_gains_no_lesion(make, model, monkeypatch):
    off, on = _both(make(), monkeypatch, model)
    assert np.array_equal(sitk.GetArrayFromImage(off.label), sitk.GetArrayFromImage(on.label))
    assert len(on.lesions) == len(off.lesions)


def test_reader_seed_and_other_segmenters_are_left_alone(monkeypatch):
    monkeypatch.setattr(moderate, "MODERATE", True)
    prob = sitk.Image(4, 4, 4, sitk.sitkFloat32)

    class NoFTV:
        last_result = None

    assert moderate.add_moderate(NoFTV(), None, prob, prob, {}) is prob
    assert moderate.add_moderate(NoFTV(), None, prob, prob, {"seed_lps": (0, 0, 0)}) is prob


def test_compare_step_moderate_is_registered():
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from bench_generalization import POST_STEPS, PREDICT_STEPS

    assert POST_STEPS["moderate"][0] == "moderate" and PREDICT_STEPS["moderate"] == "MODERATE"
