"""Hostile input, fifth sweep (helper bad19): inputs an outside tester tries that the first four
corpora (test_hostile_inputs.py, test_hostile_commands.py, _2.py, _3.py, _4.py) do not.

Same harness (cli_fixtures.run_hostile_case, check_hostile_result): a refused case exits 2 with ONE
line holding ``error:``, ``Fix:`` and the expected text, no traceback, and leaves every file of its
folder as it was; a case that must work exits 0 and writes only under its output.
docs/hostile-inputs-5.md lists every case, before and after.
"""
from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cli_fixtures import EXAM_CASE as CASE  # noqa: E402
from cli_fixtures import (KIN, SEG, case_registry, check_hostile_result, print_hostile_cases,  # noqa: E402
                          run_hostile_cases, snapshot, write_small_exam)
from test_hostile_commands_3 import _dicom, _exam, _mask, _phase, _visits  # noqa: E402
from test_hostile_commands_4 import _csv, _every_phase, _make_study, _nifti_edit, _rewrite  # noqa: E402

TIMEOUT_S = 150
CASES: dict[str, dict] = {}


case = case_registry(CASES)


def _four_d(f: Path, exam: Path, n: int) -> Path:
    """One 4D NIfTI holding *n* phases: the exam's three, the last repeated (slightly brighter)."""
    imgs = [sitk.Cast(sitk.ReadImage(str(_phase(exam, i))), sitk.sitkFloat32) for i in range(3)]
    while len(imgs) < n:
        imgs.append(imgs[-1] * 1.01)
    out = f / "e4d.nii.gz"
    sitk.WriteImage(sitk.JoinSeries(imgs[:n]), str(out))
    return out


# ------------------------------------------------------------------------------ voxel values and types
@case("seg_4d_nine_phases", "at most 8 phases")
def _(f, exam):
    """one 4D NIfTI holding 9 phases (more than the engine takes)"""
    return SEG + [_four_d(f, exam, 9), "-o", f / "out"]


@case("seg_float64_beyond_float32", "float32")
def _(f, exam):
    """a float64 phase whose values (1e39) do not fit float32"""
    ex = _exam(f, exam)
    _rewrite(_phase(ex, 1), lambda a: a.astype(np.float64) * 1e37)
    return SEG + [ex, "-o", f / "out"]


@case("seg_uint32_large_values_works", "", changes="out")
def _(f, exam):
    """phases stored as uint32 with values up to 4e9 (above int32)"""
    return SEG + [_every_phase(_exam(f, exam), lambda a: (np.clip(a, 0, None) * 4e6).astype(np.uint32)), "-o", f / "out"]


@case("seg_uint64_phases_works", "", changes="out")
def _(f, exam):
    """phases stored as uint64"""
    return SEG + [_every_phase(_exam(f, exam), lambda a: np.clip(a, 0, None).astype(np.uint64)), "-o", f / "out"]


@case("seg_negative_intensities_works", "", changes="out")
def _(f, exam):
    """every phase shifted by -5000 (signed data with an offset: all voxels negative)"""
    return SEG + [_every_phase(_exam(f, exam), lambda a: a.astype(np.float32) - 5000), "-o", f / "out"]


@case("seg_header_claims_4gb", "")
def _(f, exam):
    """an uncompressed NIfTI phase whose header claims 1024^3 float32 voxels (4 GB) in a 400 kB file"""
    ex = _exam(f, exam)
    p = _phase(ex, 1)
    img = sitk.ReadImage(str(p))
    p.unlink()
    raw = ex / f"{CASE}_0001.nii"
    sitk.WriteImage(sitk.Cast(img, sitk.sitkFloat32), str(raw))
    import struct
    data = bytearray(raw.read_bytes())
    struct.pack_into("<hhhh", data, 40, 3, 1024, 1024, 1024)
    raw.write_bytes(bytes(data))
    return SEG + [ex, "-o", f / "out"]


# ------------------------------------------------------------------------------ options
@case("seg_times_decreasing", "increase strictly")
def _(f, exam):
    """--times 0,3,1.5 (not increasing)"""
    return SEG + [_exam(f, exam), "--times", "0,3,1.5", "-o", f / "out"]


@case("seg_times_negative_works", "", changes="out")
def _(f, exam):
    """--times -1,0,1.5 (the pre-contrast before the injection at 0: times relative to the bolus)"""
    return SEG + [_exam(f, exam), "--times=-1,0,1.5", "-o", f / "out"]


