"""Bring your own model without the foreign packages: channel mappings, registration cards (pins,
licence) listed by `models`, the registry and the Slicer panel's card, refusals as one line."""
import json

import pytest
import SimpleITK as sitk
import numpy as np

from BreastTumorSegLib.cli import main
from BreastTumorSegLib.core.errors import BreastTumorSegError
from BreastTumorSegLib.core.exam import DCEExam
from BreastTumorSegLib.models.byom.channels import channel_images, resolve_mapping
from BreastTumorSegLib.models.registry import is_foreign, model_card, model_summaries
from BreastTumorSegLib.slicer.logic import model_card_html


def _exam(n=3):
    phases = []
    for k in range(n):
        img = sitk.GetImageFromArray(np.full((4, 5, 6), 10.0 * (k + 1), np.float32))
        img.SetSpacing((0.7, 0.8, 2.0))
        img.SetOrigin((1.0, 2.0, 3.0))
        phases.append(img)
    return DCEExam(phases=phases, times_min=[1.5 * k for k in range(n)], case_id="c")


def _fake_nnunet(root, channels=1):
    """The layout of an nnU-Net v2 folder (the checkpoint is never unpickled by these tests)."""
    model = root / "Dataset105_full_image" / "nnUNetTrainer__nnUNetPlans__3d_fullres"
    (model / "fold_0").mkdir(parents=True)
    (model / "dataset.json").write_text(json.dumps({
        "channel_names": {str(i): f"c{i}" for i in range(channels)}, "labels": {"background": 0, "tumor": 1},
        "numTraining": 1, "file_ending": ".nii.gz"}))
    # what `models add`'s dry load reads: plans with a configuration, a checkpoint with a zip header
    (model / "plans.json").write_text(json.dumps({"configurations": {"3d_fullres": {"patch_size": [32, 32, 32]}}}))
    (model / "fold_0" / "checkpoint_final.pth").write_bytes(b"PK\x03\x04" + b"\0" * 64)
    return model


def test_channel_mappings(tmp_path):
    exam = _exam()
    m = resolve_mapping(1, tmp_path)
    assert m.sources == ["phase1"] and "mama-mia" in m.origin and m.intensity == "zscore-all-phases"
    z = sitk.GetArrayFromImage(channel_images(exam, m)[0])
    assert np.allclose(z, (20.0 - 20.0) / np.std([10.0, 20.0, 30.0]))  # z-scored over all phases
    assert resolve_mapping(1, tmp_path, "phase1").intensity == "as-is"
    imgs = channel_images(exam, resolve_mapping(3, tmp_path, "phase0,sub1,sub2"))
    assert [float(sitk.GetArrayFromImage(i).mean()) for i in imgs] == [10.0, 10.0, 20.0]
    assert imgs[0].GetSpacing() == exam.reference.GetSpacing() and imgs[0].GetOrigin() == exam.reference.GetOrigin()
    (tmp_path / "breasttumorseg.json").write_text(json.dumps({"channels": ["sub1", "phase1"],
                                                              "intensity": "zscore-all-phases"}))
    m = resolve_mapping(2, tmp_path / "model")
    assert m.sources == ["sub1", "phase1"] and m.intensity == "zscore-all-phases"
    with pytest.raises(BreastTumorSegError, match="2 source.*takes 3 input channel"):
        resolve_mapping(3, tmp_path / "model")
    with pytest.raises(BreastTumorSegError, match="not understood"):
        resolve_mapping(1, tmp_path, "sub0")
    with pytest.raises(BreastTumorSegError, match="needs phase 4"):
        channel_images(exam, resolve_mapping(1, tmp_path, "phase4"))


