"""Hostile input, fourth sweep (helper bad18): what the first four corpora
(test_hostile_inputs.py, test_hostile_commands.py, _2.py, _3.py) do not try, on every sub-command.

Same harness as test_hostile_commands_3.py (cli_fixtures.run_hostile_case, check_hostile_result): a refused case exits 2
with ONE line holding ``error:``, ``Fix:`` and the expected text, no traceback, and leaves every
file of its folder as it was; a case that must work exits 0 and writes only under its output.
docs/hostile-inputs-4.md lists every case, before and after.
"""
from __future__ import annotations

import gzip
import os
import shutil
import struct
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cli_fixtures import EXAM_CASE as CASE  # noqa: E402
from cli_fixtures import (KIN, SEG, case_registry, check_hostile_result, print_hostile_cases,  # noqa: E402
                          run_hostile_cases, write_small_exam)
from test_hostile_commands_3 import _click, _dicom, _exam, _mask, _phase, _visits  # noqa: E402  (the third sweep's makers)

TIMEOUT_S = 150
CASES: dict[str, dict] = {}


case = case_registry(CASES)


# ------------------------------------------------------------------------------ input makers
def _rewrite(path: Path, change, cast=None) -> None:
    img = sitk.ReadImage(str(path))
    arr = change(sitk.GetArrayFromImage(img))
    out = sitk.GetImageFromArray(arr)
    out.CopyInformation(img) if out.GetSize() == img.GetSize() else (
        out.SetSpacing(img.GetSpacing()), out.SetOrigin(img.GetOrigin()), out.SetDirection(img.GetDirection()))
    sitk.WriteImage(out, str(path))


def _every_phase(exam: Path, change) -> Path:
    for i in range(3):
        _rewrite(_phase(exam, i), change)
    return exam


def _nifti_edit(path: Path, at: int, fmt: str, *values) -> Path:
    """Overwrite header bytes of a gzip NIfTI-1 file (little-endian) at offset *at*."""
    raw = bytearray(gzip.decompress(path.read_bytes()))
    struct.pack_into("<" + fmt, raw, at, *values)
    path.write_bytes(gzip.compress(bytes(raw)))
    return path


def _nib_phase(path: Path, affine=None, qform_code=None, sform_code=None, dtype=None) -> Path:
    import nibabel as nib

    img = nib.load(str(path))
    data = np.asarray(img.dataobj)
    if dtype is not None:
        data = data.astype(dtype)
    aff = img.affine if affine is None else affine
    out = nib.Nifti1Image(data, aff)
    out.set_qform(aff, int(img.header["qform_code"]) if qform_code is None else qform_code)
    out.set_sform(aff, int(img.header["sform_code"]) if sform_code is None else sform_code)
    nib.save(out, str(path))
    return path


def _csv(f: Path, text: str, name: str = "m.csv", encoding: str = "utf-8", newline: str = "\n") -> Path:
    (f / name).write_bytes(text.replace("\n", newline).encode(encoding))
    return f / name


BATCH = ["--model", "ftv", "--no-register", "--progress", "json"]

# ------------------------------------------------------------------------------ voxel types and shapes
@case("seg_int8_phases_work", "", changes="out")
def _(f, exam):
    """phases stored as int8 (values clipped to -128..127)"""
    ex = _exam(f, exam)
    return SEG + [_every_phase(ex, lambda a: (a / max(1.0, a.max()) * 120).astype(np.int8)), "-o", f / "out"]


@case("seg_uint16_phases_work", "", changes="out")
def _(f, exam):
    """phases stored as uint16"""
    return SEG + [_every_phase(_exam(f, exam), lambda a: np.clip(a, 0, None).astype(np.uint16)), "-o", f / "out"]


@case("seg_nifti_bit_datatype", "DT_BINARY")
def _(f, exam):
    """a phase whose NIfTI datatype is DT_BINARY (1 bit per voxel, a 'bool' image)"""
    ex = _exam(f, exam)
    _nifti_edit(_phase(ex, 1), 70, "hh", 1, 1)
    return SEG + [ex, "-o", f / "out"]


@case("seg_nifti_zero_axes", "0 axes")
def _(f, exam):
    """a phase whose NIfTI header says dim[0] = 0 (no axes)"""
    ex = _exam(f, exam)
    _nifti_edit(_phase(ex, 1), 40, "h", 0)
    return SEG + [ex, "-o", f / "out"]


@case("eval_ref_zero_size_dimension", "zero-size axis")
def _(f, exam):
    """evaluate: --ref a mask whose NIfTI header says dim[2] = 0"""
    m = _mask(f / "m.nii.gz", _phase(exam))
    r = _nifti_edit(Path(shutil.copy(m, f / "r.nii.gz")), 44, "h", 0)
    return ["evaluate", "--pred", m, "--ref", r]


@case("seg_zero_size_dimension", "zero-size axis")
def _(f, exam):
    """a phase whose NIfTI header says dim[3] = 0 (a zero-size dimension)"""
    ex = _exam(f, exam)
    _nifti_edit(_phase(ex, 1), 46, "h", 0)
    return SEG + [ex, "-o", f / "out"]


