"""Network architectures (PyTorch). Built from the ``architecture`` block of a model card."""
from __future__ import annotations


def build_network(arch: dict):
    """Instantiate the network described by a model card's ``architecture`` dict."""
    kind = arch.get("type")
    params = {k: v for k, v in arch.items() if k != "type"}
    if kind == "unet3d":
        from .unet import UNet3D
        return UNet3D(**params)
    if kind == "st_transformer":
        from .st_transformer import SpatialTemporalNet
        return SpatialTemporalNet(**params)
    raise ValueError(f"unknown architecture type {kind!r}")
