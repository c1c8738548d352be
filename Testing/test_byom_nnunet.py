"""Bring your own model: an nnU-Net v2 folder built with nnU-Net's own tools, run through
`segment`, compared voxel for voxel with nnU-Net's predictor on the same file; registration
pins (a changed byte is refused), unregistered pickles refused, wrong channel mappings refused.

Needs the ``nnunet`` extra (the ``test`` extra pulls it, so CI runs these). The tiny model is
built once (about a minute on one core) and cached in the temp folder, keyed by the builder's source.
"""
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

pytest.importorskip("nnunetv2", reason="the nnunet extra is not installed (pip install -e '.[nnunet]'; "
                                       "the test extra includes it)")

from BreastTumorSegLib.cli import main  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from byom_fixtures import TEST_SEED, cached_nnunet, phantom_case  # noqa: E402


@pytest.fixture(scope="module")
def nnunet_model(tmp_path_factory):
    """(model folder copy, exam folder, nnU-Net's own label file for that exam's first post-contrast phase)."""
    import torch
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    root = tmp_path_factory.mktemp("nnunet")
    model = root / "Dataset987_TinyDCE" / "nnUNetTrainer__nnUNetPlans__3d_fullres"
    shutil.copytree(cached_nnunet(), model)
    exam = phantom_case(TEST_SEED, root / "exam")
    direct = root / "direct"
    direct.mkdir()
    predictor = nnUNetPredictor(device=torch.device("cpu"), use_mirroring=False, allow_tqdm=False)
    predictor.initialize_from_trained_model_folder(str(model), (0,))
    predictor.predict_from_files_sequential([[str(exam / f"{exam.name}_0001.nii.gz")]], [str(direct / "case")],
                                            False, True)
    return model, exam, direct / "case.nii.gz"


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("BREASTTUMORSEG_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def _run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_registered_nnunet_folder_gives_nnunets_own_label_map(nnunet_model, home, tmp_path, capsys):
    model, exam, direct = nnunet_model
    # `--channels phase1` gives nnU-Net the first post-contrast phase as stored, i.e. the same input
    # as the file nnU-Net reads directly (the default MAMA-MIA preset would z-score it over all phases first)
    code, out, err = _run(capsys, "models", "add", model.parent, "--name", "tiny-nnunet", "--license", "CC0-1.0",
                          "--trained-on", "three DCE phantoms")
    assert code == 0, err
    assert "3 files pinned" in out and "phase1" in out  # one channel: the MAMA-MIA preset by default
    code, out, _ = _run(capsys, "models")
    assert "tiny-nnunet" in out and "licence: CC0-1.0" in out and "three DCE phantoms" in out

    code, out, err = _run(capsys, "segment", exam, "--output", tmp_path / "out", "--model", f"nnunet:{model}",
                          "--raw", "--channels", "phase1", "--no-mirroring", "--device", "cpu", "--quiet")
    assert code == 0, err
    ours = sitk.ReadImage(str(tmp_path / "out" / f"{exam.name}_seg.nii.gz"))
    theirs = sitk.ReadImage(str(direct))
    a, b = sitk.GetArrayFromImage(ours), sitk.GetArrayFromImage(theirs)
    assert 0 < b.sum() < b.size  # both classes: the comparison is not trivial
    np.testing.assert_array_equal(a, b)
    assert ours.GetSize() == theirs.GetSize()
    np.testing.assert_allclose(ours.GetSpacing(), theirs.GetSpacing(), atol=1e-6)
    np.testing.assert_allclose(ours.GetOrigin(), theirs.GetOrigin(), atol=1e-5)
    np.testing.assert_allclose(ours.GetDirection(), theirs.GetDirection(), atol=1e-6)
    summary = json.loads((tmp_path / "out" / f"{exam.name}.json").read_text())
    assert summary["model_id"].startswith("tiny-nnunet@") and summary["settings"]["raw"] is True
    assert sum(les["voxels"] for les in summary["lesions"]) == int(b.sum())  # every component is a lesion


def test_trusted_folder_through_the_full_pipeline(nnunet_model, home, tmp_path, capsys):
    """Without --raw our breast gating and size filter apply to nnU-Net's answer: they only remove."""
    model, exam, direct = nnunet_model
    code, out, err = _run(capsys, "segment", exam, "--output", tmp_path / "out", "--model", f"nnunet:{model}",
                          "--trust-pickle", "--folds", "0", "--channels", "phase1", "--no-mirroring", "--no-register",
                          "--device", "cpu", "--quiet")
    assert code == 0, err
    ours = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "out" / f"{exam.name}_seg.nii.gz")))
    theirs = sitk.GetArrayFromImage(sitk.ReadImage(str(direct)))
    assert not (ours & ~theirs.astype(bool)).any()
    summary = json.loads((tmp_path / "out" / f"{exam.name}.json").read_text())
    assert summary["model_id"].startswith("nnunet:nnUNetTrainer__nnUNetPlans__3d_fullres@unpinned")
    assert summary["breast_mask_qa"] and (tmp_path / "out" / f"{exam.name}_overview.png").is_file()


def test_unregistered_pickles_and_wrong_mappings_are_refused(nnunet_model, home, tmp_path, capsys):
    model, exam, _ = nnunet_model
    out_dir = tmp_path / "out"
    code, _, err = _run(capsys, "segment", exam, "--output", out_dir, "--model", f"nnunet:{model}", "--raw")
    assert code == 2 and "pickles" in err and "models add" in err and "--trust-pickle" in err
    assert len(err.strip().splitlines()) == 1
    code, _, err = _run(capsys, "segment", exam, "--output", out_dir, "--model", f"nnunet:{model}",
                        "--trust-pickle", "--channels", "phase0,phase1")
    assert code == 2 and "2 source(s) but the model takes 1 input channel" in err
    code, _, err = _run(capsys, "segment", exam, "--output", out_dir, "--model", f"nnunet:{model}",
                        "--trust-pickle", "--channels", "phase7", "--no-register")
    assert code == 2 and "needs phase 7" in err and "phases 0..2" in err
    code, _, err = _run(capsys, "segment", exam, "--output", out_dir, "--model", f"nnunet:{model}",
                        "--trust-pickle", "--folds", "3")
    assert code == 2 and "fold(s) 3" in err
    code, _, err = _run(capsys, "segment", exam, "--output", out_dir, "--model", "st-demo", "--channels", "phase1")
    assert code == 2 and "apply to nnU-Net and MONAI" in err
    assert not out_dir.exists() or not any(out_dir.iterdir())


def test_tampered_checkpoint_of_registered_model_is_refused(nnunet_model, home, tmp_path, capsys):
    model, exam, _ = nnunet_model
    copy = tmp_path / "model"
    shutil.copytree(model, copy)
    assert _run(capsys, "models", "add", copy, "--name", "tampered", "--license", "CC0-1.0",
                "--trained-on", "phantoms")[0] == 0
    ckpt = copy / "fold_0" / "checkpoint_final.pth"
    data = bytearray(ckpt.read_bytes())
    data[len(data) // 2] ^= 0x01  # one byte changed
    ckpt.write_bytes(bytes(data))
    out_dir = tmp_path / "out"
    code, _, err = _run(capsys, "segment", exam, "--output", out_dir, "--model", "tampered", "--raw", "--device", "cpu")
    assert code == 2 and "SHA-256 mismatch" in err and "checkpoint_final.pth" in err
    assert not out_dir.exists() or not any(out_dir.iterdir())
