"""Issue 25: the breast region, the chest-wall/heart exclusion and the lesions do not depend on
how the exam was acquired. The same physical exam stored with its array axes permuted and
flipped (direction matrix and origin updated, so every voxel stays where it is in the patient),
or resampled onto a rotated (oblique) grid, gives the same breast mask and the same lesions in
patient space; and a coronal domain-randomised exam whose classical mask once took in the heart
(a 244 mL false "lesion") keeps no lesion there."""
import numpy as np
import pytest
import SimpleITK as sitk

from BreastTumorSegLib.engine.pipeline import SegmentSettings, segment_exam
from BreastTumorSegLib.preprocess.body import lps_image
from BreastTumorSegLib.preprocess.breast_region import breast_region
from BreastTumorSegLib.training.phantom import make_phantom
from BreastTumorSegLib.training.phantom.randomized import make_randomized


def reorient(img: sitk.Image, perm, flips) -> sitk.Image:
    """*img* with index axis a of the result = index axis ``perm[a]`` of *img*, reversed where
    ``flips[a]``; PermuteAxes and Flip update direction and origin: the physical image is the same."""
    return sitk.Flip(sitk.PermuteAxes(img, list(perm)), list(flips))


def rotated(img: sitk.Image, angles) -> sitk.Image:
    """*img* resampled (linear) onto a grid of the same size and spacing about the same centre,
    its axes rotated by Euler *angles* (rad): an oblique acquisition of the same patient."""
    t = sitk.Euler3DTransform()
    t.SetRotation(*angles)
    d = np.asarray(t.GetMatrix()).reshape(3, 3) @ np.asarray(img.GetDirection()).reshape(3, 3)
    sp, size = np.asarray(img.GetSpacing()), np.asarray(img.GetSize())
    centre = np.asarray(img.TransformContinuousIndexToPhysicalPoint(((size - 1) / 2).tolist()))
    grid = sitk.Image([int(s) for s in size], img.GetPixelID())
    grid.SetSpacing(img.GetSpacing())
    grid.SetDirection(d.ravel().tolist())
    grid.SetOrigin((centre - d @ ((size - 1) / 2 * sp)).tolist())
    return sitk.Resample(img, grid, sitk.Transform(), sitk.sitkLinear, 0.0)


def on(ref: sitk.Image, img: sitk.Image) -> np.ndarray:
    return sitk.GetArrayFromImage(sitk.Resample(img, ref, sitk.Transform(), sitk.sitkNearestNeighbor)) > 0


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * np.count_nonzero(a & b) / max(np.count_nonzero(a) + np.count_nonzero(b), 1)


SEG = SegmentSettings(registration="none")
ORIENTATIONS = {
    "coronal": lambda im: reorient(im, (0, 2, 1), (False, True, False)),
    "sagittal": lambda im: reorient(im, (1, 2, 0), (True, False, True)),
    "all axes flipped": lambda im: reorient(im, (0, 1, 2), (True, True, True)),
    "oblique": lambda im: rotated(im, (0.3, 0.2, 0.25)),
}


@pytest.fixture(scope="module")
def original():
    ph = make_phantom(3)  # axial, slightly oblique itself, one lesion
    return ph, breast_region(ph.exam.pre)[0], segment_exam(ph.exam, model="ftv-outline", settings=SEG)


def test_reorient_keeps_the_physical_image():
    img = sitk.GetImageFromArray(np.random.default_rng(0).random((5, 6, 7)).astype(np.float32))
    img.SetSpacing((1.0, 2.0, 3.0))
    img.SetOrigin((10.0, -5.0, 2.0))
    for fn in list(ORIENTATIONS.values())[:3]:
        out = fn(img)
        assert out.GetSize() != img.GetSize() or out.GetDirection() != img.GetDirection()
        back = sitk.Resample(out, img, sitk.Transform(), sitk.sitkNearestNeighbor)
        np.testing.assert_array_equal(sitk.GetArrayFromImage(back), sitk.GetArrayFromImage(img))


def test_lps_work_image_of_an_oblique_exam_is_axis_aligned(original):
    ph = original[0]
    lps = lps_image(rotated(ph.exam.pre, (0.3, 0.2, 0.25)))
    np.testing.assert_allclose(np.asarray(lps.GetDirection()).reshape(3, 3), np.eye(3), atol=1e-6)


@pytest.mark.parametrize("name", list(ORIENTATIONS))
def test_breast_mask_and_lesions_do_not_depend_on_the_orientation(original, name):
    ph, mask0, res0 = original
    ref = ph.exam.pre
    exam = ph.exam.with_phases([ORIENTATIONS[name](p) for p in ph.exam.phases])
    mask = breast_region(exam.pre)[0]
    assert dice(on(ref, mask), on(ref, mask0)) >= 0.95
    res = segment_exam(exam, model="ftv-outline", settings=SEG)
    truth = on(ref, ph.tumor_mask)
    if name == "oblique":
        # The rotated exam was interpolated (and its corners are new, empty voxels): the tumor is
        # found as well as on the original, within a few voxels.
        assert dice(on(ref, res.label), truth) >= dice(on(ref, res0.label), truth) - 0.05
    else:
        assert dice(on(ref, res.label), on(ref, res0.label)) >= 0.95
        # The same lesions (>= 0.1 mL, the benchmark's lesion size) at the same place. Specks below
        # it may differ: ties between equally near core voxels (the outline's edge rule) and the
        # vessel split then fall differently when the array order changes.
        big, big0 = ([les for les in r.lesions if les.volume_ml >= 0.1] for r in (res, res0))
        assert len(big) == len(big0) >= 1
        for a, b in zip(sorted(big, key=lambda x: -x.volume_ml), sorted(big0, key=lambda x: -x.volume_ml)):
            assert np.linalg.norm(np.subtract(a.centroid_lps, b.centroid_lps)) < 2.0
            assert a.volume_ml == pytest.approx(b.volume_ml, rel=0.1)


def test_coronal_randomized_exam_keeps_no_lesion_in_the_heart():
    """randomized seed 5001: coronal, bilateral, one breast too flat to bulge. It was taken for a
    single-breast view with the midline at the field of view's border, the chest-wall level came
    from the side of the chest and the mask (2158 mL) held the heart: a 244 mL lesion there."""
    ph = make_randomized(5001, motion_mm=0, nonrigid_mm=0)
    assert ph.params["orientation"] == "coronal" and ph.params["fov"] == "bilateral"
    mask, context = breast_region(ph.exam.pre)
    assert context["layout"]["n_breasts"] == 2 and context["layout"]["unilateral_side"] is None
    vox_ml = float(np.prod(ph.exam.pre.GetSpacing())) / 1000.0
    true_breast = sitk.GetArrayFromImage(ph.breast_mask) > 0
    assert np.count_nonzero(sitk.GetArrayFromImage(mask)) * vox_ml < 1.5 * np.count_nonzero(true_breast) * vox_ml
    res = segment_exam(ph.exam, model="ftv-outline", settings=SEG)
    cc = sitk.GetArrayFromImage(sitk.ConnectedComponent(res.label, True))
    for lab in range(1, int(cc.max()) + 1):
        assert np.mean(true_breast[cc == lab]) >= 0.5  # nothing mostly outside the breasts (heart)
    assert all(les.volume_ml < 10 for les in res.lesions)
