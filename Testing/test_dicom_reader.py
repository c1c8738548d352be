"""The DICOM reader against phantoms written in three vendor layouts.

Each test writes a phantom exam as DICOM (see dicom_fixtures.py), loads it, and requires the
loaded exam to equal the phantom: every voxel within RescaleSlope/2 (integer storage), origin,
spacing and direction within 1e-4, phases in acquisition order with their times.
"""
from __future__ import annotations

import json
import shutil

import dicom_fixtures as fx
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from BreastTumorSegLib.io.dicom import reader as dicom
from BreastTumorSegLib.core.errors import InputError
from BreastTumorSegLib.io.files import load_exam

GEOMETRY_TOL = 1e-4  # mm (origin, spacing) and unitless (direction cosines)
TIME_TOL_MIN = 1e-4


def assert_same_exam(loaded, truth: fx.FixtureExam, check_times: bool = True) -> None:
    exam = truth.exam
    assert loaded.n_phases == exam.n_phases
    for i, (a, b) in enumerate(zip(loaded.phases, exam.phases)):
        assert a.GetSize() == b.GetSize(), f"phase {i} size"
        np.testing.assert_allclose(a.GetOrigin(), b.GetOrigin(), atol=GEOMETRY_TOL, rtol=0)
        np.testing.assert_allclose(a.GetSpacing(), b.GetSpacing(), atol=GEOMETRY_TOL, rtol=0)
        np.testing.assert_allclose(a.GetDirection(), b.GetDirection(), atol=GEOMETRY_TOL, rtol=0)
        va, vb = sitk.GetArrayFromImage(a), sitk.GetArrayFromImage(b)
        assert a.GetPixelID() == sitk.sitkFloat32
        # Integer storage: the round trip is exact to slope/2, plus the float32 rounding of the value.
        tol = truth.slopes[i] / 2 + 2 * np.spacing(np.float32(np.abs(vb).max()))
        err = np.abs(va.astype(np.float64) - vb.astype(np.float64)).max()
        assert err <= tol, f"phase {i}: max error {err} > slope/2 = {truth.slopes[i] / 2}"
    if check_times:
        np.testing.assert_allclose(loaded.times_min, exam.times_min, atol=TIME_TOL_MIN, rtol=0)
        assert loaded.metadata["times_assumed"] is False


@pytest.fixture(scope="module")
def ge_oblique(tmp_path_factory):
    truth = fx.make_fixture_exam(seed=2, orientation="oblique-axial")
    folder = tmp_path_factory.mktemp("ge")
    fx.write_ge_multiphase(truth, folder / "exam")
    fx.write_extras(truth, folder / "exam", vendor="ge")
    return truth, folder / "exam"


@pytest.fixture(scope="module")
def siemens_axial(tmp_path_factory):
    truth = fx.make_fixture_exam(seed=6, n_phases=5, orientation="axial", spacing=(2.5, 2.5, 3.0))
    folder = tmp_path_factory.mktemp("siemens")
    fx.write_siemens_per_phase(truth, folder / "exam", bolus_after_pre_s=20.0)
    fx.write_extras(truth, folder / "exam")
    return truth, folder / "exam"


@pytest.fixture(scope="module")
def philips_sagittal(tmp_path_factory):
    truth = fx.make_fixture_exam(seed=6, orientation="sagittal", size_xyz=(40, 36, 20))
    folder = tmp_path_factory.mktemp("philips")
    fx.write_philips_enhanced(truth, folder / "exam")
    return truth, folder / "exam"


# ------------------------------------------------------------------------------------ layouts
def test_ge_single_series_oblique_split_by_temporal_position(ge_oblique):
    truth, folder = ge_oblique
    exam = dicom.load_dicom_exam(folder)
    assert_same_exam(exam, truth)
    meta = exam.metadata["dicom"]
    assert meta["layout"].startswith("one series holding all phases")
    assert "TemporalPositionIdentifier" in meta["layout"]
    assert meta["time_source"] == "TriggerTime"  # AcquisitionTime is the series start in every phase
    roles = {s["series_number"]: s["role"] for s in meta["series"]}
    assert roles[7] == "DCE"
    assert roles[1] == "localizer" and roles[3] == "not T1-weighted" and roles[30] == "derived"


