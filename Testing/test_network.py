"""U-Net shapes, overlap-tile inference equal to a whole-volume pass, device selection."""
import numpy as np
import pytest
import torch

from BreastTumorSegLib.models.inference import predict_probability, select_device
from BreastTumorSegLib.models.nets import build_network
from BreastTumorSegLib.models.nets.unet import UNet3D, count_parameters


def _net(seed=0, base=4, levels=4):
    torch.manual_seed(seed)
    net = UNet3D(in_channels=3, base=base, levels=levels)
    # Non-trivial BatchNorm statistics, as after training.
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm3d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
    return net.eval()


@pytest.mark.parametrize("shape", [(16, 16, 16), (19, 33, 24)])
def test_output_shape_equals_input_shape(shape):
    net = _net()
    x = np.random.default_rng(0).normal(size=(3, *shape)).astype(np.float32)
    p = predict_probability(net, x, device="cpu")
    assert p.shape == shape and p.dtype == np.float32
    assert np.all((p >= 0) & (p <= 1))


def test_build_from_card_architecture():
    net = build_network({"type": "unet3d", "in_channels": 3, "out_channels": 1, "base": 8, "levels": 4})
    assert isinstance(net, UNet3D) and net.divisor == 8
    assert 300_000 < count_parameters(net) < 500_000


def test_tiled_inference_equals_whole_volume():
    torch.set_num_threads(2)
    net = _net(seed=1)
    rng = np.random.default_rng(1)
    x = rng.normal(size=(3, 40, 72, 56)).astype(np.float32)
    whole = predict_probability(net, x, device="cpu", max_voxels=10**9)
    tiled = predict_probability(net, x, device="cpu", max_voxels=1, tile=24, halo=32)
    # Cores of the tiles meet at multiples of 24 voxels; the answer must not change there.
    diff = np.abs(whole - tiled)
    assert diff.max() < 1e-4, f"max difference {diff.max():.2e}"


def test_tiles_without_halo_do_differ():
    """Sanity check of the test above: with no context the seams are visible."""
    net = _net(seed=1)
    x = np.random.default_rng(1).normal(size=(3, 40, 72, 56)).astype(np.float32)
    whole = predict_probability(net, x, device="cpu", max_voxels=10**9)
    tiled = predict_probability(net, x, device="cpu", max_voxels=1, tile=24, halo=0)
    assert np.abs(whole - tiled).max() > 1e-3


def test_select_device():
    assert select_device("cpu").type == "cpu"
    assert select_device("auto").type in {"cpu", "cuda", "mps"}
    if not torch.cuda.is_available():
        from BreastTumorSegLib.core.errors import InputError
        with pytest.raises(InputError, match="CUDA"):
            select_device("cuda")


def test_flip_test_time_augmentation_is_mirror_symmetric():
    """With ``inference.flip_lr`` the answer for a mirrored exam is the mirrored answer."""
    import SimpleITK as sitk

    from BreastTumorSegLib.core.exam import DCEExam
    from BreastTumorSegLib.models.network import NetworkSegmenter
    from BreastTumorSegLib.core.progress import Reporter

    rng = np.random.default_rng(3)
    arrays = [rng.gamma(2.0, 100.0, size=(24, 20, 32)).astype(np.float32) for _ in range(3)]

    def exam(mirror: bool) -> DCEExam:
        phases = []
        for a in arrays:
            img = sitk.GetImageFromArray(np.ascontiguousarray(a[..., ::-1]) if mirror else a)
            img.SetSpacing((1.5, 1.5, 1.5))
            phases.append(img)
        return DCEExam(phases, [0.0, 1.5, 3.0], case_id="m" if mirror else "o")

    card = {"name": "t", "sha256": "0" * 64, "inputs": {"spacing_mm": 1.5, "kind": "hirsch"},
            "normalization": {"channel_scale": [1.0, 0.5, 0.1]}}
    plain = NetworkSegmenter(_net(seed=2), card)
    tta = NetworkSegmenter(_net(seed=2), dict(card, inference={"flip_lr": True}))
    A = sitk.GetArrayFromImage
    p_o, p_m = (A(tta.predict(exam(m), None, Reporter(), device="cpu")) for m in (False, True))
    assert np.allclose(p_m, p_o[..., ::-1], atol=1e-5)
    # without the augmentation a random network is not symmetric: the test can tell
    q_o, q_m = (A(plain.predict(exam(m), None, Reporter(), device="cpu")) for m in (False, True))
    assert not np.allclose(q_m, q_o[..., ::-1], atol=1e-3)
