"""Hostile input, second sweep (issue 25 helper bad12): inputs the first two corpora
(test_hostile_inputs.py, test_hostile_commands.py) do not try, on every sub-command.

Odd image files (a 4D file of one volume, 2D, RGB PNG renamed .nii.gz, complex, 1x1x1, 0 bytes,
zero/negative spacing in the NIfTI header, a phase of another size, all-NaN, constant), DICOM
folders that hold no DCE (CT, a structured report, two patients), masks on another grid or with
labels 0/255 for evaluate/refine/reader-study/study import, CSV manifests with a BOM, semicolons
or empty rows, odd --dates, an output folder that cannot be written, a weights file whose hash
is not the card's, unknown options such as --threads.

The harness is the one of test_hostile_commands.py (cli_fixtures.run_in_folder): each case runs
``python -m BreastTumorSegLib.cli`` in its own folder; a refused case must exit 2 with ONE line
holding ``error:``, ``Fix:`` and the expected text, no traceback, and leave every file of its
folder as it was; a case that must work exits 0 and writes only under its output.
``python Testing/test_hostile_commands_2.py`` prints the Markdown table of docs/hostile-inputs-2.md.
"""
from __future__ import annotations

import gzip
import json
import os
import shutil
import struct
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cli_fixtures import EXAM_CASE as CASE  # noqa: E402
from cli_fixtures import KIN, SEG, check_hostile_result, run_hostile_case, write_small_exam  # noqa: E402

TIMEOUT_S = 120
WORKERS = 2

CASES: dict[str, dict] = {}


def case(name: str, expect: str, rc: int = 2, changes: str | None = None, what: str = ""):
    """*expect*: text the one stderr line must hold (rc 2); *changes*: the only folder that may
    change when the command is expected to work (rc 0); *what*: the input, for the table."""
    def deco(fn):
        CASES[name] = {"build": fn, "expect": expect, "want_rc": rc, "changes": changes,
                       "what": what or (fn.__doc__ or name).strip()}
        return fn
    return deco


# ------------------------------------------------------------------------------ input makers
class Fx:
    def __init__(self, root: Path):
        self.root = root
        self.exam = root / "_exam"

    def copy_exam(self, f: Path, name: str = "exam") -> Path:
        return Path(shutil.copytree(self.exam, f / name))

    def copy_visit(self, f: Path, name: str) -> Path:
        """A copy of the exam as a later visit: one pre-contrast voxel differs (a byte-for-byte repeat of a visit
        is refused as the same exam given twice)."""
        exam = self.copy_exam(f, name)
        pre = sitk.ReadImage(str(self.phase(exam)))
        arr = sitk.GetArrayFromImage(pre)
        arr.flat[0] += 1
        out = sitk.GetImageFromArray(arr)
        out.CopyInformation(pre)
        sitk.WriteImage(out, str(self.phase(exam)))
        return exam

    def phase(self, exam: Path, i: int = 0) -> Path:
        return exam / f"{CASE}_{i:04d}.nii.gz"

    def pre(self) -> sitk.Image:
        return sitk.ReadImage(str(self.phase(self.exam)))

    def mask(self, path: Path, value=1, dtype=np.uint8, grid: sitk.Image | None = None) -> Path:
        """A small label map on the exam's grid (or *grid*), its tumor voxels set to *value*."""
        ref = grid if grid is not None else self.pre()
        arr = np.zeros(sitk.GetArrayViewFromImage(ref).shape, dtype)
        arr[2:5, 3:7, 3:7] = value
        img = sitk.GetImageFromArray(arr)
        img.CopyInformation(ref)
        sitk.WriteImage(img, str(path))
        return path


def _exam_of(f: Path, phases, name="exam", times=None) -> Path:
    d = f / name
    d.mkdir(parents=True)
    for i, img in enumerate(phases):
        sitk.WriteImage(img, str(d / f"c_{i:04d}.nii.gz"))
    if times is not None:
        (d / "c.json").write_text(json.dumps({"acquisition_times_min": times}))
    return d


def _phases(fx: Fx):
    return [sitk.ReadImage(str(fx.phase(fx.exam, i))) for i in range(3)]


def _nifti_header_edit(path: Path, pixdim=None, qform_code=None) -> None:
    """Rewrite pixdim[1..3] of a gzipped NIfTI-1 file (and sform/qform codes) in place."""
    raw = bytearray(gzip.decompress(path.read_bytes()))
    if pixdim is not None:
        struct.pack_into("<3f", raw, 80, *pixdim)
    if qform_code is not None:
        struct.pack_into("<hh", raw, 252, qform_code, 0)
    path.write_bytes(gzip.compress(bytes(raw)))


def _png_bytes() -> bytes:
    """A tiny RGB PNG (written by SimpleITK)."""
    import tempfile

    img = sitk.Compose([sitk.Image(8, 8, sitk.sitkUInt8) + c for c in (10, 200, 30)])
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "x.png"
        sitk.WriteImage(img, str(p))
        return p.read_bytes()


def _csv(f: Path, text: str, name: str = "m.csv", bom: bool = False) -> Path:
    p = f / name
    p.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode())
    return p