@case("seg_times_semicolons", "--times")
def _(f, exam):
    """--times '0;1.5;3' (semicolons)"""
    return SEG + [_exam(f, exam), "--times", "0;1.5;3", "-o", f / "out"]


@case("seg_min_lesion_nan", "--min-lesion-ml")
def _(f, exam):
    """--min-lesion-ml nan"""
    return SEG + [_exam(f, exam), "--min-lesion-ml", "nan", "-o", f / "out"]


@case("seg_min_lesion_negative", "--min-lesion-ml")
def _(f, exam):
    """--min-lesion-ml -1"""
    return SEG + [_exam(f, exam), "--min-lesion-ml=-1", "-o", f / "out"]


@case("seg_threshold_two", "--threshold")
def _(f, exam):
    """--threshold 2 (a probability above 1)"""
    return SEG + [_exam(f, exam), "--threshold", "2", "-o", f / "out"]


@case("seg_seed_lps_nan", "--seed-lps")
def _(f, exam):
    """--seed-lps nan,nan,nan"""
    return SEG + [_exam(f, exam), "--seed-lps", "nan,nan,nan", "-o", f / "out"]


@case("seg_seed_lps_outside", "outside the exam")
def _(f, exam):
    """--seed-lps 1e6,0,0 (far outside the image)"""
    return SEG + [_exam(f, exam), "--seed-lps", "1e6,0,0", "-o", f / "out"]


@case("seg_case_id_300_chars", "--case-id")
def _(f, exam):
    """--case-id of 300 characters (file names longer than the file system takes)"""
    return SEG + [_exam(f, exam), "--case-id", "c" * 300, "-o", f / "out"]


@case("cls_case_id_300_chars", "--case-id")
def _(f, exam):
    """classify: --case-id of 300 characters"""
    return ["classify", _exam(f, exam), "--case-id", "c" * 300, "-o", f / "out", "--no-register", "--quiet"]


@case("seg_channels_with_ftv", "apply to nnU-Net")
def _(f, exam):
    """--channels nonsense"""
    return SEG + [_exam(f, exam), "--channels", "nonsense", "-o", f / "out"]


@case("seg_folds_with_ftv", "apply to nnU-Net")
def _(f, exam):
    """--folds x"""
    return SEG + [_exam(f, exam), "--folds", "x", "-o", f / "out"]


# ------------------------------------------------------------------------------ paths
@case("seg_output_symlink_into_input", "input")
def _(f, exam):
    """--output a symlink pointing into the exam folder"""
    ex = _exam(f, exam)
    (ex / "sub").mkdir()
    os.symlink(ex / "sub", f / "out")
    return SEG + [ex, "-o", f / "out"]


@case("seg_output_dangling_symlink", "symbolic link")
def _(f, exam):
    """--output a symlink that points nowhere"""
    ex = _exam(f, exam)
    os.symlink(f / "nowhere" / "deep", f / "out")
    return SEG + [ex, "-o", f / "out"]


def _dangling(f: Path, name: str = "out") -> Path:
    os.symlink(f / "nowhere" / "deep", f / name)
    return f / name


@case("cls_output_dangling_symlink", "symbolic link")
def _(f, exam):
    """classify: --output a symlink that points nowhere"""
    return ["classify", _exam(f, exam), "-o", _dangling(f), "--no-register", "--quiet"]


@case("kin_output_dangling_symlink", "symbolic link")
def _(f, exam):
    """kinetics: --output a symlink that points nowhere"""
    return KIN + [_exam(f, exam), "-o", _dangling(f)]


@case("fu_output_dangling_symlink", "symbolic link")
def _(f, exam):
    """followup: --output a symlink that points nowhere"""
    a, b = _visits(f, exam)
    return ["followup", a, b, "-o", _dangling(f), "--quiet"]


@case("batch_output_dangling_symlink", "symbolic link")
def _(f, exam):
    """batch: --output a symlink that points nowhere"""
    m = _csv(f, f"case,path\nc1,{_exam(f, exam)}\n")
    return ["batch", m, "-o", _dangling(f), "--model", "ftv", "--no-register", "--progress", "none"]


@case("init_output_dangling_symlink", "symbolic link")
def _(f, exam):
    """study init: --output a symlink that points nowhere"""
    m = _csv(f, f"case,path\nc1,{exam}\n")
    return ["study", "init", "--cases", m, "--readers", "a,b", "--no-breast-region", "--output", _dangling(f, "S")]


