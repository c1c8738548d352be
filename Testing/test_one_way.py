"""The one way of doing each shared job: atomic files and hashes (io/atomic.py), the values users
type (core/values.py, the command line's argparse types), and segment_exam's settings object."""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from BreastTumorSegLib.core.errors import InputError
from BreastTumorSegLib.core.values import (DEVICES, check_device_name, check_threshold, parse_numbers, parse_point,
                                           parse_seeds)
from BreastTumorSegLib.io import atomic


# ------------------------------------------------------------------------------------ atomic files
def test_the_writer_never_touches_the_umask_and_new_files_are_0o644_less_the_umask(tmp_path):
    code = ("import os; os.umask(0o002)\n"
            "def refuse(_):\n    raise AssertionError('os.umask called')\n"
            "os.umask = refuse  # reading the umask means setting it: a race with other threads\n"
            "import BreastTumorSegLib.io.atomic as a\n"
            "a.write_text(os.environ['T'], 'x'); a.write_text(os.environ['T'], 'y', durable=True)\n"
            "print(oct(os.stat(os.environ['T']).st_mode & 0o777))")
    env = dict(os.environ, T=str(tmp_path / "f.txt"),
               PYTHONPATH=os.pathsep.join([str(Path(atomic.__file__).parents[2])] + sys.path))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["0o644"]  # never group-writable, though umask 002 would allow 0o664


@pytest.mark.parametrize("durable", [False, True])
def test_every_writer_replaces_the_target_whole_and_leaves_no_temporary(tmp_path, durable):
    img = sitk.GetImageFromArray(np.arange(24, dtype=np.float32).reshape(2, 3, 4))
    img.SetOrigin((1.0, 2.0, 3.0))
    img.SetSpacing((0.5, 0.75, 2.0))  # exact in float32 (NIfTI stores float32)
    atomic.write_bytes(tmp_path / "b.bin", b"old", durable=durable)
    atomic.write_bytes(tmp_path / "b.bin", b"new", durable=durable)
    atomic.write_json(tmp_path / "a.json", {"n": np.int64(3), "x": np.float32(0.5)}, durable=durable)
    atomic.write_image(tmp_path / "i.nii.gz", img, durable=durable)
    assert (tmp_path / "b.bin").read_bytes() == b"new"
    assert (tmp_path / "a.json").read_text() == '{\n  "n": 3,\n  "x": 0.5\n}\n'
    back = sitk.ReadImage(str(tmp_path / "i.nii.gz"))
    assert back.GetOrigin() == img.GetOrigin() and back.GetSpacing() == img.GetSpacing()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "b.bin", "i.nii.gz"]


def test_a_failed_write_keeps_the_old_file_and_exclusive_never_replaces(tmp_path):
    target = tmp_path / "t.json"
    atomic.write_json(target, {"v": 1})
    with pytest.raises(ValueError):
        atomic.write_json(target, {"v": float("nan")}, allow_nan=False)
    with pytest.raises(RuntimeError):
        with atomic.atomic_target(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    with pytest.raises(FileExistsError):
        with atomic.atomic_target(target, durable=True, exclusive=True) as tmp:
            tmp.write_text('{"v": 2}')
    assert target.read_text() == '{\n  "v": 1\n}\n'
    assert [p.name for p in tmp_path.iterdir()] == ["t.json"]


def test_sha256_file_is_the_hash_of_the_bytes(tmp_path):
    data = os.urandom(3 << 20) + b"tail"  # several read blocks
    (tmp_path / "w").write_bytes(data)
    assert atomic.sha256_file(tmp_path / "w") == hashlib.sha256(data).hexdigest()
    assert atomic.sha256_file(tmp_path / "w", chunk=7) == hashlib.sha256(data).hexdigest()


def test_a_study_lock_and_its_access_hashes_are_written_durably(tmp_path, monkeypatch):
    from BreastTumorSegLib.web.auth import issue_tokens

    synced = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real(fd)))
    issue_tokens(tmp_path, ["ann"])
    assert len(synced) >= 2  # the file before the rename, the folder after it
    assert (tmp_path / "access.json").exists()