@case("seg_one_slice_exam", "single slice")
def _(f, exam):
    """every phase one slice (20 x 15 x 1)"""
    return SEG + [_every_phase(_exam(f, exam), lambda a: a[5:6]), "-o", f / "out"]


@case("kin_one_slice_exam", "single slice")
def _(f, exam):
    """kinetics: every phase one slice"""
    return KIN + [_every_phase(_exam(f, exam), lambda a: a[5:6]), "-o", f / "out"]


@case("seg_two_slice_exam_works", "", changes="out")
def _(f, exam):
    """every phase two slices (20 x 15 x 2)"""
    return SEG + [_every_phase(_exam(f, exam), lambda a: a[4:6]), "-o", f / "out"]


@case("seg_pre_all_zero", "every voxel is 0")
def _(f, exam):
    """the pre-contrast phase all zero"""
    ex = _exam(f, exam)
    _rewrite(_phase(ex, 0), lambda a: a * 0)
    return SEG + [ex, "-o", f / "out"]


def _black_series(number: int):
    def change(ds):
        if ds.SeriesNumber == number:
            ds.PixelData = bytes(len(ds.PixelData))
    return change


@case("seg_dicom_phase_all_zero", "holds no image")
def _(f, exam):
    """DICOM: the first post-contrast series all black (pixel data zeroed)"""
    return SEG + [_dicom(f, _black_series(11)), "-o", f / "out"]


@case("cls_dicom_pre_all_zero", "holds no image")
def _(f, exam):
    """DICOM, classify: the pre-contrast series all black"""
    return ["classify", _dicom(f, _black_series(10)), "-o", f / "out", "--no-register", "--quiet"]


@case("seg_scl_slope_inf_int_phase_works", "", changes="out")
def _(f, exam):
    """an int16 phase whose scl_slope is Inf (NIfTI: a non-finite slope means no scaling)"""
    ex = _exam(f, exam)
    _rewrite(_phase(ex, 1), lambda a: a.astype(np.int16))
    _nifti_edit(_phase(ex, 1), 112, "ff", float("inf"), 0.0)
    return SEG + [ex, "-o", f / "out"]


@case("seg_scl_slope_nan_int_phase_works", "", changes="out")
def _(f, exam):
    """an int16 phase whose scl_slope is NaN (NIfTI: no scaling)"""
    ex = _exam(f, exam)
    _rewrite(_phase(ex, 1), lambda a: a.astype(np.int16))
    _nifti_edit(_phase(ex, 1), 112, "ff", float("nan"), 0.0)
    return SEG + [ex, "-o", f / "out"]


# ------------------------------------------------------------------------------ geometry
def _sform(path: Path, rows) -> Path:
    """Write *rows* (3 x 4) as the sform of a gzip NIfTI-1 file, sform_code 1, qform_code 0."""
    _nifti_edit(path, 252, "hh", 0, 1)
    for k, row in enumerate(rows):
        _nifti_edit(path, 280 + 16 * k, "4f", *map(float, row))
    return path


@case("seg_singular_sform", "orientation")
def _(f, exam):
    """a phase whose sform is singular (a zero column) and no qform"""
    ex = _exam(f, exam)
    _sform(_phase(ex, 1), [[3, 0, 0, 0], [0, 3, 0, 0], [0, 0, 0, 0]])
    return SEG + [ex, "-o", f / "out"]


@case("seg_singular_sform_every_phase", "orientation")
def _(f, exam):
    """every phase with a singular sform (two equal columns), no qform"""
    ex = _exam(f, exam)
    for i in range(3):
        _sform(_phase(ex, i), [[3, 3, 0, 0], [0, 0, 3, 0], [0, 0, 3, 0]])
    return SEG + [ex, "-o", f / "out"]


@case("seg_sform_not_orthonormal_every_phase", "right angles")
def _(f, exam):
    """every phase with a sheared sform (axes at 60 degrees), no qform"""
    ex = _exam(f, exam)
    for i in range(3):
        _sform(_phase(ex, i), [[3, 1.5, 0, 0], [0, 2.6, 0, 0], [0, 0, 3, 0]])
    return SEG + [ex, "-o", f / "out"]


@case("seg_negative_sform_diagonal_works", "", changes="out")
def _(f, exam):
    """every phase with an sform whose diagonal is negative (-3 mm: a flip, legal NIfTI)"""
    ex = _exam(f, exam)
    aff = np.diag([-3.0, -3.0, 3.0, 1.0])
    for i in range(3):
        _nib_phase(_phase(ex, i), aff, qform_code=1, sform_code=1)
    return SEG + [ex, "-o", f / "out"]


@case("seg_phase_other_spacing_same_extent", "", changes="out")
def _(f, exam):
    """the last phase on a grid of half the voxel size covering the same field of view"""
    ex = _exam(f, exam)
    img = sitk.ReadImage(str(_phase(ex, 2)))
    ref = sitk.Image([s * 2 for s in img.GetSize()], img.GetPixelID())
    ref.SetSpacing([s / 2 for s in img.GetSpacing()])
    ref.SetOrigin([o - s / 4 for o, s in zip(img.GetOrigin(), img.GetSpacing())])
    ref.SetDirection(img.GetDirection())
    sitk.WriteImage(sitk.Resample(img, ref, sitk.Transform(), sitk.sitkLinear), str(_phase(ex, 2)))
    return SEG + [ex, "-o", f / "out"]


