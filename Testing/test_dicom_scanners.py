"""DICOM as scanners and PACS export DCE-MRI: the third sweep (docs/hostile-inputs-3.md).

Each test writes its exam in tmp_path with pydicom (or highdicom), the way a scanner or PACS
does, then requires the phantom back (every voxel within RescaleSlope/2, geometry, times) or
one InputError that names the file and the fix, with nothing read partially.
"""
from __future__ import annotations

import shutil

import dicom_fixtures as fx
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from BreastTumorSegLib.core.errors import InputError
from BreastTumorSegLib.io.dicom import reader as dicom
from BreastTumorSegLib.io.files import load_exam
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence
from test_dicom_reader import assert_same_exam

from test_dicom_other_software import NEEDS_PYDICOM_3, _gdcm_compress, _rewrite, small  # noqa: F401 (fixture)


@pytest.fixture(scope="module")
def other():
    """A second exam (another phantom, 4 phases): another patient's or a prior study's."""
    return fx.make_fixture_exam(seed=6, n_phases=4, size_xyz=(32, 32, 8))


def _error(folder, **kwargs) -> str:
    with pytest.raises(InputError) as err:
        load_exam(folder, **kwargs)
    msg = str(err.value)
    assert "Fix:" in msg and "Traceback" not in msg
    return msg


def _no_identifier(msg: str) -> None:
    for value in fx.FAKE_PATIENT.values():
        assert len(value) < 4 or value not in msg


# ------------------------------------------------------------------ (7) patients and studies
def test_two_patients_in_one_folder_are_refused_naming_a_file_of_each(small, other, tmp_path):
    """Before: the patient with more phases was loaded, the other ignored without a word."""
    a = fx.write_siemens_per_phase(small, tmp_path / "a")
    b = fx.write_siemens_per_phase(other, tmp_path / "b", first_series=40)
    _rewrite(b, lambda i, ds: (setattr(ds, "PatientID", "OTHER-PID"), setattr(ds, "PatientName", "Other^P"),
                               setattr(ds, "StudyInstanceUID", "1.2.826.0.1.3680043.8.498.77")))
    msg = _error(tmp_path)
    assert "2 different patients" in msg and "series 10" in msg and "series 40" in msg
    assert any(str(p) in msg for p in a) and any(str(p) in msg for p in b)
    assert "OTHER-PID" not in msg
    _no_identifier(msg)
    assert_same_exam(load_exam(tmp_path, series=[10, 11, 12]), small)  # one patient's series chosen


def test_two_patients_among_chosen_series_are_refused(small, other, tmp_path):
    fx.write_siemens_per_phase(small, tmp_path / "a")
    b = fx.write_siemens_per_phase(other, tmp_path / "b", first_series=40)
    _rewrite(b, lambda i, ds: setattr(ds, "PatientID", "OTHER-PID"))
    msg = _error(tmp_path, series=[10, 41])
    assert "2 different patients" in msg and "name one patient's series only" in msg


