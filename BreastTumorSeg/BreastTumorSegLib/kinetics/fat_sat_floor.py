"""Background condition on the post-contrast image in fat-suppressed exams (``FTVSettings.fat_sat_post_floor``).

FTV's background condition (``pre >= background_fraction x p95(pre)`` in the ROI) exists because
PE is meaningless where the pre-contrast signal is only fat, air or noise. In a fat-suppressed exam
fat is dark, so the rule removes fat; but a tumor may be dark before contrast as well (the
domain-randomised family draws tumors darker than its bright fibroglandular tissue), and the rule
then deletes a tumor enhancing at PE 200 % or more because of its pre-contrast signal alone.

Fat does not take up contrast, so it is dark on the early post-contrast image too. With
``fat_sat_post_floor`` on, a voxel of an exam judged fat-suppressed that fails the pre-contrast
condition still counts as tissue when

1. its early post-contrast signal reaches the same fraction of the same percentile of the
   *early post-contrast* signal in the ROI (the I-SPY floor taken on the image where an
   enhancing tumor is bright), and
2. its enhancement ``S_early - S_pre`` is at least ``noise_z`` (3) x the robust SD of the
   subtraction in the ROI (:func:`~BreastTumorSegLib.kinetics.significance.difference_noise`),
   so that noise on a dark voxel cannot make its PE.

The PE, SER and neighbour conditions still apply. Exams judged not fat-suppressed are left alone
(their floor is the lower ``background_fraction_no_fat_sat`` with a noise floor). Off by default.
"""
from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from .maps import robust_percentile
from .significance import difference_noise


def post_contrast_tissue(pre: np.ndarray, early: np.ndarray, region: np.ndarray, fraction: float,
                         percentile: float, noise_z: float) -> tuple[np.ndarray, dict]:
    """(mask, info): voxels of *region* passing conditions 1 and 2 of the module docstring.

    *info* (JSON ready) holds the post-contrast floor, the subtraction SD and the voxel count.
    """
    early = np.asarray(early, dtype=np.float32)
    if not region.any():
        return np.zeros(region.shape, bool), {"post_floor": None, "sd": None, "voxels": 0}
    floor = fraction * robust_percentile(early, percentile, region)
    sd = difference_noise(pre, early, region)
    if sd is None:
        return np.zeros(region.shape, bool), {"post_floor": float(f"{floor:.6g}"), "sd": None, "voxels": 0}
    ok = region & (early >= np.float32(floor)) & ((early - pre) >= np.float32(noise_z * sd))
    return ok, {"post_floor": float(f"{floor:.6g}"), "sd": float(f"{sd:.6g}"), "voxels": int(np.count_nonzero(ok))}


def background_ok(pre: np.ndarray, bg: float, exam, maps, region: np.ndarray, fat: dict, settings) -> np.ndarray:
    """FTV's background condition ``pre >= bg``, widened by :func:`post_contrast_tissue` when
    ``settings.fat_sat_post_floor`` is on and *fat* says the exam is fat-suppressed (the added
    voxel count goes to ``fat["post_contrast_floor"]``)."""
    ok = pre >= np.float32(bg)
    if not (settings.fat_sat_post_floor and fat.get("fat_suppressed")):
        return ok
    early_img = exam.phases[maps.phases.early]
    early = sitk.GetArrayViewFromImage(early_img)
    extra, info = post_contrast_tissue(pre, early, region, settings.background_fraction,
                                       settings.background_percentile, settings.noise_z)
    info["voxels_added"] = int(np.count_nonzero(extra & ~ok))
    fat["post_contrast_floor"] = info
    return ok | extra
