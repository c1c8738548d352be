"""The synthetic DCE phantom: determinism, geometry, ground truth and kinetics are what they claim."""
from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from BreastTumorSegLib.core.errors import InputError
from BreastTumorSegLib.core.imageutil import same_grid
from BreastTumorSegLib.io.files import load_exam
from BreastTumorSegLib.io.images import read_image
from BreastTumorSegLib.training.phantom import classify_curve, early_late_phases, make_phantom, write_phantom
from BreastTumorSegLib.training.phantom.kinetics import CURVE_TYPES, design_tumor_curve

CLEAN = dict(noise=0.0, bias=0.0, motion_mm=0.0, ghosting=0.0)


def arr(img: sitk.Image) -> np.ndarray:
    return sitk.GetArrayFromImage(img)


@pytest.fixture(scope="module")
def clean_phantom():
    """Noise-, bias- and motion-free, six phases, one large washout mass and one plateau mass."""
    return make_phantom(11, n_phases=6, n_tumors=2, tumor_kind="mass", tumor_radius_mm=[12.0, 9.0],
                        curve=["washout", "plateau"], **CLEAN)


@pytest.fixture(scope="module")
def default_phantom():
    return make_phantom(5)


def core_mask(ph, label: int, iterations: int = 2) -> np.ndarray:
    m = arr(ph.tumor_labels) == label
    return ndimage.binary_erosion(m, iterations=iterations)


# ------------------------------------------------------------------------------ determinism
def test_same_seed_is_bit_identical_and_seeds_differ(default_phantom):
    again = make_phantom(5)
    assert default_phantom.exam.times_min == again.exam.times_min
    for a, b in zip(default_phantom.exam.phases, again.exam.phases):
        assert same_grid(a, b)
        assert np.array_equal(arr(a), arr(b))
    assert np.array_equal(arr(default_phantom.tumor_labels), arr(again.tumor_labels))
    assert np.array_equal(arr(default_phantom.breast_mask), arr(again.breast_mask))
    assert default_phantom.tumors == again.tumors
    assert default_phantom.params == again.params
    other = make_phantom(6)
    assert (other.exam.pre.GetSize() != default_phantom.exam.pre.GetSize()
            or not np.array_equal(arr(other.exam.pre), arr(default_phantom.exam.pre)))


def test_default_phantom_is_small_float32_with_times(default_phantom):
    e = default_phantom.exam
    assert e.case_id == "phantom_0005"
    assert 3 <= e.n_phases <= 7 and e.times_min[0] == 0.0
    assert 1.0 <= e.times_min[1] <= 2.5
    assert all(0.8 - 1e-6 <= b - a <= 2.0 + 1e-6 for a, b in zip(e.times_min[1:], e.times_min[2:]))
    assert np.prod(e.pre.GetSize()) <= 3_000_000
    assert all(p.GetPixelID() == sitk.sitkFloat32 for p in e.phases)
    assert 1 <= len(default_phantom.tumors) <= 2
    for key in ("spacing", "orientation", "gain", "bias", "noise", "times_min", "motion_mm", "anatomy"):
        assert key in default_phantom.params


# ------------------------------------------------------------------------------ geometry
@pytest.mark.parametrize("orientation", ["sagittal", "oblique"])
def test_grid_follows_requested_orientation_and_spacing(orientation):
    ph = make_phantom(3, orientation=orientation, spacing=(1.8, 1.8, 2.6), n_phases=2, **CLEAN)
    img = ph.exam.pre
    assert np.allclose(img.GetSpacing(), (1.8, 1.8, 2.6))
    d = np.asarray(img.GetDirection()).reshape(3, 3)
    assert np.allclose(d.T @ d, np.eye(3), atol=1e-6)
    assert not np.allclose(np.abs(d), np.eye(3), atol=1e-3)
    if orientation == "sagittal":
        assert abs(d[0, 2]) == pytest.approx(1.0)  # slices are stacked left-right
    else:
        angle = np.degrees(np.arccos(np.clip((np.trace(d) - 1) / 2, -1, 1)))
        assert 4.9 <= angle <= 20.01
    for m in (ph.tumor_mask, ph.tumor_labels, ph.breast_mask):
        assert same_grid(m, img) and m.GetPixelID() == sitk.sitkUInt8
    # the same patient whatever the acquisition: the tumor is where it was, with about its volume
    axial = make_phantom(3, orientation="axial", spacing=(1.8, 1.8, 2.6), n_phases=2, **CLEAN)
    for t_a, t_b in zip(axial.tumors, ph.tumors):
        assert np.allclose(t_a["center_lps"], t_b["center_lps"])
        assert t_b["volume_ml"] == pytest.approx(t_a["volume_ml"], rel=0.2)