@case("ph_output_dangling_symlink", "symbolic link")
def _(f, exam):
    """phantom: --output a symlink that points nowhere"""
    return ["phantom", "--seed", "3", "-o", _dangling(f)]


@case("rs_output_dangling_symlink", "symbolic link")
def _(f, exam):
    """reader-study: --output a symlink that points nowhere"""
    rows = ["case,reader,mask"] + [f"{c},{r},{_mask(f / f'{c}{r}.nii.gz', _phase(exam))}"
                                   for c in ("a", "b") for r in ("r1", "r2", "model")]
    return ["reader-study", _csv(f, "\n".join(rows) + "\n", "t.csv"), "--output", _dangling(f), "--bootstrap", "0",
            "--margins", "-0.05", "0.05"]


@case("seg_output_under_dangling_symlink", "symbolic link")
def _(f, exam):
    """--output a folder below a symlink that points nowhere"""
    return SEG + [_exam(f, exam), "-o", _dangling(f, "link") / "out"]


@case("seg_input_symlink_works", "", changes="out")
def _(f, exam):
    """the exam given through a symlink to its folder"""
    ex = _exam(f, exam)
    os.symlink(ex, f / "link")
    return SEG + [f / "link", "-o", f / "out"]


@case("seg_phase_is_folder", "folder")
def _(f, exam):
    """the phases listed as files, the second one a folder"""
    ex = _exam(f, exam)
    (f / "p1.nii.gz").mkdir()
    return SEG + [_phase(ex, 0), f / "p1.nii.gz", _phase(ex, 2), "-o", f / "out"]


@case("seg_deep_input_path_works", "", changes="out")
def _(f, exam):
    """the exam 20 folders deep (a path of about 1100 characters)"""
    deep = f.joinpath(*(["d" * 50] * 20))
    deep.mkdir(parents=True)
    return SEG + [_exam(deep, exam), "-o", f / "out"]


# ------------------------------------------------------------------------------ DICOM
def _drop(tag: str):
    def change(ds):
        if tag in ds:
            delattr(ds, tag)
    return change


@case("seg_dicom_no_instance_number_works", "", changes="out")
def _(f, exam):
    """DICOM without InstanceNumber in any file"""
    return SEG + [_dicom(f, _drop("InstanceNumber")), "-o", f / "out"]


@case("seg_dicom_pixel_spacing_negative", "PixelSpacing")
def _(f, exam):
    """DICOM PixelSpacing -0.5\\-0.5"""
    def change(ds):
        ds.PixelSpacing = ["-0.5", "-0.5"]
    return SEG + [_dicom(f, change), "-o", f / "out"]


@case("seg_dicom_acq_time_colons_works", "", changes="out")
def _(f, exam):
    """DICOM AcquisitionTime in the old ACR-NEMA form HH:MM:SS"""
    def change(ds):
        t = str(ds.get("AcquisitionTime", ""))
        if len(t) >= 6:
            ds.AcquisitionTime = f"{t[:2]}:{t[2:4]}:{t[4:6]}"
        t = str(ds.get("ContentTime", ""))
        if len(t) >= 6:
            ds.ContentTime = f"{t[:2]}:{t[2:4]}:{t[4:6]}"
    return SEG + [_dicom(f, change), "-o", f / "out"]


@case("seg_dicom_all_same_position", "one slice position")
def _(f, exam):
    """DICOM: every slice of every series at the same ImagePositionPatient"""
    def change(ds):
        ds.ImagePositionPatient = ["0", "0", "0"]
    return SEG + [_dicom(f, change), "-o", f / "out"]


@case("seg_dicom_rows_zero", "16x0 pixels")
def _(f, exam):
    """DICOM Rows 0 in every file"""
    def change(ds):
        ds.Rows = 0
    return SEG + [_dicom(f, change), "-o", f / "out"]


def _dicom_visit(f: Path, name: str, date: str, bump: int = 0) -> Path:
    """A DICOM visit dated *date*; *bump* added to the first stored value of every pre-contrast
    file (so that two visits are not the same exam)."""
    def change(ds):
        ds.StudyDate = date
        if bump and ds.SeriesNumber == 10:
            arr = ds.pixel_array.copy()
            arr.flat[0] += bump
            ds.PixelData = arr.tobytes()
    d = _dicom(f, change)
    return Path(shutil.move(d, f / name))


@case("fu_dicom_study_date_odd", "StudyDate")
def _(f, exam):
    """followup on two DICOM visits whose StudyDate is written 05.01.2024 / 01.03.2024"""
    a = _dicom_visit(f, "v1", "05.01.2024")
    b = _dicom_visit(f, "v2", "01.03.2024", bump=7)
    return ["followup", a, b, "-o", f / "out", "--quiet"]


