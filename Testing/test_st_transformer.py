"""Spatial-temporal transformer: missing phases, phase order, sizes; shipped models through the CLI."""
import json

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from BreastTumorSegLib.models.cards import BUNDLED_MODELS_DIR
from BreastTumorSegLib.models.nets import build_network
from BreastTumorSegLib.models.nets.st_transformer import SpatialTemporalNet, count_parameters

TINY = {"type": "st_transformer", "base": 4, "levels": 3, "max_channels": 16, "dim": 16, "heads": 2, "depth": 1,
        "window": 2, "dropout": 0.0}


def _net(seed=0, **kw):
    torch.manual_seed(seed)
    arch = dict(TINY, **kw)
    net = build_network(arch).eval()
    # Non-trivial BatchNorm statistics so that evaluation mode is not an identity.
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm3d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    return net


def _inputs(t, size=(16, 16, 16), seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(1, 2 * t, *size, generator=g)


def test_demo_configuration_is_lean():
    cfg = json.loads((BUNDLED_MODELS_DIR.parents[3] / "configs" / "st-demo.json").read_text())
    n = count_parameters(build_network(cfg["architecture"]))
    assert 1_000_000 <= n <= 3_000_000, n  # Zhang et al.'s released network: ~176 M


def test_absent_phases_change_nothing():
    """Masked phases may hold anything: the output equals that of the present phases alone."""
    net = _net()
    x = _inputs(5)
    times = torch.tensor([[1.2, 2.5, 3.9, 5.0, 6.4]])
    keep = torch.tensor([[True, False, True, False, False]])
    garbage = x.clone()
    garbage[:, 2:4] = 50.0
    garbage[:, 6:] = -7.0
    with torch.no_grad():
        masked = net(garbage, keep, times)
        alone = net(x[:, [0, 1, 4, 5]], None, times[:, [0, 2]])
    assert torch.allclose(masked, alone, atol=1e-5)


def test_phase_order_does_not_matter_given_times():
    """Phases are identified by acquisition time, and fused by a masked mean: order-free."""
    net = _net()
    x = _inputs(3)
    times = torch.tensor([[1.0, 2.5, 4.0]])
    perm = [2, 0, 1]
    xp = x.reshape(1, 3, 2, *x.shape[2:])[:, perm].reshape(x.shape)
    with torch.no_grad():
        a = net(x, None, times)
        b = net(xp, None, times[:, perm])
    assert torch.allclose(a, b, atol=1e-5)


def test_batched_and_sequential_encoders_agree():
    """Training runs all phases as one batch, evaluation one phase at a time: same function."""
    net = _net()
    x = torch.cat([_inputs(4, seed=1), _inputs(4, seed=2)])
    keep = torch.tensor([[True, False, True, True], [False, True, False, True]])
    times = torch.tensor([[1.0, 2.0, 3.0, 4.0], [1.5, 2.5, 3.5, 4.5]])
    with torch.no_grad():
        sequential = net(x, keep, times)
        net.train()
        for m in net.modules():  # batched path, but with the running statistics
            if isinstance(m, torch.nn.BatchNorm3d):
                m.eval()
        batched = net(x, keep, times)
    assert torch.allclose(sequential, batched, atol=1e-5)


def test_full_resolution_decoder_in_slabs_equals_one_pass():
    """Evaluation runs the last decoder level in z-slabs (memory); the answer must not change,
    including slabs that do not divide the depth and the volume's first and last planes."""
    net = _net()
    x = _inputs(3, size=(24, 16, 16))
    with torch.no_grad():
        net.SLAB = 3
        slabs = net(x)
        net.SLAB = 10 ** 6
        whole = net(x)
    assert torch.allclose(slabs, whole, atol=1e-5), (slabs - whole).abs().max()


def test_times_are_used():
    net = _net()
    x = _inputs(3)
    with torch.no_grad():
        a = net(x, None, torch.tensor([[1.0, 2.0, 3.0]]))
        b = net(x, None, torch.tensor([[1.0, 4.0, 9.0]]))
    assert (a - b).abs().max() > 1e-4


@pytest.mark.parametrize("t", [1, 2, 7])
def test_any_phase_count_and_size(t):
    net = _net()
    div = net.divisor
    x = _inputs(t, size=(div, 2 * div, 3 * div))
    with torch.no_grad():
        y = net(x)
    assert y.shape == (1, 1, div, 2 * div, 3 * div)
    assert torch.isfinite(y).all()


def test_bad_inputs_are_refused():
    net = _net()
    with pytest.raises(ValueError, match="input channels"):
        net(_inputs(8))  # 8 post-contrast phases: more than an 8-phase exam has
    with pytest.raises(ValueError, match="at least one present phase"):
        net(_inputs(2), torch.zeros(1, 2, dtype=torch.bool))
    with pytest.raises(ValueError, match="multiple"):
        net(_inputs(1, size=(12, 16, 16)))


def test_gradient_reaches_every_parameter():
    net = _net().train()
    x = _inputs(3)
    keep = torch.tensor([[True, True, False]])
    net(x, keep, torch.tensor([[1.0, 2.0, 3.0]])).mean().backward()
    missing = [n for n, p in net.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing


def test_input_scale_is_saved_with_the_weights():
    net = SpatialTemporalNet(**{k: v for k, v in TINY.items() if k != "type"})
    net.input_scale.copy_(torch.tensor([2.0, 0.5]))
    assert torch.equal(net.state_dict()["input_scale"], torch.tensor([2.0, 0.5]))


# ------------------------------------------------------------------------------ shipped models
def _tumor_cards():
    out = []
    for p in sorted(BUNDLED_MODELS_DIR.glob("*.json")):
        card = json.loads(p.read_text())
        if card.get("task", "tumor") == "tumor":
            out.append(card["name"])
    return out


@pytest.fixture(scope="module")
def small_exam_dir(tmp_path_factory):
    from BreastTumorSegLib.training.phantom import make_phantom, write_phantom

    ph = make_phantom(3001, shape_mm=(220, 140, 90), spacing=2.0, n_phases=4, n_tumors=1, tumor_radius_mm=12,
                      motion_mm=0, orientation="axial")
    root = tmp_path_factory.mktemp("exam")
    write_phantom(ph, root)
    return root, ph


def _segment_cli(model, exam_dir, out):
    from BreastTumorSegLib.cli import main

    files = sorted(str(p) for p in exam_dir.glob("phantom_3001_000[0-9].nii.gz"))
    return main(["segment", *files, "-o", str(out), "--model", model, "--device", "cpu", "--no-register",
                 "--quiet"])


def test_segment_cli_every_shipped_model_and_an_ensemble(small_exam_dir, tmp_path):
    """`breasttumorseg segment --model <name>` for every shipped tumor model and unet-demo+st-demo."""
    from BreastTumorSegLib.evaluation.metrics import dice

    exam_dir, ph = small_exam_dir
    names = _tumor_cards()
    assert {"st-demo", "unet-demo"} <= set(names), names  # shipped with the package
    torch.set_num_threads(2)
    probs = {}
    for name in names + ["unet-demo+st-demo"]:
        out = tmp_path / name
        assert _segment_cli(name, exam_dir, out) == 0
        summary = json.loads((out / "phantom_3001.json").read_text())
        assert summary["model_id"].startswith(name.split("+")[0])
        seg = sitk.ReadImage(str(out / "phantom_3001_seg.nii.gz"))
        probs[name] = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "phantom_3001_prob.nii.gz")))
        d = dice(sitk.GetArrayFromImage(seg) > 0, sitk.GetArrayFromImage(ph.tumor_mask) > 0)
        assert d > 0.5, (name, d)  # a 12 mm tumor on an unseen phantom
    # The ensemble's probability is the mean of its members'. The files store values below
    # PROBABILITY_FLOOR as 0, so the mean is exact wherever both members were stored, and within
    # the floor elsewhere.
    from BreastTumorSegLib.engine.pipeline import PROBABILITY_FLOOR

    mean = (probs["unet-demo"] + probs["st-demo"]) / 2
    both = (probs["unet-demo"] > 0) & (probs["st-demo"] > 0)
    assert both.sum() > 1000
    assert np.allclose(probs["unet-demo+st-demo"][both], mean[both], atol=1e-5)
    assert np.abs(probs["unet-demo+st-demo"] - mean).max() <= PROBABILITY_FLOOR


