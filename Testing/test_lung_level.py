"""Issue 25: the breast region's chest wall found from the lungs (preprocess/lung_level.py).

Development exams of the domain-randomised family (seeds 7011, 7012: a fat-suppressed axial and a
coronal exam whose tumors lie behind the sternum rule's level, in the true breast): with the lung
level the tumors are inside the region, the heart and the lungs are not. The real-anatomy volumes and
thin sagittal slabs keep the sternum / per-slice rule (on the two real volumes no lung is found).
"""

import os
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from BreastTumorSegLib.core.imageutil import resample_to, voxel_volume_ml
from BreastTumorSegLib.preprocess.breast_region import breast_mask_qa, breast_region

HEART, LUNG = 4, 3  # randomised family's tissue labels (params["tissue_labels"])


def _on(img, like):
    return sitk.GetArrayFromImage(resample_to(sitk.Cast(img, sitk.sitkUInt8), like, sitk.sitkNearestNeighbor))


@pytest.fixture(scope="module", params=[7011, 7012])
def randomized(request):
    from BreastTumorSegLib.training.phantom.families import FAMILIES

    return FAMILIES["randomized"](request.param)


def test_lung_level_takes_the_back_of_the_breast_not_the_heart(randomized):
    ph = randomized
    pre = ph.exam.phases[0]
    off = sitk.GetArrayFromImage(breast_region(pre)[0]) > 0
    mask, ctx = breast_region(pre, lung_level=True)
    on = sitk.GetArrayFromImage(mask) > 0
    tumor = sitk.GetArrayFromImage(ph.tumor_labels) == 1
    tissue = sitk.GetArrayFromImage(ph.tissue_labels)
    breast = sitk.GetArrayFromImage(ph.breast_mask) > 0
    assert on[off].all()  # the lung level only moves the floor back
    assert on[tumor].mean() > 0.9 > off[tumor].mean() + 0.5
    assert on[breast].mean() > off[breast].mean() + 0.2
    ml = voxel_volume_ml(mask)
    assert np.count_nonzero(on & (tissue == HEART)) * ml < 1.0
    assert np.count_nonzero(on & (tissue == LUNG)) * ml < 1.0
    assert "in front of the lungs" in ctx["method"]
    assert breast_mask_qa(mask, ctx)["plausible"]


def _real_dir() -> Path:
    env = os.environ.get("BREASTTUMORSEG_REAL_ANATOMY")
    return Path(env) if env else Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real-anatomy"


@pytest.mark.skipif(not (_real_dir() / "AX_T1_BILAT.nii.gz").exists(), reason="real anatomy not available")
@pytest.mark.parametrize("name", ["AX_T1_BILAT.nii.gz", "SAG_T1_3D_BILAT.nii.gz"])
def test_real_anatomy_region_unchanged(name):
    shrink = [2, 2, 2] if name.startswith("AX") else [2, 2, 1]  # the hybrids' DEFAULT_SHRINK
    img = sitk.BinShrink(sitk.ReadImage(str(_real_dir() / name), sitk.sitkFloat32), shrink)
    off = sitk.GetArrayFromImage(breast_region(img)[0])
    mask, ctx = breast_region(img, lung_level=True)
    assert np.array_equal(sitk.GetArrayFromImage(mask), off)
    assert breast_mask_qa(mask, ctx)["plausible"]


@pytest.mark.skipif(not (_real_dir() / "SAG_T1_3D_BILAT.nii.gz").exists(), reason="real anatomy not available")
def test_thin_sagittal_slab_keeps_its_rule():
    from BreastTumorSegLib.training.phantom.hybrid import make_hybrid

    ph = make_hybrid(7000, anatomy="sagittal", slab_slices=5, data_dir=str(_real_dir()))
    pre = ph.exam.phases[0]
    off = sitk.GetArrayFromImage(breast_region(pre)[0])
    on = sitk.GetArrayFromImage(breast_region(pre, lung_level=True)[0])
    assert np.array_equal(on, off)
    tumor = sitk.GetArrayFromImage(ph.tumor_mask) > 0
    assert (on[tumor] > 0).mean() > 0.9
