"""The segmentation does not depend on rounding noise in the image geometry.

Other software stores an exam's origin, spacing and direction with rounding noise (NIfTI float32
headers, DICOM decimal strings, direction cosines orthonormal only to ~1e-7). Development phantom
7000 gave Dice 0.664 in memory and 0.690 read back from NIfTI: the motion correction's optimiser
turned the 2e-6 mm origin change into a different transform (now estimated in the grid's own frame,
preprocess/index_frame.py), and a one-slice component's flatness jumped from 0 to ~1e7 when its
zero principal moment became +-1e-13 (engine/shape.py elongation_flatness).
"""
import numpy as np
import pytest
import SimpleITK as sitk

from BreastTumorSegLib.engine.pipeline import segment_exam
from BreastTumorSegLib.engine.shape import elongation_flatness
from BreastTumorSegLib.io.files import load_exam
from BreastTumorSegLib.preprocess.registration import RegistrationSettings, displacement_at, register_exam_detailed
from BreastTumorSegLib.training.phantom import make_phantom, write_phantom


def _geometry(img: sitk.Image, origin=None, spacing=None, direction=None) -> sitk.Image:
    out = sitk.Image(img)
    for value, setter in ((origin, out.SetOrigin), (spacing, out.SetSpacing), (direction, out.SetDirection)):
        if value is not None:
            setter(tuple(float(v) for v in value))
    return out


def _float32(img: sitk.Image) -> sitk.Image:
    """*img* with its geometry rounded to float32, as a NIfTI header stores it."""
    return _geometry(img, *(np.float32(v) for v in (img.GetOrigin(), img.GetSpacing(), img.GetDirection())))


def _skewed(img: sitk.Image) -> sitk.Image:
    """Direction cosines moved by 1e-7 (no longer exactly orthonormal) and the origin by 1e-6 mm."""
    d = np.asarray(img.GetDirection()) + 1e-7 * np.array([1, -1, 1, 1, 1, -1, -1, 1, 1])
    return _geometry(img, origin=np.asarray(img.GetOrigin()) + 1e-6, direction=d)


def _label(result) -> np.ndarray:
    return sitk.GetArrayFromImage(result.label) > 0


# The one-slice shape step (engine/shape.py elongation_flatness: a zero principal moment up to
# rounding counted as zero) was taken back out of main on Dec 7: on the merged main it made a
# slightly oblique phantom keep a 0.100 mL one-slice speck its flipped copy has not
# (test_orientation_invariance), and counting such components as infinitely flat instead removed a
# real one-slice tumor remnant on a coarse grid (test_followup: PR read as CR). The moments of the
# voxels' boxes (shape.VOXEL_BOXES, stab12; on since Dec 7, docs/decisions/shape-boxes-issue25.md)
# settle the rounding: the "default" cases below pass with them. The "itk-moments" cases run the same
# checks with the setting off (ITK's centre moments and exact-zero test) and are strict expected
# failures: they document why the setting exists.
ITK_MOMENTS_FLIP = ("shape.VOXEL_BOXES off: ITK's exact-zero flatness test lets float32 rounding flip a one-slice "
                    "candidate (docs/decisions/shape-boxes-issue25.md)")
SETTINGS = [pytest.param(True, id="default"),
            pytest.param(False, id="itk-moments", marks=pytest.mark.xfail(strict=True, reason=ITK_MOMENTS_FLIP))]


@pytest.fixture
def voxel_boxes(request, monkeypatch):
    """shape.VOXEL_BOXES set to the test's parameter for this test only."""
    from BreastTumorSegLib.engine import shape

    monkeypatch.setattr(shape, "VOXEL_BOXES", bool(request.param))
    return bool(request.param)


@pytest.fixture(scope="module")
def phantom_7000_by_setting():
    """Phantom 7000 and its unperturbed ftv-outline label map per shape.VOXEL_BOXES (computed once each)."""
    ph, base = make_phantom(7000), {}

    def get(boxes: bool):
        if boxes not in base:
            base[boxes] = _label(segment_exam(ph.exam, model="ftv-outline", device="cpu"))
        return ph, base[boxes]
    return get


@pytest.fixture
def phantom_7000(phantom_7000_by_setting, voxel_boxes):
    return phantom_7000_by_setting(voxel_boxes)


