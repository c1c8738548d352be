"""Bring your own model: a tiny MONAI bundle run through `segment` gives the label map the bundle
itself writes when MONAI runs it (``monai.bundle.run``) on the same input file; registration pins."""
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

pytest.importorskip("monai", reason="the monai extra is not installed (pip install -e '.[monai]'; "
                                    "the test extra includes it)")
pytest.importorskip("nibabel", reason="the monai extra (with nibabel) is not installed")

from BreastTumorSegLib.cli import main  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from byom_fixtures import TEST_SEED, build_monai_bundle, phantom_case  # noqa: E402


@pytest.fixture(scope="module")
def bundle_case(tmp_path_factory):
    """(bundle, exam folder, the label file monai.bundle.run wrote for the exam's first post-contrast phase)."""
    from monai.bundle import run

    root = tmp_path_factory.mktemp("monai")
    bundle = build_monai_bundle(root)
    exam = phantom_case(TEST_SEED, root / "exam")
    inputs = root / "inputs"
    inputs.mkdir()
    shutil.copy(exam / f"{exam.name}_0001.nii.gz", inputs / f"{exam.name}_0000.nii.gz")
    run(run_id="run", config_file=str(bundle / "configs" / "inference.json"),
        meta_file=str(bundle / "configs" / "metadata.json"), bundle_root=str(bundle),
        dataset_dir=str(inputs), output_dir=str(root / "direct"))
    return bundle, exam, root / "direct" / f"{exam.name}_0000_seg.nii.gz"


def _run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_monai_bundle_gives_the_bundles_own_label_map(bundle_case, tmp_path, monkeypatch, capsys):
    bundle, exam, direct = bundle_case
    monkeypatch.setenv("BREASTTUMORSEG_HOME", str(tmp_path / "home"))
    code, _, err = _run(capsys, "segment", exam, "--output", tmp_path / "refused", "--model", f"monai:{bundle}")
    assert code == 2 and "pickles" in err and "models add" in err
    code, out, err = _run(capsys, "models", "add", bundle, "--name", "tiny-monai", "--license", "Apache-2.0",
                          "--trained-on", "nothing (random weights)")
    assert code == 0 and "monai" in out, err
    code, _, err = _run(capsys, "segment", exam, "--output", tmp_path / "out", "--model", "tiny-monai", "--raw",
                        "--channels", "phase1", "--device", "cpu", "--quiet")
    assert code == 0, err
    ours = sitk.ReadImage(str(tmp_path / "out" / f"{exam.name}_seg.nii.gz"))
    theirs = sitk.ReadImage(str(direct))
    a, b = sitk.GetArrayFromImage(ours), sitk.GetArrayFromImage(theirs)
    assert 0 < b.sum() < b.size  # both classes
    np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(ours.GetSpacing(), theirs.GetSpacing(), atol=1e-5)
    np.testing.assert_allclose(ours.GetOrigin(), theirs.GetOrigin(), atol=1e-4)
    np.testing.assert_allclose(ours.GetDirection(), theirs.GetDirection(), atol=1e-5)
    summary = json.loads((tmp_path / "out" / f"{exam.name}.json").read_text())
    assert summary["model_id"].startswith("tiny-monai@")

    weights = bundle.parent / "tampered"
    shutil.copytree(bundle, weights)
    assert _run(capsys, "models", "add", weights, "--name", "tampered-monai", "--license", "Apache-2.0",
                "--trained-on", "nothing")[0] == 0
    cfg = weights / "configs" / "inference.json"
    cfg.write_text(cfg.read_text().replace('"num_res_units": 0', '"num_res_units": 1'))
    code, _, err = _run(capsys, "segment", exam, "--output", tmp_path / "out2", "--model", "tampered-monai", "--raw")
    assert code == 2 and "SHA-256 mismatch" in err and "inference.json" in err