# ------------------------------------------------------------------------------ tables
@case("batch_manifest_only_bom", "m.csv")
def _(f, exam):
    """batch: a manifest holding only a UTF-8 byte-order mark"""
    (f / "m.csv").write_bytes(b"\xef\xbb\xbf")
    return ["batch", f / "m.csv", "-o", f / "out", "--model", "ftv", "--no-register", "--progress", "none"]


@case("batch_manifest_times_short", "times")
def _(f, exam):
    """batch: a manifest whose times give 2 values for a 3-phase exam"""
    m = _csv(f, f'case,path,times\nc1,{_exam(f, exam)},"0,1.5"\n')
    return ["batch", m, "-o", f / "out", "--model", "ftv", "--no-register", "--progress", "none"]


@case("fu_manifest_header_only", "m.csv")
def _(f, exam):
    """followup --manifest with a header and no row"""
    return ["followup", "--manifest", _csv(f, "patient,visit,path,date\n"), "-o", f / "out", "--quiet"]


@case("fu_manifest_one_visit", "visit")
def _(f, exam):
    """followup --manifest: a patient with one visit"""
    m = _csv(f, f"patient,visit,path,date\np1,1,{_exam(f, exam)},2024-01-05\n")
    return ["followup", "--manifest", m, "-o", f / "out", "--quiet"]


@case("init_cases_header_only", "m.csv")
def _(f, exam):
    """study init: CASES.csv with a header and no row"""
    return ["study", "init", "--cases", _csv(f, "case,path\n"), "--readers", "a,b", "--no-breast-region",
            "--output", f / "S"]


@case("init_readers_twice", "reader")
def _(f, exam):
    """study init: --readers a,a"""
    m = _csv(f, f"case,path\nc1,{exam}\n")
    return ["study", "init", "--cases", m, "--readers", "a,a", "--no-breast-region", "--output", f / "S"]


@case("rs_table_header_only", "t.csv")
def _(f, exam):
    """reader-study: a table with a header and no row"""
    return ["reader-study", _csv(f, "case,reader,mask\n", "t.csv"), "--output", f / "out"]


@case("eval_csv_is_folder", "--csv")
def _(f, exam):
    """evaluate: --csv an existing folder"""
    m = _mask(f / "m.nii.gz", _phase(exam))
    (f / "res").mkdir()
    return ["evaluate", "--pred", m, "--ref", m, "--csv", f / "res"]


@case("eval_csv_dangling_symlink", "exists already")
def _(f, exam):
    """evaluate: --csv a symlink pointing into a folder that does not exist"""
    m = _mask(f / "m.nii.gz", _phase(exam))
    os.symlink(f / "nowhere" / "e.csv", f / "e.csv")
    return ["evaluate", "--pred", m, "--ref", m, "--csv", f / "e.csv"]


@case("kin_roi_empty", "ROI")
def _(f, exam):
    """kinetics: --roi all zero"""
    m = _mask(f / "m.nii.gz", _phase(exam))
    _rewrite(m, lambda a: a * 0)
    return ["kinetics", "--no-register", "--quiet", _exam(f, exam), "--roi", m, "-o", f / "out"]


@case("refine_seg_negative_labels", "s.nii.gz")
def _(f, exam):
    """refine: --seg with labels -1/0"""
    m = _mask(f / "s.nii.gz", _phase(exam))
    _rewrite(m, lambda a: -a.astype(np.int16))
    x, y, z = sitk.ReadImage(str(_phase(exam))).TransformContinuousIndexToPhysicalPoint([10, 7, 5])
    return ["refine", _exam(f, exam), "--seg", m, f"--click-lps={x},{y},{z},+", "-o", f / "o", "--quiet"]


@case("ph_output_is_exam_file", "--output")
def _(f, exam):
    """phantom -o a phase file of an exam"""
    ex = _exam(f, exam)
    return ["phantom", "--seed", "3", "-o", _phase(ex, 0)]


# ------------------------------------------------------------------------------ options of the other commands
@case("kin_box_zero_size", "--box")
def _(f, exam):
    """kinetics: --box 5,5,5,5,5,5 (an empty box)"""
    return ["kinetics", "--no-register", "--quiet", _exam(f, exam), "--box", "5,5,5,5,5,5", "-o", f / "out"]


