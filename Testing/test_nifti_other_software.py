"""NIfTI exams as converters and other programs write them (dcm2niix 4D files, nibabel headers).

Each test writes a phantom exam, loads it, and requires either the phantom back (voxels, origin,
spacing, direction) or one InputError naming the file and the fix. The last test runs the command
line on a refused file: exit 2, one line, no traceback, nothing written.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from BreastTumorSegLib.core.errors import InputError
from BreastTumorSegLib.io.files import load_exam
from dicom_fixtures import make_fixture_exam

nib = pytest.importorskip("nibabel")


@pytest.fixture(scope="module")
def truth():
    return make_fixture_exam(seed=2, n_phases=3, size_xyz=(32, 32, 8), orientation="oblique-axial").exam


def _same(exam, truth, atol=1e-3, values_atol=1e-3):
    assert exam.n_phases == truth.n_phases
    for a, b in zip(exam.phases, truth.phases):
        assert a.GetSize() == b.GetSize()
        np.testing.assert_allclose(a.GetOrigin(), b.GetOrigin(), atol=atol)
        np.testing.assert_allclose(a.GetSpacing(), b.GetSpacing(), atol=atol)
        np.testing.assert_allclose(a.GetDirection(), b.GetDirection(), atol=atol)
        np.testing.assert_allclose(sitk.GetArrayFromImage(a), sitk.GetArrayFromImage(b), atol=values_atol)


def _write_phases(truth, folder: Path, edit=None, dtype=None, scale: float = 1.0) -> list[Path]:
    """Phase files <case>_000i.nii.gz written by nibabel from ITK's header, *edit(new, itk_image)* applied;
    voxels times *scale*, stored as *dtype* (rounded for integer types)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, img in enumerate(truth.phases):
        itk_file = folder / "itk.nii.gz"
        sitk.WriteImage(img, str(itk_file))
        ref = nib.load(str(itk_file))
        data = np.asarray(ref.dataobj) * scale
        dtype = dtype or data.dtype
        data = data.astype(dtype) if np.dtype(dtype).kind == "f" else np.rint(data).astype(dtype)
        new = nib.Nifti1Image(data, None, header=ref.header.copy())
        new.set_data_dtype(dtype or data.dtype)
        new.set_qform(ref.get_qform(), code=1)
        new.set_sform(ref.get_sform(), code=1)
        if edit:
            edit(new, ref)
        paths.append(folder / f"case_{i:04d}.nii.gz")
        nib.save(new, str(paths[-1]))
        itk_file.unlink()
    return paths


@pytest.mark.parametrize("keep", ["qform", "sform"])
def test_qform_only_or_sform_only_keeps_the_geometry(truth, tmp_path, keep):
    def edit(new, ref):
        (new.set_sform if keep == "qform" else new.set_qform)(None, code=0)
    _write_phases(truth, tmp_path, edit)
    hdr = nib.load(str(tmp_path / "case_0000.nii.gz")).header
    assert (int(hdr["qform_code"]) > 0, int(hdr["sform_code"]) > 0) == (keep == "qform", keep == "sform")
    _same(load_exam(tmp_path), truth)


@pytest.mark.parametrize("change", ["shifted", "flipped"])
def test_disagreeing_qform_and_sform_are_refused(truth, tmp_path, change):
    def edit(new, ref):
        s = ref.get_sform().copy()
        if change == "shifted":
            s[:3, 3] += (10.0, 0.0, 0.0)
        else:
            s[:3, :3] = s[:3, :3] @ np.diag([-1.0, 1.0, 1.0])
        new.set_sform(s, code=2)
    paths = _write_phases(truth, tmp_path, edit)
    with pytest.raises(InputError) as err:
        load_exam(tmp_path)
    msg = str(err.value)
    assert str(paths[0]) in msg and "qform and an sform that disagree" in msg and "set_qform" in msg
    assert ("axes" in msg) == (change == "flipped")


def test_sheared_sform_is_refused_with_its_own_message(truth, tmp_path):
    def edit(new, ref):
        s = ref.get_sform().copy()
        s[0, 1] += 0.5
        new.set_sform(s, code=2)
        new.set_qform(None, code=0)
    paths = _write_phases(truth, tmp_path, edit)
    with pytest.raises(InputError) as err:
        load_exam(tmp_path)
    msg = str(err.value)
    assert str(paths[0]) in msg and "sheared or skewed" in msg and "truncated" not in msg


@pytest.mark.parametrize("dtype", [np.int8, np.uint16, np.float64])
def test_other_voxel_types(truth, tmp_path, dtype):
    scale = 0.1 if dtype == np.int8 else 1.0  # int8 holds -128..127
    _write_phases(truth, tmp_path, dtype=dtype, scale=scale)
    assert nib.load(str(tmp_path / "case_0000.nii.gz")).get_data_dtype() == dtype
    exam = load_exam(tmp_path)
    for a, b in zip(exam.phases, truth.phases):
        want = sitk.GetArrayFromImage(b) * scale
        if np.dtype(dtype).kind != "f":
            want = np.rint(want)
        np.testing.assert_allclose(sitk.GetArrayFromImage(a), want, atol=1e-3)
        np.testing.assert_allclose(a.GetDirection(), b.GetDirection(), atol=1e-4)