def test_tumors_inside_breast_mask_and_heart_outside(clean_phantom):
    ph = clean_phantom
    tumor, breast = arr(ph.tumor_mask) > 0, arr(ph.breast_mask) > 0
    assert tumor.sum() > 0
    assert np.all(breast[tumor])
    # every tumor's recorded volume is its voxel count
    vox_ml = np.prod(ph.exam.pre.GetSpacing()) / 1000
    for t in ph.tumors:
        assert t["volume_ml"] == pytest.approx((arr(ph.tumor_labels) == t["label"]).sum() * vox_ml)
    # the heart (a ball of 20 mm around its centre) carries no breast label and enhances strongly
    h = ph.params["anatomy"]["heart"]
    center = np.add(h["center"], ph.params["patient_offset_mm"])
    grid = ph.exam.pre
    idx = np.indices(tumor.shape).reshape(3, -1)[::-1].T  # (i, j, k)
    pts = np.asarray(grid.GetOrigin()) + (idx * grid.GetSpacing()) @ np.asarray(grid.GetDirection()).reshape(3, 3).T
    ball = (np.linalg.norm(pts - center, axis=1) < 20).reshape(tumor.shape)
    assert ball.sum() > 100
    assert not breast[ball].any()
    pre, post = arr(ph.exam.pre), arr(ph.exam.phases[1])
    assert np.median(post[ball] / pre[ball] - 1) > 1.0


def test_breast_mask_covers_two_breasts():
    ph = make_phantom(8, n_phases=2, **CLEAN)
    lab, n = ndimage.label(arr(ph.breast_mask))
    sizes = np.bincount(lab.ravel())[1:]
    assert n == 2
    assert sizes.min() > 0.25 * sizes.max()


# ------------------------------------------------------------------------------ kinetics truth
def test_measured_enhancement_matches_truth_noise_free(clean_phantom):
    ph = clean_phantom
    phases = ph.exam.arrays()
    for t in ph.tumors:
        core = core_mask(ph, t["label"])
        assert core.sum() > 30
        measured = [float(np.mean(p[core] / phases[0][core] - 1)) for p in phases]
        assert measured == pytest.approx(t["enhancement"], abs=1e-4)
        assert t["pe_percent"] == pytest.approx([100 * e for e in t["enhancement"]])
        e, l = t["early_phase"], t["late_phase"]
        assert t["ser"] == pytest.approx(measured[e] / measured[l], rel=1e-3)


def test_measured_enhancement_matches_truth_with_noise_and_bias():
    ph = make_phantom(12, n_tumors=1, tumor_kind="mass", tumor_radius_mm=12.0, motion_mm=0.0, noise=0.03,
                      bias=0.2, n_phases=4)
    core = core_mask(ph, 1)
    phases = ph.exam.arrays()
    pre = phases[0][core].mean()
    measured = [float(p[core].mean() / pre - 1) for p in phases]
    # sigma is 3 % of fat, >= 3 % of tumor signal; the mean over > 100 voxels is within 1 %
    assert measured == pytest.approx(ph.tumors[0]["enhancement"], abs=0.03)


def test_curve_types_behave_as_defined(clean_phantom):
    ph = clean_phantom
    phases = ph.exam.arrays()
    for t in ph.tumors:
        core = core_mask(ph, t["label"])
        s = np.array([p[core].mean() for p in phases])
        enh = s / s[0] - 1
        e, l = t["early_phase"], t["late_phase"]
        signal_change = (s[l] - s[e]) / s[e]
        if t["curve"] == "washout":
            assert signal_change < -0.10 and (enh[l] - enh[e]) / enh[e] < -0.10
        elif t["curve"] == "plateau":
            assert np.all(np.abs(enh[e:] / enh[e] - 1) <= 0.10)
        assert classify_curve(enh[e], enh[l]) == t["curve"]


