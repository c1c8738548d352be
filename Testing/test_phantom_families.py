"""The synthetic families: the domain-randomised generator, the held-out ellipse family, the registry."""
from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from BreastTumorSegLib.cli import main
from BreastTumorSegLib.core.errors import InputError
from BreastTumorSegLib.core.imageutil import voxel_volume_ml
from BreastTumorSegLib.io.files import load_exam
from BreastTumorSegLib.training.phantom import Phantom, make_phantom
from BreastTumorSegLib.training.phantom.families import FAMILIES, make_exam
from BreastTumorSegLib.training.phantom.randomized import HEART, make_randomized

SMALL = dict(spacing=3.0)  # coarse grids keep every test fast


def arr(img: sitk.Image) -> np.ndarray:
    return sitk.GetArrayFromImage(img)


def physical_centroid(img: sitk.Image, mask: np.ndarray) -> np.ndarray:
    zyx = np.argwhere(mask).mean(0)
    return np.asarray(img.TransformContinuousIndexToPhysicalPoint([float(v) for v in zyx[::-1]]))


@pytest.fixture(scope="module")
def by_orientation():
    return {o: make_randomized(21, orientation=o, fov="bilateral", n_lesions=1, **SMALL)
            for o in ("axial", "sagittal", "coronal")}


def test_registry_and_same_container():
    assert set(FAMILIES) == {"phantom", "randomized", "ellipse", "heterogeneous", "vessels", "irregular"}
    assert FAMILIES["phantom"] is make_phantom
    with pytest.raises(InputError):
        make_exam("nope", 1)
    ph = make_exam("randomized", 3, **SMALL)
    assert isinstance(ph, Phantom) and ph.params["family"] == "randomized"
    assert ph.truth()["case_id"] == ph.case_id


def test_deterministic_from_seed():
    a, b = make_randomized(5, **SMALL), make_randomized(5, **SMALL)
    c = make_randomized(6, **SMALL)
    assert a.params == b.params
    for p, q in zip(a.exam.phases, b.exam.phases):
        assert np.array_equal(arr(p), arr(q))
    assert np.array_equal(arr(a.tumor_labels), arr(b.tumor_labels))
    assert a.params["anatomy"] != c.params["anatomy"]


def test_orientations_keep_the_anatomy_in_patient_space(by_orientation):
    hearts, vols = [], []
    for name, ph in by_orientation.items():
        ref = ph.exam.reference
        assert ph.params["orientation"] == name
        off = np.asarray(ph.params["patient_offset_mm"])
        breast = arr(ph.breast_mask) > 0
        heart = arr(ph.tissue_labels) == HEART
        assert heart.any() and breast.any()
        h, b = physical_centroid(ref, heart), physical_centroid(ref, breast)
        assert h[1] > b[1] + 30, name  # LPS: +y posterior; the heart lies behind the breasts
        assert h[0] > off[0], name  # the heart leans to the patient's left (+x)
        comps, n = ndimage.label(breast)
        assert n >= 2, name
        sizes = ndimage.sum(breast, comps, range(1, n + 1))
        two = np.argsort(sizes)[-2:] + 1
        xs = sorted(physical_centroid(ref, comps == k)[0] - off[0] for k in two)
        assert xs[0] < -30 and xs[1] > 30, name  # one breast each side of the midline
        hearts.append(h)
        vols.append(breast.sum() * voxel_volume_ml(ref))
    assert np.max(np.ptp(np.array(hearts), axis=0)) < 4.0  # the same heart, wherever the grid points
    assert np.ptp(vols) < 0.1 * np.mean(vols)


@pytest.mark.parametrize("side", ["left", "right"])
def test_unilateral_field_of_view_has_one_breast(side):
    ph = make_randomized(8, fov="unilateral", side=side, **SMALL)
    ref = ph.exam.reference
    breast = arr(ph.breast_mask) > 0
    d = np.asarray(ref.GetDirection()).reshape(3, 3)
    idx = np.argwhere(breast)[:, ::-1] * np.asarray(ref.GetSpacing())
    x = np.asarray(ref.GetOrigin())[0] + idx @ d[0] - ph.params["patient_offset_mm"][0]  # LPS x, patient frame
    assert breast.sum() * voxel_volume_ml(ref) > 20
    assert np.all(x > 0) if side == "left" else np.all(x < 0)  # only the breast of that side


def test_scale_multiplies_intensities():
    a = make_randomized(4, scale=1.0, integer=False, **SMALL)
    b = make_randomized(4, scale=1000.0, integer=False, **SMALL)
    for p, q in zip(a.exam.phases, b.exam.phases):
        np.testing.assert_allclose(arr(q), 1000.0 * arr(p), rtol=1e-5, atol=1e-4)
    c = make_randomized(4, scale=1000.0, integer=True, **SMALL)
    assert np.array_equal(arr(c.exam.pre), np.rint(arr(c.exam.pre)))


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_lesions_inside_the_breast_and_volumes_match(seed):
    ph = make_randomized(seed, n_lesions=3, spacing=2.0)
    labels, breast = arr(ph.tumor_labels), arr(ph.breast_mask) > 0
    assert ph.tumors
    assert not np.any((labels > 0) & ~breast)
    assert np.array_equal(arr(ph.tumor_mask) > 0, labels > 0)
    vml = voxel_volume_ml(ph.exam.reference)
    for t in ph.tumors:
        assert t["volume_ml"] == pytest.approx(np.count_nonzero(labels == t["label"]) * vml)
        assert t["side"] in ("left", "right") and len(t["centroid_lps"]) == 3
        assert t["kind"] in ("lobulated", "spiculated", "rim", "nonmass")


