"""Loaders: every accepted layout, and a clear error for each kind of bad input."""
import gzip
import json

import numpy as np
import pytest
import SimpleITK as sitk

from BreastTumorSegLib.core.errors import InputError, OutputExistsError
from BreastTumorSegLib.core.exam import DCEExam
from BreastTumorSegLib.io.atomic import StagedOutputs, write_image
from BreastTumorSegLib.io.files import load_exam


def _vol(value=100.0, size=(12, 10, 8), spacing=(1.0, 1.2, 2.0), origin=(5.0, -3.0, 7.0), seed=0):
    rng = np.random.default_rng(seed)
    arr = (value + rng.normal(0, 1, size[::-1])).astype(np.float32)
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing(spacing)
    img.SetOrigin(origin)
    img.SetDirection((0, 0, 1, 1, 0, 0, 0, 1, 0))  # a sagittal-like permutation
    return img


def _write_case(folder, n=3, case="c1", times=None, **kw):
    folder.mkdir(parents=True, exist_ok=True)
    imgs = [_vol(100 + 20 * i, seed=i, **kw) for i in range(n)]
    for i, im in enumerate(imgs):
        sitk.WriteImage(im, str(folder / f"{case}_{i:04d}.nii.gz"))
    if times is not None:
        (folder / f"{case}.json").write_text(json.dumps({"acquisition_times_min": times}))
    return imgs


def test_folder_with_times(tmp_path):
    imgs = _write_case(tmp_path / "c1", n=4, times=[0, 1.5, 3.0, 4.5])
    exam = load_exam(tmp_path / "c1")
    assert exam.case_id == "c1" and exam.n_phases == 4
    assert exam.times_min == [0, 1.5, 3.0, 4.5] and not exam.metadata["times_assumed"]
    for a, b in zip(exam.phases, imgs):
        assert a.GetPixelID() == sitk.sitkFloat32
        np.testing.assert_array_equal(sitk.GetArrayFromImage(a), sitk.GetArrayFromImage(b))
        assert a.GetDirection() == b.GetDirection() and a.GetOrigin() == b.GetOrigin()


def test_nrrd_phase_files_in_order_and_assumed_times(tmp_path):
    files = []
    for i in range(3):
        f = tmp_path / f"p{i}.nrrd"
        sitk.WriteImage(_vol(100 + i, seed=i), str(f))
        files.append(f)
    exam = load_exam(files)
    assert exam.n_phases == 3 and exam.times_min is None and exam.metadata["times_assumed"]
    np.testing.assert_allclose(exam.effective_times(), [0, 1.5, 3.0])
    assert sitk.GetArrayViewFromImage(exam.phases[2]).mean() == pytest.approx(102, abs=0.2)


def test_4d_nifti(tmp_path):
    vols = [sitk.GetArrayFromImage(_vol(100 + 10 * i, seed=i)) for i in range(3)]
    img4 = sitk.GetImageFromArray(np.stack(vols), isVector=False)  # (t, z, y, x)
    img4.SetSpacing((1.0, 1.2, 2.0, 1.0))
    f = tmp_path / "exam4d.nii.gz"
    sitk.WriteImage(img4, str(f))
    exam = load_exam(f, times_min=[0, 2, 4])
    assert exam.n_phases == 3 and exam.case_id == "exam4d"
    np.testing.assert_array_equal(sitk.GetArrayFromImage(exam.phases[1]), vols[1])
    np.testing.assert_allclose(exam.phases[0].GetSpacing(), (1.0, 1.2, 2.0), rtol=1e-6)


