"""Weights load only from safetensors whose SHA-256 matches the model card."""
import json

import pytest
import torch

from BreastTumorSegLib.core.errors import ModelError
from BreastTumorSegLib.io.atomic import sha256_file
from BreastTumorSegLib.models.cards import BUNDLED_MODELS_DIR
from BreastTumorSegLib.models.registry import available_models, get_segmenter
from BreastTumorSegLib.models.nets.unet import UNet3D
from BreastTumorSegLib.models.weights import load_verified_state_dict, save_state_dict


def _write_model(folder, name="tiny"):
    torch.manual_seed(0)
    net = UNet3D(base=2, levels=2)
    digest = save_state_dict(net.state_dict(), folder / f"{name}.safetensors")
    card = {"name": name, "architecture": {"type": "unet3d", "in_channels": 3, "base": 2, "levels": 2},
            "weights": f"{name}.safetensors", "sha256": digest,
            "inputs": {"kind": "hirsch", "spacing_mm": 3.0}}
    (folder / f"{name}.json").write_text(json.dumps(card))
    return net, card


def test_round_trip_and_registry(tmp_path):
    net, card = _write_model(tmp_path)
    seg = get_segmenter("tiny", extra_dirs=[tmp_path])
    assert seg.model_id == f"tiny@{card['sha256'][:12]}"
    for k, v in net.state_dict().items():
        assert torch.equal(seg.net.state_dict()[k], v)
    assert "tiny" in available_models([tmp_path])


def test_tampered_weights_are_refused(tmp_path):
    _write_model(tmp_path)
    f = tmp_path / "tiny.safetensors"
    data = bytearray(f.read_bytes())
    data[-1] ^= 0x01  # flip one bit of one weight
    f.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="SHA-256 mismatch"):
        get_segmenter("tiny", extra_dirs=[tmp_path])


def test_pickle_checkpoints_are_refused(tmp_path):
    torch.save({"w": torch.zeros(2)}, tmp_path / "evil.pt")
    with pytest.raises(ModelError, match="not in safetensors"):
        load_verified_state_dict(tmp_path / "evil.pt", sha256_file(tmp_path / "evil.pt"))


def test_card_without_hash_is_refused(tmp_path):
    _write_model(tmp_path)
    card = json.loads((tmp_path / "tiny.json").read_text())
    card["sha256"] = ""
    (tmp_path / "tiny.json").write_text(json.dumps(card))
    with pytest.raises(ModelError, match="SHA-256"):
        get_segmenter("tiny", extra_dirs=[tmp_path])


def test_architecture_mismatch_is_reported(tmp_path):
    _write_model(tmp_path)
    card = json.loads((tmp_path / "tiny.json").read_text())
    card["architecture"]["base"] = 4
    (tmp_path / "tiny.json").write_text(json.dumps(card))
    with pytest.raises(ModelError, match="do not fit"):
        get_segmenter("tiny", extra_dirs=[tmp_path])


def test_unknown_model_lists_choices():
    with pytest.raises(ModelError, match="Available:"):
        get_segmenter("no-such-model")


def test_bundled_cards_match_their_weights():
    cards = sorted(BUNDLED_MODELS_DIR.glob("*.json"))
    assert cards, "no bundled model"
    for c in cards:
        card = json.loads(c.read_text())
        assert sha256_file(c.parent / card["weights"]) == card["sha256"], c.name
        assert "synthetic" in card["description"].lower()


def test_model_summaries_shared_by_cli_and_panel():
    from BreastTumorSegLib.models.cards import NOT_TRAINED
    from BreastTumorSegLib.models.registry import model_card, model_summaries, needs_torch

    summaries = model_summaries()
    by_name = {s.name: s for s in summaries}
    names = [s.name for s in summaries]
    assert names.index("unet-demo") < names.index("ftv")  # networks first, as the panel lists them
    assert by_name["unet-demo"].needs_torch and not by_name["ftv"].needs_torch
    assert by_name["ftv"].trained_on == NOT_TRAINED and "phantom" in by_name["unet-demo"].trained_on
    assert by_name["unet-demo"].default_threshold == model_card("unet-demo")["postprocess"]["threshold"]
    assert needs_torch("ftv+unet-demo") and not needs_torch("ftv")
    with pytest.raises(ModelError, match="unknown model"):
        model_card("no-such-model")
