"""Kinetic maps: phase choice from acquisition times, exact values on piecewise-constant volumes,
guards against near-zero signal, geometry, and agreement with the phantom's true kinetics."""
import importlib
import threading

import numpy as np
import pytest
import SimpleITK as sitk
from BreastTumorSegLib.core.errors import Cancelled
from BreastTumorSegLib.core.exam import DCEExam
from BreastTumorSegLib.kinetics.maps import (
    FAST,
    MEDIUM,
    NOT_ASSESSED,
    PERSISTENT,
    PLATEAU,
    SLOW,
    WASHOUT,
    KineticSettings,
    choose_phases,
    compute_kinetic_maps,
    mean_curve_kinetics,
)
from BreastTumorSegLib.core.progress import Reporter

OBLIQUE = tuple(sitk.VersorTransform((0.3, -0.2, 0.9), 0.5).GetMatrix())

# Relative enhancement per phase for four tissues (times 0, 1.5, 3, 4.5, 6 min).
TIMES = [0.0, 1.5, 3.0, 4.5, 6.0]
CURVES = {
    "washout": [0.0, 1.5, 1.4, 1.25, 1.1],     # PE 150 (fast), late 110: SER 1.364, change -0.16
    "plateau": [0.0, 0.8, 0.82, 0.83, 0.84],   # PE 80 (medium), change +0.022
    "persistent": [0.0, 0.4, 0.55, 0.7, 0.8],  # PE 40 (slow), change +0.286
    "flat": [0.0, 0.0, 0.0, 0.0, 0.0],
}


def block_exam(times=TIMES, curves=CURVES, direction=None, pre_value=200.0, air=True):
    """Four slabs of tissue along x, one per curve, plus a column of air (pre = 0)."""
    shape = (6, 8, 4 * 5 + 2)
    pre = np.full(shape, pre_value, np.float32)
    if air:
        pre[..., -2:] = 0.0
    phases = []
    for k in range(len(times)):
        img = pre.copy()
        for n, curve in enumerate(curves.values()):
            img[..., 5 * n:5 * n + 5] *= 1.0 + curve[k]
        phases.append(img)
    images = []
    for a in phases:
        im = sitk.GetImageFromArray(a)
        im.SetSpacing((0.8, 0.9, 2.0))
        im.SetOrigin((-40.0, 12.0, -7.5))
        if direction is not None:
            im.SetDirection(direction)
        images.append(im)
    return DCEExam(images, list(times), case_id="blocks")


def arr(img):
    return sitk.GetArrayFromImage(img)


# ------------------------------------------------------------------------------ phase choice
def test_phase_choice_uses_acquisition_times_not_indices():
    six = [0, 1.2, 2.4, 3.6, 4.8, 6.0, 7.2]
    c = choose_phases(six)
    assert (c.early, c.late, c.late_in_window) == (2, 5, True)  # 2.4 min inside 1.5-2.5, 6.0 nearest 6.5
    # Same number of phases, different times: different phases.
    c2 = choose_phases([0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0])
    assert c2.early == 4  # 2.0 min is the window centre
    assert c2.late == 6 and not c2.late_in_window  # nothing as late as 5 min: the last phase
    assert any("last phase" in n for n in c2.notes)
    c3 = choose_phases([0, 1.0, 5.5, 9.5])
    assert (c3.early, c3.late) == (1, 2)


def test_single_post_phase_has_no_ser_and_says_so():
    exam = block_exam(times=[0.0, 2.0], curves={k: v[:2] for k, v in CURVES.items()})
    maps = compute_kinetic_maps(exam)
    assert maps.ser is None and maps.pe_late is None
    assert not maps.info()["ser_available"]
    assert not np.any(arr(maps.curve_type))
    assert any("SER" in n for n in maps.notes)
    np.testing.assert_allclose(arr(maps.pe_early)[0, 0, 2], 150.0, rtol=1e-5)


def test_early_phase_moves_back_when_window_picks_the_last_phase():
    c = choose_phases([0.0, 1.0, 2.0])
    assert (c.early, c.late) == (1, 2)
    assert any("moved" in n for n in c.notes)


def test_unknown_times_are_flagged():
    exam = block_exam()
    exam.times_min = None
    maps = compute_kinetic_maps(exam)
    assert any("assumed" in n for n in maps.notes)


