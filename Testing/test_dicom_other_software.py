"""DICOM exams as other software writes them: converters, research tools and viewers' exports.

Each test writes a phantom exam (dicom_fixtures.py) the way that software does, loads it, and
requires either the phantom back (every voxel within RescaleSlope/2, geometry within 1e-4, the
phase times) or one InputError naming the file and the fix.
"""
from __future__ import annotations

import dataclasses
import shutil

import dicom_fixtures as fx
import numpy as np
import pydicom
import pytest
from BreastTumorSegLib.core.errors import InputError
from BreastTumorSegLib.io.dicom import reader as dicom
from BreastTumorSegLib.io.files import load_exam
from test_dicom_reader import assert_same_exam


# Fixtures written with what only pydicom 3 has (a JPEG-LS encoder, HTJ2K's UID, highdicom 0.28): under
# Slicer's pydicom 2.4 (scripts/test_with_slicer_pins.sh) Testing/test_slicer_versions.py writes them with
# pydicom 3 and reads them with pydicom 2.4.
NEEDS_PYDICOM_3 = pytest.mark.skipif(int(pydicom.__version__.split(".")[0]) < 3,
                                     reason="the fixture is written with pydicom 3 (JPEG-LS encoder, HTJ2K, "
                                            "highdicom 0.28); test_slicer_versions reads such files with pydicom 2.4")


@pytest.fixture(scope="module")
def small():
    return fx.make_fixture_exam(seed=2, n_phases=3, size_xyz=(32, 32, 8))


def _rewrite(paths, change) -> None:
    for i, p in enumerate(paths):
        ds = pydicom.dcmread(p)
        change(i, ds)
        ds.save_as(p)


@NEEDS_PYDICOM_3
def test_highdicom_legacy_converted_enhanced_mr_one_file_all_phases(small, tmp_path):
    """highdicom's legacy converter puts a GE series (all phases) into one Legacy Converted Enhanced MR
    file; TemporalPositionIdentifier and TriggerTime go to the unassigned per-frame groups, and its
    FrameAcquisitionDateTime adds the trigger time as days (phase 2 lands in the year 2406)."""
    import highdicom as hd

    paths = fx.write_ge_multiphase(small, tmp_path / "classic")
    legacy = hd.legacy.LegacyConvertedEnhancedMRImage(
        [pydicom.dcmread(p) for p in paths], series_instance_uid=hd.UID(), series_number=99,
        sop_instance_uid=hd.UID(), instance_number=1)
    (tmp_path / "converted").mkdir()
    legacy.save_as(tmp_path / "converted" / "legacy.dcm")
    exam = load_exam(tmp_path / "converted")
    assert_same_exam(exam, small)  # phases split by TemporalPositionIdentifier, times from TriggerTime
    assert exam.metadata["dicom"]["phases"][0]["split_key"] == "TemporalPositionIndex"


def test_implausible_frame_datetimes_are_not_used_as_phase_times(small, tmp_path):
    """Frame acquisition date/times days apart (a broken converter) still split the phases, but are
    not taken as times: the times are assumed, and the plan says why."""
    path = fx.write_philips_enhanced(small, tmp_path)
    ds = pydicom.dcmread(path)
    for pf in ds.PerFrameFunctionalGroupsSequence:
        content = pf.FrameContentSequence[0]
        p = int(content.TemporalPositionIndex) - 1
        for key in ("TemporalPositionIndex", "FrameAcquisitionNumber", "FrameReferenceDateTime"):
            delattr(content, key)
        del pf.TemporalPositionSequence
        content.FrameAcquisitionDateTime = f"202403{15 + 3 * p:02d}094107.25"
    ds.save_as(path)
    exam = load_exam(tmp_path)
    assert_same_exam(exam, small, check_times=False)
    assert exam.times_min is None and exam.metadata["times_assumed"] is True
    warnings = " ".join(exam.metadata["dicom"]["warnings"])
    assert "FrameAcquisitionDateTime values span 8640 min" in warnings and "not used" in warnings


def _to_float_pixel_data(keyword: str, bits: int, dtype):
    def change(i, ds):
        values = ds.pixel_array.astype(np.float64) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
        del ds.PixelData
        setattr(ds, keyword, values.astype(dtype).tobytes())
        ds.BitsAllocated = bits
        for key in ("BitsStored", "HighBit", "PixelRepresentation", "RescaleSlope", "RescaleIntercept"):
            delattr(ds, key)
    return change


@pytest.mark.parametrize("keyword,bits,dtype", [("FloatPixelData", 32, np.float32),
                                                ("DoubleFloatPixelData", 64, np.float64)])
