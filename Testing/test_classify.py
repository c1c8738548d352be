"""Per-breast malignancy model: phantoms with known truth, the shipped model's card and hash, the
``classify`` command and ``segment --classify``, and the result in a real MRML scene.

One small phantom (our generator, motion-free): a malignant lesion (washout, spiculated, 10 mm)
in the left breast, a benign one (persistent, smooth, 4 mm) in the right.
"""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import SimpleITK as sitk

from BreastTumorSegLib.cli import main
from BreastTumorSegLib.core.errors import InputError, ModelError
from BreastTumorSegLib.engine.classify import (SIDE_CODES, classify_exam, operating_threshold, output_names,
                                              probability_text)
from BreastTumorSegLib.io.atomic import sha256_file
from BreastTumorSegLib.models.cards import BUNDLED_MODELS_DIR
from BreastTumorSegLib.models.classifier import (CLASSIFICATION_TASK, DEFAULT_CLASSIFIER, FEATURES,
                                                 classification_models, load_classifier)
from BreastTumorSegLib.models.registry import available_models
from BreastTumorSegLib.training.phantom import write_phantom
from classify_fixtures import two_lesion_phantom


@pytest.fixture(scope="module")
def phantom():
    return two_lesion_phantom()


@pytest.fixture(scope="module")
def result(phantom):
    return classify_exam(phantom.exam, register=False)


# ------------------------------------------------------------------------------ model card and hash
def test_shipped_card_is_a_classification_model_pinned_by_its_hash():
    card_path = BUNDLED_MODELS_DIR / f"{DEFAULT_CLASSIFIER}.json"
    card = json.loads(card_path.read_text())
    assert card["task"] == CLASSIFICATION_TASK
    assert tuple(card["features"]) == FEATURES
    assert sha256_file(BUNDLED_MODELS_DIR / card["weights"]) == card["sha256"]
    assert "synthetic" in card["training"]["data"] and "not a clinical classifier" in card["description"]
    assert classification_models()[DEFAULT_CLASSIFIER] == card_path
    assert DEFAULT_CLASSIFIER not in available_models()  # not offered as a tumor segmenter
    assert load_classifier().n_features == len(FEATURES)


def test_modified_weights_are_refused(tmp_path):
    for name in (f"{DEFAULT_CLASSIFIER}.json", f"{DEFAULT_CLASSIFIER}.safetensors"):
        shutil.copy(BUNDLED_MODELS_DIR / name, tmp_path / name)
    data = bytearray((tmp_path / f"{DEFAULT_CLASSIFIER}.safetensors").read_bytes())
    data[-1] ^= 1
    (tmp_path / f"{DEFAULT_CLASSIFIER}.safetensors").write_bytes(bytes(data))
    with pytest.raises(ModelError, match="SHA-256 mismatch"):
        load_classifier(DEFAULT_CLASSIFIER, [tmp_path])


def test_unknown_model_and_monai_paths_are_one_line_errors(tmp_path):
    with pytest.raises(ModelError, match="unknown classification model 'nope'"):
        load_classifier("nope")
    with pytest.raises(InputError, match="not a MONAI bundle"):
        load_classifier(f"monai:{tmp_path}")
    (tmp_path / "configs").mkdir()
    (tmp_path / "models").mkdir()
    (tmp_path / "configs" / "metadata.json").write_text(json.dumps(
        {"network_data_format": {"outputs": {"pred": {"type": "probabilities", "num_channels": 2}}}}))
    (tmp_path / "configs" / "inference.json").write_text("{}")
    (tmp_path / "models" / "model.ts").write_bytes(b"PK")
    with pytest.raises(InputError, match="classification output: per-breast classification with MONAI"):
        load_classifier(f"monai:{tmp_path}")


# ------------------------------------------------------------------------------ the phantom
def test_phantom_options_put_the_lesions_where_asked(phantom):
    assert [t["side"] for t in phantom.tumors] == ["left", "right"]
    assert phantom.tumors[0]["n_spicules"] >= 6 and phantom.tumors[0]["rim_mm"] > 0
    assert "n_spicules" not in phantom.tumors[1] and "rim_mm" not in phantom.tumors[1]
    # rim enhancement: the core enhances less than the shell
    lab = sitk.GetArrayViewFromImage(phantom.tumor_labels) == 1
    arr = phantom.exam.arrays()
    rel = (arr[2] - arr[0])[lab] / np.maximum(arr[0][lab], 1e-6)
    depth = sitk.GetArrayFromImage(sitk.SignedMaurerDistanceMap(
        phantom.tumor_labels == 1, insideIsPositive=True, useImageSpacing=True, squaredDistance=False))[lab]
    assert np.median(rel[depth > 5]) < 0.6 * np.median(rel[(depth > 0) & (depth < 1.5)])


def test_malignant_side_scores_higher(result):
    assert set(result.probabilities) == {"L", "R"}
    assert result.probabilities["L"] > 0.5 > result.probabilities["R"]
    assert result.candidates["L"][0].probability == pytest.approx(result.probabilities["L"])


def test_heatmap_on_the_pre_contrast_grid_and_hot_on_the_malignant_lesion(phantom, result):
    pre, heat = phantom.exam.pre, result.heatmap
    assert heat.GetSize() == pre.GetSize()
    np.testing.assert_allclose(heat.GetOrigin(), pre.GetOrigin(), atol=1e-9)
    np.testing.assert_allclose(heat.GetSpacing(), pre.GetSpacing(), atol=1e-12)
    np.testing.assert_allclose(heat.GetDirection(), pre.GetDirection(), atol=1e-12)
    h = sitk.GetArrayViewFromImage(heat)
    lab = sitk.GetArrayViewFromImage(phantom.tumor_labels)
    assert h[lab == 1].max() == pytest.approx(result.probabilities["L"], abs=1e-6)
    assert h[lab == 2].max() < 0.5


