"""Hostile input for the newer entry points (issue 27): batch, study init/import/export/status/
serve/tokens, models add, kinetics, refine, segment, evaluate, train, demo, phantom, reader-study.

Every case builds its inputs in its own folder (from one small shared exam and one small shared
study, copied), runs ``python -m BreastTumorSegLib.cli ...`` there as a subprocess under a timeout
(four at a time) and checks: no traceback, no hang, the documented exit code, and -- hashing every
file of the case folder before and after, the copied exam and study included -- nothing written,
changed or removed (a refused command), or only files under its output (a command that must work,
e.g. a manifest path with a space). The folder is the working directory, so a write to ``./.cache``
or next to the inputs shows up as well.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from cli_fixtures import EXAM_CASE as CASE
from cli_fixtures import KIN, PKG, SEG, free_port, run_in_folder, write_small_exam

TIMEOUT_S = 120
WORKERS = 4
HAS_WEB = all(__import__("importlib").util.find_spec(m) is not None for m in ("aiohttp", "PIL", "slicer"))

CASES: dict[str, dict] = {}


def case(name: str, expect: str, rc: int = 2, changes: str | None = None, web: bool = False):
    """*expect*: text the one stderr line must hold (rc 2); *changes*: the only folder (relative to
    the case folder) that may change when the command is expected to work (rc 0)."""
    def deco(fn):
        if web and not HAS_WEB:
            return fn
        CASES[name] = {"build": fn, "expect": expect, "want_rc": rc, "changes": changes}
        return fn
    return deco


# ------------------------------------------------------------------------------ shared inputs
class Fx:
    """The shared inputs: ``exam`` (a small phantom exam folder) and ``study`` (a study of that exam,
    readers a and b, one arm; reader a has submitted, b has not)."""

    def __init__(self, root: Path):
        self.root = root
        self.exam = root / "_exam"
        self.study = root / "_study"

    def copy_exam(self, f: Path, name: str = "exam") -> Path:
        return Path(shutil.copytree(self.exam, f / name))

    def copy_study(self, f: Path) -> tuple[Path, Path]:
        """A copy of the study and of its exam (the study's cases point at the copied exam)."""
        exam = self.copy_exam(f)
        st = Path(shutil.copytree(self.study, f / "STUDY", symlinks=True))
        os.chmod(st / "study.json", 0o644)
        data = json.loads((st / "study.json").read_text())
        data["cases"][0]["inputs"] = [str(exam)]
        (st / "study.json").write_text(json.dumps(data))
        return st, exam

    def phase(self, exam: Path, i: int = 0) -> Path:
        return exam / f"{CASE}_{i:04d}.nii.gz"

    def mask(self, path: Path, shift=(0.0, 0.0, 0.0), value=1) -> Path:
        """A label map on the exam's grid (origin shifted by *shift* mm); *value* != 1 adds a second label."""
        pre = sitk.ReadImage(str(self.phase(self.exam)))
        arr = np.zeros(sitk.GetArrayViewFromImage(pre).shape, np.uint8)
        arr[2:5, 3:7, 3:7] = 1
        arr[3, 4, 4] = value
        img = sitk.GetImageFromArray(arr)
        img.CopyInformation(pre)
        img.SetOrigin(tuple(o + s for o, s in zip(pre.GetOrigin(), shift)))
        sitk.WriteImage(img, str(path))
        return path


def _cases_csv(f: Path, rows: str, name: str = "cases.csv") -> Path:
    p = f / name
    p.write_text(rows)
    return p


def _fake_nnunet(f: Path) -> Path:
    """An nnU-Net v2 model folder with a fake (never unpickled) checkpoint."""
    m = f / "Dataset001_X" / "nnUNetTrainer__nnUNetPlans__3d_fullres"
    (m / "fold_0").mkdir(parents=True)
    (m / "dataset.json").write_text(json.dumps({"channel_names": {"0": "T1"}, "labels": {"background": 0, "tumor": 1},
                                                "numTraining": 1, "file_ending": ".nii.gz"}))
    (m / "plans.json").write_text(json.dumps({"configurations": {"3d_fullres": {"patch_size": [32, 32, 32]}}}))
    (m / "fold_0" / "checkpoint_final.pth").write_bytes(b"PK\x03\x04" + b"\0" * 64)
    return m


ADD = ["models", "add"]
LIC = ["--name", "mine", "--license", "CC0", "--trained-on", "nothing"]
BATCH = ["batch", "--model", "ftv", "--no-register", "--progress", "none"]
INIT = ["study", "init", "--readers", "a", "--no-breast-region"]


def _train_cfg(f: Path, **values) -> Path:
    cfg = {"name": "t", "task": "tumor", "architecture": {"type": "unet3d", "base": 4, "levels": 2},
           "epochs": 1, "steps_per_epoch": 1, "patch": 16, "batch": 1, "threads": 1,
           "data": {"source": "phantom", "train_seeds": "1000", "val_seeds": "2000", "size": "small"}}
    cfg.update(values)
    p = f / "cfg.json"
    p.write_text(json.dumps(cfg))  # NaN is written as NaN, which Python's JSON reader accepts
    return p


# ------------------------------------------------------------------------------ batch
@case("batch_manifest_extra_fields", "field(s) more")
def _(f, fx):
    e = fx.copy_exam(f)
    return BATCH + [_cases_csv(f, f"case,path\nc1,{e},0;1;2,extra\n", "m.csv"), "-o", f / "out"]


@case("batch_output_inside_exam_folder_input", "inside the input folder")
def _(f, fx):
    fx.copy_exam(f, "exams/e1")
    return BATCH + [f / "exams", "-o", f / "exams" / "e1" / "out"]


@case("batch_output_inside_manifest_exam", "inside the input folder")
def _(f, fx):
    e = fx.copy_exam(f)
    return BATCH + [_cases_csv(f, f"case,path\nc1,{e}\n", "m.csv"), "-o", e / "out"]


@case("batch_output_is_manifest_exam", "is the input")
def _(f, fx):
    e = fx.copy_exam(f)
    return BATCH + [_cases_csv(f, f"case,path\nc1,{e}\n", "m.csv"), "-o", e]


@case("batch_output_inside_phase_list_folder", "inside the input folder")
def _(f, fx):
    e = fx.copy_exam(f)
    phases = ";".join(str(fx.phase(e, i)) for i in range(3))
    return BATCH + [_cases_csv(f, f"case,path\nc1,{phases}\n", "m.csv"), "-o", e / "o"]


@case("batch_manifest_10000_missing_paths", "do not exist")
def _(f, fx):
    rows = "".join(f"c{i:05d},/nonexistent/exam_{i:05d}\n" for i in range(10000))
    return BATCH + [_cases_csv(f, "case,path\n" + rows, "m.csv"), "-o", f / "out"]


@case("batch_manifest_times_nan", "times")
def _(f, fx):
    e = fx.copy_exam(f)
    return BATCH + [_cases_csv(f, f"case,path,times\nc1,{e},0;nan;2\n", "m.csv"), "-o", f / "out"]


@case("batch_manifest_case_dotdot", "column case")
def _(f, fx):
    e = fx.copy_exam(f)
    return BATCH + [_cases_csv(f, f"case,path\n..,{e}\n", "m.csv"), "-o", f / "out"]


@case("batch_manifest_wrong_header", "columns case and path")
def _(f, fx):
    return BATCH + [_cases_csv(f, "name,file\nx,y\n", "m.csv"), "-o", f / "out"]


@case("batch_manifest_duplicate_case", "appears twice")
def _(f, fx):
    e = fx.copy_exam(f)
    return BATCH + [_cases_csv(f, f"case,path\nc1,{e}\nc1,{e}\n", "m.csv"), "-o", f / "out"]


@case("batch_manifest_binary", "manifest")
def _(f, fx):
    (f / "m.csv").write_bytes(b"case,path\n\xff\xfe\x00\x81\n")
    return BATCH + [f / "m.csv", "-o", f / "out"]


@case("batch_manifest_fifo", "named pipe")
def _(f, fx):
    os.mkfifo(f / "m.csv")
    return BATCH + [f / "m.csv", "-o", f / "out"]


@case("batch_workers_zero", "--workers")
def _(f, fx):
    fx.copy_exam(f, "exams/e1")
    return BATCH + [f / "exams", "-o", f / "out", "--workers", "0"]


@case("batch_shard_bad", "--shard")
def _(f, fx):
    fx.copy_exam(f, "exams/e1")
    return BATCH + [f / "exams", "-o", f / "out", "--shard", "3/2"]


@case("batch_threshold_nan", "--threshold")
def _(f, fx):
    fx.copy_exam(f, "exams/e1")
    return BATCH + [f / "exams", "-o", f / "out", "--threshold", "nan"]


@case("batch_unknown_model", "unknown model")
def _(f, fx):
    fx.copy_exam(f, "exams/e1")
    return ["batch", f / "exams", "-o", f / "out", "--model", "nope"]


@case("batch_output_is_file", "--output")
def _(f, fx):
    fx.copy_exam(f, "exams/e1")
    (f / "out").write_text("x")
    return BATCH + [f / "exams", "-o", f / "out"]


@case("batch_no_exams", "no exams found")
def _(f, fx):
    (f / "exams").mkdir()
    return BATCH + [f / "exams", "-o", f / "out"]


@case("batch_manifest_path_with_space_works", "", rc=0, changes="out")
def _(f, fx):
    e = fx.copy_exam(f, "my exams/exam 1")
    return BATCH + [_cases_csv(f, f"case,path\nc1,{e}\n", "m.csv"), "-o", f / "out"]


# ------------------------------------------------------------------------------ study init
@case("init_cases_extra_fields", "field(s) more")
def _(f, fx):
    e = fx.copy_exam(f)
    return INIT + ["--cases", _cases_csv(f, f"case,path\nc1,{e},x\n"), "-o", f / "S"]


@case("init_autosave_nan", "--autosave-s")
def _(f, fx):
    e = fx.copy_exam(f)
    return INIT + ["--cases", _cases_csv(f, f"case,path\nc1,{e}\n"), "-o", f / "S", "--autosave-s", "nan"]


@case("init_washout_days_nan", "--washout-days")
def _(f, fx):
    e = fx.copy_exam(f)
    return INIT + ["--cases", _cases_csv(f, f"case,path\nc1,{e}\n"), "-o", f / "S", "--washout-days", "nan"]


@case("init_idle_timeout_inf", "--idle-timeout-s")
def _(f, fx):
    e = fx.copy_exam(f)
    return INIT + ["--cases", _cases_csv(f, f"case,path\nc1,{e}\n"), "-o", f / "S", "--idle-timeout-s", "inf"]


@case("init_effects_unknown", "--effects")
def _(f, fx):
    e = fx.copy_exam(f)
    return INIT + ["--cases", _cases_csv(f, f"case,path\nc1,{e}\n"), "-o", f / "S", "--effects", "Paint,rm-rf,../x"]


@case("init_output_inside_exam", "inside the input folder")
def _(f, fx):
    e = fx.copy_exam(f)
    return INIT + ["--cases", _cases_csv(f, f"case,path\nc1,{e}\n"), "-o", e / "S"]


@case("init_output_is_cases_table", "--output")
def _(f, fx):
    e = fx.copy_exam(f)
    c = _cases_csv(f, f"case,path\nc1,{e}\n")
    return INIT + ["--cases", c, "-o", c]


@case("init_deep_output_left_clean", "case c1")
def _(f, fx):
    e = fx.copy_exam(f)
    fx.phase(e, 1).write_bytes(fx.phase(e, 1).read_bytes()[:200])  # truncated: found while the study is made
    return INIT + ["--cases", _cases_csv(f, f"case,path\nc1,{e}\n"), "-o", f / "o" / "deep" / "er" / "STUDY"]


@case("init_reader_path", "reader")
def _(f, fx):
    e = fx.copy_exam(f)
    return ["study", "init", "--readers", "../x", "--cases", _cases_csv(f, f"case,path\nc1,{e}\n"), "-o", f / "S"]


@case("init_arms_bad", "--arms")
def _(f, fx):
    e = fx.copy_exam(f)
    return INIT + ["--cases", _cases_csv(f, f"case,path\nc1,{e}\n"), "-o", f / "S", "--arms", "placebo"]


@case("init_assisted_without_model", "--model")
def _(f, fx):
    e = fx.copy_exam(f)
    return INIT + ["--cases", _cases_csv(f, f"case,path\nc1,{e}\n"), "-o", f / "S", "--arms", "unaided,assisted"]


@case("init_threshold_without_model", "--threshold")
def _(f, fx):
    e = fx.copy_exam(f)
    return INIT + ["--cases", _cases_csv(f, f"case,path\nc1,{e}\n"), "-o", f / "S", "--threshold", "0.5"]


@case("init_cases_missing_path", "not exist")
def _(f, fx):
    return INIT + ["--cases", _cases_csv(f, "case,path\nc1,nowhere\n"), "-o", f / "S"]


@case("init_cases_fifo", "named pipe")
def _(f, fx):
    os.mkfifo(f / "cases.csv")
    return INIT + ["--cases", f / "cases.csv", "-o", f / "S"]


@case("init_output_not_empty", "exists")
def _(f, fx):
    e = fx.copy_exam(f)
    (f / "S").mkdir()
    (f / "S" / "notes.txt").write_text("mine")
    return INIT + ["--cases", _cases_csv(f, f"case,path\nc1,{e}\n"), "-o", f / "S"]


@case("init_washout_one_arm", "wash-out")
def _(f, fx):
    e = fx.copy_exam(f)
    return INIT + ["--cases", _cases_csv(f, f"case,path\nc1,{e}\n"), "-o", f / "S", "--washout-cases", "1"]


@case("init_case_id_path", "case id")
def _(f, fx):
    e = fx.copy_exam(f)
    return INIT + ["--cases", _cases_csv(f, f"case,path\n../c1,{e}\n"), "-o", f / "S"]


# ------------------------------------------------------------------------------ study import / status / tokens
@case("import_readers_a_is_file", "reader's folder")
def _(f, fx):
    st, _ = fx.copy_study(f)
    shutil.rmtree(st / "readers" / "b")
    (st / "readers" / "b").write_text("not a folder")
    return ["study", "import", st, "--reader", "b", "--case", "c1", "--mask", fx.mask(f / "m.nii.gz")]


@case("import_mask_origin_differs", "origin")
def _(f, fx):
    st, _ = fx.copy_study(f)
    return ["study", "import", st, "--reader", "b", "--case", "c1", "--mask", fx.mask(f / "m.nii.gz", (5.0, 0, 0))]


@case("import_mask_fifo", "named pipe")
def _(f, fx):
    st, _ = fx.copy_study(f)
    os.mkfifo(f / "m.nii.gz")
    return ["study", "import", st, "--reader", "b", "--case", "c1", "--mask", f / "m.nii.gz"]


@case("import_unknown_reader", "not a reader")
def _(f, fx):
    st, _ = fx.copy_study(f)
    return ["study", "import", st, "--reader", "zed", "--case", "c1", "--mask", fx.mask(f / "m.nii.gz")]


@case("import_unknown_case", "no case")
def _(f, fx):
    st, _ = fx.copy_study(f)
    return ["study", "import", st, "--reader", "b", "--case", "c9", "--mask", fx.mask(f / "m.nii.gz")]


@case("import_unknown_arm", "arm")
def _(f, fx):
    st, _ = fx.copy_study(f)
    return ["study", "import", st, "--reader", "b", "--case", "c1", "--arm", "assisted",
            "--mask", fx.mask(f / "m.nii.gz")]


@case("import_mask_not_binary", "not binary")
def _(f, fx):
    st, _ = fx.copy_study(f)
    return ["study", "import", st, "--reader", "b", "--case", "c1", "--mask", fx.mask(f / "m.nii.gz", value=3)]


@case("import_submitted_already", "submitted")
def _(f, fx):
    st, _ = fx.copy_study(f)
    return ["study", "import", st, "--reader", "a", "--case", "c1", "--mask", fx.mask(f / "m.nii.gz")]


@case("import_study_missing", "does not exist")
def _(f, fx):
    return ["study", "import", f / "nope", "--reader", "a", "--case", "c1", "--mask", fx.mask(f / "m.nii.gz")]


@case("status_study_json_garbage", "study definition")
def _(f, fx):
    st, _ = fx.copy_study(f)
    (st / "study.json").write_text("{not json")
    return ["study", "status", st]


@case("status_reader_folder_is_file", "reader's folder")
def _(f, fx):
    st, _ = fx.copy_study(f)
    shutil.rmtree(st / "readers" / "b")
    (st / "readers" / "b").write_text("not a folder")
    return ["study", "status", st]


@case("export_reader_folder_is_file", "reader's folder")
def _(f, fx):
    st, _ = fx.copy_study(f)
    shutil.rmtree(st / "readers" / "b")
    (st / "readers" / "b").write_text("not a folder")
    return ["study", "export", "--partial", st, "-o", f / "t.csv"]


@case("status_study_is_file", "found a file")
def _(f, fx):
    (f / "S").write_text("x")
    return ["study", "status", f / "S"]


@case("status_study_missing", "does not exist")
def _(f, fx):
    return ["study", "status", f / "S"]


@case("tokens_unknown_reader", "not a reader", web=True)
def _(f, fx):
    st, _ = fx.copy_study(f)
    return ["study", "tokens", st, "--readers", "zed"]


# ------------------------------------------------------------------------------ study export
EXPORT = ["study", "export", "--overwrite", "--partial"]


@case("export_over_study_json", "inside the input folder")
def _(f, fx):
    st, _ = fx.copy_study(f)
    return EXPORT + [st, "-o", st / "study.json"]


@case("export_over_exam_phase", "inside the input folder")
def _(f, fx):
    st, e = fx.copy_study(f)
    return EXPORT + [st, "-o", fx.phase(e, 0)]


@case("export_inside_study", "inside the input folder")
def _(f, fx):
    st, _ = fx.copy_study(f)
    return EXPORT + [st, "-o", st / "table.csv"]


@case("export_inside_reader_folder", "inside the input folder")
def _(f, fx):
    st, _ = fx.copy_study(f)
    return EXPORT + [st, "-o", st / "readers" / "a" / "state.json"]


@case("export_over_study_folder", "is the input")
def _(f, fx):
    st, _ = fx.copy_study(f)
    return EXPORT + [st, "-o", st]


@case("export_inside_exam", "inside the input folder")
def _(f, fx):
    st, e = fx.copy_study(f)
    return EXPORT + [st, "-o", e / "table.csv"]


@case("export_not_complete", "not submitted")
def _(f, fx):
    st, _ = fx.copy_study(f)
    return ["study", "export", st, "-o", f / "t.csv"]


@case("export_under_file", "which is a file")
def _(f, fx):
    st, _ = fx.copy_study(f)
    (f / "x").write_text("x")
    return ["study", "export", st, "-o", f / "x" / "t.csv"]


@case("export_exists", "exists")
def _(f, fx):
    st, _ = fx.copy_study(f)
    (f / "t.csv").write_text("mine")
    return ["study", "export", "--partial", st, "-o", f / "t.csv"]


@case("export_to_folder", "not a folder")
def _(f, fx):
    st, _ = fx.copy_study(f)
    (f / "t").mkdir()
    return ["study", "export", "--partial", st, "-o", f / "t"]


# ------------------------------------------------------------------------------ study serve
@case("serve_release_nan", "--release-after-s", web=True)
def _(f, fx):
    st, _ = fx.copy_study(f)
    return ["study", "serve", st, "--release-after-s", "nan"]


@case("serve_without_tokens", "study tokens", web=True)
def _(f, fx):
    st, _ = fx.copy_study(f)
    return ["study", "serve", st, "--port", "1"]


@case("serve_port_zero", "--port", web=True)
def _(f, fx):
    st, _ = fx.copy_study(f)
    return ["study", "serve", st, "--port", "0"]


@case("serve_remote_host", "--host", web=True)
def _(f, fx):
    st, _ = fx.copy_study(f)
    return ["study", "serve", st, "--host", "0.0.0.0"]


@case("serve_study_missing", "does not exist", web=True)
def _(f, fx):
    return ["study", "serve", f / "nope"]


# ------------------------------------------------------------------------------ models add
@case("models_add_without_name", "needs a name")
def _(f, fx):
    return ADD + [_fake_nnunet(f), "--license", "CC0", "--trained-on", "x"]


@case("models_add_checkpoint_dev_zero", "device")
def _(f, fx):
    m = _fake_nnunet(f)
    (m / "fold_0" / "checkpoint_final.pth").unlink()
    os.symlink("/dev/zero", m / "fold_0" / "checkpoint_final.pth")
    return ADD + [m] + LIC


@case("models_add_checkpoint_fifo", "named pipe")
def _(f, fx):
    m = _fake_nnunet(f)
    (m / "fold_0" / "checkpoint_final.pth").unlink()
    os.mkfifo(m / "fold_0" / "checkpoint_final.pth")
    return ADD + [m] + LIC


@case("models_add_plans_link_to_passwd", "outside")
def _(f, fx):
    m = _fake_nnunet(f)
    (m / "plans.json").unlink()
    os.symlink("/etc/passwd", m / "plans.json")
    return ADD + [m] + LIC


@case("models_add_plans_invalid_json", "not valid JSON")
def _(f, fx):
    m = _fake_nnunet(f)
    (m / "plans.json").write_text("{oops")
    return ADD + [m] + LIC


@case("models_add_checkpoint_link_outside", "outside")
def _(f, fx):
    m = _fake_nnunet(f)
    (f / "elsewhere.pth").write_bytes(b"PK\x03\x04" + b"\0" * 64)
    (m / "fold_0" / "checkpoint_final.pth").unlink()
    os.symlink(f / "elsewhere.pth", m / "fold_0" / "checkpoint_final.pth")
    return ADD + [m] + LIC


@case("models_add_checkpoint_not_a_checkpoint", "not a PyTorch checkpoint")
def _(f, fx):
    m = _fake_nnunet(f)
    (m / "fold_0" / "checkpoint_final.pth").write_text("hello")
    return ADD + [m] + LIC


@case("models_add_plans_without_configurations", "configurations")
def _(f, fx):
    m = _fake_nnunet(f)
    (m / "plans.json").write_text("{}")
    return ADD + [m] + LIC


@case("models_add_dataset_json_list", "JSON object")
def _(f, fx):
    m = _fake_nnunet(f)
    (m / "dataset.json").write_text("[1, 2]")
    return ADD + [m] + LIC


@case("models_add_missing_folder", "does not exist")
def _(f, fx):
    return ADD + [f / "nope"] + LIC


@case("models_add_folder_is_file", "found a file")
def _(f, fx):
    (f / "m").write_text("x")
    return ADD + [f / "m"] + LIC


@case("models_add_without_license", "--license")
def _(f, fx):
    return ADD + [_fake_nnunet(f), "--name", "mine", "--trained-on", "x"]


@case("models_add_name_with_slash", "plain name")
def _(f, fx):
    return ADD + [_fake_nnunet(f), "--name", "a/b", "--license", "CC0", "--trained-on", "x"]


@case("models_add_registers_a_sound_folder", "", rc=0, changes="home")
def _(f, fx):
    return ADD + [_fake_nnunet(f)] + LIC


# ------------------------------------------------------------------------------ kinetics, segment, refine
@case("kin_box_ras_1e308", "--box-ras")
def _(f, fx):
    return KIN[:-1] + [fx.copy_exam(f), "-o", f / "out", "--box-ras=1e308,0,0,1e308,5,5"]


@case("kin_skin_margin_1e9", "--skin-margin-mm")
def _(f, fx):
    return KIN + [fx.copy_exam(f), "-o", f / "out", "--skin-margin-mm", "1e9"]


@case("kin_vessel_radius_huge", "--vessel-radius-mm")
def _(f, fx):
    return KIN + [fx.copy_exam(f), "-o", f / "out", "--vessel-radius-mm", "500"]


@case("kin_seed_ras_huge", "--seed-ras")
def _(f, fx):
    return KIN + [fx.copy_exam(f), "-o", f / "out", "--seed-ras=1e300,0,0"]


@case("kin_pe_threshold_inf", "--pe-threshold")
def _(f, fx):
    return KIN + [fx.copy_exam(f), "-o", f / "out", "--pe-threshold", "inf"]


@case("kin_ser_min_nan", "--ser-min")
def _(f, fx):
    return KIN + [fx.copy_exam(f), "-o", f / "out", "--ser-min", "nan"]


@case("kin_output_inside_exam", "--output")
def _(f, fx):
    e = fx.copy_exam(f)
    return KIN + [e, "-o", e / "out"]


@case("kin_output_is_exam_overwrite", "--output")
def _(f, fx):
    e = fx.copy_exam(f)
    return KIN + [e, "-o", e, "--overwrite"]


@case("kin_second_exam_into_same_folder", "", rc=0, changes="out")
def _(f, fx):
    e = fx.copy_exam(f)
    (f / "out").mkdir()
    for name in ("ser_bands.ctbl", "ser_ramp.ctbl"):  # an earlier exam's colour tables
        (f / "out" / name).write_text("# earlier exam\n")
    return KIN + [e, "-o", f / "out", "--case-id", "second"]


@case("seg_mamamia_root_hint", "images/")
def _(f, fx):
    fx.copy_exam(f, "root/images/" + CASE)
    (f / "root" / "segmentations").mkdir()
    return SEG + [f / "root", "-o", f / "out"]


@case("seg_output_inside_exam", "--output")
def _(f, fx):
    e = fx.copy_exam(f)
    return SEG + [e, "-o", e / "sub" / "out"]


@case("seg_output_is_phase_file", "--output")
def _(f, fx):
    e = fx.copy_exam(f)
    return SEG + [e, "-o", fx.phase(e, 1), "--overwrite"]


@case("refine_output_inside_exam", "--output")
def _(f, fx):
    e = fx.copy_exam(f)
    return ["refine", e, "--seg", fx.mask(f / "s.nii.gz"), "-o", e / "o", "--click-ras", "0,0,0,+"]


@case("refine_seg_fifo", "named pipe")
def _(f, fx):
    os.mkfifo(f / "s.nii.gz")
    return ["refine", fx.copy_exam(f), "--seg", f / "s.nii.gz", "-o", f / "o", "--click-ras", "0,0,0,+"]


@case("refine_no_click", "no click")
def _(f, fx):
    return ["refine", fx.copy_exam(f), "--seg", fx.mask(f / "s.nii.gz"), "-o", f / "o"]


@case("refine_seg_missing", "does not exist")
def _(f, fx):
    return ["refine", fx.copy_exam(f), "--seg", f / "s.nii.gz", "-o", f / "o", "--click-ras", "0,0,0,+"]


@case("refine_output_is_exam", "--output")
def _(f, fx):
    e = fx.copy_exam(f)
    return ["refine", e, "--seg", fx.mask(f / "s.nii.gz"), "-o", e, "--click-ras", "0,0,0,+", "--overwrite"]


# ------------------------------------------------------------------------------ evaluate, reader-study, phantom, demo
@case("eval_csv_over_ref", "input")
def _(f, fx):
    ref = fx.mask(f / "r.nii.gz")
    return ["evaluate", "--pred", fx.mask(f / "p.nii.gz"), "--ref", ref, "--csv", ref]


@case("eval_threshold_nan", "--threshold")
def _(f, fx):
    return ["evaluate", "--pred", fx.mask(f / "p.nii.gz"), "--ref", fx.mask(f / "r.nii.gz"), "--threshold", "nan"]


@case("rs_output_is_table", "--output")
def _(f, fx):
    (f / "t.csv").write_text("case,reader,mask\n")
    return ["reader-study", f / "t.csv", "--output", f / "t.csv"]


@case("ph_phases_one", "--phases")
def _(f, fx):
    return ["phantom", "--seed", "1", "--output", f / "ph", "--phases", "1"]


@case("demo_existing_without_overwrite", "--overwrite")
def _(f, fx):
    (f / "d" / "demo_exam").mkdir(parents=True)
    (f / "d" / "demo_exam" / "mine.txt").write_text("keep me")
    return ["demo", "--quiet", "-o", f / "d"]


# ------------------------------------------------------------------------------ train
TRAIN = ["train", "-o"]


@case("train_architecture_string", "architecture")
def _(f, fx):
    return TRAIN + [f / "run", "--config", _train_cfg(f, architecture="x")]


@case("train_set_into_a_number", "--set")
def _(f, fx):
    return TRAIN + [f / "run", "--config", _train_cfg(f), "--set", "lr.x=1"]


@case("train_set_without_equals", "--set")
def _(f, fx):
    return TRAIN + [f / "run", "--config", _train_cfg(f), "--set", "epochs"]


@case("train_patch_string", "patch")
def _(f, fx):
    return TRAIN + [f / "run", "--config", _train_cfg(f, patch="48")]


@case("train_augment_list", "augment")
def _(f, fx):
    return TRAIN + [f / "run", "--config", _train_cfg(f, augment=[])]


@case("train_threshold_candidates_number", "threshold_candidates")
def _(f, fx):
    return TRAIN + [f / "run", "--config", _train_cfg(f, threshold_candidates=5)]


@case("train_lr_nan", "lr")
def _(f, fx):
    return TRAIN + [f / "run", "--config", _train_cfg(f, lr=float("nan"))]


@case("train_lr_negative", "lr")
def _(f, fx):
    return TRAIN + [f / "run", "--config", _train_cfg(f, lr=-1)]


@case("train_batch_and_patch_huge", "GiB")
def _(f, fx):
    return TRAIN + [f / "run", "--config", _train_cfg(f, batch=4000, patch=512)]


@case("train_warmup_negative", "warmup_steps")
def _(f, fx):
    return TRAIN + [f / "run", "--config", _train_cfg(f, warmup_steps=-10)]


@case("train_threads_negative", "threads")
def _(f, fx):
    return TRAIN + [f / "run", "--config", _train_cfg(f, threads=-4)]


@case("train_name_is_a_path", "name")
def _(f, fx):
    return TRAIN + [f / "run", "--config", _train_cfg(f, name="../../x")]


@case("train_config_is_a_list", "not a table")
def _(f, fx):
    (f / "cfg.json").write_text("[1, 2]")
    return TRAIN + [f / "run", "--config", f / "cfg.json"]


@case("train_output_is_config", "--output")
def _(f, fx):
    c = _train_cfg(f)
    return TRAIN + [c, "--config", c]


@case("train_unknown_key", "unknown config key")
def _(f, fx):
    return TRAIN + [f / "run", "--config", _train_cfg(f, learning_rate=0.1)]


@case("train_architecture_bad_keys", "architecture")
def _(f, fx):
    return TRAIN + [f / "run", "--config", _train_cfg(f, architecture={"type": "unet3d", "wings": 3})]


@case("train_augment_probability_2", "augment.flip_lr")
def _(f, fx):
    return TRAIN + [f / "run", "--config", _train_cfg(f, augment={"flip_lr": 2})]


@case("train_device_tpu", "device")
def _(f, fx):
    return TRAIN + [f / "run", "--config", _train_cfg(f, device="tpu")]


@case("train_epochs_bool", "epochs")
def _(f, fx):
    return TRAIN + [f / "run", "--config", _train_cfg(f, epochs=True)]


@case("train_spacing_zero", "spacing_mm")
def _(f, fx):
    return TRAIN + [f / "run", "--config", _train_cfg(f, spacing_mm=0)]


@case("train_config_binary", "parse the config")
def _(f, fx):
    (f / "cfg.json").write_bytes(b"\xff\xfe\x00garbage")
    return TRAIN + [f / "run", "--config", f / "cfg.json"]


# ------------------------------------------------------------------------------ the harness
def _run_case(name: str, root: Path, fx: Fx) -> dict:
    spec = CASES[name]
    folder = root / name
    folder.mkdir()
    env = {"MPLCONFIGDIR": str(root / "_mpl"), "BREASTTUMORSEG_HOME": str(folder / "home"), "OMP_NUM_THREADS": "1"}
    return {**run_in_folder(folder, [str(a) for a in spec["build"](folder, fx)], TIMEOUT_S, env), **spec}


@pytest.fixture(scope="module")
def fixtures(tmp_path_factory):
    from BreastTumorSegLib.cli import main
    root = tmp_path_factory.mktemp("hostile_commands")
    fx = Fx(root)
    write_small_exam(fx.exam)
    cases = _cases_csv(root, f"case,path\nc1,{fx.exam}\n", "_cases.csv")
    assert main(["study", "init", "--cases", str(cases), "--readers", "a,b", "--no-breast-region",
                 "--seed", "1", "--output", str(fx.study)]) == 0
    assert main(["study", "import", str(fx.study), "--reader", "a", "--case", "c1",
                 "--mask", str(fx.mask(root / "_mask.nii.gz"))]) == 0
    return fx


@pytest.fixture(scope="module")
def results(fixtures):
    root = fixtures.root
    with ThreadPoolExecutor(WORKERS) as pool:
        done = dict(zip(CASES, pool.map(lambda n: _run_case(n, root, fixtures), CASES)))
    outside = set(os.listdir(root)) - set(CASES) - {"_exam", "_study", "_cases.csv", "_mask.nii.gz", "_mpl"}
    assert not outside, f"files appeared next to the case folders: {outside}"
    slowest = sorted(done.items(), key=lambda kv: -kv[1]["seconds"])[:5]
    print("slowest cases: " + ", ".join(f"{n} {r['seconds']:.1f} s" for n, r in slowest))
    return done


def test_enough_cases():
    assert len(CASES) >= 100 or not HAS_WEB and len(CASES) >= 94


@pytest.mark.parametrize("name", list(CASES))
def test_hostile_command(results, name):
    r = results[name]
    cmd = "breasttumorseg " + " ".join(r["argv"])
    assert r["rc"] != "timeout", f"hang: {cmd}"
    assert "Traceback" not in r["stderr"] and "Fatal Python error" not in r["stderr"], f"{cmd}\n{r['stderr']}"
    changed = {k for k in set(r["before"]) | set(r["after"]) if r["before"].get(k) != r["after"].get(k)}
    if r["changes"] is None:  # refused: one line naming the option or file and the fix, nothing touched
        lines = [ln for ln in r["stderr"].splitlines() if ln.strip() and not ln.startswith("[")]  # no progress bars
        assert r["rc"] == r["want_rc"] == 2, f"exit {r['rc']}: {cmd}\n{r['stderr']}"
        assert len(lines) == 1, f"{cmd}: expected one line, got:\n{r['stderr']}"
        assert "error:" in lines[0] and "Fix:" in lines[0], lines[0]
        assert r["expect"].lower() in lines[0].lower(), f"{cmd}: message should mention {r['expect']!r}: {lines[0]}"
        assert not changed, f"{cmd}: files created, changed or removed: {sorted(changed)}"
    else:  # must work, and write only below its output
        assert r["rc"] == r["want_rc"] == 0, f"exit {r['rc']}: {cmd}\n{r['stderr']}"
        outside = sorted(k for k in changed if k != r["changes"] and not k.startswith(r["changes"] + os.sep))
        assert not outside, f"{cmd}: wrote outside {r['changes']}: {outside}"
        assert any(k.startswith(r["changes"] + os.sep) for k in changed), f"{cmd}: wrote nothing"


def test_every_newer_entry_point_is_covered():
    prefixes = {n.split("_")[0] for n in CASES}
    assert prefixes >= {"batch", "init", "import", "status", "export", "models", "kin", "seg", "refine", "eval",
                        "rs", "ph", "demo", "train"}


def test_both_kinetics_colour_tables_carry_the_case(results):
    r = results["kin_second_exam_into_same_folder"]
    assert {"out/second_ser_bands.ctbl", "out/second_ser_ramp.ctbl"} <= set(r["after"])


def test_a_sound_model_folder_is_registered_with_its_files_pinned(results):
    r = results["models_add_registers_a_sound_folder"]
    card = [k for k in r["after"] if k.startswith("home/models/") and k.endswith(".json")]
    assert card == ["home/models/mine.json"], card


# ------------------------------------------------------------------------------ the web station
def _serve(study: Path, port: int, cwd: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(PKG), "MPLBACKEND": "Agg"}
    return subprocess.Popen([sys.executable, "-m", "BreastTumorSegLib.cli", "study", "serve", str(study),
                             "--port", str(port)], cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.fixture(scope="module")
def served_study(fixtures, tmp_path_factory):
    if not HAS_WEB:
        pytest.skip("the web station needs the [web] extra")
    from BreastTumorSegLib.cli import main

    f = tmp_path_factory.mktemp("serve")
    st, _ = fixtures.copy_study(f)
    assert main(["study", "tokens", str(st)]) == 0
    return st


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_serve_exits_130_or_143_on_a_signal(served_study, signum):
    import http.client

    port = free_port()
    proc = _serve(served_study, port, served_study.parent)
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                conn.putrequest("POST", "/login")  # 60 MB announced: refused before it is read
                conn.putheader("Content-Type", "application/octet-stream")
                conn.putheader("Content-Length", str(60 << 20))
                conn.endheaders()
                conn.send(b"x" * 1024)
                status = conn.getresponse().status
                conn.close()
                break
            except OSError:
                time.sleep(0.3)
        else:
            pytest.fail(f"the station did not start: {proc.communicate(timeout=10)}")
        assert status == 413
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + signum, err
    assert "Traceback" not in err


def test_serve_on_a_busy_port_is_one_line(served_study):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        proc = _serve(served_study, s.getsockname()[1], served_study.parent)
        _, err = proc.communicate(timeout=90)
    assert proc.returncode == 2, err
    lines = [ln for ln in err.splitlines() if ln.strip() and "breasttumorseg" in ln]
    assert lines and "in use" in lines[-1] and "--port" in lines[-1] and "Traceback" not in err


def test_window_values_are_no_url_parameters(served_study):
    """The station's PNG slice API refused ``?w=nan`` with 400 (issue 27); issue 30 replaced it by
    trame-slicer's views, where window/level is Slicer's own (dragged in a view, sent over the
    view's websocket): no route of the station takes a slice or a window from the URL any more
    (test_web_station: a forged ``/api/case/0/slice/...`` gets 404)."""
    from BreastTumorSegLib.web.app import Station, make_app

    station = Station(served_study)
    try:
        info = [r.get_info() for r in make_app(station).router.resources()]
    finally:
        station.loader.shutdown(wait=True)
    paths = [i.get("formatter") or i.get("path") or "" for i in info]
    assert "/case/{index}" in paths and "/api/case/{index}/info" in paths
    assert not any("slice" in p for p in paths), paths


def test_reader_study_methods_match_the_engine():
    from BreastTumorSegLib.cli.reader_study import REFERENCE_METHODS as cli_methods
    from BreastTumorSegLib.evaluation.readerstudy import REFERENCE_METHODS

    assert cli_methods == REFERENCE_METHODS


def test_a_tie_in_median_dice_is_shown_as_a_tie():
    from BreastTumorSegLib.evaluation.report import _ranking

    s = {"reader_order": ["a", "b", "c"],
         "readers": {"a": {"median_dice": 0.8}, "b": {"median_dice": 0.8}, "c": {"median_dice": 0.7}}}
    assert _ranking(s) == "a = b > c"