def test_phase_on_other_grid_is_resampled_to_pre(tmp_path):
    d = tmp_path / "c2"
    d.mkdir()
    pre = _vol(100, size=(12, 10, 8))
    post = _vol(150, size=(24, 20, 8), spacing=(0.5, 0.6, 2.0))
    sitk.WriteImage(pre, str(d / "c2_0000.nii.gz"))
    sitk.WriteImage(post, str(d / "c2_0001.nii.gz"))
    exam = load_exam(d)
    assert exam.phases[1].GetSize() == pre.GetSize()
    assert exam.metadata["resampled_phases"] == [1]
    assert sitk.GetArrayViewFromImage(exam.phases[1])[1:-1, 1:-1, 1:-1].mean() == pytest.approx(150, abs=1)


# ----------------------------------------------------------------------------- bad input
def test_single_phase_is_refused(tmp_path):
    d = tmp_path / "one"
    _write_case(d, n=1)
    with pytest.raises(InputError, match="at least one post-contrast"):
        load_exam(d)


def test_missing_phase_is_named(tmp_path):
    d = tmp_path / "gap"
    _write_case(d, n=4)
    (d / "c1_0002.nii.gz").unlink()
    with pytest.raises(InputError, match="c1_0002"):
        load_exam(d)


def test_non_3d_data(tmp_path):
    f0, f1 = tmp_path / "a.nii.gz", tmp_path / "b.nii.gz"
    sitk.WriteImage(_vol(), str(f0))
    sitk.WriteImage(sitk.GetImageFromArray(np.ones((5, 5), np.float32)), str(f1))
    with pytest.raises(InputError, match="not a scalar 3D volume") as e:
        load_exam([f0, f1])
    assert "b.nii.gz" in str(e.value)


def test_nan_is_refused_with_file_name(tmp_path):
    # NRRD keeps NaN; ITK's NIfTI reader turns NaN into 0 on its own, so NIfTI cannot carry one.
    imgs = [_vol(100), _vol(120)]
    arr = sitk.GetArrayFromImage(imgs[1])
    arr[2, 3, 4] = np.nan
    bad = sitk.GetImageFromArray(arr)
    bad.CopyInformation(imgs[1])
    files = [tmp_path / "pre.nrrd", tmp_path / "post.nrrd"]
    sitk.WriteImage(imgs[0], str(files[0]))
    sitk.WriteImage(bad, str(files[1]))
    with pytest.raises(InputError, match="NaN") as e:
        load_exam(files)
    assert "post.nrrd" in str(e.value)


def test_inf_is_refused():
    a, b = _vol(), _vol()
    arr = sitk.GetArrayFromImage(b)
    arr[0, 0, 0] = np.inf
    bad = sitk.GetImageFromArray(arr)
    bad.CopyInformation(b)
    with pytest.raises(InputError, match="infinite"):
        DCEExam([a, bad])