def _readonly(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    os.chmod(folder, 0o555)
    return folder


IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


# ------------------------------------------------------------------------------ segment: odd image files
@case("seg_4d_file_one_volume", "4D", what="one 4D NIfTI holding a single volume")
def _(f, fx):
    img = sitk.JoinSeries([fx.pre()])
    sitk.WriteImage(img, str(f / "one.nii.gz"))
    return SEG + [f / "one.nii.gz", "-o", f / "out"]


@case("seg_4d_file_phases_works", "", rc=0, changes="out", what="one 4D NIfTI, phases on the 4th axis")
def _(f, fx):
    img = sitk.JoinSeries(_phases(fx))
    sitk.WriteImage(img, str(f / "dce.nii.gz"))
    return SEG + [f / "dce.nii.gz", "-o", f / "out", "--times", "0,1.5,3"]


@case("seg_2d_phases", "dimension 2", what="every phase a 2D image")
def _(f, fx):
    arr = sitk.GetArrayFromImage(fx.pre())[3]
    return SEG + [_exam_of(f, [sitk.GetImageFromArray(arr * (1 + i)) for i in range(3)]), "-o", f / "out"]


@case("seg_png_renamed_nifti", "PNG picture", what="an RGB PNG renamed c_0001.nii.gz")
def _(f, fx):
    d = _exam_of(f, _phases(fx))
    (d / "c_0001.nii.gz").write_bytes(_png_bytes())
    return SEG + [d, "-o", f / "out"]


@case("seg_rgb_nifti_phase", "c_0001.nii.gz", what="a phase with 3 components per voxel (RGB NIfTI)")
def _(f, fx):
    ph = _phases(fx)
    ph[1] = sitk.Compose([sitk.Cast(ph[1], sitk.sitkUInt8)] * 3)
    return SEG + [_exam_of(f, ph), "-o", f / "out"]


@case("seg_complex_phase", "complex", what="a complex-valued phase")
def _(f, fx):
    ph = _phases(fx)
    c = sitk.RealAndImaginaryToComplex(sitk.Cast(ph[1], sitk.sitkFloat32), sitk.Cast(ph[1], sitk.sitkFloat32))
    ph[1] = c
    return SEG + [_exam_of(f, ph), "-o", f / "out"]


@case("seg_int64_phases_works", "", rc=0, changes="out", what="phases stored as int64")
def _(f, fx):
    return SEG + [_exam_of(f, [sitk.Cast(p, sitk.sitkInt64) for p in _phases(fx)]), "-o", f / "out"]


@case("seg_uint8_binary_phases", "", rc=0, changes="out", what="phases stored as uint8 0/1 (a mask given as image)")
def _(f, fx):
    ph = [sitk.Cast(p > 150, sitk.sitkUInt8) for p in _phases(fx)]
    return SEG + [_exam_of(f, ph), "-o", f / "out"]


@case("seg_1x1x1", "size (1, 1, 1)", what="every phase 1x1x1 voxel")
def _(f, fx):
    return SEG + [_exam_of(f, [sitk.Image(1, 1, 1, sitk.sitkFloat32) + 100 * (i + 1) for i in range(3)]), "-o",
                  f / "out"]


@case("seg_zero_byte_phase", "c_0001.nii.gz: phase 1 is an empty file", what="a 0-byte phase file")
def _(f, fx):
    d = _exam_of(f, _phases(fx))
    (d / "c_0001.nii.gz").write_bytes(b"")
    return SEG + [d, "-o", f / "out"]


@case("seg_zero_spacing_header", "no voxel size", what="pixdim 0 in the NIfTI header of every phase")
def _(f, fx):
    d = _exam_of(f, _phases(fx))
    for p in sorted(d.glob("*.nii.gz")):
        _nifti_header_edit(p, pixdim=(0.0, 0.0, 0.0), qform_code=0)
    return SEG + [d, "-o", f / "out"]


@case("seg_negative_spacing_header", "spacing -3",
      what="negative pixdim in the NIfTI header, no qform or sform")
def _(f, fx):
    d = _exam_of(f, _phases(fx))
    for p in sorted(d.glob("*.nii.gz")):
        _nifti_header_edit(p, pixdim=(-3.0, -3.0, -3.0), qform_code=0)
    return SEG + [d, "-o", f / "out"]


@case("seg_phase_other_matrix", "c_0002.nii.gz", what="the last phase with another matrix size")
def _(f, fx):
    ph = _phases(fx)
    ph[2] = sitk.RegionOfInterest(ph[2], [s - 2 for s in ph[2].GetSize()], [0, 0, 0])
    return SEG + [_exam_of(f, ph), "-o", f / "out"]


@case("seg_phase_all_nan", "NaN", what="one post-contrast phase all NaN")
def _(f, fx):
    ph = _phases(fx)
    ph[1] = sitk.Cast(ph[1], sitk.sitkFloat32) * float("nan")
    return SEG + [_exam_of(f, ph), "-o", f / "out"]


@case("seg_constant_phases", "every voxel is 500", what="every phase the same constant value")
def _(f, fx):
    ph = [sitk.Cast(p * 0, sitk.sitkFloat32) + 500.0 for p in _phases(fx)]
    return SEG + [_exam_of(f, ph), "-o", f / "out"]


@case("seg_post_phase_all_zero", "c_0002.nii.gz", what="the last post-contrast phase all zeros")
def _(f, fx):
    ph = _phases(fx)
    ph[2] = ph[2] * 0
    return SEG + [_exam_of(f, ph), "-o", f / "out"]


@case("seg_empty_folder", "no", what="an empty input folder")
def _(f, fx):
    (f / "empty").mkdir()
    return SEG + [f / "empty", "-o", f / "out"]


@case("seg_folder_of_text_files", "no", what="a folder holding only notes.txt")
def _(f, fx):
    (f / "notes").mkdir()
    (f / "notes" / "notes.txt").write_text("hello")
    return SEG + [f / "notes", "-o", f / "out"]


@case("seg_unicode_hash_space_path_works", "", rc=0, changes="out", what="a path with spaces, unicode and #")
def _(f, fx):
    e = fx.copy_exam(f, "Müller #2 exam ü")
    return SEG + [e, "-o", f / "out"]


@case("seg_output_readonly", "--output", what="an output folder without write permission")
def _(f, fx):
    if IS_ROOT:  # root writes anyway: an output below /proc stands in for a folder nobody can write
        return SEG + [fx.copy_exam(f), "-o", "/proc/self/out"]
    return SEG + [fx.copy_exam(f), "-o", _readonly(f / "ro") / "out"]


@case("seg_threads_zero", "--threads", what="an option the command does not take (--threads 0)")
def _(f, fx):
    return SEG + [fx.copy_exam(f), "-o", f / "out", "--threads", "0"]


@case("seg_weights_wrong_hash", "SHA-256", what="a models folder whose weights do not match the card's hash")
def _(f, fx):
    from BreastTumorSegLib.models import cards  # noqa: F401  (where the shipped models live)

    shipped = Path(cards.__file__).resolve().parent / "shipped"
    md = f / "models"
    md.mkdir()
    shutil.copy(shipped / "unet-demo.json", md / "unet-demo.json")
    data = bytearray((shipped / "unet-demo.safetensors").read_bytes())
    data[-1] ^= 0xFF
    (md / "unet-demo.safetensors").write_bytes(bytes(data))
    return ["segment", "--model", "unet-demo", "--models-dir", md, "--no-register", "--quiet",
            fx.copy_exam(f), "-o", f / "out"]


@case("seg_dicom_file_named_nifti", "is a DICOM file", what="a DICOM file renamed c_0001.nii.gz")
def _(f, fx):
    d = _exam_of(f, _phases(fx))
    src = _dicom(f, "write_siemens_per_phase")
    shutil.copy(sorted(src.rglob("*.dcm"))[0], d / "c_0001.nii.gz")
    return SEG + [d, "-o", f / "out"]


# ------------------------------------------------------------------------------ segment: DICOM folders without a DCE
def _dicom(f: Path, writer: str, name="dcm", **kw) -> Path:
    import dicom_fixtures as dfx

    ex = dfx.make_fixture_exam(seed=2, n_phases=3, size_xyz=(16, 16, 6))
    getattr(dfx, writer)(ex, f / name, **kw)
    return f / name


@case("seg_dicom_ct_only", "CT", what="a DICOM folder of a CT series")
def _(f, fx):
    import dicom_fixtures as dfx

    dfx.write_ct_series(f / "ct")
    return SEG + [f / "ct", "-o", f / "out"]


@case("seg_dicom_sr_only", "DICOM", what="a DICOM folder holding only a structured report")
def _(f, fx):
    import dicom_fixtures as dfx

    ex = dfx.make_fixture_exam(seed=2, n_phases=3, size_xyz=(16, 16, 6))
    paths = dfx.write_extras(ex, f / "tmp")
    (f / "sr").mkdir()
    shutil.copy(paths[-1], f / "sr" / "SR1.dcm")
    shutil.rmtree(f / "tmp")
    return SEG + [f / "sr", "-o", f / "out"]


@case("seg_dicom_two_patients", "choose one with --series", what="one folder with the DCE series of two patients")
def _(f, fx):
    import dicom_fixtures as dfx
    import pydicom

    d = _dicom(f, "write_siemens_per_phase", "both")
    ex = dfx.make_fixture_exam(seed=3, n_phases=3, size_xyz=(16, 16, 6))
    paths = dfx.write_siemens_per_phase(ex, f / "both" / "other", first_series=40)
    for p in paths:
        ds = pydicom.dcmread(p)
        ds.PatientID = "OTHER-PATIENT"
        ds.PatientName = "Other^Patient"
        ds.save_as(p)
    return SEG + [d, "-o", f / "out"]


@case("seg_dicom_duplicate_instances", "", rc=0, changes="out",
      what="a DICOM series with every file copied twice (duplicate instance numbers, same SOP UIDs)")
def _(f, fx):
    d = _dicom(f, "write_siemens_per_phase")
    for p in list(d.rglob("*.dcm")):
        shutil.copy(p, p.with_name(p.stem + "_copy.dcm"))
    return SEG + [d, "-o", f / "out"]


# ------------------------------------------------------------------------------ classify, kinetics
@case("cls_2d_phases", "dimension 2", what="classify: every phase a 2D image")
def _(f, fx):
    arr = sitk.GetArrayFromImage(fx.pre())[3]
    return ["classify", "--quiet", "--no-register",
            _exam_of(f, [sitk.GetImageFromArray(arr * (1 + i)) for i in range(3)]), "-o", f / "out"]


@case("cls_output_is_file", "--output", what="classify: --output is a file")
def _(f, fx):
    (f / "out").write_text("x")
    return ["classify", "--quiet", "--no-register", fx.copy_exam(f), "-o", f / "out"]


@case("cls_case_id_path", "--case-id", what="classify: --case-id ../x")
def _(f, fx):
    return ["classify", "--quiet", "--no-register", fx.copy_exam(f), "-o", f / "out", "--case-id", "../x"]


@case("cls_unknown_model", "unknown classification model", what="classify: --model that does not exist")
def _(f, fx):
    return ["classify", "--quiet", "--no-register", fx.copy_exam(f), "-o", f / "out", "--model", "nope"]


@case("cls_segmentation_model", "classif", what="classify: --model a segmentation model")
def _(f, fx):
    return ["classify", "--quiet", "--no-register", fx.copy_exam(f), "-o", f / "out", "--model", "ftv"]


@case("cls_existing_outputs", "exists", what="classify: results already in --output, no --overwrite")
def _(f, fx):
    out = f / "out"
    out.mkdir()
    (out / f"{CASE}_classification.json").write_text("{}")
    return ["classify", "--quiet", "--no-register", fx.copy_exam(f), "-o", out]


@case("cls_empty_folder", "no", what="classify: an empty input folder")
def _(f, fx):
    (f / "empty").mkdir()
    return ["classify", "--quiet", "--no-register", f / "empty", "-o", f / "out"]


@case("kin_1x1x1", "size (1, 1, 1)", what="kinetics: every phase 1x1x1")
def _(f, fx):
    return KIN + [_exam_of(f, [sitk.Image(1, 1, 1, sitk.sitkFloat32) + 100 * (i + 1) for i in range(3)]), "-o",
                  f / "out"]


@case("kin_constant_phases", "every voxel is 500", what="kinetics: every phase the same constant")
def _(f, fx):
    ph = [sitk.Cast(p * 0, sitk.sitkFloat32) + 500.0 for p in _phases(fx)]
    return KIN + [_exam_of(f, ph), "-o", f / "out"]


@case("kin_roi_other_grid", "roi.nii.gz: the ROI mask has no voxel", what="kinetics: --roi mask on another grid")
def _(f, fx):
    grid = sitk.Image(7, 7, 7, sitk.sitkUInt8)
    return KIN[:-1] + [fx.copy_exam(f), "-o", f / "out", "--roi", fx.mask(f / "roi.nii.gz", grid=grid)]


# ------------------------------------------------------------------------------ evaluate, refine, reader-study, study import: masks
@case("eval_mask_0_255_works", "", rc=0, changes="m.csv", what="evaluate: masks with labels 0/255")
def _(f, fx):
    return ["evaluate", "--pred", fx.mask(f / "p.nii.gz", 255), "--ref", fx.mask(f / "r.nii.gz", 255),
            "--csv", f / "m.csv"]


@case("eval_other_grid", "grid", what="evaluate: reference on another grid (other size)")
def _(f, fx):
    grid = sitk.Image(9, 9, 9, sitk.sitkUInt8)
    return ["evaluate", "--pred", fx.mask(f / "p.nii.gz"), "--ref", fx.mask(f / "r.nii.gz", grid=grid)]


@case("eval_float_half", "fractional", what="evaluate: prediction a float mask of 0.5")
def _(f, fx):
    return ["evaluate", "--pred", fx.mask(f / "p.nii.gz", 0.5, np.float32), "--ref", fx.mask(f / "r.nii.gz")]


@case("eval_pred_is_folder", "p: expected a mask file but found a folder", what="evaluate: --pred is a folder")
def _(f, fx):
    (f / "p").mkdir()
    return ["evaluate", "--pred", f / "p", "--ref", fx.mask(f / "r.nii.gz")]


@case("eval_zero_byte_ref", "r.nii.gz: reference mask is an empty file", what="evaluate: a 0-byte reference file")
def _(f, fx):
    (f / "r.nii.gz").write_bytes(b"")
    return ["evaluate", "--pred", fx.mask(f / "p.nii.gz"), "--ref", f / "r.nii.gz"]


@case("eval_png_ref", "r.nii.gz: reference mask is a PNG picture", what="evaluate: an RGB PNG renamed .nii.gz as reference")
def _(f, fx):
    (f / "r.nii.gz").write_bytes(_png_bytes())
    return ["evaluate", "--pred", fx.mask(f / "p.nii.gz"), "--ref", f / "r.nii.gz"]


@case("eval_csv_readonly_folder", "--csv", what="evaluate: --csv in a folder that cannot be written")
def _(f, fx):
    target = "/proc/self/m.csv" if IS_ROOT else _readonly(f / "ro") / "m.csv"
    return ["evaluate", "--pred", fx.mask(f / "p.nii.gz"), "--ref", fx.mask(f / "r.nii.gz"), "--csv", target]


@case("refine_seg_other_grid", "grid", what="refine: --seg on another grid")
def _(f, fx):
    grid = sitk.Image(7, 7, 7, sitk.sitkUInt8)
    return ["refine", "--quiet", fx.copy_exam(f), "--seg", fx.mask(f / "s.nii.gz", grid=grid), "-o", f / "o",
            "--click-ras", "0,0,0,+"]


@case("refine_seg_float_half", "s.nii.gz", what="refine: --seg a float mask of 0.5")
def _(f, fx):
    return ["refine", "--quiet", fx.copy_exam(f), "--seg", fx.mask(f / "s.nii.gz", 0.5, np.float32), "-o", f / "o",
            "--click-ras", "0,0,0,+"]


@case("refine_seg_0_255_works", "", rc=0, changes="o", what="refine: --seg with labels 0/255")
def _(f, fx):
    e = fx.copy_exam(f)
    pre = fx.pre()
    c = pre.TransformIndexToPhysicalPoint([5, 4, 3])
    return ["refine", "--quiet", e, "--seg", fx.mask(f / "s.nii.gz", 255), "-o", f / "o",
            f"--click-lps={c[0]},{c[1]},{c[2]},-"]


@case("refine_seg_zero_byte", "empty file", what="refine: a 0-byte --seg")
def _(f, fx):
    (f / "s.nii.gz").write_bytes(b"")
    return ["refine", "--quiet", fx.copy_exam(f), "--seg", f / "s.nii.gz", "-o", f / "o", "--click-ras", "0,0,0,+"]


@case("refine_click_outside", "click", what="refine: a click far outside the image")
def _(f, fx):
    return ["refine", "--quiet", fx.copy_exam(f), "--seg", fx.mask(f / "s.nii.gz"), "-o", f / "o",
            "--click-ras", "9000,9000,9000,+"]


def _rs_table(f: Path, masks: list[str]) -> Path:
    rows = ["case,reader,mask"] + [f"c1,{r},{m}" for r, m in zip(["r1", "r2", "model"], masks)]
    return _csv(f, "\n".join(rows) + "\n", "study.csv")


@case("rs_mask_other_grid", "grid", what="reader-study: one reader's mask on another grid")
def _(f, fx):
    fx.mask(f / "a.nii.gz")
    fx.mask(f / "b.nii.gz", grid=sitk.Image(7, 7, 7, sitk.sitkUInt8))
    fx.mask(f / "m.nii.gz")
    return ["reader-study", "--quiet", _rs_table(f, ["a.nii.gz", "b.nii.gz", "m.nii.gz"]), "-o", f / "report"]


@case("rs_mask_missing", "b.nii.gz", what="reader-study: a mask listed in the table is missing")
def _(f, fx):
    fx.mask(f / "a.nii.gz")
    fx.mask(f / "m.nii.gz")
    return ["reader-study", "--quiet", _rs_table(f, ["a.nii.gz", "b.nii.gz", "m.nii.gz"]), "-o", f / "report"]


@case("rs_table_bom_semicolons", "semicolons", what="reader-study: table with a BOM and ';' separators")
def _(f, fx):
    fx.mask(f / "a.nii.gz")
    return ["reader-study", "--quiet", _csv(f, "case;reader;mask\nc1;r1;a.nii.gz\n", "study.csv", bom=True), "-o",
            f / "report"]


def _rs_sound(f: Path, fx: Fx) -> Path:
    for name in ("a", "b", "m"):
        fx.mask(f / f"{name}.nii.gz")
    return _rs_table(f, ["a.nii.gz", "b.nii.gz", "m.nii.gz"])


@case("rs_seed_negative", "--seed", what="reader-study: --seed -1")
def _(f, fx):
    return ["reader-study", "--quiet", _rs_sound(f, fx), "-o", f / "report", "--seed", "-1"]


@case("rs_bootstrap_negative", "--bootstrap", what="reader-study: --bootstrap -5")
def _(f, fx):
    return ["reader-study", "--quiet", _rs_sound(f, fx), "-o", f / "report", "--bootstrap", "-5",
            "--margins", "-0.05", "0.05"]


@case("rs_table_empty", "study.csv", what="reader-study: a 0-byte table")
def _(f, fx):
    return ["reader-study", "--quiet", _csv(f, "", "study.csv"), "-o", f / "report"]


# ------------------------------------------------------------------------------ batch and followup manifests
BATCH = ["batch", "--model", "ftv", "--no-register", "--progress", "none"]


@case("batch_manifest_bom_works", "", rc=0, changes="out", what="batch: manifest with a UTF-8 BOM")
def _(f, fx):
    e = fx.copy_exam(f)
    return BATCH + [_csv(f, f"case,path\nc1,{e}\n", bom=True), "-o", f / "out"]


@case("batch_manifest_semicolons", "semicolons", what="batch: manifest separated by ';'")
def _(f, fx):
    e = fx.copy_exam(f)
    return BATCH + [_csv(f, f"case;path\nc1;{e}\n"), "-o", f / "out"]


@case("batch_manifest_empty_rows_works", "", rc=0, changes="out", what="batch: manifest with empty rows and a ',' row")
def _(f, fx):
    e = fx.copy_exam(f)
    return BATCH + [_csv(f, f"case,path\n\nc1,{e}\n,\n\n"), "-o", f / "out"]


@case("batch_manifest_missing_path_column", "path", what="batch: manifest without the path column")
def _(f, fx):
    return BATCH + [_csv(f, "case\nc1\n"), "-o", f / "out"]


@case("batch_manifest_header_only", "m.csv", what="batch: manifest with a header and no row")
def _(f, fx):
    return BATCH + [_csv(f, "case,path\n"), "-o", f / "out"]


@case("batch_manifest_zero_byte", "m.csv", what="batch: a 0-byte manifest")
def _(f, fx):
    return BATCH + [_csv(f, ""), "-o", f / "out"]


@case("batch_input_is_nifti_file", "this is an image", what="batch: INPUT a NIfTI file instead of a folder or CSV")
def _(f, fx):
    e = fx.copy_exam(f)
    return BATCH + [fx.phase(e), "-o", f / "out"]


@case("batch_output_readonly", "--output", what="batch: output in a folder that cannot be written")
def _(f, fx):
    fx.copy_exam(f, "exams/e1")
    target = "/proc/self/out" if IS_ROOT else _readonly(f / "ro") / "out"
    return BATCH + [f / "exams", "-o", target]


@case("batch_threads_minus_one", "--threads", what="batch: --threads -1 (not an option)")
def _(f, fx):
    fx.copy_exam(f, "exams/e1")
    return BATCH + [f / "exams", "-o", f / "out", "--threads", "-1"]


FU = ["followup", "--quiet"]


@case("fu_one_visit", "two visits", what="followup: a single visit")
def _(f, fx):
    return FU + [fx.copy_exam(f), "-o", f / "out"]


@case("fu_dates_slashes", "--dates", what="followup: --dates 2024/01/02,2024/03/04")
def _(f, fx):
    return FU + [fx.copy_exam(f, "v1"), fx.copy_visit(f, "v2"), "-o", f / "out", "--dates", "2024/01/02,2024/03/04"]


@case("fu_dates_european", "--dates", what="followup: --dates 02.01.2024,04.03.2024")
def _(f, fx):
    return FU + [fx.copy_exam(f, "v1"), fx.copy_visit(f, "v2"), "-o", f / "out", "--dates", "02.01.2024,04.03.2024"]


@case("fu_dates_impossible", "--dates", what="followup: --dates 2024-13-45,2024-02-30")
def _(f, fx):
    return FU + [fx.copy_exam(f, "v1"), fx.copy_visit(f, "v2"), "-o", f / "out", "--dates", "2024-13-45,2024-02-30"]


@case("fu_dates_backwards", "--dates", what="followup: --dates with the later visit dated first")
def _(f, fx):
    return FU + [fx.copy_exam(f, "v1"), fx.copy_visit(f, "v2"), "-o", f / "out", "--dates", "2024-05-01,2024-01-01"]


@case("fu_dates_compact_works", "", rc=0, changes="out", what="followup: --dates 20240102,20240304 (DICOM style)")
def _(f, fx):
    return FU + [fx.copy_exam(f, "v1"), fx.copy_visit(f, "v2"), "-o", f / "out", "--dates", "20240102,20240304"]


@case("fu_visit_missing", "does not exist", what="followup: second visit does not exist")
def _(f, fx):
    return FU + [fx.copy_exam(f, "v1"), f / "v2", "-o", f / "out"]


@case("fu_visit_empty_folder", "visit 2", what="followup: second visit an empty folder")
def _(f, fx):
    (f / "v2").mkdir()
    return FU + [fx.copy_exam(f, "v1"), f / "v2", "-o", f / "out"]


@case("fu_unknown_model", "unknown model", what="followup: --model that does not exist")
def _(f, fx):
    return FU + [fx.copy_exam(f, "v1"), fx.copy_visit(f, "v2"), "-o", f / "out", "--model", "nope"]


@case("fu_output_is_visit", "--output", what="followup: --output is the first visit")
def _(f, fx):
    v1 = fx.copy_exam(f, "v1")
    return FU + [v1, fx.copy_visit(f, "v2"), "-o", v1]


@case("fu_manifest_bom_semicolons", "semicolons", what="followup: manifest with BOM and ';' separators")
def _(f, fx):
    v1, v2 = fx.copy_exam(f, "v1"), fx.copy_visit(f, "v2")
    return FU + ["--manifest", _csv(f, f"patient;visit;path\np1;1;{v1}\np1;2;{v2}\n", bom=True), "-o", f / "out"]


@case("fu_manifest_missing_columns", "column", what="followup: manifest without the visit column")
def _(f, fx):
    v1 = fx.copy_exam(f, "v1")
    return FU + ["--manifest", _csv(f, f"patient,path\np1,{v1}\n"), "-o", f / "out"]


@case("fu_manifest_zero_byte", "m.csv", what="followup: a 0-byte manifest")
def _(f, fx):
    return FU + ["--manifest", _csv(f, ""), "-o", f / "out"]


@case("fu_manifest_bad_date", "column date: date '31/02/2024' is not a date", what="followup: manifest with date 31/02/2024")
def _(f, fx):
    v1, v2 = fx.copy_exam(f, "v1"), fx.copy_visit(f, "v2")
    return FU + ["--manifest", _csv(f, f"patient,visit,path,date\np1,1,{v1},31/02/2024\np1,2,{v2},2024-03-01\n"),
                 "-o", f / "out"]


@case("fu_manifest_is_folder", "--manifest", what="followup: --manifest is a folder")
def _(f, fx):
    (f / "m").mkdir()
    return FU + ["--manifest", f / "m", "-o", f / "out"]


# ------------------------------------------------------------------------------ study, dicom-list, models, demo, phantom, train
INIT = ["study", "init", "--readers", "a", "--no-breast-region"]


@case("init_cases_bom_works", "", rc=0, changes="S", what="study init: cases table with a UTF-8 BOM")
def _(f, fx):
    e = fx.copy_exam(f)
    return INIT + ["--cases", _csv(f, f"case,path\nc1,{e}\n", "cases.csv", bom=True), "-o", f / "S"]


@case("init_cases_semicolons", "semicolons", what="study init: cases table separated by ';'")
def _(f, fx):
    e = fx.copy_exam(f)
    return INIT + ["--cases", _csv(f, f"case;path\nc1;{e}\n", "cases.csv"), "-o", f / "S"]


@case("init_cases_zero_byte", "cases.csv", what="study init: a 0-byte cases table")
def _(f, fx):
    return INIT + ["--cases", _csv(f, "", "cases.csv"), "-o", f / "S"]


@case("init_seed_negative", "--seed", what="study init: --seed -1")
def _(f, fx):
    e = fx.copy_exam(f)
    return INIT + ["--cases", _csv(f, f"case,path\nc1,{e}\n", "cases.csv"), "-o", f / "S", "--seed", "-1"]


@case("init_washout_cases_negative", "--washout-cases", what="study init: --washout-cases -1")
def _(f, fx):
    e = fx.copy_exam(f)
    return INIT + ["--cases", _csv(f, f"case,path\nc1,{e}\n", "cases.csv"), "-o", f / "S", "--washout-cases", "-1"]


@case("init_case_exam_2d", "c1", what="study init: the case's exam is 2D")
def _(f, fx):
    arr = sitk.GetArrayFromImage(fx.pre())[3]
    e = _exam_of(f, [sitk.GetImageFromArray(arr * (1 + i)) for i in range(3)])
    return INIT + ["--cases", _csv(f, f"case,path\nc1,{e}\n", "cases.csv"), "-o", f / "S"]


@case("import_mask_0_255_works", "", rc=0, changes="STUDY", what="study import: a mask with labels 0/255 (stored as 0/1)")
def _(f, fx):
    st = _study(f, fx)
    return ["study", "import", st, "--reader", "b", "--case", "c1", "--mask", fx.mask(f / "m.nii.gz", 255)]


@case("import_mask_other_size", "size", what="study import: a mask of another matrix size")
def _(f, fx):
    st = _study(f, fx)
    return ["study", "import", st, "--reader", "b", "--case", "c1", "--mask",
            fx.mask(f / "m.nii.gz", grid=sitk.Image(7, 7, 7, sitk.sitkUInt8))]


@case("import_mask_zero_byte", "empty file", what="study import: a 0-byte mask")
def _(f, fx):
    st = _study(f, fx)
    (f / "m.nii.gz").write_bytes(b"")
    return ["study", "import", st, "--reader", "b", "--case", "c1", "--mask", f / "m.nii.gz"]


@case("status_study_json_zero_byte", "study", what="study status: a 0-byte study.json")
def _(f, fx):
    st = _study(f, fx)
    (st / "study.json").write_bytes(b"")
    return ["study", "status", st]


@case("export_readonly_folder", "cannot write this output", what="study export: output in a folder that cannot be written")
def _(f, fx):
    from BreastTumorSegLib.cli import main

    st = _study(f, fx)
    assert main(["study", "import", str(st), "--reader", "b", "--case", "c1", "--mask",
                 str(fx.mask(f / "m.nii.gz"))]) == 0  # every reader done: the case can be exported
    target = "/proc/self/t.csv" if IS_ROOT else _readonly(f / "ro") / "t.csv"
    return ["study", "export", st, "-o", target]


def _study(f: Path, fx: Fx) -> Path:
    st = f / "STUDY"
    shutil.copytree(fx.root / "_study", st, symlinks=True)
    os.chmod(st / "study.json", 0o644)
    e = fx.copy_exam(f)
    data = json.loads((st / "study.json").read_text())
    data["cases"][0]["inputs"] = [str(e)]
    (st / "study.json").write_text(json.dumps(data))
    return st


@case("dl_empty_folder", "no DICOM", what="dicom-list: an empty folder")
def _(f, fx):
    (f / "d").mkdir()
    return ["dicom-list", f / "d"]


@case("dl_ct_only", "not MR", what="dicom-list: a folder holding only a CT series")
def _(f, fx):
    import dicom_fixtures as dfx

    dfx.write_ct_series(f / "ct")
    return ["dicom-list", f / "ct"]


@case("dl_nifti_folder", "DICOM", what="dicom-list: a folder of NIfTI files")
def _(f, fx):
    return ["dicom-list", fx.copy_exam(f)]


@case("dl_series_unknown", "(999)", what="dicom-list: --series 999 not in the folder")
def _(f, fx):
    return ["dicom-list", _dicom(f, "write_siemens_per_phase"), "--series", "999"]


@case("models_bad_action", "remove", what="models remove (no such action)")
def _(f, fx):
    return ["models", "remove", "x"]


@case("models_dir_corrupt_card_listed_with_warning", "broken.json: cannot read model card", rc=0, changes="none", what="models --models-dir with a card that is not JSON")
def _(f, fx):
    (f / "md").mkdir()
    (f / "md" / "broken.json").write_text("{not json")
    return ["models", "--models-dir", f / "md"]


@case("models_add_zero_byte_file", "m.pth", what="models add: PATH a 0-byte file")
def _(f, fx):
    (f / "m.pth").write_bytes(b"")
    return ["models", "add", f / "m.pth", "--name", "x", "--license", "CC0", "--trained-on", "x"]


@case("models_add_empty_folder", "m", what="models add: PATH an empty folder")
def _(f, fx):
    (f / "m").mkdir()
    return ["models", "add", f / "m", "--name", "x", "--license", "CC0", "--trained-on", "x"]


@case("demo_output_readonly", "--output", what="demo: output in a folder that cannot be written")
def _(f, fx):
    target = "/proc/self/d" if IS_ROOT else _readonly(f / "ro") / "d"
    return ["demo", "--quiet", "-o", target]


@case("demo_seed_negative", "argument --seed", what="demo: --seed -5")
def _(f, fx):
    return ["demo", "--quiet", "-o", f / "d", "--seed", "-5"]


@case("ph_output_readonly", "--output", what="phantom: output in a folder that cannot be written")
def _(f, fx):
    target = "/proc/self/ph" if IS_ROOT else _readonly(f / "ro") / "ph"
    return ["phantom", "--seed", "1", "-o", target]


@case("train_config_zero_byte", "cfg.json", what="train: a 0-byte config")
def _(f, fx):
    (f / "cfg.json").write_bytes(b"")
    return ["train", "-o", f / "run", "--config", f / "cfg.json"]


@case("train_config_is_folder", "cfg: expected a config file but found a folder", what="train: --config is a folder")
def _(f, fx):
    (f / "cfg").mkdir()
    return ["train", "-o", f / "run", "--config", f / "cfg"]


# ------------------------------------------------------------------------------ the harness
def _run_case(name: str, root: Path, fx: Fx) -> dict:
    return run_hostile_case(CASES[name], name, root, fx, TIMEOUT_S)


def build_fixtures(root: Path) -> Fx:
    from BreastTumorSegLib.cli import main

    fx = Fx(root)
    write_small_exam(fx.exam)
    cases = root / "_cases.csv"
    cases.write_text(f"case,path\nc1,{fx.exam}\n")
    assert main(["study", "init", "--cases", str(cases), "--readers", "a,b", "--no-breast-region",
                 "--seed", "1", "--output", str(root / "_study")]) == 0
    assert main(["study", "import", str(root / "_study"), "--reader", "a", "--case", "c1",
                 "--mask", str(fx.mask(root / "_mask.nii.gz"))]) == 0
    return fx


def run_all(root: Path, names=None) -> dict:
    fx = build_fixtures(root)
    names = list(names or CASES)
    with ThreadPoolExecutor(WORKERS) as pool:
        return dict(zip(names, pool.map(lambda n: _run_case(n, root, fx), names)))


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    return run_all(tmp_path_factory.mktemp("hostile_commands_2"))


def _changed(r) -> set:
    return {k for k in set(r["before"]) | set(r["after"]) if r["before"].get(k) != r["after"].get(k)}


def _message(r) -> list[str]:
    return [ln for ln in r["stderr"].splitlines() if ln.strip() and not ln.startswith("[")]


def test_every_command_is_attacked():
    prefixes = {n.split("_")[0] for n in CASES}
    assert prefixes >= {"seg", "cls", "kin", "eval", "refine", "rs", "batch", "fu", "init", "import", "status",
                        "export", "dl", "models", "demo", "ph", "train"}


@pytest.mark.parametrize("name", list(CASES))
def test_hostile_command_2(results, name):
    check_hostile_result(results[name], quiet_when_accepted=False)


# ------------------------------------------------------------------------------ in process: a disk that fills up, the Slicer module's readers
@pytest.fixture(scope="module")
def small_exam(tmp_path_factory) -> Path:
    return write_small_exam(tmp_path_factory.mktemp("small_exam") / "exam")


def _one_error_line(capsys) -> str:
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip() and not ln.startswith("[")]
    assert len(lines) == 1, lines
    assert "Traceback" not in lines[0] and "Fix:" in lines[0], lines[0]
    return lines[0]


