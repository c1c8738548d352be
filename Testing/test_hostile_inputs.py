"""Hostile input for every command-line entry point (issue 20).

Each case builds its own small inputs in its own folder at test time and runs
``python -m BreastTumorSegLib.cli ...`` as a subprocess under a timeout. A case passes when the
command exits 2 with ONE line on stderr naming the file or option (and no traceback), and the
whole case folder -- inputs, any pre-existing results, everything around ``--output`` -- is
byte-identical afterwards: nothing written, nothing replaced, no empty output folder left.

The cases run concurrently (a few subprocesses at a time) in one module fixture; each test
then checks one case's record, so a failure names the case.
"""
from __future__ import annotations

import json
import os
import shutil
import struct
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from cli_fixtures import EXAM_CASE, KIN, SEG, run_in_folder, write_small_exam

TIMEOUT_S = 90
WORKERS = 3

CASES: dict[str, tuple] = {}  # name -> (build(folder) -> argv, text the message must hold)


def case(name: str, expect: str):
    def deco(fn):
        CASES[name] = (fn, expect)
        return fn
    return deco


# ------------------------------------------------------------------------------ input makers
def _exam(folder: Path, template: Path, name: str = "exam") -> Path:
    dest = folder / name
    shutil.copytree(template, dest)
    return dest


def _phase(exam: Path, i: int) -> Path:
    return exam / f"{EXAM_CASE}_{i:04d}.nii.gz"


def _img(arr, spacing=(3.0, 3.0, 3.0)) -> sitk.Image:
    img = sitk.GetImageFromArray(np.asarray(arr))
    img.SetSpacing(spacing)
    return img


def _write_exam(folder: Path, phases, name="exam", times=None) -> Path:
    d = folder / name
    d.mkdir()
    for i, img in enumerate(phases):
        sitk.WriteImage(img, str(d / f"c_{i:04d}.nii.gz"))
    if times is not None:
        (d / "c.json").write_text(json.dumps({"acquisition_times_min": times}))
    return d


def _ramp(shape=(10, 12, 14), scale=1.0):
    z, y, x = np.indices(shape)
    return (100 + x + 2 * y + 3 * z).astype(np.float32) * scale