@case("seg_phase_far_away", "does not overlap")
def _(f, exam):
    """the last phase 1 m away from the others (another origin)"""
    ex = _exam(f, exam)
    img = sitk.ReadImage(str(_phase(ex, 2)))
    img.SetOrigin([o + 1000 for o in img.GetOrigin()])
    sitk.WriteImage(img, str(_phase(ex, 2)))
    return SEG + [ex, "-o", f / "out"]


# ------------------------------------------------------------------------------ files and folders
@case("seg_folder_named_like_a_phase", "folder")
def _(f, exam):
    """a folder named phantom_0003_0003.nii.gz inside the exam folder"""
    ex = _exam(f, exam)
    (ex / f"{CASE}_0003.nii.gz").mkdir()
    return SEG + [ex, "-o", f / "out"]


@case("seg_output_is_file", "file")
def _(f, exam):
    """segment: --output is an existing file"""
    (f / "out").write_text("notes")
    return SEG + [_exam(f, exam), "-o", f / "out"]


@case("kin_output_is_file", "file")
def _(f, exam):
    """kinetics: --output is an existing file"""
    (f / "out").write_text("notes")
    return KIN + [_exam(f, exam), "-o", f / "out"]


@case("fu_output_is_file", "file")
def _(f, exam):
    """followup: --output is an existing file"""
    a, b = _visits(f, exam)
    (f / "out").write_text("notes")
    return ["followup", a, b, "-o", f / "out", "--quiet"]


@case("ph_output_is_file", "file")
def _(f, exam):
    """phantom: --output is an existing file"""
    (f / "out").write_text("notes")
    return ["phantom", "--seed", "3", "--output", f / "out"]


@case("demo_output_is_file", "file")
def _(f, exam):
    """demo: --output is an existing file"""
    (f / "out").write_text("notes")
    return ["demo", "--quiet", "-o", f / "out"]


@case("refine_output_is_file", "file")
def _(f, exam):
    """refine: --output is an existing file"""
    ex = _exam(f, exam)
    seg = _mask(f / "s.nii.gz", _phase(exam))
    (f / "out").write_text("notes")
    return ["refine", ex, "--seg", seg, _click(ex), "-o", f / "out", "--quiet"]


@case("rs_output_is_file", "file")
def _(f, exam):
    """reader-study: --output is an existing file"""
    rows = ["case,reader,mask"]
    for c in ("a", "b"):
        for reader in ("r1", "r2", "model"):
            rows.append(f"{c},{reader},{_mask(f / f'{c}_{reader}.nii.gz', _phase(exam))}")
    (f / "t.csv").write_text("\n".join(rows) + "\n")
    (f / "out").write_text("notes")
    return ["reader-study", f / "t.csv", "--output", f / "out"]


@case("init_output_is_file", "file")
def _(f, exam):
    """study init: --output is an existing file"""
    _csv(f, f"case,path\nc1,{_exam(f, exam)}\n")
    (f / "st").write_text("notes")
    return ["study", "init", "--cases", f / "m.csv", "--readers", "a,b", "--output", f / "st", "--no-breast-region"]


@case("dl_folder_is_file", "file")
def _(f, exam):
    """dicom-list: FOLDER is a file"""
    return ["dicom-list", _phase(_exam(f, exam))]


@case("fu_visit_is_text_file", "visit")
def _(f, exam):
    """followup: the second visit is a text file"""
    a, _b = _visits(f, exam)
    (f / "v2.txt").write_text("not an exam")
    return ["followup", a, f / "v2.txt", "-o", f / "out", "--quiet"]


@case("fu_output_inside_visit", "inside")
def _(f, exam):
    """followup: --output inside the baseline's exam folder"""
    a, b = _visits(f, exam)
    return ["followup", a, b, "-o", a / "fu", "--quiet"]


@case("cls_output_inside_exam", "inside")
def _(f, exam):
    """classify: --output inside the exam folder"""
    ex = _exam(f, exam)
    return ["classify", ex, "-o", ex / "out", "--no-register", "--quiet"]


@case("eval_pred_4d", "4D")
def _(f, exam):
    """evaluate: --pred a 4D file"""
    m = _mask(f / "m.nii.gz", _phase(exam))
    img = sitk.ReadImage(str(m))
    sitk.WriteImage(sitk.JoinSeries([img, img]), str(f / "m4.nii.gz"))
    return ["evaluate", "--pred", f / "m4.nii.gz", "--ref", m]


@case("eval_ref_2d", "2D")
def _(f, exam):
    """evaluate: --ref a 2D mask"""
    m = _mask(f / "m.nii.gz", _phase(exam))
    sitk.WriteImage(sitk.ReadImage(str(m))[:, :, 3], str(f / "m2.nii.gz"))
    return ["evaluate", "--pred", m, "--ref", f / "m2.nii.gz"]