def test_siemens_series_per_phase_times_and_injection(siemens_axial):
    truth, folder = siemens_axial
    exam = dicom.load_dicom_exam(folder)
    assert_same_exam(exam, truth)
    meta = exam.metadata["dicom"]
    assert meta["layout"] == "one series per phase"
    assert meta["time_source"] == "AcquisitionTime"
    assert [p["series_number"] for p in meta["phases"]] == [10, 11, 12, 13, 14]
    # ContrastBolusStartTime is 20 s after the pre-contrast phase started.
    expected = np.asarray(truth.times_min) - 20.0 / 60.0
    np.testing.assert_allclose(meta["times_after_injection_min"], expected, atol=TIME_TOL_MIN)


def test_philips_enhanced_multiframe_sagittal(philips_sagittal):
    truth, folder = philips_sagittal
    exam = dicom.load_dicom_exam(folder)
    assert_same_exam(exam, truth)
    meta = exam.metadata["dicom"]
    assert meta["layout"].startswith("enhanced multi-frame, one series holding all phases")
    assert "TemporalPositionIndex" in meta["layout"]
    assert meta["time_source"] == "TemporalPositionTimeOffset"
    # Philips rescales every dynamic differently: the per-frame slopes must have been applied.
    assert len(set(truth.slopes)) == len(truth.slopes)


@pytest.mark.parametrize("time_tag,with_acq_number,expected_key", [
    ("AcquisitionTime", True, "AcquisitionTime"),
    ("ContentTime", False, "ContentTime"),
    ("ContentTime", True, "ContentTime"),
])
def test_single_series_split_by_times_or_acquisition_number(tmp_path, time_tag, with_acq_number, expected_key):
    truth = fx.make_fixture_exam(seed=2, n_phases=3)
    fx.write_siemens_single_series(truth, tmp_path, time_tag=time_tag, with_acq_number=with_acq_number)
    exam = dicom.load_dicom_exam(tmp_path)
    assert_same_exam(exam, truth)
    assert f"split by {expected_key}" in exam.metadata["dicom"]["layout"]
    assert exam.metadata["dicom"]["time_source"] == expected_key


def test_split_by_acquisition_number_when_times_are_per_slice(tmp_path):
    """2D-style timing: AcquisitionTime differs for every slice, so only AcquisitionNumber splits."""
    truth = fx.make_fixture_exam(seed=2, n_phases=3)
    paths = fx.write_siemens_single_series(truth, tmp_path, time_tag="AcquisitionTime", with_acq_number=True)
    for p in paths:
        ds = pydicom.dcmread(p)
        base = fx.parse_tm_seconds(ds.AcquisitionTime)
        k = int(round(float(ds.SliceLocation) * 1000)) % 97
        ds.AcquisitionTime = fx.seconds_to_tm(base + 0.35 * k)  # each slice at its own time in the phase
        ds.save_as(p)
    exam = dicom.load_dicom_exam(tmp_path)
    assert_same_exam(exam, truth, check_times=False)
    assert "split by AcquisitionNumber" in exam.metadata["dicom"]["layout"]
    # Phase time = its first slice: within the 0.35 s x 96 spread of the written slice times.
    np.testing.assert_allclose(exam.times_min, truth.times_min, atol=0.6)


def test_ge_trigger_time_only(tmp_path):
    truth = fx.make_fixture_exam(seed=2, n_phases=4)
    fx.write_ge_multiphase(truth, tmp_path, tags_per_phase=["TriggerTime"])
    exam = dicom.load_dicom_exam(tmp_path)
    assert_same_exam(exam, truth)
    assert "split by TriggerTime" in exam.metadata["dicom"]["layout"]


