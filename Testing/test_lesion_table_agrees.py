"""Issue 25 (branch tab12): the lesion table and the label map agree. The false-positive reduction's
vessel split (engine/fpreduce.py) may keep several pieces of one component that touch each other (a
lesion body and a thin part the classifier calls a tumor); the label map holds them as one
26-connected component, so the table lists them as one lesion, measured on the joined piece."""
from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk

from BreastTumorSegLib.engine.fpreduce import FPReduceSettings, reduce_false_positives
from BreastTumorSegLib.engine.pipeline import SegmentSettings, segment_exam, write_result
from BreastTumorSegLib.engine.postprocess import postprocess
from BreastTumorSegLib.training.phantom import make_phantom
from test_fpreduce import SIZE, SPACING, TIMES, _image, _truth
from vessel_fixtures import coords, enhancing_phases, tube


def lobed_tumor_and_vessel():
    """A round tumor (r 8 mm) with a flat lobe (a plate 4.8 mm thick, 24 mm wide: thinner than the
    split's 3 mm radius, longer than a branch) and an enhancing vessel leaving it on the other side."""
    x, y, z = coords(SIZE, SPACING)
    c = np.array([30.0, 40.0, 30.0])
    body = (x - c[0]) ** 2 + (y - c[1]) ** 2 + (z - c[2]) ** 2 <= 8.0 ** 2
    cl = c + [0.0, -17.0, 0.0]
    lobe = ((x - cl[0]) / 12.0) ** 2 + ((y - cl[1]) / 12.0) ** 2 + ((z - cl[2]) / 2.4) ** 2 <= 1
    tumor = body | lobe
    start = c + [7.0, 0.0, 0.0]
    vessel = tube(x, y, z, start, start + [55.0, 25.0, 8.0], 1.4) & ~tumor
    phases = enhancing_phases(tumor, vessel, len(TIMES), np.random.default_rng(3), _image)
    return phases, _image(np.where(tumor, 0.97, np.where(vessel, 0.85, 0.02))), tumor, vessel


def n_components(label: sitk.Image) -> int:
    cc = sitk.ConnectedComponent(label, True)  # 26-connected, as postprocess numbers its lesions
    return int(sitk.GetArrayFromImage(cc).max())


def stage(join: bool):
    phases, prob, tumor, vessel = lobed_tumor_and_vessel()
    _, lesions, comps = postprocess(prob, return_components=True)
    return reduce_false_positives(comps, prob, phases, TIMES, lesions, FPReduceSettings(join_touching=join)), tumor, vessel


def test_tumor_touching_a_vessel_is_one_lesion_with_its_own_volume():
    (label, lesions, _, report), tumor, vessel = stage(join=True)
    out = sitk.GetArrayFromImage(label) > 0
    assert out[vessel].mean() < 0.1 and report.removed.get("vessel_branch", 0) >= 1  # the vessel removed
    assert out[tumor].mean() > 0.95
    assert len(lesions) == 1 == n_components(label), [les.volume_ml for les in lesions]
    vol, diam = _truth(tumor)
    les = lesions[0]
    assert les.volume_ml == pytest.approx(vol, rel=0.15)
    assert les.longest_diameter_mm == pytest.approx(diam, rel=0.15)
    assert "vessel_part_removed" in les.flags


def test_without_the_join_the_same_scene_splits_the_tumor_in_the_table():
    """The case the join is for: the split keeps the lobe as a piece of its own (off: main's table)."""
    (label, lesions, _, _), tumor, _ = stage(join=False)
    assert n_components(label) == 1 and len(lesions) >= 2
    assert max(les.volume_ml for les in lesions) < 0.85 * _truth(tumor)[0]


def flipped(exam):
    return exam.with_phases([sitk.Flip(p, [True, True, True]) for p in exam.phases])


@pytest.mark.parametrize("seed,flip", [(3, False), (3, True), (0, False), (2, False), (5, False)])
def test_table_rows_equal_the_written_label_maps_components(tmp_path, seed, flip):
    """Phantom 3 (its tumor once cut into four touching pieces: one component, four rows), also
    stored flipped, and three more phantoms: one row per 26-connected component of the label map
    written to disk, and each row's volume is its component's."""
    exam = make_phantom(seed).exam
    exam = flipped(exam) if flip else exam
    res = segment_exam(exam, model="ftv-outline", settings=SegmentSettings(registration="none"))
    paths = write_result(res, tmp_path)
    label = sitk.ReadImage(str(paths["label"]))
    rows = json.loads(paths["summary"].read_text())["lesions"]
    assert len(rows) == len(res.lesions) == n_components(label) >= 1
    stats = sitk.LabelShapeStatisticsImageFilter()
    stats.Execute(sitk.RelabelComponent(sitk.ConnectedComponent(label, True), sortByObjectSize=True))
    vols = sorted((stats.GetPhysicalSize(lab) / 1000.0 for lab in stats.GetLabels()), reverse=True)
    assert sorted((les.volume_ml for les in res.lesions), reverse=True) == pytest.approx(vols, rel=1e-6)