@pytest.mark.parametrize("where", ["image writer", "commit"])
def test_a_disk_that_fills_up_while_writing_leaves_nothing(small_exam, tmp_path, monkeypatch, capsys, where):
    """The free-space check passed, then the disk fills up: while an image is written (ITK reports
    a RuntimeError) or while the staged files are moved into place (OSError ENOSPC, after the
    first file moved). One line naming the output file and the fix, exit 2, no file left."""
    import errno

    from BreastTumorSegLib.cli import main
    from BreastTumorSegLib.io import atomic

    if where == "image writer":
        real_write, calls = sitk.WriteImage, []

        def write(img, path, *a, **k):
            calls.append(path)
            if len(calls) >= 2:
                raise RuntimeError(f"itk::ERROR: NiftiImageIO: could not write {path}: No space left on device")
            return real_write(img, path, *a, **k)
        monkeypatch.setattr(sitk, "WriteImage", write)
    else:
        real_replace, moved = os.replace, []

        def replace(src, dst):
            commit = ".staging-" in str(src) and ".staging-" not in str(dst)  # staged file -> its place
            if commit and moved:
                raise OSError(errno.ENOSPC, "No space left on device", str(dst))
            if commit:
                moved.append(dst)
            return real_replace(src, dst)
        monkeypatch.setattr(atomic.os, "replace", replace)
    out = tmp_path / "out"
    rc = main(SEG + [str(small_exam), "-o", str(out)])
    line = _one_error_line(capsys)
    assert rc == 2
    assert f"{out}{os.sep}{CASE}_" in line and "the disk is full" in line and "free some space" in line, line
    assert not out.exists() or not any(out.rglob("*")), sorted(out.rglob("*"))
    if where == "commit":
        assert moved, "the failure must come after a file was already moved (the roll-back is what is tested)"