@pytest.mark.parametrize("kind", CURVE_TYPES)
def test_designed_curves_hold_for_random_acquisitions(kind):
    rng = np.random.default_rng(0)
    for _ in range(150):
        n = int(rng.integers(3, 9))
        times = np.concatenate([[0.0], rng.uniform(1.0, 2.5) + np.concatenate([[0.0], np.cumsum(rng.uniform(0.8, 2.0, n - 2))])])
        peak = float(rng.uniform(0.8, 2.5))
        c = design_tumor_curve(rng, kind, peak, times)
        e = c(times)
        early, late = early_late_phases(times)
        assert e[1:].max() == pytest.approx(peak)
        assert classify_curve(e[early], e[late], signal_based=True) == kind
        assert classify_curve(e[early], e[late], signal_based=False) == kind
        if kind == "persistent":
            assert np.all(np.diff(e[1:]) > 0)
        if kind == "plateau":
            assert np.all(np.abs(e[early:] / e[early] - 1) <= 0.10)


def test_early_late_phase_rules():
    assert early_late_phases([0, 1.5]) == (1, None)
    assert early_late_phases([0, 1.0, 2.1, 3.0, 4.5, 6.0, 7.3, 9.0]) == (2, 5)  # 6.0 is nearest 6.5
    assert early_late_phases([0, 1.2, 2.0]) == (1, 2)  # early moves off the last phase
    assert early_late_phases([0, 2.0, 3.5, 4.4]) == (1, 3)  # nothing late: the last phase
    try:
        from BreastTumorSegLib.kinetics.maps import choose_phases
    except ImportError:
        return
    rng = np.random.default_rng(1)
    for _ in range(200):  # the engine's kinetic maps pick the same phases
        n = int(rng.integers(2, 9))
        times = [0.0] + list(np.cumsum(rng.uniform(0.5, 2.5, n - 1)))
        ch = choose_phases(times)
        assert early_late_phases(times) == (ch.early, ch.late)


# ------------------------------------------------------------------------------ scanner effects
def test_gain_scales_signal_but_not_relative_enhancement():
    a = make_phantom(4, gain=1.0, n_phases=3, **CLEAN)
    b = make_phantom(4, gain=3.5, n_phases=3, **CLEAN)
    pa, pb = a.exam.arrays(), b.exam.arrays()
    body = pa[0] > 50
    assert np.allclose(pb[:, body], 3.5 * pa[:, body], rtol=1e-5)
    ra, rb = pa[1][body] / pa[0][body], pb[1][body] / pb[0][body]
    assert np.allclose(ra, rb, rtol=1e-5)
    assert a.tumors == b.tumors


def test_motion_transform_convention():
    still = make_phantom(9, n_phases=3, noise=0.0, bias=0.0, motion_mm=0.0)
    moved = make_phantom(9, n_phases=3, noise=0.0, bias=0.0, motion_mm=2.0)
    assert moved.motion[0].GetParameters() == pytest.approx([0.0] * 6)
    body = arr(still.exam.pre) > 100
    for k in (1, 2):
        ref = arr(still.exam.phases[k])
        raw = np.abs(arr(moved.exam.phases[k]) - ref)[body].mean()
        assert np.linalg.norm(moved.params["motion"][k]["translation_mm"]) > 0.2

        def err(transform):
            out = sitk.Resample(moved.exam.phases[k], moved.exam.reference, transform, sitk.sitkLinear, 0.0)
            return np.abs(arr(out) - ref)[body].mean()

        # the documented direction undoes the motion; the opposite one doubles it
        assert err(moved.motion[k]) < 0.8 * raw
        assert err(moved.motion[k].GetInverse()) > raw


# ------------------------------------------------------------------------------ writing
def test_write_phantom_folder_loads_back(tmp_path, default_phantom):
    ph = default_phantom
    paths = write_phantom(ph, tmp_path / "case")
    exam = load_exam(tmp_path / "case")
    assert exam.case_id == ph.case_id
    assert exam.times_min == pytest.approx(ph.exam.times_min)
    assert exam.n_phases == ph.exam.n_phases
    for a, b in zip(exam.phases, ph.exam.phases):
        assert same_grid(a, b)
        assert np.array_equal(arr(a), arr(b))
    gt = read_image(paths["tumor"])
    assert same_grid(gt, ph.exam.pre) and np.array_equal(arr(gt), arr(ph.tumor_mask))
    assert np.array_equal(arr(read_image(paths["breast"])), arr(ph.breast_mask))
    assert not any(p.name.startswith(".") for p in (tmp_path / "case").iterdir())
    with pytest.raises(FileExistsError):
        write_phantom(ph, tmp_path / "case", overwrite=False)