def test_float_pixel_data_is_read(small, tmp_path, keyword, bits, dtype):
    paths = fx.write_siemens_per_phase(small, tmp_path)
    _rewrite(paths, _to_float_pixel_data(keyword, bits, dtype))
    assert keyword in pydicom.dcmread(paths[0]) and "PixelData" not in pydicom.dcmread(paths[0])
    assert_same_exam(load_exam(tmp_path), small)


def test_float_pixel_data_with_nan_is_refused_naming_the_file(small, tmp_path):
    paths = fx.write_siemens_per_phase(small, tmp_path)
    to_float = _to_float_pixel_data("FloatPixelData", 32, np.float32)

    def change(i, ds):
        to_float(i, ds)
        if i == 5:
            values = np.frombuffer(ds.FloatPixelData, np.float32).copy()
            values[7] = np.nan
            ds.FloatPixelData = values.tobytes()
    _rewrite(paths, change)
    with pytest.raises(InputError) as err:
        load_exam(tmp_path)
    msg = str(err.value)
    assert str(paths[5]) in msg and "NaN or infinite" in msg and "Fix:" in msg


# ------------------------------------------------------------------------------------ compression
def _gdcm_compress(paths, compressor: str) -> None:
    """Re-write each file with SimpleITK's GDCM writer, as a PACS or viewer export would.

    GDCM's JPEG 2000 writer sets the C library's LC_CTYPE to "C" (Python's default text encoding
    becomes ASCII for the rest of the process); the locale is put back afterwards."""
    import locale

    import SimpleITK as sitk

    saved = locale.setlocale(locale.LC_ALL)
    try:
        _gdcm_write(paths, compressor, sitk)
    finally:
        locale.setlocale(locale.LC_ALL, saved)


def _gdcm_write(paths, compressor: str, sitk) -> None:

    for p in paths:
        info = sitk.ImageFileReader()
        info.SetFileName(str(p))
        info.ReadImageInformation()
        img = sitk.ReadImage(str(p))
        for key in info.GetMetaDataKeys():
            img.SetMetaData(key, info.GetMetaData(key))
        writer = sitk.ImageFileWriter()
        writer.SetImageIO("GDCMImageIO")
        writer.KeepOriginalImageUIDOn()
        writer.SetUseCompression(True)
        writer.SetCompressor(compressor)
        writer.SetFileName(str(p))
        writer.Execute(img)


def test_jpeg2000_files_written_by_gdcm(small, tmp_path):
    paths = fx.write_ge_multiphase(small, tmp_path)
    _gdcm_compress(paths, "JPEG2000")
    assert "JPEG 2000" in pydicom.dcmread(paths[0]).file_meta.TransferSyntaxUID.name
    assert_same_exam(load_exam(tmp_path), small)


@NEEDS_PYDICOM_3
def test_jpeg_ls_files(small, tmp_path):
    pytest.importorskip("jpeg_ls")  # pydicom's JPEG-LS encoder plugin (pyjpegls)
    paths = fx.write_siemens_per_phase(small, tmp_path)
    _rewrite(paths, lambda i, ds: ds.compress(pydicom.uid.JPEGLSLossless))
    assert_same_exam(load_exam(tmp_path), small)


def _undecodable(small, folder):
    """Pixel data labelled High-Throughput JPEG 2000 that no installed decoder can read."""
    paths = fx.write_ge_multiphase(small, folder)

    def change(i, ds):
        ds.compress(pydicom.uid.RLELossless)
        ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.201"
    _rewrite(paths, change)
    return paths


@NEEDS_PYDICOM_3
def test_undecodable_compression_is_refused_naming_the_file_and_the_fix(small, tmp_path):
    paths = _undecodable(small, tmp_path)
    with pytest.raises(InputError) as err:
        load_exam(tmp_path)
    msg = str(err.value)
    assert any(str(p) in msg for p in paths) and "High-Throughput JPEG 2000" in msg
    assert "pip install pylibjpeg" in msg and "gdcmconv --raw" in msg


