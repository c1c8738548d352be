"""DICOM SEG output: the tumor mask written for a phantom reads back to the same mask and grid.

Read back with highdicom (always) and with dcmqi's ``segimage2itkimage`` (when the ``dcmqi``
package is installed; it is on PyPI). Also checked: the SEG references the pre-contrast series,
carries the SNOMED CT codes and the algorithm identification, de-identification removes every
patient/visit identifier, and failures leave no file behind.
"""
from __future__ import annotations

import shutil
import subprocess

import highdicom as hd
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

import dicom_fixtures as fx
from BreastTumorSegLib import __version__
from BreastTumorSegLib.io.dicom import reader as dicom
from BreastTumorSegLib.io.dicom.seg import TYPE2_COPIED, DicomSourceWarning, write_dicom_seg
from BreastTumorSegLib.core.errors import InputError, OutputExistsError

LAYOUTS = {
    "ge-oblique": ("oblique-axial", fx.write_ge_multiphase),
    "siemens-axial": ("axial", fx.write_siemens_per_phase),
    "philips-sagittal": ("sagittal", fx.write_philips_enhanced),
}


@pytest.fixture(scope="module", params=sorted(LAYOUTS))
def loaded(request, tmp_path_factory):
    orientation, writer = LAYOUTS[request.param]
    truth = fx.make_fixture_exam(seed=2, n_phases=3, size_xyz=(40, 36, 14), orientation=orientation)
    folder = tmp_path_factory.mktemp(request.param) / "exam"
    writer(truth, folder)
    exam = dicom.load_dicom_exam(folder)
    assert int(sitk.GetArrayFromImage(truth.tumor_mask).sum()) > 50  # a real tumor to write
    return request.param, truth, exam, folder


def _mask_on_grid_from_volume(vol: hd.Volume, grid: sitk.Image) -> np.ndarray:
    """Sample a highdicom Volume at every voxel centre of *grid*; every centre must hit a voxel exactly."""
    size = grid.GetSize()
    k, j, i = np.meshgrid(np.arange(size[2]), np.arange(size[1]), np.arange(size[0]), indexing="ij")
    ijk = np.stack([i.ravel(), j.ravel(), k.ravel()], axis=1).astype(float)
    d = np.asarray(grid.GetDirection()).reshape(3, 3)
    lps = np.asarray(grid.GetOrigin()) + (ijk * np.asarray(grid.GetSpacing())) @ d.T
    inv = np.linalg.inv(vol.affine)
    idx = (np.c_[lps, np.ones(len(lps))] @ inv.T)[:, :3]  # (slice, row, column) indices of the volume
    assert np.abs(idx - np.round(idx)).max() < 1e-3, "SEG voxel centres are not on the exam grid"
    idx = np.round(idx).astype(int)
    arr = vol.array[..., 0] if vol.array.ndim == 4 else vol.array
    assert (idx >= 0).all() and (idx < np.asarray(arr.shape)).all(), "SEG grid does not cover the exam"
    assert arr.size == len(lps), "SEG grid has a different number of voxels"
    return arr[idx[:, 0], idx[:, 1], idx[:, 2]].reshape(size[2], size[1], size[0])


def test_seg_reads_back_with_highdicom(loaded, tmp_path):
    name, truth, exam, folder = loaded
    path = write_dicom_seg(truth.tumor_mask, exam, tmp_path / "case_seg.dcm", model_id="unet-demo")
    seg = hd.seg.segread(path)
    got = _mask_on_grid_from_volume(seg.get_volume(), exam.reference)
    np.testing.assert_array_equal(got > 0, sitk.GetArrayFromImage(truth.tumor_mask) > 0)
    # Direction and spacing as in the exam (axes may be listed in another order by highdicom).
    vol = seg.get_volume()
    sp_exam = sorted(exam.reference.GetSpacing())
    np.testing.assert_allclose(sorted(vol.spacing), sp_exam, atol=1e-4)