def test_write_phantom_mamamia_layout(tmp_path):
    ph = make_phantom(2, n_phases=3)
    paths = write_phantom(ph, tmp_path, layout="mamamia")
    case = ph.case_id
    assert paths["tumor"] == tmp_path / "segmentations" / "expert" / f"{case}.nii.gz"
    exam = load_exam(tmp_path / "images" / case)
    assert exam.times_min == pytest.approx(ph.exam.times_min)
    assert same_grid(exam.pre, read_image(paths["tumor"]))


def test_bad_overrides_raise_input_error():
    with pytest.raises(InputError):
        make_phantom(1, n_phases=9)
    with pytest.raises(InputError):
        make_phantom(1, orientation="upside-down")
    with pytest.raises(InputError):
        make_phantom(1, n_tumors=2, curve=["washout"])
    with pytest.raises(InputError):
        make_phantom(-1)


def test_no_tumor_phantom():
    ph = make_phantom(13, n_tumors=0, n_phases=2)
    assert ph.tumors == [] and arr(ph.tumor_mask).sum() == 0


def test_receive_field_matches_plane_wave_formula():
    """The factorised bias field equals the direct cos(k.x + phase) x coil formula on an oblique grid."""
    from BreastTumorSegLib.training.phantom import _receive_field
    from BreastTumorSegLib.training.phantom.geometry import VoxelGrid

    ph = make_phantom(3, orientation="oblique", n_phases=2, bias=0.2)
    acq = ph.params
    grid = VoxelGrid(ph.exam.pre, acq["patient_offset_mm"])
    field = _receive_field(grid, acq, 40.0)
    x, y, z = grid.coords(tuple(slice(0, n) for n in grid.shape))
    total = sum(w["weight"] for w in acq["bias_waves"])
    acc = sum(w["weight"] / total * np.cos(w["k_per_mm"][0] * x + w["k_per_mm"][1] * y + w["k_per_mm"][2] * z
                                           + w["phase"]) for w in acq["bias_waves"])
    coil = np.exp(-np.maximum(y - 40.0, 0) / acq["coil_length_mm"])
    expected = (1 + 0.2 * acc) * (acq["coil_floor"] + (1 - acq["coil_floor"]) * coil)
    assert np.abs(field - expected).max() < 1e-5
    assert expected.min() < 0.9  # the coil falloff is really there


def test_decoys_are_breast_findings_but_not_tumors():
    ph = make_phantom(1, n_phases=3, **CLEAN)
    kinds = [d["kind"] for d in ph.params["decoys"]]
    assert "cyst" in kinds and "lymph node" in kinds
    pre, post = ph.exam.pre, ph.exam.phases[1]
    for d in ph.params["decoys"]:
        center = np.add(d["center_anatomy_mm"], ph.params["patient_offset_mm"]).tolist()
        idx = pre.TransformPhysicalPointToIndex(center)
        assert ph.breast_mask.GetPixel(idx) == 1 and ph.tumor_mask.GetPixel(idx) == 0
        enh = post.GetPixel(idx) / pre.GetPixel(idx) - 1
        if d["kind"] == "cyst":  # dark on T1 and never enhancing
            assert pre.GetPixel(idx) < 350 and enh == pytest.approx(0.0, abs=1e-6)
        else:  # lymph node: enhances, but at most to its drawn peak
            assert 0.1 < enh <= d["peak_enhancement"] + 1e-6
    assert make_phantom(1, n_phases=2, decoys=False, **CLEAN).params["decoys"] == []


def test_cardiac_ghosts_are_faint_positive_copies_along_phase_encoding():
    base = dict(noise=0.0, bias=0.0, motion_mm=0.0, n_phases=2, n_tumors=0, decoys=False)
    off = make_phantom(0, ghosting=0.0, **base)
    on = make_phantom(0, ghosting=0.08, **base)
    diff = on.exam.arrays() - off.exam.arrays()
    assert diff.min() >= -1e-3
    assert diff[1].max() > diff[0].max() > 0  # the heart is brighter after contrast, so are its ghosts
    heart_max = off.exam.arrays()[1].max()
    assert diff.max() <= 0.08 * 1.5 * heart_max * 2 + 1e-3
    pe = 2 if on.params["phase_encode_axis"] == "i" else 1
    # ghosts are shifted copies along the phase-encoding axis only: the footprint on the other
    # in-plane axis stays within the heart's extent there
    rows = np.flatnonzero((diff[1] > 1e-3).any(axis=(0, pe)))
    heart_rows = np.flatnonzero((off.exam.arrays()[1] - off.exam.arrays()[0] > 300).any(axis=(0, pe)))
    assert rows.min() >= heart_rows.min() - 20 and rows.max() <= heart_rows.max() + 20
