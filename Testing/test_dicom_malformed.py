"""Every malformed DICOM input gives a clear InputError naming the file or series and a fix.

Each test damages a freshly written phantom exam in one way and checks the message says *what*
(the problem), *where* (the file or the series by number and description) and *how to fix it*;
never a traceback from deep inside, never a partial exam.
"""
from __future__ import annotations

import shutil

import dicom_fixtures as fx
import numpy as np
import pydicom
import pytest
from BreastTumorSegLib.io.dicom import reader as dicom
from BreastTumorSegLib.core.errors import InputError


@pytest.fixture(scope="module")
def ge_source(tmp_path_factory):
    truth = fx.make_fixture_exam(seed=2, n_phases=3, size_xyz=(32, 32, 10))
    folder = tmp_path_factory.mktemp("ge_src") / "exam"
    paths = fx.write_ge_multiphase(truth, folder)
    return truth, folder, paths


@pytest.fixture(scope="module")
def siemens_source(tmp_path_factory):
    truth = fx.make_fixture_exam(seed=2, n_phases=3, size_xyz=(32, 32, 10))
    folder = tmp_path_factory.mktemp("siemens_src") / "exam"
    paths = fx.write_siemens_per_phase(truth, folder)
    return truth, folder, paths


def _copy(source, tmp_path):
    """A private copy of a fixture exam: (folder, paths in the same order as written)."""
    _, folder, paths = source
    dest = tmp_path / "exam"
    shutil.copytree(folder, dest)
    return dest, [dest / p.relative_to(folder) for p in paths]


def _load_error(folder) -> str:
    with pytest.raises(InputError) as info:
        dicom.load_dicom_exam(folder)
    msg = str(info.value)
    assert "Fix:" in msg, msg
    assert "Traceback" not in msg
    return msg


def _phase_files(paths, nz: int, phase: int):
    """Files of one phase in the GE fixture (written phase by phase, slice by slice)."""
    return paths[phase * nz:(phase + 1) * nz]


def test_truncated_in_pixel_data(ge_source, tmp_path):
    folder, paths = _copy(ge_source, tmp_path)
    victim = paths[5]
    data = victim.read_bytes()
    victim.write_bytes(data[: len(data) - 700])
    msg = _load_error(folder)
    assert str(victim) in msg and "truncated" in msg


def test_truncated_in_header(ge_source, tmp_path):
    folder, paths = _copy(ge_source, tmp_path)
    victim = paths[3]
    victim.write_bytes(victim.read_bytes()[:300])
    msg = _load_error(folder)
    assert str(victim) in msg and ("cannot" in msg or "truncated" in msg)


def test_missing_pixel_data(ge_source, tmp_path):
    folder, paths = _copy(ge_source, tmp_path)
    victim = paths[7]
    ds = pydicom.dcmread(victim)
    del ds.PixelData
    ds.save_as(victim)
    msg = _load_error(folder)
    assert str(victim) in msg and "no pixel data" in msg


def test_missing_slice_in_one_phase_of_a_multiphase_series(ge_source, tmp_path):
    truth, *_ = ge_source
    nz = truth.exam.pre.GetSize()[2]
    folder, paths = _copy(ge_source, tmp_path)
    _phase_files(paths, nz, 1)[4].unlink()
    msg = _load_error(folder)
    assert "series 7 'Ax VIBRANT MPh'" in msg and "TemporalPositionIdentifier 2" in msg
    assert "missing" in msg


def test_missing_slice_in_a_series_per_phase(siemens_source, tmp_path):
    truth, *_ = siemens_source
    nz = truth.exam.pre.GetSize()[2]
    folder, paths = _copy(siemens_source, tmp_path)
    # Slices of phase 1 (series 11) in the order they were written: k = 0..nz-1; drop an inner one.
    paths[nz + 4].unlink()
    msg = _load_error(folder)
    assert "series 11" in msg and "1 slice(s) missing" in msg