@case("eval_pred_nan", "NaN")
def _(f, exam):
    """evaluate: --pred a float mask holding NaN"""
    m = _mask(f / "m.nii.gz", _phase(exam))
    img = sitk.Cast(sitk.ReadImage(str(m)), sitk.sitkFloat32)
    img[1, 1, 1] = float("nan")
    sitk.WriteImage(img, str(f / "n.nii.gz"))
    return ["evaluate", "--pred", f / "n.nii.gz", "--ref", m]


@case("refine_click_nan", "click")
def _(f, exam):
    """refine: a click at nan,nan,nan"""
    ex = _exam(f, exam)
    seg = _mask(f / "s.nii.gz", _phase(exam))
    return ["refine", ex, "--seg", seg, "--click-lps=nan,nan,nan,+", "-o", f / "out", "--quiet"]


@case("refine_seg_4d", "4D")
def _(f, exam):
    """refine: --seg a 4D file"""
    ex = _exam(f, exam)
    m = _mask(f / "m.nii.gz", _phase(exam))
    img = sitk.ReadImage(str(m))
    sitk.WriteImage(sitk.JoinSeries([img, img]), str(f / "m4.nii.gz"))
    return ["refine", ex, "--seg", f / "m4.nii.gz", _click(ex), "-o", f / "out", "--quiet"]


# ------------------------------------------------------------------------------ manifests
@case("batch_manifest_crlf_works", "", changes="out")
def _(f, exam):
    """batch: manifest saved with CRLF line ends (Windows)"""
    ex = _exam(f, exam)
    return ["batch", _csv(f, f"case,path\nc1,{ex}\n", newline="\r\n"), "-o", f / "out"] + BATCH


@case("batch_manifest_unicode_space_paths_work", "", changes="out")
def _(f, exam):
    """batch: manifest with a unicode case id and a path with spaces and non-ASCII letters"""
    ex = _exam(f, exam, "exam ü ä 検査")
    return ["batch", _csv(f, f"case,path\nfall_é,{ex}\n"), "-o", f / "out"] + BATCH


@case("batch_manifest_utf16_works", "", changes="out")
def _(f, exam):
    """batch: manifest saved as UTF-16 with its byte-order mark (as Excel's 'Unicode text' encodes)"""
    ex = _exam(f, exam)
    return ["batch", _csv(f, f"case,path\nc1,{ex}\n", encoding="utf-16"), "-o", f / "out"] + BATCH


@case("batch_manifest_latin1", "save it as CSV UTF-8")
def _(f, exam):
    """batch: manifest in Latin-1 (a case id with an accent)"""
    return ["batch", _csv(f, f"case,path\nfall_\u00e9,{_exam(f, exam)}\n", encoding="latin-1"), "-o", f / "out"] + BATCH


@case("fu_manifest_utf16_works", "", changes="out")
def _(f, exam):
    """followup --manifest saved as UTF-16 with its byte-order mark"""
    a, b = _visits(f, exam)
    text = f"patient,visit,path,date\np1,1,{a},2024-01-05\np1,2,{b},2024-03-01\n"
    return ["followup", "--manifest", _csv(f, text, encoding="utf-16"), "-o", f / "out", "--quiet"]


@case("init_cases_utf16_works", "", changes="st")
def _(f, exam):
    """study init: CASES.csv saved as UTF-16 with its byte-order mark"""
    return ["study", "init", "--cases", _csv(f, f"case,path\nc1,{_exam(f, exam)}\n", encoding="utf-16"),
            "--readers", "a,b", "--output", f / "st", "--no-breast-region"]


@case("rs_table_utf16_works", "", changes="out")
def _(f, exam):
    """reader-study: the table saved as UTF-16 with its byte-order mark"""
    rows = ["case,reader,mask"]
    for c in ("a", "b"):
        for reader in ("r1", "r2", "model"):
            rows.append(f"{c},{reader},{_mask(f / f'{c}_{reader}.nii.gz', _phase(exam))}")
    return ["reader-study", _csv(f, "\n".join(rows) + "\n", "t.csv", encoding="utf-16"), "--output", f / "out",
            "--margins", "-0.05", "0.05", "--bootstrap", "0"]


@case("batch_manifest_tab_separated", "tab")
def _(f, exam):
    """batch: manifest separated by tabs"""
    ex = _exam(f, exam)
    return ["batch", _csv(f, f"case\tpath\nc1\t{ex}\n"), "-o", f / "out"] + BATCH


@case("batch_manifest_duplicate_rows", "c1")
def _(f, exam):
    """batch: the same row twice"""
    ex = _exam(f, exam)
    return ["batch", _csv(f, f"case,path\nc1,{ex}\nc1,{ex}\n"), "-o", f / "out"] + BATCH


@case("batch_manifest_two_cases_one_exam_works", "", changes="out")
def _(f, exam):
    """batch: two case ids with the same exam path (each segmented under its own name)"""
    ex = _exam(f, exam)
    return ["batch", _csv(f, f"case,path\nc1,{ex}\nc2,{ex}\n"), "-o", f / "out"] + BATCH