# ------------------------------------------------------------------------------ values
def test_maps_equal_analytic_values():
    maps = compute_kinetic_maps(block_exam())
    assert (maps.phases.early, maps.phases.late) == (1, 4)
    pe, ser, late = arr(maps.pe_early), arr(maps.ser), arr(maps.pe_late)
    curve, cls, ttp = arr(maps.curve_type), arr(maps.initial_class), arr(maps.time_to_peak_min)
    x = {name: 5 * n + 2 for n, name in enumerate(CURVES)}
    np.testing.assert_allclose(pe[..., x["washout"]], 150.0, rtol=1e-5)
    np.testing.assert_allclose(late[..., x["washout"]], 110.0, rtol=1e-5)
    np.testing.assert_allclose(ser[..., x["washout"]], 150.0 / 110.0, rtol=1e-5)
    np.testing.assert_allclose(ser[..., x["plateau"]], 0.8 / 0.84, rtol=1e-5)
    np.testing.assert_allclose(ser[..., x["persistent"]], 0.4 / 0.8, rtol=1e-5)
    assert np.all(curve[..., x["washout"]] == WASHOUT)
    assert np.all(curve[..., x["plateau"]] == PLATEAU)
    assert np.all(curve[..., x["persistent"]] == PERSISTENT)
    assert np.all(curve[..., x["flat"]] == NOT_ASSESSED)
    assert np.all(cls[..., x["washout"]] == FAST)
    assert np.all(cls[..., x["plateau"]] == MEDIUM)
    assert np.all(cls[..., x["persistent"]] == SLOW)
    np.testing.assert_allclose(ttp[..., x["washout"]], 1.5)
    np.testing.assert_allclose(ttp[..., x["persistent"]], 6.0)
    np.testing.assert_allclose(arr(maps.pe_peak)[..., x["plateau"]], 84.0, rtol=1e-5)


def test_near_zero_pre_contrast_is_guarded():
    exam = block_exam()
    maps = compute_kinetic_maps(exam)
    for name, img in maps.images().items():
        a = arr(img)
        assert np.all(np.isfinite(a)), name
        assert np.all(a[..., -2:] == 0), f"{name} not zero in air"
    assert np.all(arr(maps.valid)[..., -2:] == 0)
    # A voxel back at baseline on the late phase after strong early enhancement: SER is clipped, finite.
    curves = dict(CURVES, washout=[0.0, 1.5, 0.6, 0.2, 0.0])
    maps = compute_kinetic_maps(block_exam(curves=curves))
    s = KineticSettings()
    assert np.all(arr(maps.ser)[..., 2] == s.ser_clip)


def test_maps_keep_oblique_geometry():
    exam = block_exam(direction=OBLIQUE)
    maps = compute_kinetic_maps(exam)
    for img in list(maps.images().values()) + [maps.valid]:
        assert img.GetSize() == exam.pre.GetSize()
        np.testing.assert_allclose(img.GetDirection(), OBLIQUE, atol=1e-12)
        np.testing.assert_allclose(img.GetOrigin(), exam.pre.GetOrigin())
        np.testing.assert_allclose(img.GetSpacing(), exam.pre.GetSpacing())


def test_cancel_stops_the_computation():
    ev = threading.Event()
    ev.set()
    rep = Reporter(cancel=ev)
    with pytest.raises(Cancelled), rep.stage("predict"):
        compute_kinetic_maps(block_exam(), reporter=rep)


def test_mean_curve_kinetics_matches_voxel_rules():
    choice = choose_phases(TIMES)
    d = mean_curve_kinetics(TIMES, 200 * (1 + np.asarray(CURVES["washout"])), choice)
    assert d["curve_type"] == "washout" and d["initial_enhancement"] == "fast"
    assert d["ser"] == pytest.approx(150 / 110)
    assert d["time_to_peak_min"] == pytest.approx(1.5)


# ------------------------------------------------------------------------------ phantom
CODES = {"persistent": PERSISTENT, "plateau": PLATEAU, "washout": WASHOUT}


@pytest.mark.parametrize("seed,overrides", [
    (3, {}),                               # 6 phases
    (6, {"orientation": "sagittal"}),
    (4, {"orientation": "oblique"}),
    (5, {"n_phases": 2}),                  # one post-contrast phase: no SER, no curve type
])
def test_maps_match_phantom_truth(seed, overrides):
    """Per tumor, the median over its core (eroded by one voxel) equals the generator's early PE
    and SER within 5 % and the majority curve type is the generator's; phases chosen agree."""
    make_phantom = importlib.import_module("BreastTumorSegLib.training.phantom").make_phantom
    ph = make_phantom(seed, motion_mm=0, **overrides)
    maps = compute_kinetic_maps(ph.exam)
    pe, curve = arr(maps.pe_early), arr(maps.curve_type)
    checked = 0
    for t in ph.tumors:
        assert (maps.phases.early, maps.phases.late) == (t["early_phase"], t["late_phase"])
        core = arr(sitk.BinaryErode(ph.tumor_labels == t["label"], [1, 1, 1])) > 0
        if core.sum() < 20:  # too small to have a core at this spacing
            continue
        checked += 1
        assert np.median(pe[core]) == pytest.approx(t["pe_percent"][t["early_phase"]], rel=0.05)
        if t["ser"] is None:
            assert maps.ser is None and not curve.any()
            continue
        assert np.median(arr(maps.ser)[core]) == pytest.approx(t["ser"], rel=0.05)
        values, counts = np.unique(curve[core], return_counts=True)
        assert values[np.argmax(counts)] == CODES[t["curve"]]
    assert checked >= 1