def test_one_patient_whose_name_archives_wrote_differently_is_one_patient(small, tmp_path):
    """Trailing empty name components and letter case differ between the phase series of one patient."""
    paths = fx.write_siemens_per_phase(small, tmp_path)
    nz = small.exam.pre.GetSize()[2]
    names = ["Fakename^Jane", "FAKENAME^JANE^^^", "fakename^jane"]
    _rewrite(paths, lambda i, ds: setattr(ds, "PatientName", names[i // nz]))
    assert_same_exam(load_exam(tmp_path), small)


def test_two_studies_of_one_patient_are_refused(small, other, tmp_path):
    """Today's exam and a prior in one folder: before, the one with more phases won silently."""
    fx.write_siemens_per_phase(small, tmp_path / "today")
    prior = fx.write_siemens_per_phase(other, tmp_path / "prior", first_series=40)
    _rewrite(prior, lambda i, ds: setattr(ds, "StudyInstanceUID", "1.2.826.0.1.3680043.8.498.78"))
    msg = _error(tmp_path)
    assert "2 different studies" in msg and "series 10" in msg and "series 40" in msg and "--series" in msg
    assert load_exam(tmp_path, series=[40, 41, 42, 43]).n_phases == 4


def test_a_prior_studys_localizer_does_not_make_two_exams(small, tmp_path):
    fx.write_siemens_per_phase(small, tmp_path / "today")
    extras = fx.write_extras(small, tmp_path / "prior")
    _rewrite(extras, lambda i, ds: setattr(ds, "StudyInstanceUID", "1.2.826.0.1.3680043.8.498.79"))
    assert_same_exam(load_exam(tmp_path), small)


# ------------------------------------------------------------------ (4) rescale and Philips' scale
def _philips_private(ds: Dataset, scale: float) -> None:
    ds.add_new(0x20050010, "LO", "Philips MR Imaging DD 001")
    ds.add_new(0x2005100E, "FL", scale)


CHANGE = [1.0, 2.5, 0.4]  # per phase: how much Philips' display scale differs from the true values


def test_philips_private_scale_slope_differing_per_phase_gives_floating_point_values(small, tmp_path):
    """Display values DV = stored x RS + RI are CHANGE[p] x truth; the floating-point values
    FP = DV / (RS x private scale slope) are the truth. Before: DV read, phases 1-2 off by x2.5 and x0.4."""
    paths = fx.write_siemens_per_phase(small, tmp_path)
    nz = small.exam.pre.GetSize()[2]

    def change(i, ds):
        c = CHANGE[i // nz]
        ds.Manufacturer = "Philips Medical Systems"
        rs, ri = float(ds.RescaleSlope), float(ds.RescaleIntercept)
        ds.RescaleSlope, ds.RescaleIntercept = fx._ds(rs * c), fx._ds(ri * c)
        _philips_private(ds, float(np.float32(1.0 / rs)))
    _rewrite(paths, change)
    exam = load_exam(tmp_path)
    assert_same_exam(exam, small)
    summary = exam.metadata["dicom"]
    assert "floating-point" in summary["intensity_scale"]
    assert any("(2005,100E)" in w and "differs between phases" in w for w in summary["warnings"])


def test_philips_enhanced_private_scale_in_the_per_frame_private_sequence(small, tmp_path):
    path = fx.write_philips_enhanced(small, tmp_path)
    ds = pydicom.dcmread(path)
    for item in ds.PerFrameFunctionalGroupsSequence:
        c = CHANGE[int(item.FrameContentSequence[0].TemporalPositionIndex) - 1]
        pvt = item.PixelValueTransformationSequence[0]
        rs, ri = float(pvt.RescaleSlope), float(pvt.RescaleIntercept)
        pvt.RescaleSlope, pvt.RescaleIntercept = fx._ds(rs * c), fx._ds(ri * c)
        inner = Dataset()
        _philips_private(inner, float(np.float32(1.0 / rs)))
        item.add_new(0x20050014, "LO", "Philips MR Imaging DD 005")
        item.add_new(0x2005140F, "SQ", DicomSequence([inner]))
    ds.save_as(path)
    exam = load_exam(tmp_path)
    assert_same_exam(exam, small)
    assert "floating-point" in exam.metadata["dicom"]["intensity_scale"]


def test_philips_private_scale_equal_in_every_phase_keeps_display_values(small, tmp_path):
    """RescaleSlope x scale slope the same in every phase: display values keep the phases' ratios."""
    paths = fx.write_siemens_per_phase(small, tmp_path)
    _rewrite(paths, lambda i, ds: _philips_private(ds, float(np.float32(3.0 / float(ds.RescaleSlope)))))
    exam = load_exam(tmp_path)
    assert_same_exam(exam, small)
    assert exam.metadata["dicom"]["intensity_scale"].startswith("display values")


def test_philips_private_scale_in_some_phases_only_is_refused(small, tmp_path):
    paths = fx.write_siemens_per_phase(small, tmp_path)
    nz = small.exam.pre.GetSize()[2]
    _rewrite(paths, lambda i, ds: _philips_private(ds, 2.0) if i >= nz else None)
    msg = _error(tmp_path)
    assert msg.startswith(str(paths[0].parent)) and "(2005,100E)" in msg


def test_an_image_without_rescale_tags_among_scaled_ones_is_refused(small, tmp_path):
    """Before: read unscaled (values 65 000 where the truth is ~1 000), no word said."""
    paths = fx.write_siemens_per_phase(small, tmp_path)
    _rewrite(paths, lambda i, ds: (delattr(ds, "RescaleSlope"), delattr(ds, "RescaleIntercept")) if i == 9 else None)
    msg = _error(tmp_path)
    assert msg.startswith(str(paths[9])) and "no RescaleSlope/RescaleIntercept" in msg


def test_no_rescale_tags_anywhere_reads_stored_values(small, tmp_path):
    paths = fx.write_siemens_per_phase(small, tmp_path)
    nz = small.exam.pre.GetSize()[2]
    stored_max = max(int(pydicom.dcmread(p).pixel_array.max()) for p in paths[:nz])
    _rewrite(paths, lambda i, ds: (delattr(ds, "RescaleSlope"), delattr(ds, "RescaleIntercept")))
    exam = load_exam(tmp_path)
    assert exam.n_phases == 3 and float(sitk.GetArrayFromImage(exam.phases[0]).max()) == stored_max


@pytest.mark.parametrize("slope", ["0", "nan"])
def test_a_zero_or_nan_rescale_slope_is_refused(small, tmp_path, slope):
    """Before: slope 0 was taken for 1 (values off by the true slope's inverse)."""
    paths = fx.write_siemens_per_phase(small, tmp_path)
    _rewrite(paths, lambda i, ds: setattr(ds, "RescaleSlope", slope) if i == 9 else None)
    msg = _error(tmp_path)
    assert msg.startswith(str(paths[9])) and "RescaleSlope" in msg


# ------------------------------------------------------------------ (8) scanner-made series
def test_subtraction_and_mip_series_are_left_out_with_a_note(small, tmp_path):
    fx.write_siemens_per_phase(small, tmp_path)
    fx.write_extras(small, tmp_path)  # a subtraction: ImageType DERIVED\PRIMARY\M\SUBTRACTION\NORM
    mip = fx.write_siemens_per_phase(small, tmp_path / "mip", first_series=60,
                                     descriptions=["t1_fl3d_tra_dyn_a", "t1_fl3d_tra_dyn_b", "t1_fl3d_tra_dyn_c"])
    _rewrite(mip, lambda i, ds: setattr(ds, "ImageType", ["DERIVED", "SECONDARY", "MIP"]))
    exam = load_exam(tmp_path)
    assert_same_exam(exam, small)
    notes = exam.metadata["dicom"]["notes"]
    assert any("series 30" in n and "SUBTRACTION" in n for n in notes)
    assert sum("ImageType DERIVED/SECONDARY/MIP" in n for n in notes) == 3  # the ImageType alone decides
    assert "note: series 30" in dicom.describe_plan(dicom.find_dce(tmp_path))


# ------------------------------------------------------------------ (5) orientation and geometry
def test_coronal_acquisition(tmp_path):
    fx.ORIENTATIONS.setdefault("coronal", np.column_stack([(1.0, 0.0, 0.0), (0.0, 0.0, -1.0), (0.0, 1.0, 0.0)]))
    truth = fx.make_fixture_exam(seed=2, n_phases=3, size_xyz=(32, 8, 32), orientation="coronal")
    fx.write_ge_multiphase(truth, tmp_path)
    assert_same_exam(load_exam(tmp_path), truth)


def test_gantry_tilt_is_refused_naming_a_file(small, tmp_path):
    """Before: the message named the series only."""
    paths = fx.write_siemens_per_phase(small, tmp_path)
    row = np.asarray(small.exam.pre.GetDirection()).reshape(3, 3)[:, 1]
    nz = small.exam.pre.GetSize()[2]
    by_slice = sorted(paths[:nz], key=lambda p: float(pydicom.dcmread(p).SliceLocation))
    _rewrite(by_slice, lambda k, ds: setattr(ds, "ImagePositionPatient", [
        fx._ds(v) for v in np.asarray(ds.ImagePositionPatient, float) + np.tan(np.radians(12)) * 4.0 * k * row]))
    msg = _error(tmp_path)
    assert "gantry tilt" in msg and str(by_slice[-1]) in msg


# ------------------------------------------------------------------ (6) other objects in the folder
@NEEDS_PYDICOM_3
def test_seg_and_presentation_state_in_the_folder_are_ignored(small, tmp_path):
    import highdicom as hd

    paths = fx.write_siemens_per_phase(small, tmp_path)
    nz = small.exam.pre.GetSize()[2]
    source = sorted((pydicom.dcmread(p) for p in paths[:nz]), key=lambda d: float(d.SliceLocation))
    mask = np.zeros((nz, 32, 32), bool)
    mask[3:5, 10:20, 10:20] = True
    segment = hd.seg.SegmentDescription(
        1, "tumor", hd.sr.CodedConcept("49755003", "SCT", "Morphologically Altered Structure"),
        hd.sr.CodedConcept("4147007", "SCT", "Mass"), hd.seg.SegmentAlgorithmTypeValues.MANUAL)
    hd.seg.Segmentation(source, mask, hd.seg.SegmentationTypeValues.BINARY, [segment], hd.UID(), 300, hd.UID(), 1,
                        "BreastTumorSeg test", "seg", "1", "0").save_as(tmp_path / "SEG0001")
    hd.pr.GrayscaleSoftcopyPresentationState(
        referenced_images=source[:1], series_instance_uid=hd.UID(), series_number=301, sop_instance_uid=hd.UID(),
        instance_number=1, manufacturer="test", manufacturer_model_name="test", software_versions="1",
        device_serial_number="1", content_label="PR").save_as(tmp_path / "PR0001")
    assert_same_exam(load_exam(tmp_path), small)
    plan = dicom.find_dce(tmp_path)
    assert any("Presentation State" in reason for _, reason in plan.scan.non_image)
    assert any(s.role == "not MR" and s.first.modality == "SEG" for s in plan.stacks)


# ------------------------------------------------------------------ (1)(2)(3) layouts and compression
def test_enhanced_mr_one_file_per_dynamic_in_one_series(small, tmp_path):
    src = fx.write_philips_enhanced(small, tmp_path / "src")
    ds = pydicom.dcmread(src)
    frames, n = ds.pixel_array, small.exam.n_phases
    for phase in range(n):
        keep = [k for k, item in enumerate(ds.PerFrameFunctionalGroupsSequence)
                if int(item.FrameContentSequence[0].TemporalPositionIndex) == phase + 1]
        one = pydicom.dcmread(src)
        one.PerFrameFunctionalGroupsSequence = DicomSequence([one.PerFrameFunctionalGroupsSequence[k] for k in keep])
        one.NumberOfFrames = len(keep)
        one.PixelData = np.ascontiguousarray(frames[keep]).tobytes()
        one.SOPInstanceUID = one.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
        one.save_as(tmp_path / f"DYN{phase}")
    shutil.rmtree(tmp_path / "src")
    exam = load_exam(tmp_path)
    assert_same_exam(exam, small)
    assert exam.metadata["dicom"]["phases"][0]["split_key"] == "TemporalPositionIndex"


def test_jpeg_lossless_process_14_written_by_gdcm(small, tmp_path):
    """The PACS default for lossless archives; decoded through SimpleITK's GDCM (a declared dependency)."""
    paths = fx.write_ge_multiphase(small, tmp_path)
    _gdcm_compress(paths, "JPEG")
    assert pydicom.dcmread(paths[0]).file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.4.70"
    assert_same_exam(load_exam(tmp_path), small)


@NEEDS_PYDICOM_3
def test_deflated_enhanced_mr(small, tmp_path):
    """Deflate hides the per-frame groups inside a compressed stream: nothing may be read from file offsets."""
    path = fx.write_philips_enhanced(small, tmp_path)
    ds = pydicom.dcmread(path)
    ds.file_meta.TransferSyntaxUID = pydicom.uid.DeflatedExplicitVRLittleEndian
    ds.save_as(path, enforce_file_format=True)
    assert_same_exam(load_exam(tmp_path), small)


@NEEDS_PYDICOM_3
def test_jpeg_xl_is_refused_naming_it_and_a_fix_that_can_work(small, tmp_path):
    """JPEG XL (2024): neither pydicom 2.4/3.0 nor GDCM decodes or names it. Before: "compressed as
    1.2.840.10008.1.2.4.112 (1.2.840.10008.1.2.4.112)" and a pip install that cannot help."""
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_file_meta_info

    paths = fx.write_ge_multiphase(small, tmp_path)
    _rewrite(paths, lambda i, ds: ds.compress(pydicom.uid.RLELossless))
    for p in paths:  # pydicom will not write a syntax it does not know: re-label the file meta by hand
        raw = p.read_bytes()
        meta = pydicom.dcmread(p, stop_before_pixels=True).file_meta
        old_length = 12 + int(meta.FileMetaInformationGroupLength)  # (0002,0000) itself is 12 bytes
        meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.112"
        buf = DicomBytesIO()
        buf.is_little_endian, buf.is_implicit_VR = True, False
        write_file_meta_info(buf, meta, enforce_standard=True)
        p.write_bytes(raw[:132] + buf.getvalue() + raw[132 + old_length:])
    msg = _error(tmp_path)
    assert any(msg.startswith(str(p)) for p in paths) and "JPEG XL" in msg
    assert "uncompressed" in msg and "pip install" not in msg