@NEEDS_PYDICOM_3
def test_undecodable_compression_in_the_segment_command_is_one_line(small, tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    _undecodable(small, tmp_path / "exam")
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1] / "BreastTumorSeg"),
               OMP_NUM_THREADS="1")
    run = subprocess.run([sys.executable, "-m", "BreastTumorSegLib.cli", "segment", str(tmp_path / "exam"),
                          "--output", str(tmp_path / "out"), "--progress", "none"], env=env, capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 2, run.stderr
    lines = [ln for ln in run.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "High-Throughput JPEG 2000" in lines[0]  # GDCM's own complaints held back
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------------------------ tags
def test_wrong_slice_thickness_per_file_rescale_and_signed_12_bit(small, tmp_path):
    """SliceThickness/SpacingBetweenSlices that contradict the positions (positions win), a
    different RescaleSlope/Intercept in every file, and negative values in 12-bit two's complement."""
    paths = fx.write_ge_multiphase(small, tmp_path)

    def change(i, ds):
        values = ds.pixel_array.astype(np.float64) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
        slope, intercept = 0.5 + 0.25 * (i % 3), 600.0 + 7 * (i % 2)
        stored = np.rint((values - intercept) / slope)
        assert stored.min() < 0 and -2048 <= stored.min() and stored.max() < 2048
        ds.PixelData = (stored.astype(np.int16) & 0x0FFF).astype(np.uint16).tobytes()
        ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 12, 11, 1
        ds.RescaleSlope, ds.RescaleIntercept = fx._ds(slope), fx._ds(intercept)
        ds.SliceThickness = ds.SpacingBetweenSlices = "1.5"
    _rewrite(paths, change)
    # Stored twice (the writer's slope, then these up to 1.0): the tolerance is the sum of both halves.
    twice = dataclasses.replace(small, slopes=[1.0 + s for s in small.slopes])
    assert_same_exam(load_exam(tmp_path), twice)


@pytest.mark.parametrize("charset,description", [
    ("ISO_IR 192", "Müller^Zoë 乳腺"), ("ISO_IR 144", "Иванова^Анна"), (["", "ISO 2022 IR 87"], "ヤマダ^タロウ"),
    ("GB18030", "王^小红"), ("ISO_IR 100", "Lövgren^Åsa")], ids=["utf8", "cyrillic", "japanese", "gb18030", "latin1"])
def test_non_ascii_character_sets(small, tmp_path, charset, description):
    paths = fx.write_siemens_per_phase(small, tmp_path)

    def change(i, ds):
        ds.SpecificCharacterSet = charset
        ds.PatientName = description
        ds.SeriesDescription = f"{description} {ds.SeriesNumber}"
    _rewrite(paths, change)
    exam = load_exam(tmp_path)
    assert_same_exam(exam, small)
    names = [p["series_description"] for p in exam.metadata["dicom"]["phases"]]
    assert names == [f"{description} {10 + i}" for i in range(3)]


@pytest.mark.filterwarnings("ignore:Unknown encoding")
def test_unknown_character_set_is_read(small, tmp_path):
    paths = fx.write_siemens_per_phase(small, tmp_path)
    _rewrite(paths, lambda i, ds: setattr(ds, "SpecificCharacterSet", "ISO_IR 999"))
    assert_same_exam(load_exam(tmp_path), small)


def test_dicomdir_and_stray_files_of_a_viewer_export(small, tmp_path):
    """A media export: DICOMDIR plus renamed files below it, and the files desktops leave behind."""
    from pydicom.fileset import FileSet

    paths = fx.write_siemens_per_phase(small, tmp_path / "src")
    fs = FileSet()
    for p in paths:
        fs.add(p)
    export = tmp_path / "export"
    fs.write(export)
    (export / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1" + bytes(200))
    (export / "Thumbs.db").write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(500))
    (export / "AUTORUN.INF").write_text("[autorun]\n")
    assert (export / "DICOMDIR").is_file()
    assert_same_exam(load_exam(export), small)
    shutil.rmtree(tmp_path / "src")
    plan = dicom.find_dce(export)
    assert plan.scan.not_dicom == 2 and len(plan.scan.non_image) == 1  # Thumbs.db, AUTORUN.INF; DICOMDIR


# ------------------------------------------------------------------------------------ geometry tags
def _error(folder) -> str:
    with pytest.raises(InputError) as err:
        load_exam(folder)
    return str(err.value)


def test_missing_pixel_spacing_names_the_tag_and_a_file(small, tmp_path):
    paths = fx.write_siemens_per_phase(small, tmp_path)
    _rewrite(paths, lambda i, ds: delattr(ds, "PixelSpacing"))
    msg = _error(tmp_path)
    assert "PixelSpacing missing" in msg and any(str(p) in msg for p in paths) and "Fix: re-export" in msg


def test_all_zero_orientation_is_named_not_called_too_few_slices(small, tmp_path):
    paths = fx.write_siemens_per_phase(small, tmp_path)
    _rewrite(paths, lambda i, ds: setattr(ds, "ImageOrientationPatient", ["0"] * 6))
    msg = _error(tmp_path)
    assert "ImageOrientationPatient" in msg and "holds no direction" in msg and "too few slices" not in msg


def test_one_file_without_orientation_is_named_not_reported_as_a_missing_slice(small, tmp_path):
    paths = fx.write_siemens_per_phase(small, tmp_path)
    _rewrite(paths, lambda i, ds: delattr(ds, "ImageOrientationPatient") if i == 3 else None)
    msg = _error(tmp_path)
    assert msg.startswith(str(paths[3])) and "ImageOrientationPatient missing" in msg and "missing: a gap" not in msg


def test_a_phase_in_another_orientation_is_left_out_with_a_warning(small, tmp_path):
    """A phase series whose orientation differs (here by 1 degree) is not silently dropped."""
    paths = fx.write_siemens_per_phase(small, tmp_path)
    nz = small.exam.pre.GetSize()[2]
    tilted = ["1", "0", "0", "0", "0.99985", "0.017452"]
    _rewrite(paths, lambda i, ds: setattr(ds, "ImageOrientationPatient", tilted) if i >= 2 * nz else None)
    exam = load_exam(tmp_path)
    assert exam.n_phases == 2
    warnings = " ".join(exam.metadata["dicom"]["warnings"])
    assert "series 12" in warnings and "another orientation" in warnings and "--series" in warnings


# ------------------------------------------------------------------------------------ enhanced MR variants
_CONTENT_TIME_TAGS = ("TemporalPositionIndex", "FrameAcquisitionNumber", "FrameAcquisitionDateTime",
                      "FrameReferenceDateTime")


def _keep_only(keep: str, small):
    """Per-frame temporal facts reduced to one kind, as different converters write them."""
    def change(ds):
        for pf in ds.PerFrameFunctionalGroupsSequence:
            content = pf.FrameContentSequence[0]
            p = int(content.TemporalPositionIndex) - 1
            for key in _CONTENT_TIME_TAGS:
                if key != keep and not (keep == "FrameAcquisitionDateTime" and key == "FrameReferenceDateTime"):
                    delattr(content, key)
            if keep != "TemporalPositionTimeOffset":
                del pf.TemporalPositionSequence
            if keep == "NominalCardiacTriggerDelayTime":
                pf.CardiacSynchronizationSequence = fx._seq(
                    NominalCardiacTriggerDelayTime=small.exam.times_min[p] * 60000.0)
    return change


@pytest.mark.parametrize("keep,times_known", [
    ("FrameAcquisitionDateTime", True), ("TemporalPositionTimeOffset", True),
    ("NominalCardiacTriggerDelayTime", True), ("TemporalPositionIndex", False)])
def test_enhanced_mr_with_one_kind_of_temporal_tag(small, tmp_path, keep, times_known):
    path = fx.write_philips_enhanced(small, tmp_path)
    ds = pydicom.dcmread(path)
    _keep_only(keep, small)(ds)
    ds.save_as(path)
    exam = load_exam(tmp_path)
    assert_same_exam(exam, small, check_times=times_known)
    assert (exam.times_min is not None) == times_known


@NEEDS_PYDICOM_3
def test_enhanced_mr_frames_in_any_order_and_compressed(small, tmp_path):
    pytest.importorskip("jpeg_ls")
    path = fx.write_philips_enhanced(small, tmp_path)
    ds = pydicom.dcmread(path)
    n = len(ds.PerFrameFunctionalGroupsSequence)
    order = np.random.default_rng(0).permutation(n)
    frames = ds.pixel_array.reshape(n, ds.Rows, ds.Columns)
    ds.PerFrameFunctionalGroupsSequence = pydicom.sequence.Sequence(
        [ds.PerFrameFunctionalGroupsSequence[int(i)] for i in order])
    ds.PixelData = np.ascontiguousarray(frames[order]).tobytes()
    ds.compress(pydicom.uid.JPEGLSLossless)
    ds.save_as(path)
    assert_same_exam(load_exam(tmp_path), small)


# ------------------------------------------------------------------------------------ anonymizers
def test_study_uid_changed_per_series_says_so_and_series_reads_it(small, tmp_path):
    paths = fx.write_siemens_per_phase(small, tmp_path)
    nz = small.exam.pre.GetSize()[2]
    _rewrite(paths, lambda i, ds: setattr(ds, "StudyInstanceUID", f"1.2.826.0.1.3680043.2.1125.{i // nz + 1}"))
    msg = _error(tmp_path)
    assert "different study (StudyInstanceUID)" in msg and "--series 10 11 12" in msg
    assert_same_exam(dicom.load_dicom_exam(tmp_path, series=[10, 11, 12]), small)


def test_series_uid_changed_per_file_says_so(small, tmp_path):
    from pydicom.uid import generate_uid

    paths = fx.write_ge_multiphase(small, tmp_path)
    _rewrite(paths, lambda i, ds: setattr(ds, "SeriesInstanceUID", generate_uid()))
    msg = _error(tmp_path)
    assert "24 series of one image each share series number 7" in msg and "SeriesInstanceUID" in msg
    assert any(msg.startswith(str(p)) for p in paths) and "Fix: re-export" in msg