def test_no_temporal_tags_falls_back_to_instance_order_and_says_so(tmp_path):
    truth = fx.make_fixture_exam(seed=2, n_phases=3)
    fx.write_ge_multiphase(truth, tmp_path, tags_per_phase=[])  # only series-start times, no temporal tags
    for p in tmp_path.rglob("IM*"):
        ds = pydicom.dcmread(p)
        del ds.AcquisitionNumber
        ds.save_as(p)
    exam = dicom.load_dicom_exam(tmp_path)
    assert_same_exam(exam, truth, check_times=False)
    assert exam.times_min is None and exam.metadata["times_assumed"] is True
    assert any("assumed" in w for w in exam.metadata["dicom"]["warnings"])


def test_phase_order_follows_time_not_series_number(tmp_path):
    truth = fx.make_fixture_exam(seed=2, n_phases=4)
    fx.write_siemens_per_phase(truth, tmp_path, first_series=10)
    # Renumber: the pre-contrast series gets the highest number, the post-contrast ones count down.
    for p in tmp_path.rglob("*.dcm"):
        ds = pydicom.dcmread(p)
        ds.SeriesNumber = 100 - ds.SeriesNumber
        ds.save_as(p)
    exam = dicom.load_dicom_exam(tmp_path)
    assert_same_exam(exam, truth)
    assert [ph["series_number"] for ph in exam.metadata["dicom"]["phases"]] == [90, 89, 88, 87]


def test_duplicate_instances_are_read_once(tmp_path, ge_oblique):
    truth, folder = ge_oblique
    work = tmp_path / "exam"
    shutil.copytree(folder, work)
    copies = sorted((work / "007").iterdir())[:10]
    (work / "copy").mkdir()
    for p in copies:
        shutil.copy(p, work / "copy" / (p.name + "_dup"))
    exam = dicom.load_dicom_exam(work)
    assert_same_exam(exam, truth)
    assert any("10 duplicate" in w for w in exam.metadata["dicom"]["warnings"])


def test_rle_compressed_files(tmp_path):
    """Compressed transfer syntaxes are decoded (pydicom's RLE codec here), not read as raw bytes."""
    from pydicom.uid import RLELossless

    truth = fx.make_fixture_exam(seed=2, n_phases=3, size_xyz=(32, 32, 8))
    paths = fx.write_ge_multiphase(truth, tmp_path)
    for p in paths[::2]:
        ds = pydicom.dcmread(p)
        ds.compress(RLELossless)
        ds.save_as(p)
    assert pydicom.dcmread(paths[0]).file_meta.TransferSyntaxUID == RLELossless
    assert_same_exam(dicom.load_dicom_exam(tmp_path), truth)


def test_big_endian_and_implicit_vr_files(tmp_path):
    truth = fx.make_fixture_exam(seed=2, n_phases=2, size_xyz=(24, 20, 6))
    paths = fx.write_siemens_per_phase(truth, tmp_path)
    for i, p in enumerate(paths):
        ds = pydicom.dcmread(p)
        if i % 2:
            ds.file_meta.TransferSyntaxUID = pydicom.uid.ImplicitVRLittleEndian
            fx.save(ds, p, implicit_vr=True)
        else:  # retired, still found in old archives; 16-bit words are stored big endian too
            ds.PixelData = ds.pixel_array.astype(">u2").tobytes()
            ds.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRBigEndian
            fx.save(ds, p, little_endian=False)
    assert pydicom.dcmread(paths[0]).file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRBigEndian
    assert_same_exam(dicom.load_dicom_exam(tmp_path), truth)


@pytest.mark.parametrize("implicit_vr,keep_file_meta", [(True, False), (False, False), (True, True)],
                         ids=["implicit-no-meta", "explicit-no-meta", "implicit-with-meta"])
