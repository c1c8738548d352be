"""DICOM exams as other software writes them: converters, research tools and viewers' exports.

Each test writes a phantom exam (dicom_fixtures.py) the way that software does, loads it, and
requires either the phantom back (every voxel within RescaleSlope/2, geometry within 1e-4, the
phase times) or one InputError naming the file and the fix.
"""
from __future__ import annotations

import shutil

import dicom_fixtures as fx
import numpy as np
import pydicom
import pytest
from BreastTumorSegLib.core.errors import InputError
from BreastTumorSegLib.io.dicom import reader as dicom
from BreastTumorSegLib.io.files import load_exam
from test_dicom_reader import assert_same_exam


@pytest.fixture(scope="module")
def small():
    return fx.make_fixture_exam(seed=2, n_phases=3, size_xyz=(32, 32, 8))


def _rewrite(paths, change) -> None:
    for i, p in enumerate(paths):
        ds = pydicom.dcmread(p)
        change(i, ds)
        ds.save_as(p)


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