@case("kin_box_reversed_works", "", changes="out")
def _(f, exam):
    """kinetics: --box with its corners given high first (20,0,-60,-10,-30,-80 LPS mm)"""
    return ["kinetics", "--no-register", "--quiet", _exam(f, exam), "--box=20,0,-60,-10,-30,-80", "-o", f / "out"]


@case("kin_background_fraction_2", "--background-fraction")
def _(f, exam):
    """kinetics: --background-fraction 2"""
    return KIN + [_exam(f, exam), "--background-fraction", "2", "-o", f / "out"]


@case("rs_margins_reversed", "--margins")
def _(f, exam):
    """reader-study: --margins 0.05 -0.05 (the low margin above the high)"""
    rows = ["case,reader,mask"] + [f"{c},{r},{_mask(f / f'{c}{r}.nii.gz', _phase(exam))}"
                                   for c in ("a", "b") for r in ("r1", "r2", "model")]
    return ["reader-study", _csv(f, "\n".join(rows) + "\n", "t.csv"), "--output", f / "out", "--margins", "0.05",
            "-0.05", "--bootstrap", "0"]


@case("rs_alpha_zero", "--alpha")
def _(f, exam):
    """reader-study: --alpha 0"""
    rows = ["case,reader,mask"] + [f"{c},{r},{_mask(f / f'{c}{r}.nii.gz', _phase(exam))}"
                                   for c in ("a", "b") for r in ("r1", "r2", "model")]
    return ["reader-study", _csv(f, "\n".join(rows) + "\n", "t.csv"), "--output", f / "out", "--alpha", "0",
            "--bootstrap", "0"]


@case("rs_scores_missing", "s.csv")
def _(f, exam):
    """reader-study: --scores a file that does not exist"""
    rows = ["case,reader,mask"] + [f"{c},{r},{_mask(f / f'{c}{r}.nii.gz', _phase(exam))}"
                                   for c in ("a", "b") for r in ("r1", "r2", "model")]
    return ["reader-study", _csv(f, "\n".join(rows) + "\n", "t.csv"), "--output", f / "out", "--scores",
            f / "s.csv", "--bootstrap", "0"]


@case("ph_phases_nine", "--phases")
def _(f, exam):
    """phantom --phases 9"""
    return ["phantom", "--seed", "3", "--phases", "9", "-o", f / "out"]


@case("ph_million_seeds", "--seed")
def _(f, exam):
    """phantom --seed 0-999999 (a million exams)"""
    return ["phantom", "--seed", "0-999999", "-o", f / "out"]


@case("init_model_outputs_missing", "does not exist")
def _(f, exam):
    """study init: --model-outputs a folder that does not exist"""
    m = _csv(f, f"case,path\nc1,{exam}\n")
    return ["study", "init", "--cases", m, "--readers", "a,b", "--no-breast-region", "--model-outputs", f / "mo",
            "--output", f / "S"]


@case("init_truth_missing_case", "truth")
def _(f, exam):
    """study init: --truth a table that names no case of the study"""
    m = _csv(f, f"case,path\nc1,{exam}\n")
    t = _csv(f, "case,side,malignant\nzz,left,1\n", "truth.csv")
    return ["study", "init", "--cases", m, "--readers", "a,b", "--no-breast-region", "--truth", t, "--output", f / "S"]


@case("dl_folder_dangling_symlink", "symbolic link to a missing file")
def _(f, exam):
    """dicom-list: DIR a symlink that points nowhere"""
    return ["dicom-list", _dangling(f, "d")]


def _train_config(f: Path, text: str, name: str) -> Path:
    """A training config saved as Notepad's "UTF-8 with BOM" (its lr refused, so that nothing trains)."""
    (f / name).write_bytes(b"\xef\xbb\xbf" + text.encode())
    return f / name


@case("train_json_config_with_bom", "lr")
def _(f, exam):
    """train: a JSON config with a UTF-8 byte-order mark (read as every table is; its lr -1 is refused)"""
    cfg = ('{"name": "t", "task": "tumor", "architecture": {"type": "unet3d", "base": 4, "levels": 2}, "epochs": 1, '
           '"lr": -1, "data": {"source": "phantom", "train_seeds": "1000", "val_seeds": "2000", "size": "small"}}')
    return ["train", "-o", f / "run", "--config", _train_config(f, cfg, "cfg.json")]


