"""False-positive reduction (engine/fpreduce.py): vessels cut off lesions and removed, lesions kept,
the shipped classifier verified by its SHA-256."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
import SimpleITK as sitk

from BreastTumorSegLib.core.errors import ModelError
from BreastTumorSegLib.engine.fpreduce import ComponentClassifier, FPReduceSettings, reduce_false_positives
from BreastTumorSegLib.engine.postprocess import postprocess
from BreastTumorSegLib.models.cards import BUNDLED_MODELS_DIR
from vessel_fixtures import coords, enhancing_phases, tube

SPACING = (0.9, 0.9, 2.0)
SIZE = (110, 90, 30)  # x, y, z
TIMES = [0.0, 1.5, 3.0, 6.0]


def _image(a, dtype=np.float32) -> sitk.Image:
    im = sitk.GetImageFromArray(np.asarray(a, dtype))
    im.SetSpacing(SPACING)
    im.SetOrigin((-40.0, 10.0, -20.0))
    return im


def scene(lesion_r: float, touching: bool):
    """Phases, probability map, the lesion and the vessel (known truth) of a small synthetic exam."""
    x, y, z = coords(SIZE, SPACING)
    c = np.array([30.0, 40.0, 30.0])
    lesion = (x - c[0]) ** 2 + (y - c[1]) ** 2 + (z - c[2]) ** 2 <= lesion_r ** 2
    start = c + [lesion_r - 1.0, 0, 0] if touching else c + [lesion_r + 12.0, 0, 0]
    vessel = tube(x, y, z, start, start + [55.0, 25.0, 8.0], 1.4) & ~lesion
    rng = np.random.default_rng(3)
    phases = enhancing_phases(lesion, vessel, len(TIMES), rng, _image)
    p = np.where(lesion, 0.97, np.where(vessel, 0.85, 0.02))
    return phases, _image(p), lesion, vessel


def _truth(mask: np.ndarray) -> tuple[float, float]:
    stats = sitk.LabelShapeStatisticsImageFilter()
    stats.ComputeFeretDiameterOn()
    stats.Execute(_image(mask, np.uint8))
    return stats.GetPhysicalSize(1) / 1000.0, stats.GetFeretDiameter(1)


def run_stage(phases, prob):
    label, lesions, comps = postprocess(prob, return_components=True)
    assert len(lesions) >= 1
    return reduce_false_positives(comps, prob, phases, TIMES, lesions, FPReduceSettings())


def test_lesion_touching_a_vessel_keeps_its_own_volume_and_diameter():
    phases, prob, lesion, vessel = scene(8.0, touching=True)
    label, lesions, _, report = run_stage(phases, prob)
    vol, diam = _truth(lesion)
    assert len(lesions) == 1, report.as_dict()
    les = lesions[0]
    assert les.volume_ml == pytest.approx(vol, rel=0.15)
    assert les.longest_diameter_mm == pytest.approx(diam, rel=0.15)
    out = sitk.GetArrayFromImage(label) > 0
    assert out[lesion].mean() > 0.95
    assert out[vessel].mean() < 0.1  # the vessel is gone (a few voxels at the junction may stay)
    assert "vessel_part_removed" in les.flags and les.notes
    assert sum(report.removed.values()) >= 1 and report.split == 1


def test_isolated_vessel_removed_small_round_lesion_kept():
    phases, prob, lesion, vessel = scene(4.6, touching=False)  # 0.41 mL lesion
    label, lesions, _, report = run_stage(phases, prob)
    assert _truth(lesion)[0] >= 0.2
    out = sitk.GetArrayFromImage(label) > 0
    assert len(lesions) == 1 and out[lesion].all()
    assert not out[vessel].any()
    assert report.removed.get("vessel_like") == 1 and report.candidates == 2
    assert report.as_dict()["removed_components"][0]["reason"] == "vessel_like"


def test_disabled_stage_changes_nothing():
    phases, prob, _, _ = scene(4.6, touching=False)
    label, lesions, comps = postprocess(prob, return_components=True)
    out = reduce_false_positives(comps, prob, phases, TIMES, lesions, FPReduceSettings(enabled=False))
    assert out[1] is lesions and out[3].candidates == 0


def test_classifier_loads_with_its_hash_and_refuses_a_changed_byte(tmp_path):
    clf = ComponentClassifier.load()
    assert clf.card["task"] == "component_filter" and clf.coef.shape == (len(clf.card["features"]),)
    for suffix in (".json", ".safetensors"):
        shutil.copy(BUNDLED_MODELS_DIR / f"vesselfilter-demo{suffix}", tmp_path / f"vesselfilter-demo{suffix}")
    ComponentClassifier.load(folder=tmp_path)
    path = tmp_path / "vesselfilter-demo.safetensors"
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="SHA-256"):
        ComponentClassifier.load(folder=tmp_path)


class _Fixed:
    """A segmenter that answers a fixed probability map (the pipeline's wiring under test)."""

    model_id, card = "fixed-test", {}

    def __init__(self, prob):
        self.prob = prob

    def predict(self, exam, breast_mask, reporter, device="auto", **options):
        return self.prob


def test_pipeline_splits_the_vessel_off_and_says_so(tmp_path):
    import json

    from BreastTumorSegLib.core.exam import DCEExam
    from BreastTumorSegLib.engine.pipeline import SegmentSettings, segment_exam, write_result

    phases, prob, lesion, vessel = scene(8.0, touching=True)
    exam = DCEExam(phases, TIMES, "vessel_case", [f"p{k}" for k in range(len(TIMES))], {})
    res = segment_exam(exam, model=_Fixed(prob),
                       settings=SegmentSettings(registration="none", restrict_to_breast=False))
    vol, diam = _truth(lesion)
    assert len(res.lesions) == 1
    assert res.lesions[0].volume_ml == pytest.approx(vol, rel=0.15)
    assert res.lesions[0].longest_diameter_mm == pytest.approx(diam, rel=0.15)
    write_result(res, tmp_path)
    summary = json.loads((tmp_path / "vessel_case.json").read_text())
    fp = summary["settings"]["fp_reduction"]
    assert fp["removed"] == {"vessel_branch": 1} and fp["split"] == 1
    assert summary["lesions"][0]["flags"] == ["vessel_part_removed"]
    off = segment_exam(exam, model=_Fixed(prob),
                       settings=SegmentSettings(registration="none", restrict_to_breast=False, fp_reduction=False))
    assert off.settings["fp_reduction"] == "off" and off.lesions[0].longest_diameter_mm > 2 * diam


def test_trained_classifier_applied_with_numpy_equals_sklearn(tmp_path):
    pytest.importorskip("sklearn")
    from BreastTumorSegLib.engine.fpreduce import FEATURES
    from BreastTumorSegLib.training.fpreduce import fit, save

    rng = np.random.default_rng(0)
    x = rng.normal(size=(80, len(FEATURES))) * rng.uniform(0.1, 10, len(FEATURES))
    y = (x[:, 1] / x[:, 1].std() - x[:, 6] / x[:, 6].std() + 0.3 * rng.normal(size=80) > 0).astype(int)
    model, cv = fit(x, y)
    assert cv["roc_auc"] > 0.9
    save(model, tmp_path, "vesselfilter-demo", {"data": "test"})
    clf = ComponentClassifier.load(folder=tmp_path)
    assert np.allclose(clf.probability(x), model.predict_proba(x)[:, 1])