# ------------------------------------------------------------------------------ curves and colours
def _sphere_exam(radius=6.0, spacing=(0.9, 0.9, 1.5), shape=(30, 48, 48)):
    """Tissue (pre 200, 10 % persistent background enhancement) with a washout sphere."""
    sz = np.asarray(spacing)[::-1]
    zz, yy, xx = np.ogrid[tuple(slice(0, n) for n in shape)]
    c = (np.asarray(shape) - 1) / 2.0
    r = np.sqrt(((zz - c[0]) * sz[0]) ** 2 + ((yy - c[1]) * sz[1]) ** 2 + ((xx - c[2]) * sz[2]) ** 2)
    inside = r <= radius
    bpe = [0.0, 0.04, 0.07, 0.09, 0.10]
    images = []
    for k in range(len(TIMES)):
        a = np.where(inside, 200.0 * (1 + CURVES["washout"][k]), 200.0 * (1 + bpe[k])).astype(np.float32)
        im = sitk.GetImageFromArray(a)
        im.SetSpacing(spacing)
        images.append(im)
    label = sitk.GetImageFromArray(inside.astype(np.uint8))
    label.CopyInformation(images[0])
    return DCEExam(images, list(TIMES), case_id="sphere"), label


def test_signal_time_curves_and_png():
    from BreastTumorSegLib.io.atomic import write_bytes
    from BreastTumorSegLib.kinetics.plots import plot_curves, signal_time_curves

    exam, label = _sphere_exam()
    maps = compute_kinetic_maps(exam)
    curves = signal_time_curves(exam, label, maps=maps)
    c = curves[1]
    np.testing.assert_allclose(c.lesion_pe_mean, 100 * np.asarray(CURVES["washout"]), atol=1e-3)
    np.testing.assert_allclose(c.background_pe_mean, [0, 4, 7, 9, 10], atol=1e-3)
    np.testing.assert_allclose(c.lesion_mean[0], 200.0)
    assert c.kinetics["curve_type"] == "washout" and c.n_background > c.n_lesion
    # With a background mask instead of the shell.
    everything = sitk.Image(label)
    everything = sitk.Cast(everything >= 0, sitk.sitkUInt8)
    cm = signal_time_curves(exam, label, background=everything, maps=maps)[1]
    assert cm.background == "mask" and cm.n_background == int(np.prod(label.GetSize())) - c.n_lesion
    png = plot_curves(curves, maps, title="sphere")
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as d:
        p = write_bytes(Path(d) / "curves.png", png)
        assert p.read_bytes() == png and sorted(x.name for x in Path(d).iterdir()) == ["curves.png"]


def test_ser_colour_tables_load_in_slicer_and_band_image():
    slicer = pytest.importorskip("slicer")
    import tempfile
    from pathlib import Path

    from BreastTumorSegLib.kinetics.plots import ser_band_image, ser_band_table, ser_ramp_table

    exam, label = _sphere_exam()
    maps = compute_kinetic_maps(exam)
    bands = ser_band_image(maps, label)
    b = arr(bands)
    assert set(np.unique(b)) == {0, 3}  # washout sphere (SER 1.36) only, nothing outside the mask
    np.testing.assert_allclose(bands.GetOrigin(), exam.pre.GetOrigin())
    with tempfile.TemporaryDirectory() as d:
        for name, text, n, first, last in (("ramp.ctbl", ser_ramp_table(), 256, (0, 0, 1), (1, 0, 0)),
                                           ("bands.ctbl", ser_band_table(), 4, (0, 0, 0), (230 / 255, 0, 0))):
            path = Path(d) / name
            path.write_text(text)
            node = slicer.vtkMRMLColorTableNode()
            storage = slicer.vtkMRMLColorTableStorageNode()
            storage.SetFileName(str(path))
            assert storage.ReadData(node) == 1
            assert node.GetNumberOfColors() == n
            rgba = [0.0] * 4
            node.GetColor(0, rgba)
            np.testing.assert_allclose(rgba[:3], first, atol=1e-6)
            node.GetColor(n - 1, rgba)
            np.testing.assert_allclose(rgba[:3], last, atol=1e-6)