def test_shipped_breast_model_gates_the_pipeline(small_exam_dir):
    """The learned whole-breast mask matches the phantom truth; with --breast-model it gates the lesions."""
    from BreastTumorSegLib.models.breast_model import BreastMaskModel
    from BreastTumorSegLib.evaluation.metrics import dice
    from BreastTumorSegLib.engine.pipeline import SegmentSettings, segment_exam

    bm = BreastMaskModel.load("breastmask-demo")  # shipped: a missing or tampered file is a failure
    ph = small_exam_dir[1]
    mask = bm.predict(ph.exam.pre, device="cpu")
    assert mask.GetSize() == ph.exam.pre.GetSize() and mask.GetPixelID() == sitk.sitkUInt8
    learned = sitk.GetArrayFromImage(mask) > 0
    assert dice(learned, sitk.GetArrayViewFromImage(ph.breast_mask) > 0) > 0.85

    # A segmenter that answers with the true tumor plus a bright blob outside the breasts
    # (where the heart is): the learned gate keeps the first and drops the second.
    truth = sitk.GetArrayFromImage(ph.tumor_mask) > 0
    outside = np.argwhere(~learned & (sitk.GetArrayViewFromImage(ph.exam.pre) > 0))
    centre = outside[len(outside) // 2]
    fp = np.zeros_like(truth)
    fp[tuple(slice(max(c - 3, 0), c + 4) for c in centre)] = True
    fp &= ~learned
    assert fp.sum() > 50

    class Stub:
        model_id, card = "stub@0", {"postprocess": {"threshold": 0.5, "mode": "absolute", "min_lesion_ml": 0.0}}

        def predict(self, exam, breast_mask, reporter, device="auto", **options):
            img = sitk.GetImageFromArray((truth | fp).astype(np.float32))
            img.CopyInformation(exam.reference)
            return img

    res = segment_exam(ph.exam, model=Stub(), device="cpu",
                       settings=SegmentSettings(registration="none", breast_model="breastmask-demo",
                                                 restrict_to_breast=True))
    label = sitk.GetArrayFromImage(res.label) > 0
    assert res.settings["breast_mask"] == "breastmask-demo"
    assert dice(label, truth) > 0.99 and not (label & fp).any()
    ungated = segment_exam(ph.exam, model=Stub(), device="cpu",
                           settings=SegmentSettings(registration="none", restrict_to_breast=False))
    assert (sitk.GetArrayFromImage(ungated.label) > 0)[fp].all()  # the blob is there to be removed


def test_segment_cli_breast_model_option(small_exam_dir, tmp_path):
    """`segment --breast-model NAME` is recorded in the summary; an unknown name is one clear line."""
    from BreastTumorSegLib.cli import main

    exam_dir, _ = small_exam_dir
    files = sorted(str(p) for p in exam_dir.glob("phantom_3001_000[0-9].nii.gz"))
    args = ["segment", *files, "--model", "ftv", "--device", "cpu", "--no-register", "--quiet"]
    assert main(args + ["-o", str(tmp_path / "a"), "--breast-model", "breastmask-demo"]) == 0
    summary = json.loads((tmp_path / "a" / "phantom_3001.json").read_text())
    assert summary["settings"]["breast_mask"] == "breastmask-demo"
    assert main(args + ["-o", str(tmp_path / "b"), "--breast-model", "no-such-model"]) == 2
    assert not (tmp_path / "b").exists() or not any((tmp_path / "b").iterdir())
