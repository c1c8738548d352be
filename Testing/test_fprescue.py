"""A second look at a rejected component (engine/fprescue.py, ``FPReduceSettings.rescue_radius_mm``):
a small flat tumor (0.3 mL, no part 3 mm deep, so the default split cannot cut its vessel off) with a
vessel leaving it is one elongated component, which the vessel classifier rejects whole. With the
second look the tumor body is kept with its own volume and the vessel goes; a vessel alone is still
removed."""
from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from BreastTumorSegLib.engine.fpreduce import FPReduceSettings, reduce_false_positives
from BreastTumorSegLib.engine.postprocess import postprocess
from vessel_fixtures import coords, enhancing_phases, tube

SPACING = (0.9, 0.9, 2.0)
SIZE = (110, 90, 24)  # x, y, z
TIMES = [0.0, 1.5, 3.0, 6.0]


def _image(a) -> sitk.Image:
    im = sitk.GetImageFromArray(np.asarray(a, np.float32))
    im.SetSpacing(SPACING)
    return im


def scene(with_lesion: bool = True):
    x, y, z = coords(SIZE, SPACING)
    c = np.array([30.0, 40.0, 23.0])
    axes = np.array([6.5, 6.0, 2.6])
    lesion = ((x - c[0]) / axes[0]) ** 2 + ((y - c[1]) / axes[1]) ** 2 + ((z - c[2]) / axes[2]) ** 2 <= 1.0
    lesion &= with_lesion
    a = c + [axes[0] - 1.0, 0, 0]
    ab = np.array([50.0, 30.0, 0.0])
    vessel = tube(x, y, z, a, a + ab, 1.5) & ~lesion
    rng = np.random.default_rng(11)
    phases = enhancing_phases(lesion, vessel, len(TIMES), rng, _image)
    # FTV-like: the vessel enhances more than the tumor, so the confident core is tumor + vessel (elongated: no override)
    prob = _image(np.where(lesion, 0.95, np.where(vessel, 0.97, 0.02)))
    return phases, prob, lesion, vessel


def _feret(mask: np.ndarray) -> float:
    stats = sitk.LabelShapeStatisticsImageFilter()
    stats.ComputeFeretDiameterOn()
    stats.Execute(sitk.Cast(_image(mask), sitk.sitkUInt8))
    return stats.GetFeretDiameter(1)


def run(settings, with_lesion: bool = True):
    phases, prob, lesion, vessel = scene(with_lesion)
    _, lesions, comps = postprocess(prob, return_components=True)
    label, lesions, _, report = reduce_false_positives(comps, prob, phases, TIMES, lesions, settings)
    return sitk.GetArrayFromImage(label) > 0, lesions, report, lesion, vessel


def test_without_the_second_look_the_small_tumor_goes_with_its_vessel():
    out, lesions, report, lesion, vessel = run(FPReduceSettings(rescue_radius_mm=0.0))
    assert report.split == 0
    assert out[lesion].mean() < 0.1  # the failure the second look guards against


def test_second_look_keeps_the_tumor_and_removes_the_vessel():
    out, lesions, report, lesion, vessel = run(FPReduceSettings(rescue_radius_mm=2.0))
    vol = lesion.sum() * np.prod(SPACING) / 1000.0
    assert 0.2 <= vol <= 0.45
    assert len(lesions) == 1, report.as_dict()
    assert report.rescued == 1
    assert lesions[0].volume_ml == pytest.approx(vol, rel=0.15)
    assert lesions[0].longest_diameter_mm == pytest.approx(_feret(lesion), rel=0.15)
    assert out[lesion].mean() > 0.85
    assert out[vessel].mean() < 0.1
    assert "vessel_part_removed" in lesions[0].flags


def test_second_look_does_not_keep_a_vessel_alone():
    out, lesions, report, _, vessel = run(FPReduceSettings(rescue_radius_mm=2.0), with_lesion=False)
    assert lesions == [] and not out.any(), report.as_dict()


def test_on_for_ftv_outline_only_and_can_be_turned_off():
    from BreastTumorSegLib.engine.fprescue import RESCUE_RADIUS_MM, rescue_radius
    from BreastTumorSegLib.models.registry import get_segmenter

    outline, ftv = get_segmenter("ftv-outline").card, get_segmenter("ftv").card
    assert rescue_radius(outline, None) == RESCUE_RADIUS_MM > 0
    assert rescue_radius(outline, False) == 0.0  # SegmentSettings(fp_rescue=False)
    assert rescue_radius(ftv, None) == 0.0 and rescue_radius(ftv, True) == RESCUE_RADIUS_MM