def test_registered_folder_is_listed_with_its_licence(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("BREASTTUMORSEG_HOME", str(tmp_path / "home"))
    _fake_nnunet(tmp_path / "results")
    # the results folder is accepted: the one dataset's one model is found (Dataset101 or Dataset105 alike)
    assert main(["models", "add", str(tmp_path / "results"), "--name", "mamamia-like", "--license", "CC BY-NC 4.0",
                 "--trained-on", "MAMA-MIA"]) == 0
    card_file = tmp_path / "home" / "models" / "mamamia-like.json"
    card = json.loads(card_file.read_text())
    assert card["format"] == "nnunet" and len(card["sha256"]) == 3 and card["channels"]["channels"] == ["phase1"]
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "mamamia-like" in out and "licence: CC BY-NC 4.0" in out and "trained on: MAMA-MIA" in out
    assert "mamamia-like" in [s.name for s in model_summaries()] and is_foreign("mamamia-like")
    assert "Licence:</i> CC BY-NC 4.0" in model_card_html(model_card("mamamia-like"))
    # by path, the results folder, its dataset folder and the model folder all find the registered card
    from BreastTumorSegLib.models.registry import get_segmenter
    for where in ("results", "results/Dataset105_full_image",
                  "results/Dataset105_full_image/nnUNetTrainer__nnUNetPlans__3d_fullres"):
        assert get_segmenter(f"nnunet:{tmp_path / where}").model_id.startswith("mamamia-like@")
    # a second card of that name is refused; an unregistered two-channel folder needs a mapping
    assert main(["models", "add", str(tmp_path / "results"), "--name", "mamamia-like", "--license", "x",
                 "--trained-on", "y"]) == 2
    assert "exists already" in capsys.readouterr().err
    two = _fake_nnunet(tmp_path / "two", channels=2)
    assert main(["models", "add", str(two), "--name", "two", "--license", "x", "--trained-on", "y"]) == 2
    err = capsys.readouterr().err
    assert "takes 2 input channels" in err and "breasttumorseg.json" in err and len(err.strip().splitlines()) == 1


def test_raw_switches_off_registration_gating_and_lesion_filtering(tmp_path, capsys):
    """`--raw` for one of our own models: the label is p >= the card's threshold, everywhere, every component kept."""
    from BreastTumorSegLib.models.registry import model_card as card_of
    from BreastTumorSegLib.training.phantom import make_phantom, write_phantom

    write_phantom(make_phantom(3, shape_mm=(60, 45, 30), spacing=3.0, n_phases=3), tmp_path / "case")
    assert main(["segment", str(tmp_path / "case"), "--output", str(tmp_path / "out"), "--model", "unet-demo",
                 "--raw", "--quiet"]) == 0
    capsys.readouterr()
    out = tmp_path / "out"
    summary = json.loads(next(out.glob("*.json")).read_text())
    assert summary["settings"]["raw"] is True and summary["settings"]["registered"] is False
    assert summary["registration_qa"] == [] and "raw" in summary["breast_mask_qa"]["used"]
    prob = sitk.GetArrayFromImage(sitk.ReadImage(str(next(out.glob("*_prob.nii.gz")))))
    label = sitk.GetArrayFromImage(sitk.ReadImage(str(next(out.glob("*_seg.nii.gz")))))
    threshold = card_of("unet-demo")["postprocess"]["threshold"]
    np.testing.assert_array_equal(label, (prob >= threshold).astype(np.uint8))
    assert sum(les["voxels"] for les in summary["lesions"]) == int(label.sum())


def test_missing_foreign_package_is_one_line(tmp_path, monkeypatch, capsys):
    """Without the nnunet extra an nnU-Net model is refused before the exam is read, naming the extra."""
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "nnunetv2" else real(name, *a))
    model = _fake_nnunet(tmp_path / "results")
    (tmp_path / "exam").mkdir()  # never read: the model is refused first
    code = main(["segment", str(tmp_path / "exam"), "--output", str(tmp_path / "out"),
                 "--model", f"nnunet:{model}", "--trust-pickle"])
    err = capsys.readouterr().err
    assert code == 2 and "nnunetv2 is not installed" in err and '.[nnunet]' in err
    assert len(err.strip().splitlines()) == 1
