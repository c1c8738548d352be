"""Development phantom exams for the pipeline-step tests (seeds 7000+, never held out): the exam with the
generator's known motion removed, as ``benchmarks/bench_generalization.py`` scores it."""
from __future__ import annotations

import numpy as np
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


def lps_grid(ref):
    """The LPS coordinates (mm) of every voxel of *ref*, shape (z, y, x, 3)."""
    shape = sitk.GetArrayViewFromImage(ref).shape
    idx = np.indices(shape).reshape(3, -1)[::-1].T.astype(float)
    m = np.asarray(ref.GetDirection()).reshape(3, 3) * np.asarray(ref.GetSpacing())
    return (idx @ m.T + np.asarray(ref.GetOrigin())).reshape(shape + (3,))


def behind_floor_point(exam, x_lps, depth_mm, kz=None):
    """The LPS point *depth_mm* behind the breast region's floor at LPS x *x_lps* in work slice *kz* (middle)."""
    from BreastTumorSegLib.preprocess.breast_region import breast_region

    _, ctx = breast_region(exam.phases[0])
    work, floor = ctx["work"], ctx["chest_wall_row"]
    kz = work.GetSize()[2] // 2 if kz is None else kz
    i = int(round(work.TransformPhysicalPointToContinuousIndex([x_lps, 0.0, 0.0])[0]))
    j = floor[kz, i] + depth_mm / work.GetSpacing()[1]
    return np.array(work.TransformContinuousIndexToPhysicalPoint([float(i), float(j), float(kz)]))


def with_signal(exam, parts):
    """*exam* with each (mask, pre, post) of *parts* written into its phases (pre-contrast *pre*, every
    later phase *post*)."""
    phases = []
    for k, p in enumerate(exam.phases):
        a = sitk.GetArrayFromImage(p)
        for mask, pre, post in parts:
            a[mask] = pre if k == 0 else post
        img = sitk.GetImageFromArray(a)
        img.CopyInformation(p)
        phases.append(img)
    return exam.with_phases(phases)