@case("batch_manifest_quoted_path_with_comma_works", "", changes="out")
def _(f, exam):
    """batch: a quoted path holding a comma"""
    ex = _exam(f, exam, "exam, left")
    return ["batch", _csv(f, f'case,path\nc1,"{ex}"\n'), "-o", f / "out"] + BATCH


@case("batch_manifest_missing_case_column", "case")
def _(f, exam):
    """batch: manifest with only a path column"""
    return ["batch", _csv(f, f"path\n{_exam(f, exam)}\n"), "-o", f / "out"] + BATCH


@case("batch_output_is_manifest", "is a file")
def _(f, exam):
    """batch: --output the manifest itself"""
    m = _csv(f, f"case,path\nc1,{_exam(f, exam)}\n")
    return ["batch", m, "-o", m] + BATCH


@case("fu_manifest_crlf_bom_works", "", changes="out")
def _(f, exam):
    """followup --manifest: CRLF and a BOM"""
    a, b = _visits(f, exam)
    text = f"patient,visit,path,date\np1,1,{a},2024-01-05\np1,2,{b},2024-03-01\n"
    (f / "m.csv").write_bytes(b"\xef\xbb\xbf" + text.replace("\n", "\r\n").encode())
    return ["followup", "--manifest", f / "m.csv", "-o", f / "out", "--quiet"]


def _fu_manifest(f: Path, exam: Path) -> Path:
    a, b = _visits(f, exam)
    return _csv(f, f"patient,visit,path,date\np1,1,{a},2024-01-05\np1,2,{b},2024-03-01\n")


@case("fu_manifest_output_is_file", "is a file")
def _(f, exam):
    """followup --manifest: --output is an existing file"""
    m = _fu_manifest(f, exam)
    (f / "out").write_text("notes")
    return ["followup", "--manifest", m, "-o", f / "out", "--quiet"]


@case("fu_manifest_output_system_folder", "system folder")
def _(f, exam):
    """followup --manifest: --output in a folder nobody may write (/proc)"""
    return ["followup", "--manifest", _fu_manifest(f, exam), "-o", "/proc/self/fu", "--quiet"]


@case("fu_manifest_output_under_file", "which is a file")
def _(f, exam):
    """followup --manifest: --output below an existing file"""
    m = _fu_manifest(f, exam)
    (f / "notes").write_text("notes")
    return ["followup", "--manifest", m, "-o", f / "notes" / "out", "--quiet"]


@case("fu_manifest_duplicate_visit", "visit")
def _(f, exam):
    """followup --manifest: the same patient and visit twice"""
    a, b = _visits(f, exam)
    return ["followup", "--manifest", _csv(f, f"patient,visit,path\np1,1,{a}\np1,1,{b}\n"), "-o", f / "out", "--quiet"]


@case("init_cases_crlf_unicode_works", "", changes="st")
def _(f, exam):
    """study init: CASES.csv with CRLF and a unicode path with spaces"""
    ex = _exam(f, exam, "Fälle 1")
    return ["study", "init", "--cases", _csv(f, f"case,path\nc1,{ex}\n", newline="\r\n"), "--readers", "a,b",
            "--output", f / "st", "--no-breast-region"]


@case("init_cases_duplicate_rows", "c1")
def _(f, exam):
    """study init: the same case row twice"""
    ex = _exam(f, exam)
    return ["study", "init", "--cases", _csv(f, f"case,path\nc1,{ex}\nc1,{ex}\n"), "--readers", "a,b",
            "--output", f / "st", "--no-breast-region"]


@case("rs_table_crlf_tabs", "tab")
def _(f, exam):
    """reader-study: a table separated by tabs"""
    rows = ["case\treader\tmask"]
    for c in ("a", "b"):
        for reader in ("r1", "r2", "model"):
            rows.append(f"{c}\t{reader}\t{_mask(f / f'{c}_{reader}.nii.gz', _phase(exam))}")
    (f / "t.csv").write_text("\r\n".join(rows) + "\r\n")
    return ["reader-study", f / "t.csv", "--output", f / "out"]


@case("rs_table_duplicate_rows", "remove the repeated row")
def _(f, exam):
    """reader-study: one reader's mask of one case given twice"""
    rows = ["case,reader,mask"]
    for c in ("a", "b"):
        for reader in ("r1", "r2", "model"):
            rows.append(f"{c},{reader},{_mask(f / f'{c}_{reader}.nii.gz', _phase(exam))}")
    rows.append(rows[1])
    (f / "t.csv").write_text("\n".join(rows) + "\n")
    return ["reader-study", f / "t.csv", "--output", f / "out"]