# ------------------------------------------------------------------------------------- user values
@pytest.mark.parametrize("value", [0.5, 1, 1e-6])
def test_thresholds_in_zero_to_one(value):
    assert check_threshold(value) == float(value)


@pytest.mark.parametrize("value", [0, -0.1, 1.01, float("nan"), float("inf"), True, "0.5"])
def test_thresholds_outside_are_refused_naming_the_option(value):
    with pytest.raises(InputError, match="--threshold"):
        check_threshold(value)


def test_the_reader_study_uses_the_same_threshold_rule():
    from BreastTumorSegLib.evaluation.readerstudy import StudyConfig

    StudyConfig(threshold=1.0).check()  # (0, 1]: 1 is allowed everywhere ...
    with pytest.raises(InputError, match="threshold"):
        StudyConfig(threshold=0.0).check()  # ... 0 nowhere (it used to pass here, as [0, 1])


def test_points_numbers_and_seeds():
    assert parse_point("12.5,-40,8") == parse_point("12.5 -40 8") == (12.5, -40.0, 8.0)
    assert parse_numbers("0, 1.5,3", example="") == (0.0, 1.5, 3.0)
    for bad in ("1,2", "a,b,c", "nan,1,2", "1,2,3,4", ""):
        with pytest.raises(InputError):
            parse_point(bad)
    assert parse_seeds("1000-1002,7, 9") == [1000, 1001, 1002, 7, 9]
    assert parse_seeds([3, 4]) == [3, 4]
    for bad in ("5-1", "-3", "x", "", "1-"):
        with pytest.raises(InputError, match="--seed"):
            parse_seeds(bad)


def test_devices_the_panel_offers_are_the_ones_the_engine_takes():
    assert set(DEVICES) == {"auto", "cpu", "cuda", "mps"}
    assert [check_device_name(d) for d in (*DEVICES, "CUDA:1")] == [*DEVICES, "cuda:1"]
    with pytest.raises(InputError, match="--device"):
        check_device_name("tpu:9")


@pytest.mark.parametrize("argv,option", [
    (["segment", "x", "-o", "o", "--threshold", "0"], "--threshold"),
    (["evaluate", "--pred", "p", "--ref", "r", "--threshold", "1.5"], "--threshold"),
    (["reader-study", "t.csv", "--threshold", "nan"], "--threshold"),
    (["study", "init", "--cases", "c.csv", "--readers", "a", "-o", "S", "--threshold", "0"], "--threshold"),
    (["study", "init", "--cases", "c.csv", "--readers", "a", "-o", "S", "--device", "gpu"], "--device"),
    (["segment", "x", "-o", "o", "--device", "tpu"], "--device"),
    (["kinetics", "x", "-o", "o", "--seed-ras", "1,2"], "--seed-ras"),
    (["segment", "x", "-o", "o", "--seed-lps=nan,1,2"], "--seed-lps"),
    (["phantom", "--seed", "5-1", "-o", "o"], "--seed"),
    (["train", "--retune", "card.json", "--set", "epochs=1"], "--retune"),
])
def test_every_command_refuses_a_bad_value_in_one_line_before_reading(argv, option, capsys, tmp_path, monkeypatch):
    from BreastTumorSegLib.cli import main

    monkeypatch.chdir(tmp_path)
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's own exit
        code = exc.code
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and option in err[0] and err[0].count("Fix:") == 1, err
    assert list(tmp_path.iterdir()) == []


# -------------------------------------------------------------------------------- segment settings
def test_segment_exam_refuses_the_keywords_its_settings_replaced():
    from BreastTumorSegLib.engine.pipeline import segment_exam
    from BreastTumorSegLib.engine.settings import SegmentSettings, split_settings

    with pytest.raises(TypeError, match=r"register.*registration='none'"):
        segment_exam(None, model="ftv", register=False)
    with pytest.raises(TypeError, match="settings=SegmentSettings"):
        segment_exam(None, model="ftv", threshold=0.4)
    settings, rest = split_settings(register=False, threshold=0.4, seed_lps=(1, 2, 3))
    assert settings == SegmentSettings(registration="none", threshold=0.4) and rest == {"seed_lps": (1, 2, 3)}
    assert split_settings(register=True)[0] == SegmentSettings()