def test_sides_follow_patient_coordinates(phantom):
    """The same exam with its data mirrored along patient x (geometry kept): the scores swap sides."""
    # The numpy axis that runs along patient x: the index axis whose direction column is most x.
    direction = np.asarray(phantom.exam.pre.GetDirection()).reshape(3, 3)
    axis = 2 - int(np.argmax(np.abs(direction[0])))

    def mirror(img):
        out = sitk.GetImageFromArray(np.flip(sitk.GetArrayFromImage(img), axis).copy())
        out.CopyInformation(img)
        return out

    mirrored = phantom.exam.with_phases([mirror(p) for p in phantom.exam.phases])
    res = classify_exam(mirrored, register=False)
    assert res.probabilities["R"] > 0.5 > res.probabilities["L"]


# ------------------------------------------------------------------------------ the commands
@pytest.fixture(scope="module")
def exam_dir(phantom, tmp_path_factory):
    root = tmp_path_factory.mktemp("exam")
    write_phantom(phantom, root)
    return root


def test_classify_command_writes_json_heatmap_and_picture(exam_dir, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["classify", str(exam_dir), "--output", str(out), "--no-register", "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "P(malignant): R" in printed and ", L " in printed
    names = output_names("phantom_0011")
    summary = json.loads((out / names["classification"]).read_text())
    assert summary["probabilities"]["L"] > 0.5 > summary["probabilities"]["R"]
    # each breast against the card's operating threshold, in the printed line and the JSON
    t = operating_threshold(load_classifier().card)
    assert summary["operating_threshold"] == t
    for side in ("L", "R"):
        above = summary["probabilities"][side] >= t
        assert summary["breasts"][side]["above_threshold"] is above
        assert f"{side} {probability_text(summary['probabilities'][side], t)}" in printed
        assert probability_text(summary["probabilities"][side], t).endswith(f"({'above' if above else 'below'} {t:g})")
    heat = sitk.ReadImage(str(out / names["heatmap"]))
    assert heat.GetSize() == sitk.ReadImage(str(exam_dir / "phantom_0011_0000.nii.gz")).GetSize()
    assert (out / names["picture"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # a second run without --overwrite: refused, nothing changed
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert main(["classify", str(exam_dir), "--output", str(out), "--no-register", "--quiet"]) == 2
    assert "exists already" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


@pytest.mark.parametrize("args, message", [
    (["classify", "{missing}", "--output", "{out}"], "does not exist"),
    (["classify", "{exam}", "--output", "{out}", "--model", "nope"], "unknown classification model"),
    (["classify", "{exam}", "--output", "{out}", "--model", "monai:{missing}"], "not a MONAI bundle"),
])
def test_bad_input_is_one_line_and_writes_nothing(args, message, exam_dir, tmp_path, capsys):
    values = {"missing": str(tmp_path / "missing"), "out": str(tmp_path / "out"), "exam": str(exam_dir)}
    assert main([a.format(**values) for a in args]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_segment_classify_adds_the_probabilities_to_the_summary(exam_dir, tmp_path, capsys):
    out = tmp_path / "seg"
    assert main(["segment", str(exam_dir), "--output", str(out), "--model", "ftv", "--no-register", "--quiet",
                 "--classify"]) == 0
    assert "P(malignant)" in capsys.readouterr().out
    summary = json.loads((out / "phantom_0011.json").read_text())
    probs = summary["classification"]["probabilities"]
    assert probs["L"] > 0.5 > probs["R"]
    assert (out / output_names("phantom_0011")["heatmap"]).is_file()


def test_side_codes_are_patient_left_and_right():
    assert SIDE_CODES == {"left": "L", "right": "R"}


def test_classify_needs_neither_pytorch_nor_scikit_learn(exam_dir, tmp_path):
    """The Slicer panel runs every segmentation with --classify: it must work where only the core is installed."""
    import subprocess
    import sys
    import textwrap
    from pathlib import Path

    module_dir = Path(__file__).resolve().parents[1] / "BreastTumorSeg"
    script = textwrap.dedent(f"""
        import importlib.abc, sys
        class Refuse(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path, target=None):
                if name.split(".")[0] in ("torch", "deepali", "sklearn"):
                    raise ImportError("no " + name)
        sys.meta_path.insert(0, Refuse())
        sys.path.insert(0, {str(module_dir)!r})
        from BreastTumorSegLib.cli import main
        rc = main(["classify", {str(exam_dir)!r}, "-o", {str(tmp_path / "out")!r}, "--no-register", "--quiet"])
        assert "torch" not in sys.modules and "sklearn" not in sys.modules
        sys.exit(rc)
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads((tmp_path / "out" / output_names("phantom_0011")["classification"]).read_text())
    assert summary["probabilities"]["L"] > 0.5 > summary["probabilities"]["R"]


def test_segment_classify_leaves_nothing_when_the_segmentation_outputs_fail(exam_dir, tmp_path, capsys, monkeypatch):
    from BreastTumorSegLib.core.errors import BreastTumorSegError
    from BreastTumorSegLib.engine import pipeline

    def failing(*args, **kwargs):
        raise BreastTumorSegError("disk full (simulated)")

    monkeypatch.setattr(pipeline, "write_result", failing)
    out = tmp_path / "seg"
    assert main(["segment", str(exam_dir), "--output", str(out), "--model", "ftv", "--no-register", "--quiet",
                 "--classify"]) == 2
    assert "disk full" in capsys.readouterr().err
    assert not out.exists() or not any(out.iterdir())