# ------------------------------------------------------------------------------ dates
DATE_CASES = {  # name: (text the message must hold, --dates, the input)
    "fu_dates_iso_datetime": ("YYYY-MM-DD", "2024-01-05T10:00,2024-03-01T09:00", "with times of day"),
    "fu_dates_same_day": ("not after", "2024-01-05,2024-01-05", "both visits on the same day"),
    "fu_dates_too_many": ("date", "2024-01-05,2024-02-05,2024-03-05", "three dates for two visits"),
    "fu_dates_year_zero": ("date", "0000-01-01,2024-03-05", "year 0"),
    "fu_dates_unicode_digits": ("date", "\u0662\u0660\u0662\u0664-\u0660\u0661-\u0660\u0665,2024-03-05",
                                "written with Arabic-Indic digits"),
    "fu_dates_empty_one": ("date", ",2024-03-05", "the first left empty"),
}


def _dates_case(dates: str):
    def build(f, exam):
        a, b = _visits(f, exam)
        return ["followup", a, b, "--dates", dates, "-o", f / "out", "--quiet"]
    return build


for _name, (_expect, _dates, _what) in DATE_CASES.items():
    _build = _dates_case(_dates)
    _build.__doc__ = f"followup --dates {_dates!r}: {_what}"
    case(_name, _expect)(_build)


# ------------------------------------------------------------------------------ study import, kinetics ROI, models, seeds
def _study(f: Path) -> Path:
    return Path(shutil.copytree(f.parent / "_study", f / "st"))


def _mask4d(f: Path, exam: Path) -> Path:
    m = _mask(f / "m.nii.gz", _phase(exam))
    img = sitk.ReadImage(str(m))
    sitk.WriteImage(sitk.JoinSeries([img, img]), str(f / "m4.nii.gz"))
    return f / "m4.nii.gz"


@case("import_mask_4d", "4D")
def _(f, exam):
    """study import: the reader's mask a 4D file"""
    return ["study", "import", _study(f), "--reader", "a", "--case", "c1", "--mask", _mask4d(f, exam)]


@case("import_mask_bit_datatype", "DT_BINARY")
def _(f, exam):
    """study import: a mask whose NIfTI datatype is DT_BINARY"""
    m = _nifti_edit(_mask(f / "m.nii.gz", _phase(exam)), 70, "hh", 1, 1)
    return ["study", "import", _study(f), "--reader", "a", "--case", "c1", "--mask", m]


@case("import_probability_150", "0")
def _(f, exam):
    """study import: --probability 150,20 (percent above 100)"""
    return ["study", "import", _study(f), "--reader", "a", "--case", "c1", "--mask", _mask(f / "m.nii.gz", _phase(exam)),
            "--probability", "150,20"]


@case("import_birads_7", "BI-RADS")
def _(f, exam):
    """study import: --birads 7,X"""
    return ["study", "import", _study(f), "--reader", "a", "--case", "c1", "--mask", _mask(f / "m.nii.gz", _phase(exam)),
            "--birads", "7,X"]


@case("kin_roi_4d", "4D")
def _(f, exam):
    """kinetics: --roi a 4D file"""
    return ["kinetics", "--no-register", "--quiet", _exam(f, exam), "--roi", _mask4d(f, exam), "-o", f / "out"]


@case("kin_roi_zero_size_axis", "zero-size axis")
def _(f, exam):
    """kinetics: --roi whose NIfTI header says dim[1] = 0"""
    m = _nifti_edit(_mask(f / "m.nii.gz", _phase(exam)), 42, "h", 0)
    return ["kinetics", "--no-register", "--quiet", _exam(f, exam), "--roi", m, "-o", f / "out"]


@case("models_dir_is_file", "folder")
def _(f, exam):
    """models --models-dir a file"""
    (f / "md").write_text("x")
    return ["models", "--models-dir", f / "md"]


@case("models_dir_missing", "does not exist")
def _(f, exam):
    """models --models-dir a folder that does not exist (a typo)"""
    return ["models", "--models-dir", f / "my_modles"]


@case("ph_seed_beyond_64_bits_works", "", changes="out")
def _(f, exam):
    """phantom --seed 2**64 (numpy's generator takes any non-negative integer)"""
    return ["phantom", "--seed", str(2 ** 64), "-o", f / "out"]


# ------------------------------------------------------------------------------ harness
def _make_study(root: Path, exam: Path) -> None:
    from BreastTumorSegLib.cli import main

    (root / "_cases.csv").write_text(f"case,path\nc1,{exam}\n")
    assert main(["study", "init", "--cases", str(root / "_cases.csv"), "--readers", "a,b", "--no-breast-region",
                 "--scores", "probability,birads", "--seed", "1", "--output", str(root / "_study")]) == 0


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile_commands_4")
    exam = write_small_exam(root / "_exam")
    _make_study(root, exam)
    return run_hostile_cases(CASES, root, exam, TIMEOUT_S)


@pytest.mark.parametrize("name", list(CASES))
def test_hostile_command_4(results, name):
    check_hostile_result(results[name])