def test_seg_references_source_and_carries_codes(loaded, tmp_path):
    name, truth, exam, folder = loaded
    path = write_dicom_seg(truth.tumor_mask, exam, tmp_path / "case_seg.dcm", model_id="unet-demo",
                           model_version="2")
    ds = pydicom.dcmread(path)
    src = exam.metadata["dicom_source"]
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.66.4"  # Segmentation Storage
    assert ds.StudyInstanceUID == src.study_uid
    assert ds.FrameOfReferenceUID == src.frame_of_reference_uid
    referenced = {s.SeriesInstanceUID for s in ds.ReferencedSeriesSequence}
    assert referenced == {src.series_uids[0]}
    n_ref = sum(len(s.ReferencedInstanceSequence) for s in ds.ReferencedSeriesSequence)
    assert n_ref == len({p for p, _ in src.reference_files})  # every pre-contrast instance
    seg = ds.SegmentSequence[0]
    assert seg.SegmentLabel == "Tumor"
    assert seg.SegmentedPropertyCategoryCodeSequence[0].CodeValue == "49755003"
    assert seg.SegmentedPropertyTypeCodeSequence[0].CodeValue == "108369006"
    assert seg.SegmentedPropertyTypeCodeSequence[0].CodingSchemeDesignator == "SCT"
    assert seg.AnatomicRegionSequence[0].CodeValue == "76752008"
    assert seg.SegmentAlgorithmType == "AUTOMATIC"
    algo = seg.SegmentationAlgorithmIdentificationSequence[0]
    assert algo.AlgorithmName == "BreastTumorSeg" and algo.AlgorithmVersion == __version__
    assert "unet-demo" in algo.AlgorithmParameters and "2" in algo.AlgorithmParameters
    # Not de-identified by default: the SEG belongs to the source patient.
    assert str(ds.PatientName) == fx.FAKE_PATIENT["PatientName"]


@pytest.mark.skipif(shutil.which("segimage2itkimage") is None,
                    reason="dcmqi not installed (pip install dcmqi provides segimage2itkimage)")
def test_seg_reads_back_with_dcmqi(loaded, tmp_path):
    name, truth, exam, folder = loaded
    path = write_dicom_seg(truth.tumor_mask, exam, tmp_path / "case_seg.dcm", model_id="unet-demo")
    out = tmp_path / "dcmqi"
    out.mkdir()
    run = subprocess.run(["segimage2itkimage", "--inputDICOM", str(path), "--outputDirectory", str(out),
                          "--outputType", "nrrd"], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-800:]
    img = sitk.ReadImage(str(out / "1.nrrd"))
    ref = exam.reference
    assert img.GetSize() == ref.GetSize()
    np.testing.assert_allclose(img.GetSpacing(), ref.GetSpacing(), atol=1e-4)
    np.testing.assert_allclose(img.GetOrigin(), ref.GetOrigin(), atol=1e-4)
    np.testing.assert_allclose(img.GetDirection(), ref.GetDirection(), atol=1e-4)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(img) > 0, sitk.GetArrayFromImage(truth.tumor_mask) > 0)


def test_deidentified_seg_has_no_identifiers(loaded, tmp_path):
    name, truth, exam, folder = loaded
    path = write_dicom_seg(truth.tumor_mask, exam, tmp_path / "anon_seg.dcm", model_id="unet-demo",
                           deidentify=True)
    raw = path.read_bytes()
    for key, value in list(fx.FAKE_PATIENT.items()) + [("StudyDate", fx.STUDY_DATE)]:
        if len(value) > 2:  # long enough not to occur in the pixel bytes by chance
            assert value.encode() not in raw, key
    ds = pydicom.dcmread(path)
    assert ds.get("PatientSex", "") == "" and ds.get("PatientBirthDate", "") == ""
    assert ds.PatientIdentityRemoved == "YES" and ds.PatientID == exam.case_id
    assert ds.StudyInstanceUID == exam.metadata["dicom_source"].study_uid  # UIDs kept: still finds its source
    got = _mask_on_grid_from_volume(hd.seg.segread(path).get_volume(), exam.reference)
    np.testing.assert_array_equal(got > 0, sitk.GetArrayFromImage(truth.tumor_mask) > 0)


def test_empty_segmentation_is_written(loaded, tmp_path):
    name, truth, exam, folder = loaded
    empty = sitk.Image(truth.tumor_mask.GetSize(), sitk.sitkUInt8)
    empty.CopyInformation(truth.tumor_mask)
    path = write_dicom_seg(empty, exam, tmp_path / "empty_seg.dcm", model_id="unet-demo")
    got = _mask_on_grid_from_volume(hd.seg.segread(path).get_volume(), exam.reference)
    assert not got.any()