def _sparse_nifti(path: Path, size, datatype=2, bitpix=8) -> None:
    """An uncompressed NIfTI-1 file whose voxels are a hole in the file (no disk used)."""
    hdr = bytearray(348)
    struct.pack_into("<i", hdr, 0, 348)
    struct.pack_into("<8h", hdr, 40, 3, *size, 1, 1, 1, 1)
    struct.pack_into("<hh", hdr, 70, datatype, bitpix)
    struct.pack_into("<8f", hdr, 76, 1, 1, 1, 1, 1, 1, 1, 1)
    struct.pack_into("<f", hdr, 108, 352.0)
    struct.pack_into("<h", hdr, 252, 0)
    struct.pack_into("<h", hdr, 254, 0)
    hdr[344:348] = b"n+1\0"
    with open(path, "wb") as fh:
        fh.write(bytes(hdr) + b"\0" * 4)
        fh.truncate(352 + int(np.prod(size)) * bitpix // 8)


def _mask(path: Path, values) -> Path:
    arr = np.zeros((8, 9, 10), np.float32)
    for i, v in enumerate(values):
        arr[2 + i % 4, 3:6, 3:6] = v
    img = _img(arr if any(isinstance(v, float) and v != int(v) for v in values) else arr.astype(np.int16))
    sitk.WriteImage(img, str(path))
    return path


def _nan_nifti(path: Path, value) -> Path:
    arr = _ramp()
    arr[3, 4, 5] = value
    sitk.WriteImage(_img(arr), str(path))
    return path




# ------------------------------------------------------------------------------ segment
@case("seg_case_id_parent", "--case-id")
def _(f, t):
    return SEG + [_exam(f, t), "-o", f / "a" / "b" / "out", "--case-id", "../../escaped"]


@case("seg_case_id_absolute", "--case-id")
def _(f, t):
    return SEG + [_exam(f, t), "-o", f / "out", "--case-id", str(f / "abs" / "x")]


@case("seg_case_id_dotdot", "--case-id")
def _(f, t):
    return SEG + [_exam(f, t), "-o", f / "out", "--case-id", ".."]


@case("seg_case_id_slash", "--case-id")
def _(f, t):
    return SEG + [_exam(f, t), "-o", f / "out", "--case-id", "a/b"]


@case("seg_case_id_empty", "--case-id")
def _(f, t):
    return SEG + [_exam(f, t), "-o", f / "out", "--case-id", ""]


@case("seg_output_is_input_overwrite", "--output")
def _(f, t):
    e = _exam(f, t)
    return SEG + [e, "-o", e, "--overwrite"]


@case("seg_output_inside_input", "--output")
def _(f, t):
    e = _exam(f, t)
    return SEG + [e, "-o", e / "results"]


@case("seg_output_is_file", "--output")
def _(f, t):
    (f / "out").write_text("x")
    return SEG + [_exam(f, t), "-o", f / "out"]


@case("seg_output_under_file", "--output")
def _(f, t):
    (f / "file").write_text("x")
    return SEG + [_exam(f, t), "-o", f / "file" / "sub" / "out"]


@case("seg_output_in_proc", "--output")
def _(f, t):
    return SEG + [_exam(f, t), "-o", "/proc/breasttumorseg-hostile"]


@case("seg_output_exists", "result exists")
def _(f, t):
    (f / "out").mkdir()
    (f / "out" / f"{EXAM_CASE}.json").write_text("{}")
    return SEG + [_exam(f, t), "-o", f / "out"]


@case("seg_output_collides_with_input_file", "would replace an input")
def _(f, t):
    e = _exam(f, t)
    (f / "flat").mkdir()
    shutil.copy(_phase(e, 0), f / "flat" / "c_seg.nii.gz")
    shutil.copy(_phase(e, 1), f / "flat" / "c_prob.nii.gz")
    return SEG + [f / "flat" / "c_seg.nii.gz", f / "flat" / "c_prob.nii.gz", "-o", f / "flat", "--overwrite",
                  "--case-id", "c"]


@case("seg_fifo_phase_in_folder", "named pipe")
def _(f, t):
    e = _exam(f, t)
    _phase(e, 2).unlink()
    os.mkfifo(_phase(e, 2))
    return SEG + [e, "-o", f / "out"]


@case("seg_fifo_phase_explicit", "named pipe")
def _(f, t):
    e = _exam(f, t)
    os.mkfifo(f / "p.nii.gz")
    return SEG + [_phase(e, 0), _phase(e, 1), f / "p.nii.gz", "-o", f / "out"]


@case("seg_symlink_loop_phase", "loops")
def _(f, t):
    e = _exam(f, t)
    _phase(e, 2).unlink()
    os.symlink(_phase(e, 2).name, _phase(e, 2))
    return SEG + [e, "-o", f / "out"]


@case("seg_folder_as_phase", "folder")
def _(f, t):
    e = _exam(f, t)
    _phase(e, 2).unlink()
    _phase(e, 2).mkdir()
    return SEG + [e, "-o", f / "out"]


@case("seg_dev_zero_phase", "device")
def _(f, t):
    e = _exam(f, t)
    _phase(e, 2).unlink()
    os.symlink("/dev/zero", _phase(e, 2))
    return SEG + [e, "-o", f / "out"]


@case("seg_dangling_link_phase", "missing file")
def _(f, t):
    e = _exam(f, t)
    _phase(e, 2).unlink()
    os.symlink(f / "nowhere.nii.gz", _phase(e, 2))
    return SEG + [e, "-o", f / "out"]


@case("seg_folder_with_one_4d_file", "4D")
def _(f, t):
    d = f / "exam"
    d.mkdir()
    sitk.WriteImage(sitk.JoinSeries([_img(_ramp()), _img(_ramp(scale=2))]), str(d / "dce.nii.gz"))
    return SEG + [d, "-o", f / "out"]


@case("seg_all_zero", "no image")
def _(f, t):
    z = _img(np.zeros((10, 12, 14), np.float32))
    return SEG + [_write_exam(f, [z, z, z]), "-o", f / "out"]


@case("seg_huge_near_constant", "voxels")
def _(f, t):
    d = f / "exam"
    d.mkdir()
    for i in range(2):
        _sparse_nifti(d / f"c_{i:04d}.nii", (800, 800, 900))
    return SEG + [d, "-o", f / "out"]


@case("seg_spacing_1000", "spacing")
def _(f, t):
    return SEG + [_write_exam(f, [_img(_ramp(), (1000,) * 3), _img(_ramp(scale=2), (1000,) * 3)]), "-o", f / "out"]


@case("seg_spacing_tiny", "spacing")
def _(f, t):
    return SEG + [_write_exam(f, [_img(_ramp(), (1e-4,) * 3), _img(_ramp(scale=2), (1e-4,) * 3)]), "-o", f / "out"]


@case("seg_pos_inf_voxel", "infinite")
def _(f, t):
    d = _write_exam(f, [_img(_ramp()), _img(_ramp(scale=2))])
    _nan_nifti(d / "c_0001.nii.gz", np.inf)
    return SEG + [d, "-o", f / "out"]


@case("seg_neg_inf_voxel", "infinite")
def _(f, t):
    d = _write_exam(f, [_img(_ramp()), _img(_ramp(scale=2))])
    _nan_nifti(d / "c_0000.nii.gz", -np.inf)
    return SEG + [d, "-o", f / "out"]


@case("seg_nan_voxel", "NaN")
def _(f, t):
    d = _write_exam(f, [_img(_ramp()), _img(_ramp(scale=2))])
    _nan_nifti(d / "c_0001.nii.gz", np.nan)
    return SEG + [d, "-o", f / "out"]


@case("seg_device_tpu", "--device")
def _(f, t):
    return SEG + [_exam(f, t), "-o", f / "out", "--device", "tpu:9"]


@case("seg_threshold_2", "--threshold")
def _(f, t):
    return SEG + [_exam(f, t), "-o", f / "out", "--threshold", "2"]


@case("seg_threshold_nan", "--threshold")
def _(f, t):
    return SEG + [_exam(f, t), "-o", f / "out", "--threshold", "nan"]


@case("seg_threshold_zero", "--threshold")
def _(f, t):
    return SEG + [_exam(f, t), "-o", f / "out", "--threshold", "0"]


@case("seg_threshold_text", "--threshold")
def _(f, t):
    return SEG + [_exam(f, t), "-o", f / "out", "--threshold", "high"]


@case("seg_min_lesion_negative", "--min-lesion-ml")
def _(f, t):
    return SEG + [_exam(f, t), "-o", f / "out", "--min-lesion-ml", "-1"]


@case("seg_min_lesion_inf", "--min-lesion-ml")
def _(f, t):
    return SEG + [_exam(f, t), "-o", f / "out", "--min-lesion-ml", "inf"]


@case("seg_models_dir_missing", "--models-dir")
def _(f, t):
    return SEG + [_exam(f, t), "-o", f / "out", "--models-dir", f / "nomodels"]


@case("seg_models_dir_is_file", "--models-dir")
def _(f, t):
    (f / "models.txt").write_text("x")
    return SEG + [_exam(f, t), "-o", f / "out", "--models-dir", f / "models.txt"]


@case("seg_series_on_nifti_folder", "--series")
def _(f, t):
    return SEG + [_exam(f, t), "-o", f / "out", "--series", "3"]


@case("seg_series_on_nifti_files", "--series")
def _(f, t):
    e = _exam(f, t)
    return SEG + [_phase(e, 0), _phase(e, 1), "-o", f / "out", "--series", "3"]


@case("seg_seed_with_network_model", "--seed")
def _(f, t):
    return ["segment", "--quiet", _exam(f, t), "-o", f / "out", "--seed-ras", "1,2,3"]


@case("seg_unknown_model", "unknown model")
def _(f, t):
    return ["segment", "--quiet", _exam(f, t), "-o", f / "out", "--model", "no-such-model"]


@case("seg_seed_nan", "--seed-ras")
def _(f, t):
    return SEG + [_exam(f, t), "-o", f / "out", "--seed-ras", "nan,2,3"]


@case("seg_json_time_true", "acquisition_times_min")
def _(f, t):
    e = _exam(f, t)
    (e / f"{EXAM_CASE}.json").write_text('{"acquisition_times_min": [0, true, 3]}')
    return SEG + [e, "-o", f / "out"]


@case("seg_json_time_count", "acquisition_times_min")
def _(f, t):
    e = _exam(f, t)
    (e / f"{EXAM_CASE}.json").write_text('{"acquisition_times_min": [0, 1]}')
    return SEG + [e, "-o", f / "out"]


@case("seg_json_time_decreasing", "increase")
def _(f, t):
    e = _exam(f, t)
    (e / f"{EXAM_CASE}.json").write_text('{"acquisition_times_min": [0, 3, 1]}')
    return SEG + [e, "-o", f / "out"]


@case("seg_json_broken", "acquisition-time file")
def _(f, t):
    e = _exam(f, t)
    (e / f"{EXAM_CASE}.json").write_text('{"acquisition_times_min": [0, 1,')
    return SEG + [e, "-o", f / "out"]


@case("seg_json_fifo", "named pipe")
def _(f, t):
    e = _exam(f, t)
    (e / f"{EXAM_CASE}.json").unlink()
    os.mkfifo(e / f"{EXAM_CASE}.json")
    return SEG + [e, "-o", f / "out"]


@case("seg_times_nan", "--times")
def _(f, t):
    return SEG + [_exam(f, t), "-o", f / "out", "--times", "0,nan,3"]


@case("seg_times_count", "time")
def _(f, t):
    return SEG + [_exam(f, t), "-o", f / "out", "--times", "0,1"]


@case("seg_single_3d_file", "single 3D file")
def _(f, t):
    return SEG + [_phase(_exam(f, t), 0), "-o", f / "out"]


@case("seg_input_missing", "does not exist")
def _(f, t):
    return SEG + [f / "nothing", "-o", f / "out"]


@case("seg_truncated_phase", "truncated")
def _(f, t):
    e = _exam(f, t)
    data = _phase(e, 1).read_bytes()
    _phase(e, 1).write_bytes(data[: len(data) // 2])
    return SEG + [e, "-o", f / "out"]


@case("seg_text_named_nifti", "phase 1")
def _(f, t):
    e = _exam(f, t)
    _phase(e, 1).write_text("not an image")
    return SEG + [e, "-o", f / "out"]


@case("seg_two_cases_in_folder", "several cases")
def _(f, t):
    e = _exam(f, t)
    shutil.copy(_phase(e, 0), e / "other_0000.nii.gz")
    return SEG + [e, "-o", f / "out"]


@case("seg_missing_precontrast", "pre-contrast")
def _(f, t):
    e = _exam(f, t)
    _phase(e, 0).unlink()
    return SEG + [e, "-o", f / "out"]


@case("seg_dicom_seg_on_nifti", "--dicom-seg")
def _(f, t):
    return SEG + [_exam(f, t), "-o", f / "out", "--dicom-seg"]


# ------------------------------------------------------------------------------ kinetics
@case("kin_box_outside", "--box-ras")
def _(f, t):
    return KIN[:-1] + [_exam(f, t), "-o", f / "out", "--box=5000,5000,5000,5100,5100,5100"]


@case("kin_case_id_parent", "--case-id")
def _(f, t):
    return KIN + [_exam(f, t), "-o", f / "out", "--case-id", "../x"]


@case("kin_output_is_input", "--output")
def _(f, t):
    e = _exam(f, t)
    return KIN + [e, "-o", e, "--overwrite"]


@case("kin_pe_threshold_nan", "--pe-threshold")
def _(f, t):
    return KIN + [_exam(f, t), "-o", f / "out", "--pe-threshold", "nan"]


@case("kin_background_fraction", "--background-fraction")
def _(f, t):
    return KIN + [_exam(f, t), "-o", f / "out", "--background-fraction", "2"]


@case("kin_min_neighbors", "--min-neighbors")
def _(f, t):
    return KIN + [_exam(f, t), "-o", f / "out", "--min-neighbors", "30"]


@case("kin_roi_fifo", "named pipe")
def _(f, t):
    os.mkfifo(f / "roi.nii.gz")
    return KIN[:-1] + [_exam(f, t), "-o", f / "out", "--roi", f / "roi.nii.gz"]


@case("kin_roi_missing", "ROI mask")
def _(f, t):
    return KIN[:-1] + [_exam(f, t), "-o", f / "out", "--roi", f / "roi.nii.gz"]


@case("kin_all_zero", "no image")
def _(f, t):
    z = _img(np.zeros((10, 12, 14), np.float32))
    return KIN + [_write_exam(f, [z, z]), "-o", f / "out"]


@case("kin_spacing_1000", "spacing")
def _(f, t):
    return KIN + [_write_exam(f, [_img(_ramp(), (1000,) * 3), _img(_ramp(scale=2), (1000,) * 3)]), "-o", f / "out"]


@case("kin_seed_nan", "--seed-lps")
def _(f, t):
    return KIN + [_exam(f, t), "-o", f / "out", "--seed-lps=nan,1,2"]


@case("kin_series_on_nifti", "--series")
def _(f, t):
    return KIN + [_exam(f, t), "-o", f / "out", "--series", "4"]


@case("kin_output_under_file", "--output")
def _(f, t):
    (f / "file").write_text("x")
    return KIN + [_exam(f, t), "-o", f / "file" / "out"]


# ------------------------------------------------------------------------------ evaluate
def _pair(f):
    return _mask(f / "pred.nii.gz", [1, 1]), _mask(f / "ref.nii.gz", [1])


@case("eval_4d_pred", "4D")
def _(f, t):
    p, r = _pair(f)
    sitk.WriteImage(sitk.JoinSeries([_img(_ramp()), _img(_ramp())]), str(f / "p4.nii.gz"))
    return ["evaluate", "--pred", f / "p4.nii.gz", "--ref", r]


@case("eval_non_binary_ref", "not binary")
def _(f, t):
    p, _r = _pair(f)
    return ["evaluate", "--pred", p, "--ref", _mask(f / "multi.nii.gz", [1, 2, 3])]


@case("eval_negative_ref", "negative")
def _(f, t):
    p, _r = _pair(f)
    return ["evaluate", "--pred", p, "--ref", _mask(f / "neg.nii.gz", [-1])]


@case("eval_fractional_pred", "fractional")
def _(f, t):
    _p, r = _pair(f)
    return ["evaluate", "--pred", _mask(f / "prob.nii.gz", [0.25, 0.75]), "--ref", r]


@case("eval_inf_pred", "infinite")
def _(f, t):
    _p, r = _pair(f)
    return ["evaluate", "--pred", _nan_nifti(f / "inf.nii.gz", np.inf), "--ref", r]


@case("eval_csv_exists", "--csv")
def _(f, t):
    p, r = _pair(f)
    (f / "m.csv").write_text("old")
    return ["evaluate", "--pred", p, "--ref", r, "--csv", f / "m.csv"]


@case("eval_csv_is_pred", "input")
def _(f, t):
    p, r = _pair(f)
    return ["evaluate", "--pred", p, "--ref", r, "--csv", p, "--overwrite"]


@case("eval_csv_under_file", "--csv")
def _(f, t):
    p, r = _pair(f)
    return ["evaluate", "--pred", p, "--ref", r, "--csv", p / "m.csv"]


@case("eval_csv_is_folder", "--csv")
def _(f, t):
    p, r = _pair(f)
    (f / "dir").mkdir()
    (f / "dir" / "keep").write_text("x")
    return ["evaluate", "--pred", p, "--ref", r, "--csv", f / "dir"]


@case("eval_threshold_2", "--threshold")
def _(f, t):
    p, r = _pair(f)
    return ["evaluate", "--pred", p, "--ref", r, "--threshold", "2"]


@case("eval_pred_fifo", "named pipe")
def _(f, t):
    _p, r = _pair(f)
    os.mkfifo(f / "fifo.nii.gz")
    return ["evaluate", "--pred", f / "fifo.nii.gz", "--ref", r]


@case("eval_ref_link_loop", "loops")
def _(f, t):
    p, _r = _pair(f)
    os.symlink("loop.nii.gz", f / "loop.nii.gz")
    return ["evaluate", "--pred", p, "--ref", f / "loop.nii.gz"]


@case("eval_ref_dev_zero", "device")
def _(f, t):
    p, _r = _pair(f)
    os.symlink("/dev/zero", f / "zero.nii.gz")
    return ["evaluate", "--pred", p, "--ref", f / "zero.nii.gz"]


# ------------------------------------------------------------------------------ reader-study
def _table(f, masks) -> Path:
    rows = ["case,reader,mask"] + [f"c{i // 3},{['r1', 'r2', 'model'][i % 3]},{m}" for i, m in enumerate(masks)]
    (f / "study.csv").write_text("\n".join(rows) + "\n")
    return f / "study.csv"


@case("rs_non_binary_mask", "not binary")
def _(f, t):
    m1, m2 = _mask(f / "a.nii.gz", [1]), _mask(f / "b.nii.gz", [1, 2])
    return ["reader-study", "--quiet", _table(f, [m1.name, m2.name, m1.name]), "-o", f / "report"]


@case("rs_output_is_file", "--output")
def _(f, t):
    (f / "report").write_text("x")
    return ["reader-study", "--quiet", _table(f, ["a", "b", "c"]), "-o", f / "report"]


@case("rs_alpha_nan", "--alpha")
def _(f, t):
    return ["reader-study", "--quiet", _table(f, ["a", "b", "c"]), "-o", f / "report", "--alpha", "nan"]


@case("rs_table_fifo", "named pipe")
def _(f, t):
    os.mkfifo(f / "study.csv")
    return ["reader-study", "--quiet", f / "study.csv", "-o", f / "report"]


@case("rs_tune_fraction", "--tune-fraction")
def _(f, t):
    return ["reader-study", "--quiet", _table(f, ["a", "b", "c"]), "-o", f / "report", "--tune-fraction", "1.5"]


# ------------------------------------------------------------------------------ dicom-list
@case("dl_file_not_folder", "found a file")
def _(f, t):
    (f / "x.dcm").write_text("x")
    return ["dicom-list", f / "x.dcm"]


@case("dl_missing", "does not exist")
def _(f, t):
    return ["dicom-list", f / "none"]


@case("dl_fifo", "named pipe")
def _(f, t):
    os.mkfifo(f / "pipe")
    return ["dicom-list", f / "pipe"]


# ------------------------------------------------------------------------------ phantom
@case("ph_seed_empty_range", "--seed")
def _(f, t):
    return ["phantom", "--seed", "5-1", "-o", f / "ph"]


@case("ph_seed_garbage", "--seed")
def _(f, t):
    return ["phantom", "--seed", "a-b", "-o", f / "ph"]


@case("ph_output_is_file", "--output")
def _(f, t):
    (f / "ph").write_text("x")
    return ["phantom", "--seed", "1", "-o", f / "ph"]


@case("ph_phases_9", "--phases")
def _(f, t):
    return ["phantom", "--seed", "1", "-o", f / "ph", "--phases", "9"]


@case("ph_output_in_proc", "--output")
def _(f, t):
    return ["phantom", "--seed", "1", "-o", "/proc/self/hostile"]


# ------------------------------------------------------------------------------ train, demo
@case("train_output_is_file", "--output")
def _(f, t):
    (f / "run").write_text("x")
    (f / "cfg.json").write_text("{}")
    return ["train", "--config", f / "cfg.json", "-o", f / "run"]


@case("train_config_fifo", "named pipe")
def _(f, t):
    os.mkfifo(f / "cfg.json")
    return ["train", "--config", f / "cfg.json", "-o", f / "run"]


@case("train_config_missing", "does not exist")
def _(f, t):
    return ["train", "--config", f / "cfg.json", "-o", f / "run"]


@case("demo_output_is_file", "--output")
def _(f, t):
    (f / "demo").write_text("x")
    return ["demo", "--quiet", "-o", f / "demo"]


@case("demo_threshold_nan", "--threshold")
def _(f, t):
    return ["demo", "--quiet", "-o", f / "demo", "--threshold", "nan"]


@case("demo_device_tpu", "--device")
def _(f, t):
    return ["demo", "--quiet", "-o", f / "demo", "--device", "tpu:9"]


# ------------------------------------------------------------------------------ the harness
def _run_case(name: str, root: Path, template: Path) -> dict:
    build, expect = CASES[name]
    folder = root / name
    folder.mkdir()
    return {**run_in_folder(folder, [str(a) for a in build(folder, template)], TIMEOUT_S), "expect": expect}


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile")
    template = write_small_exam(root / "_template")
    assert sorted(p.name for p in template.iterdir())[:1] == [f"{EXAM_CASE}.json"]
    with ThreadPoolExecutor(WORKERS) as pool:
        done = dict(zip(CASES, pool.map(lambda n: _run_case(n, root, template), CASES)))
    outside = set(os.listdir(root)) - set(CASES) - {"_template"}
    assert not outside, f"files appeared next to the case folders: {outside}"
    return done


def test_enough_cases():
    assert len(CASES) >= 60


@pytest.mark.parametrize("name", list(CASES))
def test_hostile_case(results, name):
    r = results[name]
    cmd = " ".join(r["argv"])
    assert r["rc"] != "timeout", f"hang: {cmd}"
    assert "Traceback" not in r["stderr"], f"{cmd}\n{r['stderr']}"
    lines = [ln for ln in r["stderr"].splitlines() if ln.strip()]
    assert r["rc"] == 2, f"exit {r['rc']}: {cmd}\n{r['stderr']}"
    assert len(lines) == 1, f"{cmd}: expected one line, got:\n{r['stderr']}"
    assert "error:" in lines[0] and "Fix:" in lines[0], lines[0]
    assert r["expect"].lower() in lines[0].lower(), f"{cmd}: message should mention {r['expect']!r}: {lines[0]}"
    changed = {k for k in set(r["before"]) | set(r["after"]) if r["before"].get(k) != r["after"].get(k)}
    assert not changed, f"{cmd}: files created, changed or removed: {sorted(changed)}"


def test_every_entry_point_is_covered():
    prefixes = {n.split("_")[0] for n in CASES}
    assert prefixes >= {"seg", "kin", "eval", "rs", "dl", "ph", "train", "demo"}


# ------------------------------------------------------------------------------ the helpers themselves
@pytest.mark.parametrize("case_id", ["case_0001", "Pt 12", "a.b-c", "ÄÖ_1"])
def test_plain_case_ids_pass(case_id):
    from BreastTumorSegLib.io.safety import check_case_id

    assert check_case_id(case_id) == case_id


@pytest.mark.parametrize("case_id", ["", " ", ".", "..", "../x", "a/b", "a\\b", "/abs", ".hidden", "-rf", "a\nb",
                                     "x" * 200])
def test_path_like_case_ids_are_refused(case_id):
    from BreastTumorSegLib.core.errors import InputError
    from BreastTumorSegLib.io.safety import check_case_id

    with pytest.raises(InputError, match="--case-id"):
        check_case_id(case_id)


def test_staged_outputs_remove_the_folders_they_made(tmp_path):
    from BreastTumorSegLib.io.atomic import StagedOutputs

    out = tmp_path / "a" / "b" / "out"
    with pytest.raises(RuntimeError):
        with StagedOutputs(out) as st:
            st.path("x.txt").write_text("x")
            raise RuntimeError("boom")
    assert os.listdir(tmp_path) == []
    with StagedOutputs(out) as st:
        st.path("x.txt").write_text("x")
        st.commit()
    assert os.listdir(out) == ["x.txt"]


def test_staged_outputs_refuse_path_like_names(tmp_path):
    from BreastTumorSegLib.core.errors import InputError
    from BreastTumorSegLib.io.atomic import StagedOutputs

    with StagedOutputs(tmp_path / "out") as st:
        for bad in ("../x.nii.gz", "a/b.json", ".."):
            with pytest.raises(InputError):
                st.path(bad)
    assert not (tmp_path / "out").exists()


def test_a_signal_during_the_commit_waits_until_every_file_is_in_place(tmp_path):
    import signal as _signal

    from BreastTumorSegLib.core import interrupts
    from BreastTumorSegLib.io.atomic import StagedOutputs

    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        with interrupts.handle_signals():
            with StagedOutputs(out) as st:
                for i in range(5):
                    st.path(f"f{i}.txt").write_text(str(i))
                real_replace = os.replace

                def replace_and_signal(src, dst):  # the signal arrives in the middle of the renames
                    real_replace(src, dst)
                    if dst.name == "f1.txt":
                        os.kill(os.getpid(), _signal.SIGTERM)
                os.replace = replace_and_signal
                try:
                    st.commit()
                finally:
                    os.replace = real_replace
    assert sorted(os.listdir(out)) == [f"f{i}.txt" for i in range(5)]
    assert interrupts.was_committed() and interrupts.received() == _signal.SIGTERM


def test_unwritable_or_full_output_locations_are_refused(tmp_path, monkeypatch):
    """Root may write anywhere, so a read-only or full disk is simulated for the checks."""
    from collections import namedtuple

    from BreastTumorSegLib.core.errors import InputError
    from BreastTumorSegLib.io import safety

    monkeypatch.setattr(safety.os, "access", lambda *a, **k: False)
    with pytest.raises(InputError, match="not writable"):
        safety.check_output_dir(tmp_path / "out")
    monkeypatch.undo()
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(safety.shutil, "disk_usage", lambda p: usage(10 << 20, 9 << 20, 1 << 20))
    with pytest.raises(InputError, match="MB free"):
        safety.check_output_dir(tmp_path / "out", need_bytes=100 << 20)
    assert not (tmp_path / "out").exists()