@pytest.mark.parametrize("nonrigid", [0.0, 3.0])
def test_stored_motion_realigns_the_phases(nonrigid):
    kw = dict(n_phases=3, noise=0.0, bias=0.0, scale=1.0, integer=False, spacing=2.0)
    ph = make_randomized(9, motion_mm=8.0, nonrigid_mm=nonrigid, **kw)  # large: beyond interpolation blur
    still = make_randomized(9, motion_mm=0.0, nonrigid_mm=0.0, **kw)  # the same exam without motion
    assert ph.params["motion"][-1]["nonrigid_mm"] == nonrigid
    assert np.array_equal(arr(ph.exam.pre), arr(still.exam.pre))
    inner = np.zeros(arr(ph.exam.pre).shape, bool)
    inner[4:-4, 4:-4, 4:-4] = True
    for k in (1, 2):
        truth = arr(still.exam.phases[k])
        before = np.abs(arr(ph.exam.phases[k]) - truth)[inner].mean()
        fixed = sitk.Resample(ph.exam.phases[k], ph.exam.reference, ph.motion[k], sitk.sitkLinear, 0.0)
        after = np.abs(arr(fixed) - truth)[inner].mean()
        assert after < 0.5 * before, (k, before, after)  # what remains is the linear interpolation blur


def test_ellipse_family_has_a_strongly_enhancing_heart():
    ph = make_exam("ellipse", 2)
    assert ph.exam.reference.GetSize() == (256, 192, 64)
    assert ph.exam.reference.GetSpacing() == pytest.approx((1.2, 1.2, 2.5))
    a0, a1 = arr(ph.exam.phases[0]), arr(ph.exam.phases[1])
    pe = (a1 - a0) / np.maximum(a0, 1.0)
    heart = arr(ph.heart_mask) > 0
    fat = (arr(ph.breast_mask) > 0) & (arr(ph.tumor_mask) == 0) & (a0 > 800)
    assert heart.any() and fat.any()
    assert pe[heart].mean() > 1.0 > 0.2 > pe[fat].mean()
    assert physical_centroid(ph.exam.reference, heart)[1] > physical_centroid(ph.exam.reference, fat)[1]


def test_cli_writes_a_loadable_randomized_exam(tmp_path, capsys):
    assert main(["phantom", "--family", "randomized", "--seed", "2", "--output", str(tmp_path)]) == 0
    exam = load_exam(tmp_path / "randomized_0002")
    ph = make_randomized(2)
    assert exam.n_phases == ph.exam.n_phases
    assert list(exam.times_min) == pytest.approx(ph.exam.times_min)
    assert "randomized_0002" in capsys.readouterr().out


# ------------------------------------------------------------------------------ heterogeneous tumors, vessels
@pytest.mark.parametrize("pattern", ["necrotic", "mixed"])
def test_heterogeneous_tumors_have_pe_spread_and_whole_tumor_truth(pattern):
    from BreastTumorSegLib.kinetics.maps import choose_phases
    from BreastTumorSegLib.training.phantom.heterogeneous import make_heterogeneous

    ph = make_heterogeneous(8, n_tumors=1, n_vessels=1, pattern=pattern, spacing=(1.5, 1.5, 3.0), noise=0.005)
    assert ph.tumors and ph.tumors[0]["pattern"] == pattern
    truth = arr(ph.tumor_labels) == 1
    early = choose_phases(ph.exam.times_min).early
    pre, post = arr(ph.exam.phases[0]), arr(ph.exam.phases[early])
    inner = ndimage.binary_erosion(truth)  # away from partial-volume edges
    pe = (post - pre)[inner] / pre[inner]
    assert ((pe >= 0.4) & (pe <= 0.7)).mean() > 0.05, np.percentile(pe, [5, 50, 95])
    assert (pe > 0.9).mean() > 0.05
    # the reader's outline: the whole tumor, without holes where it does not enhance
    filled = ndimage.binary_fill_holes(truth)
    assert np.array_equal(filled, truth)
    if pattern == "necrotic":
        assert (pe < 0.15).mean() > 0.02  # a non-enhancing core, inside the truth
    vessel = arr(ph.vessel_mask) > 0
    assert vessel.any() and not (vessel & truth).any()