def test_files_without_preamble(tmp_path, implicit_vr, keep_file_meta):
    """Some software writes the data set from byte 0: no preamble, no DICM marker, often no file meta.
    Such files are found, decoded in the encoding they were written in, and give the same exam."""
    truth = fx.make_fixture_exam(seed=2, n_phases=2, size_xyz=(24, 20, 6))
    paths = fx.write_siemens_per_phase(truth, tmp_path)
    for p in paths:
        fx.rewrite_without_preamble(p, implicit_vr=implicit_vr, keep_file_meta=keep_file_meta)
    head = paths[0].read_bytes()[:132]
    assert head[128:132] != b"DICM" and head[:2] in (b"\x02\x00", b"\x08\x00")
    assert_same_exam(dicom.load_dicom_exam(tmp_path), truth)
    assert_same_exam(load_exam(tmp_path), truth)  # the folder is recognised as DICOM, not as phase files


# ------------------------------------------------------------------------------------ options
def test_user_times_override_and_count_check(siemens_axial):
    truth, folder = siemens_axial
    given = [0.0, 2.0, 4.0, 6.0, 8.0]
    exam = dicom.load_dicom_exam(folder, times_min=given)
    assert exam.times_min == given and exam.metadata["times_source"] == "user"
    with pytest.raises(InputError, match="5 DCE phases"):
        dicom.load_dicom_exam(folder, times_min=[0.0, 1.0])


def test_series_selection_restricts_and_includes_ignored(siemens_axial):
    truth, folder = siemens_axial
    exam = dicom.load_dicom_exam(folder, series=[10, 12])
    assert exam.n_phases == 2
    np.testing.assert_allclose(exam.times_min, [0.0, truth.times_min[2]], atol=TIME_TOL_MIN)
    # The scanner's subtraction is ignored automatically but used when named.
    exam = dicom.load_dicom_exam(folder, series=[10, 30])
    assert [p["series_number"] for p in exam.metadata["dicom"]["phases"]] == [10, 30]
    with pytest.raises(InputError, match="none of the requested series"):
        dicom.load_dicom_exam(folder, series=[77])


def test_io_load_exam_delegates_dicom_folders(philips_sagittal):
    truth, folder = philips_sagittal
    exam = load_exam(folder)
    assert_same_exam(exam, truth)
    assert exam.case_id == "exam"  # the folder's name, never a DICOM patient attribute


def test_metadata_is_json_safe_and_free_of_identifiers(ge_oblique, siemens_axial):
    for truth, folder in (ge_oblique, siemens_axial):
        exam = dicom.load_dicom_exam(folder)
        text = json.dumps(exam.metadata["dicom"]) + repr(exam.metadata["dicom_source"]) + " ".join(exam.sources)
        for value in fx.FAKE_PATIENT.values():
            assert value not in text
        assert fx.STUDY_DATE not in text
        for uid in exam.metadata["dicom_source"].series_uids:
            assert uid not in text
        src = exam.metadata["dicom_source"]
        assert len(src.reference_files) == exam.pre.GetSize()[2]


def test_explicit_file_list_as_a_host_application_has_it(siemens_axial):
    """Slicer's DICOM database gives files per series: a list of files loads like a folder."""
    truth, folder = siemens_axial
    files = sorted(p for d in folder.iterdir() if d.name[:3] in {"010", "011", "012", "013", "014"}
                   for p in d.iterdir())
    exam = dicom.load_dicom_exam(files)
    assert_same_exam(exam, truth)
    assert exam.case_id == "exam"
    with pytest.raises(InputError, match="do not exist"):
        dicom.load_dicom_exam([*files, folder / "nope.dcm"])


def test_folder_has_dicom(tmp_path, philips_sagittal):
    assert dicom.folder_has_dicom(philips_sagittal[1])
    (tmp_path / "notes.txt").write_text("not DICOM")
    assert not dicom.folder_has_dicom(tmp_path)