def test_dcm2niix_style_4d_file_with_its_sidecars(truth, tmp_path):
    """All phases in one 4D .nii.gz: read with the geometry; a dcm2niix BIDS sidecar (no per-volume
    times) is ignored and the times assumed; a sidecar with acquisition_times_min gives the times."""
    four_d = tmp_path / "dce.nii.gz"
    sitk.WriteImage(sitk.JoinSeries(truth.phases), str(four_d))
    (tmp_path / "dce.json").write_text(json.dumps({"Modality": "MR", "AcquisitionTime": "09:41:07.250000",
                                                   "ConversionSoftware": "dcm2niix"}))
    exam = load_exam(four_d)
    _same(exam, truth)
    assert exam.times_min is None and exam.metadata["times_assumed"]
    with pytest.raises(InputError, match="pass that file instead of the folder"):
        load_exam(tmp_path)  # the folder dcm2niix wrote: refused with the hint (test_hostile_inputs too)
    (tmp_path / "dce.json").write_text(json.dumps({"acquisition_times_min": list(truth.times_min)}))
    assert load_exam(four_d).times_min == pytest.approx(truth.times_min)
    (tmp_path / "dce.json").write_text(json.dumps({"acquisition_times_min": [0, 1]}))
    with pytest.raises(InputError, match="must list 3 numbers"):
        load_exam(four_d)


def test_single_slices_are_refused_with_a_fix(truth, tmp_path):
    two_d = tmp_path / "2d"
    two_d.mkdir()
    for i, img in enumerate(truth.phases):
        sitk.WriteImage(img[:, :, 4], str(two_d / f"case_{i:04d}.nii.gz"))
    with pytest.raises(InputError, match=r"case_0000.nii.gz: phase 0 is not a scalar 3D volume .*Fix:"):
        load_exam(two_d)
    with pytest.raises(InputError, match=r"case_0001.nii.gz: the exam file is a 2D image .*Fix:"):
        load_exam(two_d / "case_0001.nii.gz")
    flat = tmp_path / "flat"
    flat.mkdir()
    for i, img in enumerate(truth.phases):
        sitk.WriteImage(img[:, :, 4:5], str(flat / f"case_{i:04d}.nii.gz"))
    with pytest.raises(InputError, match=r"case_0000.nii.gz: phase 0 has size \(32, 32, 1\).*Fix:"):
        load_exam(flat)


def test_segment_command_refuses_disagreeing_headers_in_one_line(truth, tmp_path):
    def edit(new, ref):
        s = ref.get_sform().copy()
        s[:3, 3] += (0.0, 5.0, 0.0)
        new.set_sform(s, code=2)
    _write_phases(truth, tmp_path / "exam", edit)
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1] / "BreastTumorSeg"),
               OMP_NUM_THREADS="1")
    out = tmp_path / "out"
    run = subprocess.run([sys.executable, "-m", "BreastTumorSegLib.cli", "segment", str(tmp_path / "exam"),
                          "--output", str(out), "--progress", "none"], env=env, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 2, run.stderr
    lines = [ln for ln in run.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in run.stderr
    assert "case_0000.nii.gz" in lines[0] and "disagree" in lines[0] and "Fix:" in lines[0]
    assert not out.exists()


def _scaled_int16(truth, folder: Path, gz: bool = True) -> list[Path]:
    """int16 voxels with scl_slope 0.5 / scl_inter 10 (as SPM, MRIcroGL or nibabel write floats)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, img in enumerate(truth.phases):
        sitk.WriteImage(img, str(folder / "itk.nii.gz"))
        ref = nib.load(str(folder / "itk.nii.gz"))
        stored = np.rint((np.asarray(ref.dataobj) - 10.0) / 0.5).astype(np.int16)
        new = nib.Nifti1Image(stored, ref.affine, header=ref.header.copy())
        new.set_data_dtype(np.int16)
        new.header.set_slope_inter(0.5, 10.0)
        paths.append(folder / (f"case_{i:04d}.nii" + (".gz" if gz else "")))
        nib.save(new, str(paths[-1]))
        (folder / "itk.nii.gz").unlink()
    return paths


def test_scaled_integer_nifti_is_read_not_called_truncated(truth, tmp_path):
    _scaled_int16(truth, tmp_path)
    _same(load_exam(tmp_path), truth, values_atol=0.25 + 1e-3)


@pytest.mark.parametrize("gz", [True, False], ids=["nii.gz", "nii"])
def test_truncated_scaled_integer_nifti_is_still_refused(truth, tmp_path, gz):
    paths = _scaled_int16(truth, tmp_path, gz=gz)
    data = paths[1].read_bytes()
    paths[1].write_bytes(data[: len(data) - 600])
    with pytest.raises(InputError, match="truncated") as err:
        load_exam(tmp_path)
    assert str(paths[1]) in str(err.value)


def test_nifti2_is_refused_with_the_way_to_nifti1(truth, tmp_path):
    tmp_path.mkdir(exist_ok=True)
    for i, img in enumerate(truth.phases):
        sitk.WriteImage(img, str(tmp_path / "itk.nii.gz"))
        ref = nib.load(str(tmp_path / "itk.nii.gz"))
        nib.save(nib.Nifti2Image(np.asarray(ref.dataobj), ref.affine), str(tmp_path / f"case_{i:04d}.nii.gz"))
    (tmp_path / "itk.nii.gz").unlink()
    with pytest.raises(InputError, match=r"case_0000.nii.gz: phase 0 is a NIfTI-2 file.*Fix: save it as NIfTI-1"):
        load_exam(tmp_path)