# ------------------------------------------------------------------------------ in process: a disk that fills up mid-write, every command
@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("hostile_4_inputs")
    exam = write_small_exam(root / "exam")
    v1, v2 = _visits(root, exam, ("v1", "v2"))
    m = _mask(root / "m.nii.gz", _phase(exam))
    rows = ["case,reader,mask"] + [f"{c},{r},{m}" for c in ("a", "b") for r in ("r1", "r2", "model")]
    (root / "t.csv").write_text("\n".join(rows) + "\n")
    (root / "cases.csv").write_text(f"case,path\nc1,{exam}\n")
    (root / "man.csv").write_text(f"case,path\nc1,{v1}\nc2,{v2}\n")
    (root / "fu.csv").write_text(f"patient,visit,path,date\np1,1,{v1},2024-01-05\np1,2,{v2},2024-03-01\n")
    return {"root": root, "exam": exam, "v1": v1, "v2": v2, "mask": m, "click": _click(exam)}


def _argv(command: str, i: dict, out: Path) -> list[str]:
    e, r = str(i["exam"]), i["root"]
    return {
        "segment": SEG + [e, "-o", str(out)],
        "classify": ["classify", e, "-o", str(out), "--no-register", "--quiet"],
        "kinetics": KIN + [e, "-o", str(out)],
        "refine": ["refine", e, "--seg", str(i["mask"]), i["click"], "-o", str(out), "--quiet"],
        "followup": ["followup", str(i["v1"]), str(i["v2"]), "-o", str(out), "--quiet", "--model", "ftv"],
        "reader-study": ["reader-study", str(r / "t.csv"), "--output", str(out), "--margins", "-0.05", "0.05",
                         "--bootstrap", "0"],
        "study-init": ["study", "init", "--cases", str(r / "cases.csv"), "--readers", "a,b", "--no-breast-region",
                       "--output", str(out)],
        "phantom": ["phantom", "--seed", "3,4", "-o", str(out)],
        "evaluate": ["evaluate", "--pred", str(i["mask"]), "--ref", str(i["mask"]), "--csv", str(out / "e.csv")],
    }[command]


FULL_DISK_COMMANDS = ["segment", "classify", "kinetics", "refine", "followup", "reader-study", "study-init", "phantom",
                      "evaluate"]


@pytest.mark.parametrize("where", ["image writer", "rename"])
@pytest.mark.parametrize("command", FULL_DISK_COMMANDS)
def test_a_disk_that_fills_up_mid_write_leaves_nothing(inputs, tmp_path, monkeypatch, capsys, command, where):
    """The free-space check passed, then the disk fills up: from the second image written (ITK's
    RuntimeError) or the second file renamed into place (OSError ENOSPC); a command that writes one
    such file fails on it. Exit 2, one line naming an output and the fix, and nothing left in the
    output folder (the evaluate CSV: no file). Held on main already: pinned for every command."""
    import errno

    from BreastTumorSegLib.cli import main
    from BreastTumorSegLib.io import atomic

    def attempt(fail_from: int, out: Path):
        calls = []
        with monkeypatch.context() as mp:
            if where == "image writer":
                real_write = sitk.WriteImage

                def write(img, path, *a, **k):
                    calls.append(path)
                    if len(calls) >= fail_from:
                        raise RuntimeError(f"itk::ERROR: ImageIO: could not write {path}: No space left on device")
                    return real_write(img, path, *a, **k)
                mp.setattr(sitk, "WriteImage", write)
            else:
                real_replace = os.replace

                def replace(src, dst):
                    calls.append(dst)
                    if len(calls) >= fail_from:
                        raise OSError(errno.ENOSPC, "No space left on device", str(dst))
                    return real_replace(src, dst)
                mp.setattr(atomic.os, "replace", replace)
            if command == "evaluate":
                out.mkdir()
            rc = main(_argv(command, inputs, out))
        return rc, calls

    out = tmp_path / "out"
    rc, calls = attempt(2, out)
    if len(calls) < 2:  # one file of this kind: it is the one that fails
        shutil.rmtree(out, ignore_errors=True)
        capsys.readouterr()
        rc, calls = attempt(1, out)
    if not calls:
        pytest.skip(f"{command} writes no file through the {where}")
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip() and not ln.startswith("[")]
    left = sorted(str(p.relative_to(out)) for p in out.rglob("*")) if out.exists() else []
    assert rc == 2, f"{command}: exit {rc}\n{err}"
    assert len(lines) == 1 and "Traceback" not in err and "Fix:" in lines[0], err
    assert "the disk is full" in lines[0], lines[0]
    assert not left, f"{command}: left after the failure: {left}"


def _little_free_space(monkeypatch, free: int = 1 << 20) -> None:
    from collections import namedtuple

    from BreastTumorSegLib.io import safety

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(safety.shutil, "disk_usage", lambda p: usage(1 << 30, (1 << 30) - free, free))


@pytest.mark.parametrize("command", ["batch", "followup-manifest"])
def test_a_full_disk_is_refused_before_a_batch_starts(inputs, tmp_path, monkeypatch, capsys, command):
    """1 MB free: `batch` and `followup --manifest` refused in one line before anything is written,
    as every other writing command is (batch made the ledger, then failed every exam)."""
    from BreastTumorSegLib.cli import main

    _little_free_space(monkeypatch)
    out, r = tmp_path / "out", inputs["root"]
    argv = (["batch", str(r / "man.csv"), "-o", str(out)] + BATCH if command == "batch"
            else ["followup", "--manifest", str(r / "fu.csv"), "-o", str(out), "--quiet", "--model", "ftv"])
    rc = main(argv)
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip() and not ln.startswith("[") and not ln.startswith("{")]
    assert rc == 2, f"exit {rc}\n{err}"
    assert len(lines) == 1 and "MB free" in lines[0] and "Fix:" in lines[0], err
    assert not out.exists(), sorted(out.rglob("*"))


