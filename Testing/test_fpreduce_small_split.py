"""Splitting a small lesion from the vessel it touches (engine/fpreduce.py, ``small_split_radius_mm``):
a flat 0.4 mL lesion (two slices of 2 mm) has no part 3 mm deep, so the default split leaves it whole
with its vessel (kept whole for its confident core, 0.8 mL with a 60 mm "diameter"); split at 2 mm the
lesion keeps its own volume and the vessel goes."""
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


def _image(a, dtype=np.float32) -> sitk.Image:
    im = sitk.GetImageFromArray(np.asarray(a, dtype))
    im.SetSpacing(SPACING)
    return im


def flat_lesion_and_vessel():
    x, y, z = coords(SIZE, SPACING)
    c = np.array([30.0, 40.0, 23.0])  # between two slices: two slices thick, no voxel 3 mm deep
    axes = np.array([7.5, 7.5, 1.5])
    lesion = ((x - c[0]) / axes[0]) ** 2 + ((y - c[1]) / axes[1]) ** 2 + ((z - c[2]) / axes[2]) ** 2 <= 1.0
    a = c + [axes[0] - 1.0, 0, 0]
    ab = np.array([55.0, 25.0, 0.0])
    vessel = tube(x, y, z, a, a + ab, 1.4) & ~lesion
    rng = np.random.default_rng(5)
    phases = enhancing_phases(lesion, vessel, len(TIMES), rng, _image)
    prob = _image(np.where(lesion, 0.95, np.where(vessel, 0.8, 0.02)))
    return phases, prob, lesion, vessel


def run(settings):
    phases, prob, lesion, vessel = flat_lesion_and_vessel()
    _, lesions, comps = postprocess(prob, return_components=True)
    label, lesions, _, report = reduce_false_positives(comps, prob, phases, TIMES, lesions, settings)
    return sitk.GetArrayFromImage(label) > 0, lesions, report, lesion, vessel


def test_small_lesion_is_split_from_its_vessel():
    out, lesions, report, lesion, vessel = run(FPReduceSettings(small_split_radius_mm=2.0))
    vol = lesion.sum() * np.prod(SPACING) / 1000.0
    assert 0.3 <= vol <= 0.5
    assert len(lesions) == 1, report.as_dict()
    assert lesions[0].volume_ml == pytest.approx(vol, rel=0.15)
    assert out[lesion].mean() > 0.85
    assert out[vessel].mean() < 0.15
    assert "vessel_part_removed" in lesions[0].flags


def test_without_the_small_split_the_lesion_keeps_its_vessel():
    out, lesions, report, lesion, vessel = run(FPReduceSettings())
    assert report.split == 0 and len(lesions) == 1
    assert out[vessel].mean() > 0.9  # the failure the option guards against