@case("train_toml_config_with_bom", "lr")
def _(f, exam):
    """train: a TOML config with a UTF-8 byte-order mark (its lr -1 is refused)"""
    cfg = ('name = "t"\ntask = "tumor"\nepochs = 1\nlr = -1\n[architecture]\ntype = "unet3d"\nbase = 4\nlevels = 2\n'
           '[data]\nsource = "phantom"\ntrain_seeds = "1000"\nval_seeds = "2000"\nsize = "small"\n')
    return ["train", "-o", f / "run", "--config", _train_config(f, cfg, "cfg.toml")]


# ------------------------------------------------------------------------------ harness
@pytest.fixture(scope="module")
def results(tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile_commands_5")
    exam = write_small_exam(root / "_exam")
    _make_study(root, exam)
    return run_hostile_cases(CASES, root, exam, TIMEOUT_S)


@pytest.mark.parametrize("name", list(CASES))
def test_hostile_command_5(results, name):
    check_hostile_result(results[name])


# ------------------------------------------------------------------------------ in process: the Python API (README)
@pytest.fixture(scope="module")
def api(tmp_path_factory) -> dict:
    from BreastTumorSegLib.engine.pipeline import segment_exam
    from BreastTumorSegLib.engine.settings import SegmentSettings
    from BreastTumorSegLib.io import load_exam

    root = tmp_path_factory.mktemp("hostile_5_api")
    exam = write_small_exam(root / "exam")
    loaded = load_exam(exam)
    result = segment_exam(loaded, model="ftv", settings=SegmentSettings(registration="none"))
    (root / "afile").write_text("x")
    os.symlink(root / "nowhere", root / "dangling")
    return {"root": root, "exam": exam, "loaded": loaded, "result": result}


def _load(arg):
    from BreastTumorSegLib.io import load_exam
    return lambda a: load_exam(arg)


def _segment(exam=None, model="ftv", device="auto", **settings):
    def call(a):
        from BreastTumorSegLib.engine.pipeline import segment_exam
        from BreastTumorSegLib.engine.settings import SegmentSettings
        return segment_exam(a["loaded"] if exam is None else exam, model=model, device=device,
                            settings=SegmentSettings(registration="none", **settings))
    return call


def _write(where):
    def call(a):
        from BreastTumorSegLib.engine.pipeline import write_result
        return write_result(a["result"], where(a["root"]))
    return call


API_CASES = {  # name: (call, text the InputError must hold); each was a TypeError/AttributeError/OSError or ran
    "load_exam_none": (_load(None), "a path or a list of paths"),
    "load_exam_int": (_load(5), "a path or a list of paths"),
    "segment_exam_a_path_string": (_segment(exam="exam/"), "needs an exam"),
    "segment_exam_model_none": (_segment(model=None), "model name"),
    "segment_exam_device_tpu": (_segment(device="tpu"), "unknown device"),
    "settings_threshold_nan": (_segment(threshold=float("nan")), "threshold"),
    "settings_threshold_5": (_segment(threshold=5), "threshold"),
    "settings_min_lesion_negative": (_segment(min_lesion_ml=-1), "min_lesion_ml"),
    "settings_mode_unknown": (_segment(mode="percentile"), "mode"),
    "write_result_to_a_file": (_write(lambda r: r / "afile"), "is a file"),
    "write_result_under_a_file": (_write(lambda r: r / "afile" / "out"), "which is a file"),
    "write_result_dangling_link": (_write(lambda r: r / "dangling"), "symbolic link"),
    "write_result_name_too_long": (_write(lambda r: r / ("o" * 300)), "300 bytes long"),
    "write_result_in_proc": (_write(lambda r: Path("/proc/self/out")), "/proc"),
}


@pytest.mark.parametrize("name", list(API_CASES))
def test_python_api_refuses_with_one_clear_error(api, name):
    """The README's Python API (load_exam, segment_exam + SegmentSettings, write_result) given what
    the command line refuses: an InputError naming the argument and the fix, nothing written. Before:
    TypeError / AttributeError / FileExistsError / NotADirectoryError / ENAMETOOLONG from deep inside,
    or (threshold 5 or NaN, min_lesion_ml -1, device 'tpu') a run on a value the command line refuses."""
    from BreastTumorSegLib.core.errors import InputError

    call, text = API_CASES[name]
    before = snapshot(api["root"])
    with pytest.raises(InputError) as info:
        call(api)
    assert text.lower() in str(info.value).lower() and "Fix:" in str(info.value), str(info.value)
    assert snapshot(api["root"]) == before


# ------------------------------------------------------------------------------ in process: a training dataset's case files
def _mamamia(root: Path, times_json: bytes) -> Path:
    """A MAMA-MIA folder of one case (two phases, a label) whose ``<case>.json`` holds *times_json*."""
    case = root / "images" / "c1"
    case.mkdir(parents=True)
    img = sitk.Image([8, 8, 4], sitk.sitkFloat32)
    for k in range(2):
        sitk.WriteImage(img, str(case / f"c1_{k:04d}.nii.gz"))
    (root / "segmentations" / "expert").mkdir(parents=True)
    sitk.WriteImage(sitk.Image([8, 8, 4], sitk.sitkUInt8), str(root / "segmentations" / "expert" / "c1.nii.gz"))
    (case / "c1.json").write_bytes(times_json)
    return root


def test_training_scan_reads_a_case_json_with_a_byte_order_mark(tmp_path):
    """`train` on a MAMA-MIA folder whose <case>.json was saved with a BOM: its times are read, as
    `segment` reads them (sweep 3). Before: json.JSONDecodeError ("Unexpected UTF-8 BOM") out of the scan."""
    from BreastTumorSegLib.training.datasets import scan_dataset

    root = _mamamia(tmp_path, b'\xef\xbb\xbf{"acquisition_times_min": [0, 1.5]}')
    assert scan_dataset(root)[0].times_min == [0, 1.5]


def test_training_scan_names_a_damaged_case_json(tmp_path):
    """A <case>.json that is not JSON (a truncated copy): one InputError naming it, with the fix.
    Before: json.JSONDecodeError from deep inside the dataset scan."""
    from BreastTumorSegLib.core.errors import InputError
    from BreastTumorSegLib.training.datasets import scan_dataset

    root = _mamamia(tmp_path, b'{"acquisition_times_min": [0, 1.')
    with pytest.raises(InputError) as info:
        scan_dataset(root)
    assert str(info.value).startswith(str(root / "images" / "c1" / "c1.json")) and "Fix:" in str(info.value)


# ------------------------------------------------------------------------------ in process: the web station's scores
def test_station_scores_refuse_a_body_nested_too_deep():
    """POST /api/scores/N with a JSON body nested 100,000 deep (under the station's 4 MB limit): 400
    with the expected shape, not a RecursionError (a 500 and a traceback in the station's log)."""
    import asyncio
    import json

    from aiohttp import web
    from BreastTumorSegLib.web.scores import api_scores

    class Request:
        method = "POST"

        async def json(self):  # as aiohttp's Request.json: the body's text through json.loads
            return json.loads("[" * 100_000 + "]" * 100_000)

    def no_case(request):
        return None, "r1", 0

    # A loop of its own, never made the thread's: asyncio.run() would leave the main thread's loop set
    # to None, and trame-slicer's threshold effect (asyncio.get_event_loop(), test_reader_scene.py)
    # then fails in every later test of the same process.
    loop = asyncio.new_event_loop()
    try:
        with pytest.raises(web.HTTPBadRequest):
            loop.run_until_complete(api_scores(Request(), no_case, None))
    finally:
        loop.close()


def test_reader_scores_refuse_a_probability_of_400_digits():
    """A probability sent as a 400-digit integer (valid JSON): refused as not a percentage, not an
    OverflowError (the station's POST /api/scores and ReaderSession.set_scores call this check)."""
    import json

    from BreastTumorSegLib.core.errors import InputError
    from BreastTumorSegLib.study.scores import check_reader_scores

    body = json.loads('{"left": {"probability": 1' + "0" * 400 + "}}")
    with pytest.raises(InputError, match="not a percentage"):
        check_reader_scores(body, ["probability"])


# ------------------------------------------------------------------------------ in process: two runs into one output
def test_two_commits_into_one_folder_at_once_are_never_mixed(tmp_path, monkeypatch):
    """Two runs finish at the same moment into one output folder (no --overwrite): before, both
    passed the "exists already" check, then each renamed its files over the other's: both exited 0
    and the folder held a mix of the two results. Now the commits take turns: one result whole,
    the other run refused with "exists already"."""
    import threading

    from BreastTumorSegLib.core.errors import OutputExistsError
    from BreastTumorSegLib.io import atomic

    out = tmp_path / "out"
    names = ["a_seg.nii.gz", "a.json", "a_overview.png"]
    staged = [atomic.StagedOutputs(out) for _ in range(2)]
    for k, st in enumerate(staged):
        for n in names:
            st.path(n).write_text(f"run {k}")
    arrived = threading.Barrier(2, timeout=2)
    real_replace = os.replace

    def replace(src, dst):  # both runs reach their first rename together, if both got past the check
        if Path(dst).name == names[0]:
            try:
                arrived.wait()
            except threading.BrokenBarrierError:
                pass
        return real_replace(src, dst)

    monkeypatch.setattr(atomic.os, "replace", replace)
    outcome = [None, None]

    def commit(k):
        try:
            staged[k].commit()
            outcome[k] = "done"
        except OutputExistsError:
            outcome[k] = "refused"
        finally:
            staged[k].abort()

    threads = [threading.Thread(target=commit, args=(k,)) for k in range(2)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert sorted(outcome) == ["done", "refused"], outcome
    contents = {(out / n).read_text() for n in names}
    assert len(contents) == 1, f"a mix of both runs: {contents}"
    assert sorted(p.name for p in out.iterdir()) == sorted(names)


# ------------------------------------------------------------------------------ in process: the Slicer Logic
@pytest.fixture(scope="module")
def scene(tmp_path_factory) -> dict:
    pytest.importorskip("slicer")
    from BreastTumorSegLib.slicer.logic import SegmentationLogic
    from BreastTumorSegLib.slicer.phases import Phase
    from test_hostile_commands_4 import _slicer_nodes

    root = tmp_path_factory.mktemp("hostile_5_slicer")
    exam = write_small_exam(root / "exam")
    ctx, nodes = _slicer_nodes(exam, {})
    logic = SegmentationLogic(ctx)
    phases = [Phase(n, 1.5 * i, "test") for i, n in enumerate(nodes)]
    outputs, _ = logic.segment(phases, model="ftv", register=False)
    return {"root": root, "exam": exam, "logic": logic, "phases": phases, "outputs": outputs, "nodes": nodes}


def _export_into_a_file(s):
    from BreastTumorSegLib.slicer.phases import exam_from_phases
    return s["logic"].export_exam(exam_from_phases(s["phases"], "c"), _phase(s["exam"]))


SLICER_CASES = {  # name: (call, text the InputError must hold); before: the exception in the docstring
    "segment_no_phase_selected": (lambda s: s["logic"].segment([], model="ftv", register=False), "0 selected"),
    "follow_up_earlier_visit_empty": (lambda s: s["logic"].compare_with_earlier_visit([], s["phases"]), "0 selected"),
    "segment_times_nan": (lambda s: s["logic"].segment(s["phases"], model="ftv", register=False,
                                                        times_min=[0, float("nan"), 3]), "finite time"),
    "rethreshold_text": (lambda s: s["logic"].rethreshold(s["outputs"], "abc"), "threshold"),
    "lesion_centroid_row_99": (lambda s: s["logic"].lesion_centroid_ras(s["outputs"], 99), "row 99"),
    "lesion_curve_row_99": (lambda s: s["logic"].lesion_curve(s["phases"], s["outputs"], 99), "row 99"),
    "grow_from_nan_point": (lambda s: s["logic"].grow_from_point(s["phases"], s["outputs"], (float("nan"),) * 3),
                            "finite"),
    "compare_with_a_volume_node": (lambda s: s["logic"].compare(s["outputs"].segmentation, [s["nodes"][0]]),
                                   "not a segmentation"),
    "export_exam_into_a_file": (_export_into_a_file, "is a file"),
}


@pytest.mark.parametrize("name", list(SLICER_CASES))
def test_slicer_logic_refuses_with_one_clear_error(scene, name):
    """SegmentationLogic's public methods on a real (headless) MRML scene. Before: IndexError (no
    phase selected, an empty earlier visit), a message without a fix (a NaN time in the phase table), ValueError (threshold text, a lesion row past the table,
    a NaN markup), AttributeError (a volume node as the reference segmentation), FileExistsError
    (export into a file). Now an InputError naming the input and the fix; the files are untouched."""
    from BreastTumorSegLib.core.errors import InputError

    call, text = SLICER_CASES[name]
    before = snapshot(scene["root"])
    with pytest.raises(InputError) as info:
        call(scene)
    assert text.lower() in str(info.value).lower() and "Fix:" in str(info.value), str(info.value)
    assert snapshot(scene["root"]) == before


if __name__ == "__main__":  # one line per case: `python Testing/test_hostile_commands_5.py [NAME ...]`
    import tempfile

    names = sys.argv[1:] or list(CASES)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        exam = write_small_exam(root / "_exam")
        _make_study(root, exam)
        print_hostile_cases(run_hostile_cases(CASES, root, exam, TIMEOUT_S, names), root)
