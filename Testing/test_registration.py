"""Motion correction recovers known phantom motion within one voxel."""
import numpy as np
import SimpleITK as sitk

from BreastTumorSegLib.core.exam import DCEExam
from BreastTumorSegLib.training.phantom import make_phantom
from BreastTumorSegLib.preprocess.registration import displacement_at, register_exam


def test_recovers_known_phantom_motion_within_one_voxel():
    ph = make_phantom(31, motion_mm=2.0, n_phases=4)
    corrected, qa = register_exam(ph.exam)
    voxel = min(ph.exam.reference.GetSpacing())
    center = ph.tumors[0]["center_lps"] if ph.tumors else ph.exam.reference.TransformContinuousIndexToPhysicalPoint(
        [s / 2 for s in ph.exam.reference.GetSize()])
    assert len(qa) == 3
    for q in qa:
        true = np.asarray(ph.motion[q["phase"]].TransformPoint(center)) - np.asarray(center)
        est = displacement_at(q["transform"], center) if q["accepted"] else np.zeros(3)
        assert np.linalg.norm(true - est) < voxel, (q, true, est)
        assert q["mi_after"] >= q["mi_before"]
    assert corrected.metadata["motion_corrected"]


def test_recovers_a_known_shift_on_real_anatomy(real_anatomy_dir):
    img = sitk.ReadImage(str(real_anatomy_dir / "AX_T1_BILAT.nii.gz"), sitk.sitkFloat32)
    img = img[32:224, 24:200, 40:150]  # crop for speed; geometry follows the crop
    shift = (2.5, -1.5, 1.0)  # mm
    moved = sitk.Resample(img, img, sitk.TranslationTransform(3, shift), sitk.sitkLinear, 0.0)
    corrected, qa = register_exam(DCEExam([img, moved], [0.0, 1.5]))
    est = displacement_at(qa[0]["transform"], img.TransformContinuousIndexToPhysicalPoint([96, 88, 55]))
    # The transform maps reference points into the moved phase: the displacement is -shift.
    np.testing.assert_allclose(est, -np.asarray(shift), atol=min(img.GetSpacing()))


# --------------------------------------------------------------------------- levels, bounds, one resampling
# Phantoms with known motion (training/phantom/motion.py); TRE = error on breast landmarks and tumour centres.
import pytest  # noqa: E402

from BreastTumorSegLib.core.exam import assemble_exam  # noqa: E402
from BreastTumorSegLib.preprocess import registration as reg  # noqa: E402
from BreastTumorSegLib.preprocess.registration import RegistrationSettings, register_exam_detailed  # noqa: E402
from BreastTumorSegLib.training.phantom.motion import make_moving_phantom  # noqa: E402

SMALL = dict(n_phases=2, spacing=2.5, noise=0.02)


@pytest.mark.parametrize("kind", ["rigid", "affine"])
def test_known_rigid_and_affine_motion_recovered_within_one_mm(kind):
    mp = make_moving_phantom(31, kind, **SMALL)
    _, qa, tx = register_exam_detailed(mp.exam, settings=RegistrationSettings(motion="affine"))
    before, after = mp.tre_mm(1, None), mp.tre_mm(1, tx[1])
    assert before.mean() > 2.0
    assert after.mean() < 1.0 and after.max() < 2.5, (before.mean(), after.mean(), after.max(), qa)
    assert qa[0]["motion_level"] in ("rigid", "affine") and qa[0]["accepted"]
    assert qa[0]["mi_after"] > qa[0]["mi_before"]


@pytest.fixture(scope="module")
def deformed():
    mp = make_moving_phantom(31, "deformable", **SMALL)
    linear = register_exam_detailed(mp.exam, settings=RegistrationSettings(motion="affine"))
    deform = register_exam_detailed(mp.exam, settings=RegistrationSettings(motion="deformable"))
    return mp, linear, deform


def test_non_rigid_breast_motion_recovered_better_than_affine(deformed):
    mp, (_, _, tx_aff), (_, qa, tx_def) = deformed
    before, aff, dfm = (mp.tre_mm(1, t).mean() for t in (None, tx_aff[1], tx_def[1]))
    q = qa[0]
    assert q["motion_level"] == "deformable", q
    assert dfm < 0.85 * aff and dfm < 1.0, (before, aff, dfm)
    assert q["min_jacobian"] > 0.5 and q["levels"]["deformable"]["accepted"]
    assert 0 < q["max_displacement_mm"] < 20


def test_lesion_volume_preserved_within_5_percent(deformed):
    """The tumour, moved like its phase, keeps its volume through the estimated transform (affine and deformable)."""
    mp, (_, _, tx_aff), (_, _, tx_def) = deformed
    truth = mp.true_lesion_volume_ml()
    assert truth > 0.2
    for tx in (tx_aff[1], tx_def[1]):
        assert abs(mp.lesion_volume_ml(1, tx) / truth - 1) < 0.05, (mp.lesion_volume_ml(1, tx), truth)