@pytest.mark.parametrize("voxel_boxes", SETTINGS, indirect=True)
@pytest.mark.parametrize("noise", [_float32, _skewed], ids=["float32", "skewed"])
def test_ftv_outline_label_map_unchanged_by_geometry_rounding(phantom_7000, noise):
    ph, base = phantom_7000
    assert base.any()
    exam = ph.exam.with_phases([noise(p) for p in ph.exam.phases])
    assert exam.reference.GetOrigin() != ph.exam.reference.GetOrigin()
    label = _label(segment_exam(exam, model="ftv-outline", device="cpu"))
    # 10 voxels (Dice 0.971 to the unperturbed map, 0.664 -> 0.690 to the truth) changed before the fix
    assert np.array_equal(label, base), int((label != base).sum())


@pytest.mark.parametrize("voxel_boxes", SETTINGS, indirect=True)
def test_ftv_outline_label_map_unchanged_through_a_nifti_round_trip(phantom_7000, tmp_path):
    ph, base = phantom_7000
    write_phantom(ph, tmp_path / "exam")
    exam = load_exam(tmp_path / "exam")
    assert exam.reference.GetOrigin() != ph.exam.reference.GetOrigin()  # float32 in the header
    label = _label(segment_exam(exam, model="ftv-outline", device="cpu"))
    overlap = 2.0 * np.count_nonzero(label & base) / (np.count_nonzero(label) + np.count_nonzero(base))
    assert overlap >= 0.99, overlap


def test_registration_in_the_grid_frame_ignores_geometry_noise_and_keeps_physical_transforms():
    """Same transforms (to 1e-6 mm) with and without float32 geometry; on an oblique exam with known
    motion the physical transforms still recover it within one voxel."""
    ph = make_phantom(31, motion_mm=2.0, n_phases=3, orientation="oblique")
    noisy = ph.exam.with_phases([_float32(p) for p in ph.exam.phases])
    settings = RegistrationSettings(motion="affine")
    _, qa, tx = register_exam_detailed(ph.exam, settings=settings)
    _, qa_noisy, tx_noisy = register_exam_detailed(noisy, settings=settings)
    center = ph.tumors[0]["center_lps"]
    voxel = min(ph.exam.reference.GetSpacing())
    for q, a, b in zip(qa, tx[1:], tx_noisy[1:]):
        assert q["accepted"]
        assert np.linalg.norm(np.subtract(a.TransformPoint(center), b.TransformPoint(center))) < 1e-4
        true = np.asarray(ph.motion[q["phase"]].TransformPoint(center)) - np.asarray(center)
        assert np.linalg.norm(true - displacement_at(q["transform"], center)) < voxel, (q, true)
        assert np.linalg.norm(np.subtract(a.TransformPoint(center), center) - true) < voxel
    assert [q["motion_level"] for q in qa] == [q["motion_level"] for q in qa_noisy]


def _itk_shape(arr: np.ndarray, spacing, origin, direction=None):
    img = sitk.GetImageFromArray(arr.astype(np.uint8))
    img.SetSpacing(tuple(float(v) for v in spacing))
    img.SetOrigin(tuple(float(v) for v in origin))
    if direction is not None:
        img.SetDirection(tuple(float(v) for v in direction))
    stats = sitk.LabelShapeStatisticsImageFilter()
    stats.Execute(img)
    return img, stats


def _solid_shape(arr: np.ndarray, spacing, k: int = 8) -> tuple[float, float]:
    """Elongation and flatness of the voxels as solid boxes, independently of box_moments: ITK's
    moments of the mask cut into k^3 sub-voxels (their own boxes, 1/k^2 of a voxel's, left out)."""
    fine = np.repeat(np.repeat(np.repeat(arr, k, 0), k, 1), k, 2)
    _, stats = _itk_shape(fine, np.asarray(spacing) / k, (0, 0, 0))
    m = np.asarray(stats.GetPrincipalMoments(1), float)
    return float(np.sqrt(m[2] / m[1])), float(np.sqrt(m[1] / m[0]))