def test_vessel_family_touches_tumors_and_held_out_shapes_differ():
    from BreastTumorSegLib.training.phantom.families import EVALUATION_ONLY
    from BreastTumorSegLib.training.phantom.heterogeneous import make_heterogeneous

    ph = make_heterogeneous(3, family="vessels", n_tumors=1, touch=1.0, spacing=(1.5, 1.5, 3.0))
    truth, vessel = arr(ph.tumor_mask) > 0, arr(ph.vessel_mask) > 0
    assert ph.tumors[0]["vessel_touching"]
    assert (ndimage.binary_dilation(truth, iterations=2) & vessel).any()  # the vessel reaches the tumor
    lengths = [v["length_mm"] for v in ph.params["vessels"]]
    assert all(20 <= v <= 105 for v in lengths) and all(0.5 <= v["radius_mm"] <= 2.0 for v in ph.params["vessels"])
    irr = make_heterogeneous(3, family="irregular", n_tumors=1, n_vessels=0, spacing=(3.0, 3.0, 3.0))
    assert irr.tumors[0]["shape"] == "randomwalk" and ph.tumors[0]["shape"] == "harmonic"
    assert "irregular" in EVALUATION_ONLY


def test_times_that_cannot_show_the_drawn_curve_give_the_curve_they_can_show():
    """Two post-contrast phases 0.6 min apart cannot show a persistent rise of more than 10 %: the exam is still
    made (it used to stop with "could not design a persistent curve"), its truth names the plateau those times
    show, and the tumor's mean signal changes by less than 10 % between the two phases."""
    times = [0.0, 2.4066, 3.034]
    ph = make_randomized(7000, n_lesions=1, curve="persistent", times_min=times, noise=0, motion_mm=0,
                         nonrigid_mm=0, **SMALL)
    assert [t["curve"] for t in ph.tumors] == ["plateau"]
    inside = arr(ph.tumor_labels) == 1
    early, late = (float(arr(p)[inside].mean()) for p in ph.exam.phases[1:])
    assert abs(late - early) / early < 0.10
    # a request the times can show is kept as drawn
    ok = make_randomized(7000, n_lesions=1, curve="persistent", times_min=[0.0, 1.5, 6.0], **SMALL)
    assert [t["curve"] for t in ok.tumors] == ["persistent"]


def test_heterogeneous_tumors_on_close_phases_get_the_curves_those_phases_show():
    """The heterogeneous families take the randomised exam's times: with two post-contrast phases 0.6 min apart a
    persistent curve cannot be designed (design_tumor_curve refuses it), the exam is made all the same and no
    tumor of its truth claims a persistent curve."""
    from BreastTumorSegLib.training.phantom.heterogeneous import make_heterogeneous
    from BreastTumorSegLib.training.phantom.kinetics import design_tumor_curve
    times = [0.0, 2.4066, 3.034]
    with pytest.raises(RuntimeError):
        design_tumor_curve(np.random.default_rng(0), "persistent", 1.0, times)
    ph = make_heterogeneous(7000, n_tumors=3, times_min=times, spacing=3.0)
    assert len(ph.tumors) == 3 and {t["curve"] for t in ph.tumors} <= {"plateau", "washout"}


@pytest.mark.parametrize("anatomy", ["axial", "sagittal"])
def test_irregular_tumors_in_real_anatomy_keep_its_geometry_and_whole_tumor_truth(real_anatomy_dir, anatomy):
    """The bench's hybrid-*-irregular rows: the irregular family's tumors inserted into the real volume."""
    from BreastTumorSegLib.kinetics.maps import choose_phases
    from BreastTumorSegLib.training.phantom.heterogeneous import make_hybrid_heterogeneous
    from BreastTumorSegLib.training.phantom.hybrid import make_hybrid

    base = make_hybrid(6001, anatomy=anatomy, n_lesions=0, data_dir=real_anatomy_dir)
    ph = make_hybrid_heterogeneous(6001, anatomy=anatomy, data_dir=real_anatomy_dir)
    grid, ref = ph.exam.reference, base.exam.reference
    assert (grid.GetSize(), grid.GetSpacing(), grid.GetOrigin(), grid.GetDirection()) == \
        (ref.GetSize(), ref.GetSpacing(), ref.GetOrigin(), ref.GetDirection())
    assert ph.tumors and all(t["shape"] == "randomwalk" for t in ph.tumors)
    truth = arr(ph.tumor_labels) > 0
    breast = arr(ph.breast_mask) > 0
    assert truth.any() and not (truth & ~breast).any()
    # outside the breast the real anatomy is untouched (inside, vessels thinner than a voxel leave
    # partial-volume signal beyond their own mask)
    assert np.array_equal(arr(ph.exam.phases[0])[~breast], arr(base.exam.phases[0])[~breast])
    assert not np.array_equal(arr(ph.exam.phases[0])[truth], arr(base.exam.phases[0])[truth])
    # heterogeneous enhancement inside the whole-tumor truth: moderate and strong parts (or a rim)
    early = choose_phases(ph.exam.times_min).early
    pre, post = arr(ph.exam.phases[0]), arr(ph.exam.phases[early])
    inner = ndimage.binary_erosion(truth)
    pe = (post - pre)[inner] / np.maximum(pre[inner], 1e-3)
    assert np.percentile(pe, 90) - np.percentile(pe, 10) > 0.3, np.percentile(pe, [10, 50, 90])