# ------------------------------------------------------------------------------ in process: the Slicer module's Logic
def _slicer_nodes(exam: Path, change):
    """The exam's phases as volume nodes of a headless scene, *change* applied: its "images" entry
    to the images before the nodes are made, its "nodes" entry to the nodes after."""
    from BreastTumorSegLib.slicer import mrml_bridge as mb

    ctx = mb.MRMLContext.headless()
    images = [sitk.ReadImage(str(_phase(exam, i))) for i in range(3)]
    images = change.get("images", lambda ims: ims)(images)
    nodes = [mb.image_to_volume_node(ctx, img, f"phase{i}") for i, img in enumerate(images)]
    change.get("nodes", lambda ns: None)(nodes)
    return ctx, nodes


def _constant(img, value=0.0):
    out = sitk.Image(img.GetSize(), sitk.sitkFloat32) + value
    out.CopyInformation(img)
    return out


def _respaced(images, spacing):
    for img in images:
        img.SetSpacing([spacing] * 3)
    return images


def _set_matrix(nodes, edit):
    import vtk

    m = vtk.vtkMatrix4x4()
    nodes[0].GetIJKToRASMatrix(m)
    edit(m)
    for n in nodes:
        n.SetIJKToRASMatrix(m)


def _twice(nodes):
    nodes[2] = nodes[1]


SLICER_CASES = {
    # case: (change, text the InputError must hold, the node it must name)
    "pre-contrast all zero": ({"images": lambda ims: [_constant(ims[0])] + ims[1:]}, "every voxel is 0", "phase0"),
    "post-contrast constant": ({"images": lambda ims: [ims[0], _constant(ims[1], 7.0), ims[2]]}, "every voxel is 7",
                               "phase1"),
    "spacing 500 mm (was: ITK out of memory)": ({"images": lambda ims: _respaced(ims, 500.0)}, "0.01-50 mm", "phase0"),
    "spacing 1e-5 mm": ({"images": lambda ims: _respaced(ims, 1e-5)}, "0.01-50 mm", "phase0"),
    "sheared IJK to RAS": ({"nodes": lambda ns: _set_matrix(ns, lambda m: m.SetElement(0, 1, 1.5))}, "right angles",
                           "phase0"),
    "singular IJK to RAS (was: LinAlgError)": (
        {"nodes": lambda ns: _set_matrix(ns, lambda m: [m.SetElement(r, 0, 0.0) for r in range(3)])}, "NaN", "phase0"),
    "one volume as two phases": ({"nodes": _twice}, "same volume", "phase1"),
}


@pytest.mark.parametrize("name", list(SLICER_CASES))
def test_the_slicer_logic_refuses_what_the_command_line_refuses(inputs, name):
    """SegmentationLogic.segment (the module's in-process run) on volume nodes the file readers would
    have refused: an InputError naming the node and the fix (the panel shows it), never a result
    of an empty phase, an ITK allocation failure or a numpy LinAlgError."""
    pytest.importorskip("slicer")
    from BreastTumorSegLib.core.errors import InputError
    from BreastTumorSegLib.slicer.logic import SegmentationLogic
    from BreastTumorSegLib.slicer.phases import Phase

    change, text, node = SLICER_CASES[name]
    ctx, nodes = _slicer_nodes(inputs["exam"], change)
    phases = [Phase(n, 1.5 * i, "test") for i, n in enumerate(nodes)]
    with pytest.raises(InputError) as info:
        SegmentationLogic(ctx).segment(phases, model="ftv", register=False)
    msg = str(info.value)
    assert msg.startswith(f"{node}: ") and text in msg and "Fix:" in msg, msg


def test_the_slicer_logic_still_segments_a_sound_exam(inputs):
    pytest.importorskip("slicer")
    from BreastTumorSegLib.slicer.logic import SegmentationLogic
    from BreastTumorSegLib.slicer.phases import Phase

    ctx, nodes = _slicer_nodes(inputs["exam"], {})
    _out, result = SegmentationLogic(ctx).segment([Phase(n, 1.5 * i, "test") for i, n in enumerate(nodes)],
                                                  model="ftv", register=False)
    assert result.label.GetSize() == sitk.ReadImage(str(_phase(inputs["exam"]))).GetSize()


if __name__ == "__main__":  # one line per case: `python Testing/test_hostile_commands_4.py [NAME ...]`
    import tempfile

    names = sys.argv[1:] or list(CASES)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        exam = write_small_exam(root / "_exam")
        _make_study(root, exam)
        print_hostile_cases(run_hostile_cases(CASES, root, exam, TIMEOUT_S, names), root)
