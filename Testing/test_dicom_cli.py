"""``breasttumorseg dicom-list`` and the engine's DICOM SEG output path.

dicom-list must tell a user what will be segmented (series, roles, phase order, times) without
printing anything that identifies the patient; the pipeline's ``write_result(..., dicom_seg=True)``
must produce a SEG next to the other results, all or nothing.
"""
from __future__ import annotations

import importlib
import argparse
import io
import json

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

import dicom_fixtures as fx
from BreastTumorSegLib.io.dicom import reader as dicom
from BreastTumorSegLib.cli import dicom_list
from BreastTumorSegLib.core.errors import InputError


@pytest.fixture(scope="module")
def exam_folder(tmp_path_factory):
    truth = fx.make_fixture_exam(seed=2, n_phases=4, size_xyz=(32, 32, 10))
    folder = tmp_path_factory.mktemp("cli") / "exam"
    fx.write_siemens_per_phase(truth, folder, bolus_after_pre_s=30.0)
    fx.write_extras(truth, folder)
    return truth, folder


def _run(argv: list[str]) -> str:
    parser = argparse.ArgumentParser(prog="breasttumorseg")
    dicom_list.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["dicom-list", *argv])
    out = io.StringIO()
    assert args.func(args, stream=out) == 0
    return out.getvalue()


def _identifiers(folder) -> list[str]:
    values = [v for v in fx.FAKE_PATIENT.values() if len(v) > 2] + [fx.STUDY_DATE]
    ds = pydicom.dcmread(next(folder.rglob("*.dcm")), stop_before_pixels=True)
    return values + [ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID]


def test_dicom_list_shows_series_roles_and_phase_order(exam_folder):
    truth, folder = exam_folder
    text = _run([str(folder)])
    lines = text.splitlines()
    phase_lines = [ln for ln in lines if ln.strip().startswith(("0 ", "1 ", "2 ", "3 ")) and "contrast" in ln]
    assert len(phase_lines) == 4
    assert "pre-contrast" in phase_lines[0] and all("post-contrast" in ln for ln in phase_lines[1:])
    for ln, t in zip(phase_lines, truth.times_min):
        assert f"{t:.2f}" in ln
    assert f"{-0.5:.2f}" in phase_lines[0]  # 30 s before the injection
    assert "DCE: 4 phases, one series per phase; times from AcquisitionTime" in text
    assert "ignored: localizer" in text and "ignored: derived" in text and "ignored: not T1-weighted" in text
    for value in _identifiers(folder):
        assert value not in text


def test_dicom_list_json(exam_folder):
    truth, folder = exam_folder
    data = json.loads(_run([str(folder), "--json"]))
    np.testing.assert_allclose(data["times_min"], truth.times_min, atol=1e-4)
    assert [p["series_number"] for p in data["phases"]] == [10, 11, 12, 13]
    assert {s["role"] for s in data["series"]} >= {"DCE", "localizer", "derived", "not T1-weighted"}
    for value in _identifiers(folder):
        assert value not in json.dumps(data)


def test_dicom_list_series_option(exam_folder):
    truth, folder = exam_folder
    text = _run([str(folder), "--series", "10", "13"])
    assert "DCE: 2 phases" in text and "not selected" in text


def test_dicom_list_prints_what_it_found_before_refusing(exam_folder, tmp_path):
    truth, folder = exam_folder
    only_pre = tmp_path / "pre"
    import shutil

    shutil.copytree(next(folder.glob("010_*")), only_pre / "010")
    parser = argparse.ArgumentParser()
    dicom_list.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["dicom-list", str(only_pre)])
    out = io.StringIO()
    with pytest.raises(InputError, match="only one DCE phase"):
        args.func(args, stream=out)
    assert "t1_fl3d_tra_dyn_spair_pre" in out.getvalue()


def test_dicom_list_registered_in_the_cli():
    from BreastTumorSegLib import cli

    assert "dicom-list" in cli.COMMANDS
    parser = cli.build_parser()
    assert parser.parse_args(["dicom-list", "x"]).func is dicom_list.run


@pytest.mark.skipif(int(pydicom.__version__.split(".")[0]) < 3,
                    reason="DICOM SEG needs highdicom 0.28 with pydicom 3; under Slicer's pydicom 2.4 it is refused "
                           "(test_slicer_environment::test_dicom_seg_without_highdicom_is_refused_in_one_line)")
def test_pipeline_writes_dicom_seg_with_the_other_results(exam_folder, tmp_path):
    """The lead's write_result(..., dicom_seg=True) path, with the phantom's truth as the result."""
    pipeline = importlib.import_module("BreastTumorSegLib.engine.pipeline")
    from BreastTumorSegLib.core.results import SegmentationResult

    truth, folder = exam_folder
    exam = dicom.load_dicom_exam(folder)
    label = sitk.Cast(truth.tumor_mask, sitk.sitkUInt8)
    prob = sitk.Cast(label, sitk.sitkFloat32)
    result = SegmentationResult(case_id=exam.case_id, label=label, probability=prob, lesions=[], model_id="truth")
    written = pipeline.write_result(result, tmp_path / "out", exam=exam, dicom_seg=True)
    seg_path = written["dicom_seg"]
    assert seg_path.name == f"{exam.case_id}_seg.dcm"
    ds = pydicom.dcmread(seg_path)
    assert ds.Modality == "SEG" and ds.StudyInstanceUID == exam.metadata["dicom_source"].study_uid
    summary = (tmp_path / "out" / f"{exam.case_id}.json").read_text()
    for value in _identifiers(folder):
        assert value not in summary