def test_inconsistent_slice_spacing(siemens_source, tmp_path):
    truth, *_ = siemens_source
    folder, paths = _copy(siemens_source, tmp_path)
    img = truth.exam.pre
    normal = np.asarray(img.GetDirection()).reshape(3, 3)[:, 2]
    victim = paths[3]  # phase 0, slice 3: moved 1.1 mm along the normal
    ds = pydicom.dcmread(victim)
    ds.ImagePositionPatient = [fx._ds(v) for v in np.asarray(ds.ImagePositionPatient, float) + 1.1 * normal]
    ds.save_as(victim)
    msg = _load_error(folder)
    assert "inconsistent slice spacing" in msg and "series 10" in msg and str(victim) in msg


def test_sheared_stack(siemens_source, tmp_path):
    truth, *_ = siemens_source
    folder, paths = _copy(siemens_source, tmp_path)
    row = np.asarray(truth.exam.pre.GetDirection()).reshape(3, 3)[:, 0]
    nz = truth.exam.pre.GetSize()[2]
    for k, victim in enumerate(paths[:nz]):  # phase 0: every slice shifted sideways a little more
        ds = pydicom.dcmread(victim)
        ds.ImagePositionPatient = [fx._ds(v) for v in np.asarray(ds.ImagePositionPatient, float) + 0.4 * k * row]
        ds.save_as(victim)
    msg = _load_error(folder)
    assert "not stacked along their normal" in msg and "series 10" in msg


def test_mixed_matrix_sizes_inside_a_series(ge_source, tmp_path):
    folder, paths = _copy(ge_source, tmp_path)
    victim = paths[2]
    ds = pydicom.dcmread(victim)
    ds.Rows, ds.Columns = 16, 16
    ds.PixelData = np.zeros((16, 16), np.int16).tobytes()
    ds.save_as(victim)
    msg = _load_error(folder)
    assert "different matrix sizes" in msg and "series 7" in msg


def test_mixed_matrix_sizes_between_phase_series(tmp_path):
    small = fx.make_fixture_exam(seed=2, n_phases=3, size_xyz=(32, 32, 10))
    fx.write_siemens_per_phase(small, tmp_path / "exam")
    other = fx.make_fixture_exam(seed=2, n_phases=3, size_xyz=(40, 32, 10))
    fx.write_siemens_per_phase(other, tmp_path / "other", first_series=20)
    # The last phase comes from the 40x32 acquisition (same study, same sequence).
    shutil.rmtree(next((tmp_path / "exam").glob("012_*")))
    shutil.move(str(next((tmp_path / "other").glob("022_*"))), str(tmp_path / "exam"))
    msg = _load_error(tmp_path / "exam")
    assert "different matrix sizes" in msg and "40x32" in msg and "32x32" in msg


def test_non_mr_modality(tmp_path):
    fx.write_ct_series(tmp_path / "ct")
    msg = _load_error(tmp_path / "ct")
    assert "not MR" in msg and str(tmp_path / "ct") in msg


def test_single_phase(siemens_source, tmp_path):
    folder, paths = _copy(siemens_source, tmp_path)
    for d in folder.iterdir():
        if not d.name.startswith("010_"):
            shutil.rmtree(d)
    msg = _load_error(folder)
    assert "only one DCE phase" in msg and "series 10" in msg


def test_no_dicom_at_all(tmp_path):
    (tmp_path / "readme.txt").write_text("nothing here")
    with pytest.raises(InputError, match="no DICOM images"):
        dicom.load_dicom_exam(tmp_path)


def test_two_equally_good_dce_candidates_ask_for_a_choice(tmp_path):
    a = fx.make_fixture_exam(seed=2, n_phases=2, size_xyz=(24, 24, 6), orientation="axial")
    b = fx.make_fixture_exam(seed=2, n_phases=2, size_xyz=(24, 24, 6), orientation="sagittal")
    fx.write_siemens_per_phase(a, tmp_path / "ax", first_series=10)
    fx.write_siemens_per_phase(b, tmp_path / "sag", first_series=20)
    msg = _load_error(tmp_path)
    assert "--series" in msg and "series 10" in msg and "series 20" in msg
    exam = dicom.load_dicom_exam(tmp_path, series=[20, 21])
    assert exam.n_phases == 2