def test_refusals_leave_nothing_behind(loaded, tmp_path):
    name, truth, exam, folder = loaded
    target = tmp_path / "out" / "case_seg.dcm"
    target.parent.mkdir()
    # Label on another grid.
    shifted = sitk.Image(truth.tumor_mask)
    shifted.SetOrigin(tuple(o + 5.0 for o in shifted.GetOrigin()))
    with pytest.raises(InputError, match="not on the exam's pre-contrast grid"):
        write_dicom_seg(shifted, exam, target, model_id="m")
    # Exam not loaded from DICOM.
    plain = exam.with_phases(exam.phases)
    plain.metadata.pop("dicom_source")
    with pytest.raises(InputError, match="exam loaded from DICOM"):
        write_dicom_seg(truth.tumor_mask, plain, target, model_id="m")
    assert list(target.parent.iterdir()) == []
    # An existing result is not replaced unless asked.
    target.write_bytes(b"keep me")
    with pytest.raises(OutputExistsError):
        write_dicom_seg(truth.tumor_mask, exam, target, model_id="m")
    assert target.read_bytes() == b"keep me"
    write_dicom_seg(truth.tumor_mask, exam, target, model_id="m", overwrite=True)
    assert pydicom.dcmread(target).Modality == "SEG"
    assert sorted(p.name for p in target.parent.iterdir()) == ["case_seg.dcm"]  # no temporary files left


def test_source_files_gone(tmp_path):
    truth = fx.make_fixture_exam(seed=2, n_phases=2, size_xyz=(24, 24, 6))
    fx.write_siemens_per_phase(truth, tmp_path / "exam")
    exam = dicom.load_dicom_exam(tmp_path / "exam")
    shutil.rmtree(tmp_path / "exam")
    with pytest.raises(InputError, match="source DICOM file"):
        write_dicom_seg(truth.tumor_mask, exam, tmp_path / "seg.dcm", model_id="m")
    assert not (tmp_path / "seg.dcm").exists()


# ------------------------------------------------------------------ de-identified sources
@pytest.fixture(scope="module")
def plain_source(tmp_path_factory):
    truth = fx.make_fixture_exam(seed=3, n_phases=2, size_xyz=(32, 28, 10), orientation="axial")
    folder = tmp_path_factory.mktemp("plain") / "exam"
    fx.write_siemens_per_phase(truth, folder)
    return truth, folder


def _without(folder, dest, keywords):
    shutil.copytree(folder, dest)
    for f in dest.rglob("*"):
        if f.is_file():
            ds = pydicom.dcmread(f)
            for kw in keywords:
                if kw in ds:
                    delattr(ds, kw)
            ds.save_as(f)
    return dest


@pytest.mark.parametrize("keywords", [[kw] for kw in TYPE2_COPIED] + [list(TYPE2_COPIED)],
                         ids=[kw for kw in TYPE2_COPIED] + ["all"])
def test_source_without_type2_attributes_still_gives_a_seg(plain_source, tmp_path, keywords):
    """De-identification tools delete type-2 attributes; the SEG is written with them empty and a warning."""
    truth, folder = plain_source
    exam = dicom.load_dicom_exam(_without(folder, tmp_path / "exam", keywords))
    with pytest.warns(DicomSourceWarning, match=keywords[0]):
        path = write_dicom_seg(truth.tumor_mask, exam, tmp_path / "seg.dcm", model_id="m")
    ds = pydicom.dcmread(path)
    for kw in keywords:
        assert kw in ds and str(ds.data_element(kw).value or "") == "", kw
    got = _mask_on_grid_from_volume(hd.seg.segread(path).get_volume(), exam.reference)
    np.testing.assert_array_equal(got > 0, sitk.GetArrayFromImage(truth.tumor_mask) > 0)


def test_seg_from_source_files_without_preamble(plain_source, tmp_path):
    """Source files written without preamble or file meta: the SEG still references them and reads back."""
    truth, folder = plain_source
    dest = tmp_path / "exam"
    shutil.copytree(folder, dest)
    for f in dest.rglob("*"):
        if f.is_file():
            fx.rewrite_without_preamble(f, implicit_vr=True, keep_file_meta=False)
    exam = dicom.load_dicom_exam(dest)
    path = write_dicom_seg(truth.tumor_mask, exam, tmp_path / "seg.dcm", model_id="m")
    seg = hd.seg.segread(path)
    got = _mask_on_grid_from_volume(seg.get_volume(), exam.reference)
    np.testing.assert_array_equal(got > 0, sitk.GetArrayFromImage(truth.tumor_mask) > 0)
    ref_series = {str(s.SeriesInstanceUID) for s in seg.ReferencedSeriesSequence}
    source_series = {str(pydicom.dcmread(f, force=True).SeriesInstanceUID) for f in dest.rglob("*") if f.is_file()}
    assert len(ref_series) == 1 and ref_series <= source_series  # one source series, one of the exam's