@pytest.fixture(scope="module")
def result_folder(small_exam, tmp_path_factory) -> Path:
    from BreastTumorSegLib.cli import main

    out = tmp_path_factory.mktemp("result") / "out"
    assert main(SEG + ["--registered-phases", str(small_exam), "-o", str(out)]) == 0
    return out


def _damage_json_bytes(d: Path) -> Path:
    (d / f"{CASE}.json").write_bytes(b"\xff\xfe\x00\x81")
    return d / f"{CASE}.json"


def _damage_json_list(d: Path) -> Path:
    (d / f"{CASE}.json").write_text("[1, 2]")
    return d / f"{CASE}.json"


def _damage_registered_garbage(d: Path) -> Path:
    (d / f"{CASE}_registered.nrrd").write_bytes(b"NRRD0004\ngarbage\n")
    return d / f"{CASE}_registered.nrrd"


def _damage_registered_3d(d: Path) -> Path:
    sitk.WriteImage(sitk.ReadImage(str(d / f"{CASE}_seg.nii.gz")), str(d / f"{CASE}_registered.nrrd"))
    return d / f"{CASE}_registered.nrrd"


def _damage_label_empty(d: Path) -> Path:
    (d / f"{CASE}_seg.nii.gz").write_bytes(b"")
    return d / f"{CASE}_seg.nii.gz"


