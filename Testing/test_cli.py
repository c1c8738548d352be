"""The `breasttumorseg` command line: outputs, progress, one-line errors, nothing partial."""
import json

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from BreastTumorSegLib.cli import main
from BreastTumorSegLib.slicer.mrml_bridge import read_seg_nrrd
from BreastTumorSegLib.models.nets.unet import UNet3D
from BreastTumorSegLib.training.phantom import make_phantom, write_phantom
from BreastTumorSegLib.models.weights import save_state_dict


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    """A small untrained network: these tests check the command line, not accuracy."""
    d = tmp_path_factory.mktemp("models")
    torch.manual_seed(0)
    digest = save_state_dict(UNet3D(base=2, levels=2).state_dict(), d / "tiny.safetensors")
    (d / "tiny.json").write_text(json.dumps({
        "name": "tiny", "description": "untrained test network",
        "architecture": {"type": "unet3d", "in_channels": 3, "base": 2, "levels": 2},
        "weights": "tiny.safetensors", "sha256": digest, "inputs": {"kind": "hirsch", "spacing_mm": 4.0},
        "postprocess": {"threshold": 0.5, "mode": "absolute", "min_lesion_ml": 0.0}}))
    return d


@pytest.fixture(scope="module")
def exam_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("exam") / "case"
    write_phantom(make_phantom(5, n_phases=3, motion_mm=0.0), d)
    return d


def _run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_segment_writes_every_output(tmp_path, capsys, exam_dir, tiny_model):
    out = tmp_path / "out"
    code, stdout, err = _run(capsys, "segment", exam_dir, "--output", out, "--model", "tiny",
                             "--models-dir", tiny_model, "--threshold", "0.3")
    assert code == 0, err
    case = "phantom_0005"
    files = sorted(p.name for p in out.iterdir())
    assert files == sorted([f"{case}_seg.nii.gz", f"{case}_prob.nii.gz", f"{case}.seg.nrrd", f"{case}.json",
                            f"{case}_overview.png"])
    pre = sitk.ReadImage(str(exam_dir / f"{case}_0000.nii.gz"))
    label = sitk.ReadImage(str(out / f"{case}_seg.nii.gz"))
    assert label.GetPixelID() == sitk.sitkUInt8 and label.GetSize() == pre.GetSize()
    np.testing.assert_allclose(label.GetDirection(), pre.GetDirection(), atol=1e-6)
    np.testing.assert_allclose(label.GetOrigin(), pre.GetOrigin(), atol=1e-4)
    seg = read_seg_nrrd(out / f"{case}.seg.nrrd")
    np.testing.assert_array_equal(sitk.GetArrayFromImage(seg) > 0, sitk.GetArrayFromImage(label) > 0)
    summary = json.loads((out / f"{case}.json").read_text())
    assert summary["model_id"].startswith("tiny@")
    assert set(summary["timings_s"]) >= {"load", "register", "breast_mask", "predict", "postprocess", "write"}
    assert list(summary["timings_s"])[0] == "load" and list(summary["timings_s"])[-1] == "write"
    assert summary["outputs"]["segmentation"] == f"{case}.seg.nrrd"
    assert summary["settings"]["postprocess"]["threshold"] == 0.3
    assert "%" in err  # progress went to stderr
    assert f"case {case}" in stdout


def test_segment_refuses_to_overwrite(tmp_path, capsys, exam_dir, tiny_model):
    out = tmp_path / "out"
    out.mkdir()
    keep = out / "phantom_0005_seg.nii.gz"
    keep.write_bytes(b"reader data")
    code, _, err = _run(capsys, "segment", exam_dir, "--output", out, "--model", "tiny", "--models-dir", tiny_model)
    assert code == 2
    assert "--overwrite" in err and len(err.strip().splitlines()) == 1
    assert keep.read_bytes() == b"reader data"
    assert sorted(p.name for p in out.iterdir()) == ["phantom_0005_seg.nii.gz"]


def test_bad_input_gives_one_line_and_no_output(tmp_path, capsys, exam_dir, tiny_model):
    bad = tmp_path / "bad"
    bad.mkdir()
    for f in exam_dir.iterdir():
        (bad / f.name).write_bytes(f.read_bytes())
    (bad / "phantom_0005_0001.nii.gz").write_bytes(b"\x1f\x8b broken")
    out = tmp_path / "out"
    code, stdout, err = _run(capsys, "segment", bad, "--output", out, "--model", "tiny", "--models-dir", tiny_model)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "phantom_0005_0001.nii.gz" in lines[0] and "Traceback" not in err
    assert not out.exists() or list(out.iterdir()) == []


def test_unknown_model(tmp_path, capsys, exam_dir):
    code, _, err = _run(capsys, "segment", exam_dir, "--output", tmp_path / "o", "--model", "nope")
    assert code == 2 and "unknown model 'nope'" in err


def test_models_lists_bundled_and_builtin(capsys):
    code, out, _ = _run(capsys, "models")
    assert code == 0 and "unet-demo" in out and "ftv" in out


def test_help_lists_commands(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for cmd in ("segment", "demo", "evaluate"):
        assert cmd in out


def test_written_probability_rethresholds_to_the_engines_masks(tmp_path):
    # The probability file drops values below PROBABILITY_FLOOR (noise, 60 MB at clinical size);
    # thresholding it must still give the engine's own masks, absolute and relative (Hirsch) mode.
    from BreastTumorSegLib.engine.pipeline import PROBABILITY_FLOOR, SegmentSettings, segment_exam, write_result
    from BreastTumorSegLib.engine.postprocess import PostprocessSettings, postprocess

    ph = make_phantom(7, n_phases=3, motion_mm=0.0)
    res = segment_exam(ph.exam, model="unet-demo", device="cpu", settings=SegmentSettings(registration="none"))
    written = write_result(res, tmp_path / "out")
    stored = sitk.ReadImage(str(written["probability"]))
    p, q = sitk.GetArrayFromImage(res.probability), sitk.GetArrayFromImage(stored)
    assert stored.GetPixelID() == sitk.sitkFloat32
    np.testing.assert_array_equal(q, np.where(p >= PROBABILITY_FLOOR, p, 0).astype(np.float32))
    assert (p > 0).sum() > (q > 0).sum()  # the floor did drop something: the test is not vacuous
    for mode, threshold in (("absolute", 0.01), ("absolute", 0.5), ("relative", 0.01), ("relative", 0.5)):
        s = PostprocessSettings(threshold=threshold, mode=mode, min_lesion_ml=0.0, restrict_to_breast=False)
        a = sitk.GetArrayFromImage(postprocess(res.probability, s)[0])
        b = sitk.GetArrayFromImage(postprocess(stored, s)[0])
        np.testing.assert_array_equal(a, b)