def test_one_slice_components_have_the_same_shape_whatever_the_geometry_rounding(monkeypatch):
    """ITK's flatness of a one-slice component jumps between 0 and ~1e6 with the origin's float32
    rounding (its zero moment becomes +-1e-12). elongation_flatness takes the moments of the voxels
    as boxes: the same value whatever the origin's and direction's rounding (and orientation), the
    solid's shape (k^3 sub-voxels) for one slice and two, finite for one slice."""
    from BreastTumorSegLib.engine import shape

    monkeypatch.setattr(shape, "VOXEL_BOXES", True)
    rng = np.random.default_rng(0)
    itk_jumps = 0
    oblique = sitk.VersorTransform((0.3, -0.2, 1.0), 0.35).GetMatrix()
    for _ in range(20):
        mask = np.zeros((5, 12, 12), bool)
        mask[2, rng.integers(0, 4):rng.integers(5, 12), rng.integers(0, 4):rng.integers(5, 12)] = True
        mask[2, rng.integers(0, 12, 5), rng.integers(0, 12, 5)] = True
        thick = mask.copy()
        thick[3] = mask[2]  # two slices: nothing degenerate
        spacing = (float(rng.uniform(0.5, 1)),) * 2 + (float(rng.uniform(1, 3)),)
        origin = rng.uniform(-150, 150, 3)
        for arr, degenerate in ((mask, True), (thick, False)):
            shapes, itk = [], []
            for o, d in ((origin, None), (np.float32(origin), None), (origin + 1e-6, np.eye(3).ravel() + 1e-7),
                         (np.float32(origin), oblique), (np.float32(origin), np.float32(oblique))):
                img, stats = _itk_shape(arr, spacing, o, d)
                shapes.append(elongation_flatness(arr, img, stats))
                itk.append((stats.GetElongation(1), stats.GetFlatness(1)))
            assert all(s == shapes[0] for s in shapes), shapes
            assert shapes[0] == pytest.approx(_solid_shape(arr, spacing), rel=0.01)
            if degenerate:
                assert 0.0 < shapes[0][1] < 1e3
                itk_jumps += itk[0][1] != itk[1][1]
    assert itk_jumps >= 5  # the rounding this guards against


def test_shape_of_thick_components_stays_close_to_itk(monkeypatch):
    """A component at least five voxels across every axis keeps ITK's elongation and flatness
    within 4 % (a box adds 1/(n^2 - 1) of a voxel row's variance); with VOXEL_BOXES off they are ITK's."""
    from BreastTumorSegLib.engine import shape

    rng = np.random.default_rng(1)
    for _ in range(10):
        mask = np.zeros((14, 24, 24), bool)
        lo = rng.integers(1, 4, 3)
        hi = lo + rng.integers(5, 10, 3)
        mask[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]] = True
        mask[rng.integers(lo[0], hi[0]), rng.integers(lo[1], hi[1]), hi[2]:hi[2] + 6] = True  # a spur
        spacing = (float(rng.uniform(0.5, 1)),) * 2 + (float(rng.uniform(1, 3)),)
        img, stats = _itk_shape(mask, spacing, rng.uniform(-150, 150, 3))
        itk = (stats.GetElongation(1), stats.GetFlatness(1))
        monkeypatch.setattr(shape, "VOXEL_BOXES", True)
        assert elongation_flatness(mask, img, stats) == pytest.approx(itk, rel=0.04)
        monkeypatch.setattr(shape, "VOXEL_BOXES", False)
        assert elongation_flatness(mask, img, stats) == pytest.approx(itk, rel=1e-9)
        assert elongation_flatness(mask, img) == pytest.approx(itk, rel=1e-9)


@pytest.mark.parametrize("direction", [(1, 0, 0, 0, 0, 1, 0, -1, 0), (-1, 0, 0, 0, 0, -1, 0, -1, 0)],
                         ids=["coronal", "coronal-flipped"])
def test_nifti_with_a_180_degree_quaternion_is_read_not_refused(tmp_path, direction):
    """ITK writes a coronal exam's qform as a quaternion with a = 0; stored as float32, 1 - (b^2+c^2+d^2)
    is ~3e-8, not 0, and its root tilted the qform's axes by 2e-4 (1.6e-3 mm per 6 mm voxel), so our own
    write_phantom output (development randomized 7007) was refused as 'qform and sform disagree'."""
    from BreastTumorSegLib.io.images import read_image

    img = sitk.Image([6, 5, 4], sitk.sitkFloat32)
    img.SetSpacing((2.615308177634078, 2.615308177634078, 6.0))
    img.SetDirection(direction)
    img.SetOrigin((-176.31, -78.24, -71.42))
    sitk.WriteImage(img, str(tmp_path / "coronal.nii.gz"))
    back = read_image(tmp_path / "coronal.nii.gz", "phase 0")
    np.testing.assert_allclose(back.GetDirection(), direction, atol=1e-6)
    np.testing.assert_allclose(back.GetOrigin(), img.GetOrigin(), atol=1e-4)