@pytest.mark.parametrize("damage", [_damage_json_bytes, _damage_json_list, _damage_registered_garbage,
                                    _damage_registered_3d, _damage_label_empty])
def test_the_slicer_module_names_a_damaged_result_file(result_folder, tmp_path, damage):
    """SegmentationLogic.import_result_folder (what the module calls when the engine has finished,
    and on a folder the user loads): a damaged file of the engine's folder is an InputError naming
    it and the fix (the panel shows it), not a UnicodeDecodeError, AttributeError, IndexError or
    ITK RuntimeError."""
    pytest.importorskip("slicer")
    from BreastTumorSegLib.core.errors import InputError
    from BreastTumorSegLib.slicer import mrml_bridge as mb
    from BreastTumorSegLib.slicer.logic import SegmentationLogic

    folder = Path(shutil.copytree(result_folder, tmp_path / "copy"))
    bad = damage(folder)
    ctx = mb.MRMLContext.headless()
    ref = mb.image_to_volume_node(ctx, sitk.ReadImage(str(folder / f"{CASE}_seg.nii.gz"))
                                  if bad.name != f"{CASE}_seg.nii.gz" else sitk.Image(4, 4, 4, sitk.sitkUInt8), "pre")
    with pytest.raises(InputError) as info:
        SegmentationLogic(ctx).import_result_folder(folder, CASE, ref)
    assert str(info.value).startswith(str(bad)) and "Fix:" in str(info.value), str(info.value)