def test_truncated_file_is_unreadable(tmp_path):
    d = tmp_path / "trunc"
    _write_case(d, n=2)
    f = d / "c1_0001.nii.gz"
    raw = gzip.decompress(f.read_bytes())
    f.write_bytes(gzip.compress(raw[: len(raw) // 2]))
    with pytest.raises(InputError, match="truncated") as e:
        load_exam(d)
    assert "c1_0001.nii.gz" in str(e.value) and "Fix:" in str(e.value)


def test_truncated_uncompressed_nifti(tmp_path):
    d = tmp_path / "trunc2"
    d.mkdir()
    sitk.WriteImage(_vol(), str(d / "c_0000.nii"))
    sitk.WriteImage(_vol(), str(d / "c_0001.nii"))
    f = d / "c_0001.nii"
    f.write_bytes(f.read_bytes()[:-100])
    with pytest.raises(InputError, match="truncated") as e:
        load_exam(d)
    assert "c_0001.nii" in str(e.value)


def test_garbage_file(tmp_path):
    d = tmp_path / "garbage"
    _write_case(d, n=2)
    (d / "c1_0001.nii.gz").write_bytes(b"this is not an image")
    with pytest.raises(InputError, match="c1_0001"):
        load_exam(d)


@pytest.mark.parametrize("times", [[0, 3, 2], [0, 0, 1]])
def test_times_not_increasing(tmp_path, times):
    d = tmp_path / "t"
    _write_case(d, n=3, times=times)
    with pytest.raises(InputError, match="increase"):
        load_exam(d)


def test_times_wrong_count(tmp_path):
    d = tmp_path / "t2"
    _write_case(d, n=3, times=[0, 1])
    with pytest.raises(InputError, match="3 numbers"):
        load_exam(d)


def test_missing_input(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        load_exam(tmp_path / "nope")


def test_empty_folder(tmp_path):
    with pytest.raises(InputError, match="no phase files"):
        load_exam(tmp_path)


def test_folder_of_damaged_dicom_files_says_so(tmp_path):
    """A folder whose files are named like DICOM but are not DICOM: the message says neither DICOM nor
    phase files were found and how many files were looked at, not only the NIfTI naming rule."""
    for name in ("IM0001.dcm", "IM0002.dcm"):
        (tmp_path / name).write_bytes(b"\x00" * 64 + b"not a dicom file")
    with pytest.raises(InputError, match=r"no DICOM files and no phase files .*2 file\(s\) below the folder") as err:
        load_exam(tmp_path)
    assert "dicom-list" in str(err.value)


def test_folder_of_misnamed_images_names_one(tmp_path):
    img = sitk.GetImageFromArray(np.ones((4, 8, 8), np.float32))
    for name in ("pre.nii.gz", "post.nii.gz"):
        sitk.WriteImage(img, str(tmp_path / name))
    with pytest.raises(InputError, match=r"no phase files .*2 image file\(s\) with other names, e.g. post.nii.gz"):
        load_exam(tmp_path)


def test_phase_outside_pre_volume(tmp_path):
    d = tmp_path / "far"
    d.mkdir()
    sitk.WriteImage(_vol(origin=(0, 0, 0)), str(d / "x_0000.nii.gz"))
    sitk.WriteImage(_vol(origin=(900, 900, 900)), str(d / "x_0001.nii.gz"))
    with pytest.raises(InputError, match="does not overlap"):
        load_exam(d)


def test_phase_covering_part_of_pre_volume(tmp_path):
    """A post-contrast phase with half the pre-contrast slices would leave half the exam without
    post-contrast signal (a subtraction of -pre there): refused, naming the phase; a phase one
    voxel off the pre-contrast grid is resampled onto it as before."""
    half = tmp_path / "half"
    half.mkdir()
    sitk.WriteImage(_vol(), str(half / "x_0000.nii.gz"))
    sitk.WriteImage(_vol(size=(12, 10, 4)), str(half / "x_0001.nii.gz"))
    with pytest.raises(InputError, match=r"covers only \d+ %") as err:
        load_exam(half)
    assert "x_0001.nii.gz" in str(err.value)
    shifted = tmp_path / "shifted"
    shifted.mkdir()
    sitk.WriteImage(_vol(), str(shifted / "x_0000.nii.gz"))
    sitk.WriteImage(_vol(origin=(5.0, -3.0, 8.0)), str(shifted / "x_0001.nii.gz"))
    exam = load_exam(shifted)
    assert exam.metadata["resampled_phases"] == [1]


# ----------------------------------------------------------------------------- writing
def test_staged_outputs_all_or_nothing(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(RuntimeError):
        with StagedOutputs(out) as st:
            write_image(st.path("a.nii.gz"), _vol())
            raise RuntimeError("boom")
    assert not out.exists()  # the folder made for the failed outputs is gone again (issue 20)
    with StagedOutputs(out) as st:
        write_image(st.path("a.nii.gz"), _vol())
        st.commit()
    assert [p.name for p in out.iterdir()] == ["a.nii.gz"]
    with pytest.raises(OutputExistsError, match="--overwrite"):
        with StagedOutputs(out) as st:
            write_image(st.path("a.nii.gz"), _vol(7))
            st.commit()
    assert sitk.GetArrayFromImage(sitk.ReadImage(str(out / "a.nii.gz"))).mean() == pytest.approx(100, abs=0.2)
    assert [p.name for p in out.iterdir()] == ["a.nii.gz"]


@pytest.mark.parametrize("name,dtype,big_endian,slope", [
    ("a.nii.gz", np.float32, False, 1.0), ("b.nii", np.float64, False, 1.0), ("c.nii", np.float32, True, 1.0),
    ("d.nii.gz", np.float32, False, 2.0), ("e.nii.gz", np.int16, False, 1.0)])
def test_float_nifti_read_once_equals_itk(tmp_path, name, dtype, big_endian, slope):
    # Float NIfTI is read with one decompression (voxels checked for NaN on the way); the image must
    # be ITK's own reading of the file: voxels, pixel type and oblique geometry; scaled files go to ITK.
    nib = pytest.importorskip("nibabel")
    from BreastTumorSegLib.io.images import _read_float_nifti, read_image

    rng = np.random.default_rng(3)
    data = (rng.normal(100, 30, (9, 7, 5)) * (1 if dtype != np.int16 else 10)).astype(dtype)
    c, s = np.cos(0.3), np.sin(0.3)  # oblique: rotated 0.3 rad about the second axis, axes permuted
    rot = np.array([[0.0, -c, s], [1.0, 0.0, 0.0], [0.0, s, c]])
    affine = np.eye(4)
    affine[:3, :3] = rot @ np.diag([0.8, 0.9, 2.5])
    affine[:3, 3] = [10.0, -20.0, 33.0]
    img = nib.Nifti1Image(data.astype(data.dtype.newbyteorder(">")) if big_endian else data, affine)
    if big_endian:
        img.header.set_data_dtype(data.dtype.newbyteorder(">"))
    img.header.set_slope_inter(slope, 0.0)
    path = tmp_path / name
    nib.save(img, str(path))
    ours, itk = read_image(path), sitk.ReadImage(str(path))
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    reader.ReadImageInformation()
    taken = _read_float_nifti(path, reader, "image") is not None
    assert taken == (dtype != np.int16 and slope == 1.0)  # the one-decompression path is the plain float case
    assert ours.GetPixelID() == itk.GetPixelID()
    assert np.array_equal(sitk.GetArrayViewFromImage(ours), sitk.GetArrayViewFromImage(itk))
    assert ours.GetOrigin() == itk.GetOrigin() and ours.GetSpacing() == itk.GetSpacing()
    assert ours.GetDirection() == itk.GetDirection()


def test_nan_in_float_nifti_is_refused(tmp_path):
    nib = pytest.importorskip("nibabel")
    data = np.ones((6, 5, 4), np.float32)
    data[1, 2, 3] = np.nan
    nib.save(nib.Nifti1Image(np.ones((6, 5, 4), np.float32), np.eye(4)), str(tmp_path / "c_0000.nii.gz"))
    nib.save(nib.Nifti1Image(data, np.eye(4)), str(tmp_path / "c_0001.nii.gz"))
    with pytest.raises(InputError, match="1 NaN") as e:
        load_exam(tmp_path)
    assert "c_0001.nii.gz" in str(e.value)


def test_float_nifti_reads_the_same_with_isal_or_zlib(tmp_path, monkeypatch):
    import zlib

    from BreastTumorSegLib.io import images as files

    img = _vol(100)
    sitk.WriteImage(img, str(tmp_path / "p.nii.gz"), True)
    fast = files.read_image(tmp_path / "p.nii.gz")
    monkeypatch.setattr(files, "_inflate_module", lambda: zlib)
    plain = files.read_image(tmp_path / "p.nii.gz")
    assert files._inflate_module() is zlib
    np.testing.assert_array_equal(sitk.GetArrayViewFromImage(fast), sitk.GetArrayViewFromImage(plain))
    np.testing.assert_array_equal(sitk.GetArrayViewFromImage(fast), sitk.GetArrayViewFromImage(img))