def test_affine_scaling_over_10_percent_is_rejected_and_reported():
    mp = make_moving_phantom(32, "affine", scale=1.15, **SMALL)
    _, qa, tx = register_exam_detailed(mp.exam, settings=RegistrationSettings(motion="affine"))
    q = qa[0]
    assert q["levels"]["affine"]["accepted"] is False
    assert "exceeds the 10% bound" in q["rejected"]["affine"]
    # the level kept is the rigid one (or none), and the transform returned is that level's
    assert q["motion_level"] in ("rigid", "none"), q["motion_level"]
    if q["motion_level"] == "rigid":
        assert tx[1] is not None and tx[1].GetName() == "Euler3DTransform", tx[1]
    else:
        assert tx[1] is None, tx[1]


def test_one_resampling_from_the_phase_as_acquired(monkeypatch):
    """A phase on another grid is interpolated once: from its own grid, through the registration transform."""
    ph = make_phantom(33, n_phases=2, spacing=3.0, noise=0.0, motion_mm=0.0)
    ref = ph.exam.phases[0]
    other = sitk.Resample(ph.exam.phases[1], ref.GetSize(), sitk.Transform(), sitk.sitkLinear,
                          [o + 0.5 * s for o, s in zip(ref.GetOrigin(), ref.GetSpacing())], ref.GetSpacing(),
                          ref.GetDirection(), 0.0, sitk.sitkFloat32)  # half a voxel off the reference grid
    exam = assemble_exam([ref, other], [0.0, 1.5], "c", ["pre", "post"])
    assert exam.metadata["resampled_phases"] == [1] and 1 in exam.native
    shift = sitk.TranslationTransform(3, (0.7, -0.4, 0.9))
    # register_phase works in the reference grid's frame (index_frame.py): the same shift expressed there
    to_frame = np.linalg.inv(np.reshape(ref.GetDirection(), (3, 3)))
    in_frame = sitk.TranslationTransform(3, tuple(to_frame @ (0.7, -0.4, 0.9)))
    monkeypatch.setattr(reg, "register_phase",
                        lambda *a, **k: reg.PhaseRegistration(in_frame, {"accepted": True}))
    out, qa, _ = register_exam_detailed(exam)
    once = sitk.GetArrayFromImage(sitk.Resample(other, ref, shift, sitk.sitkLinear, 0.0, sitk.sitkFloat32))
    twice = sitk.GetArrayFromImage(sitk.Resample(exam.phases[1], ref, shift, sitk.sitkLinear, 0.0, sitk.sitkFloat32))
    got = sitk.GetArrayFromImage(out.phases[1])
    np.testing.assert_array_equal(got, once)
    assert np.abs(got - twice).max() > 0  # the old path (resampled on load, then again) differs
    assert qa[0]["resampled_from"] == "native grid"


def test_a_rejected_level_is_shown_in_the_panel_warnings():
    from BreastTumorSegLib.slicer.logic import result_warnings

    summary = {"breast_mask_qa": {"used": "classical", "classical": {"plausible": True}}, "settings": {},
               "registration_qa": [{"phase": 1, "accepted": True, "motion_level": "rigid",
                                    "rejected": {"affine": "scale/shear 15.0% exceeds the 10% bound",
                                                 "deformable": "mutual information not raised"}}]}
    warnings = result_warnings(summary)
    assert any("phase 1: affine level rejected (scale/shear 15.0%" in w and "rigid level kept" in w for w in warnings)
    assert not any("deformable" in w for w in warnings)  # nothing gained is not worth a warning


def test_phases_registered_in_parallel_equal_one_at_a_time(monkeypatch):
    """Two phases are registered at a time (threads); every phase's result must not depend on it.
    Equal up to the order of ITK's threaded sums, which differs between any two runs (serial
    too): landmarks within 0.01 mm (two serial runs differ by up to ~2e-4 mm)."""
    mp = make_moving_phantom(34, "affine", n_phases=3, spacing=2.5, noise=0.02)
    runs = {}
    for workers in (1, 2):
        monkeypatch.setattr(reg, "PHASE_WORKERS", workers)
        runs[workers] = register_exam_detailed(mp.exam, settings=RegistrationSettings(motion="affine"))
    (out1, qa1, tx1), (out2, qa2, tx2) = runs[1], runs[2]
    assert [q["phase"] for q in qa1] == [q["phase"] for q in qa2] == [1, 2]
    assert [q["motion_level"] for q in qa1] == [q["motion_level"] for q in qa2] == ["affine", "affine"]
    for q1, q2 in zip(qa1, qa2):
        assert abs(q1["mi_after"] - q2["mi_after"]) < 1e-3 and q1["mi_before"] == q2["mi_before"]
    for k in (1, 2):
        np.testing.assert_allclose(mp.tre_mm(k, tx1[k]), mp.tre_mm(k, tx2[k]), atol=0.01)
        assert mp.tre_mm(k, tx2[k]).mean() < 0.5
        a, b = (sitk.GetArrayViewFromImage(o.phases[k]) for o in (out1, out2))
        # (voxels at the field of view's edge may fall in or out with a 1e-4 mm difference)
        assert np.mean(np.abs(a - b) > 1e-2 * float(np.abs(a).max())) < 1e-3