def test_the_slicer_seg_nrrd_reader_names_a_folder(tmp_path):
    pytest.importorskip("slicer")
    from BreastTumorSegLib.core.errors import InputError
    from BreastTumorSegLib.slicer import mrml_bridge as mb

    (tmp_path / "a.seg.nrrd").mkdir()
    with pytest.raises(InputError, match="found a folder"):
        mb.read_seg_nrrd(tmp_path / "a.seg.nrrd")


def _row(name: str, r: dict, root: Path) -> str:
    """One line of the table: the case, its input, the command (paths relative to the case folder),
    the exit code and the message (or the traceback's last line)."""
    def short(text: str) -> str:
        return text.replace(f"{root / name}{os.sep}", "").replace(str(root / name), ".").replace("|", "/")

    lines = _message(r)
    if "Traceback" in r["stderr"]:
        msg = "TRACEBACK: " + [ln for ln in r["stderr"].splitlines() if ln.strip()][-1]
    else:
        msg = lines[-1] if lines else ""
    left = sorted(_changed(r)) if r["changes"] is None else []
    note = f" LEFT {left[:3]}" if left else ""
    cmd = short(" ".join(["breasttumorseg"] + r["argv"]))
    return f"| `{name}` | {r['what']} | `{cmd}` | {r['rc']} | {short(msg)[:400]}{note} |"


if __name__ == "__main__":  # the table of docs/hostile-inputs-2.md (python Testing/test_hostile_commands_2.py [names])
    import tempfile

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "BreastTumorSeg"))
    with tempfile.TemporaryDirectory(dir=os.environ.get("TMPDIR")) as d:
        res = run_all(Path(d), sys.argv[1:] or None)
        print("| case | input | command | exit | message |\n|---|---|---|---|---|")
        for n, r in res.items():
            print(_row(n, r, Path(d)))
