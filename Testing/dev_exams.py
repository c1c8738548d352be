"""Development phantom exams for the pipeline-step tests (seeds 7000+, never held out): the exam with the
generator's known motion removed, as ``benchmarks/bench_generalization.py`` scores it."""
from __future__ import annotations

import SimpleITK as sitk


def motion_free(ph):
    """*ph*'s exam with every post-contrast phase resampled back through its known motion onto the reference."""
    return ph.exam.with_phases([p if k == 0 else sitk.Resample(p, ph.exam.reference, ph.motion[k], sitk.sitkLinear, 0.0)
                                for k, p in enumerate(ph.exam.phases)])


def tumor_free_7002():
    """Development randomised 7002: no tumor; axial, unilateral right."""
    from BreastTumorSegLib.training.phantom.families import FAMILIES

    ph = FAMILIES["randomized"](7002)
    assert not sitk.GetArrayViewFromImage(ph.tumor_labels).any()
    return motion_free(ph)
