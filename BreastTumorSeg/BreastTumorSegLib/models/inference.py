"""Running a fully convolutional network over a whole volume.

Two modes that give the same answer:

* **whole volume** — one forward pass when the volume fits the memory budget;
* **overlap-tile** — the volume is cut into core blocks; each block is run with a halo of
  context around it and only the core is kept. Tile starts and halos are multiples of the
  network's down-sampling divisor, so pooling grids line up with the whole-volume pass and
  the cores equal it up to the (tiny) influence of context beyond the halo.
  No blending is needed and there are no seams.

Devices: ``auto`` picks CUDA, then Apple MPS, then CPU. On CUDA the network runs under
autocast (bfloat16 where supported, else float16); probabilities come back as float32.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from ..core.errors import InputError
from ..core.progress import Reporter
from ..core.values import check_device_name


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def select_device(device: str = "auto") -> torch.device:
    device = check_device_name(device)
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps" if _mps_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise InputError("CUDA was requested but no CUDA GPU is available to PyTorch", "--device",
                         "use --device cpu or --device auto, or install a CUDA build of PyTorch")
    if device.startswith("cuda:") and int(device[5:]) >= torch.cuda.device_count():
        raise InputError(f"{device} was requested but only {torch.cuda.device_count()} CUDA GPU(s) are visible",
                         "--device", "use --device cuda:0 .. cuda:N-1, or --device auto")
    if device == "mps" and not _mps_available():
        raise InputError("MPS was requested but is not available", "--device", "use --device cpu or auto")
    return torch.device(device)


def _pad_to_multiple(x: torch.Tensor, divisor: int) -> tuple[torch.Tensor, tuple[int, int, int]]:
    shape = x.shape[-3:]
    target = [int(math.ceil(s / divisor) * divisor) for s in shape]
    pad = [t - s for t, s in zip(target, shape)]
    if any(pad):
        # F.pad takes (x_lo, x_hi, y_lo, y_hi, z_lo, z_hi)
        x = torch.nn.functional.pad(x, (0, pad[2], 0, pad[1], 0, pad[0]))
    return x, tuple(shape)


def _forward(net, x: torch.Tensor, device: torch.device, net_kwargs: dict | None = None) -> torch.Tensor:
    x = x.to(device, non_blocking=True)
    kwargs = {k: v.to(device) for k, v in (net_kwargs or {}).items()}
    if device.type == "cuda":
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        with torch.autocast("cuda", dtype=dtype):
            y = net(x, **kwargs)
    else:
        y = net(x, **kwargs)
    return torch.sigmoid(y.float()).cpu()


def phase_kwargs(times_min, phase_mask=None) -> dict[str, torch.Tensor]:
    """Keyword arguments of a phase-aware network (the spatial-temporal transformer) for one exam:
    post-contrast acquisition times in minutes and which phases are present (all by default)."""
    t = np.asarray(times_min, np.float32)
    mask = np.ones(len(t), bool) if phase_mask is None else np.asarray(phase_mask, bool)
    return {"times": torch.from_numpy(t)[None], "phase_mask": torch.from_numpy(mask)[None]}


@torch.inference_mode()
def predict_probability(net: torch.nn.Module, inputs: np.ndarray, device: str | torch.device = "auto",
                        max_voxels: int | None = None, tile: int = 96, halo: int = 32,
                        reporter: Reporter | None = None, net_kwargs: dict | None = None) -> np.ndarray:
    """Probability (z, y, x) float32 for inputs (C, z, y, x): the one whole-volume inference of
    the package (segmenters, the whole-breast model and training validation all use it).

    ``max_voxels``: largest volume run in one pass (default: 12 M voxels on CPU — a few GB of
    activations for the demo U-Net — and 40 M on a GPU); larger volumes use overlap-tile.
    ``net_kwargs``: extra tensors for every forward pass (see :func:`phase_kwargs`).
    """
    reporter = reporter or Reporter()
    dev = device if isinstance(device, torch.device) else select_device(device)
    net = net.to(dev).eval()
    divisor = int(getattr(net, "divisor", 1))
    if max_voxels is None:
        max_voxels = 40_000_000 if dev.type == "cuda" else 12_000_000
    x = torch.from_numpy(np.ascontiguousarray(inputs, dtype=np.float32))[None]
    x, shape = _pad_to_multiple(x, divisor)
    padded = x.shape[-3:]
    if int(np.prod(padded)) <= max_voxels:
        reporter.update(0.0, "network: whole volume")
        out = _forward(net, x, dev, net_kwargs)[0, 0]
        reporter.update(1.0, "network done")
    else:
        out = _tiled(net, x, dev, divisor, tile, halo, reporter, net_kwargs)
    return out[: shape[0], : shape[1], : shape[2]].numpy().astype(np.float32, copy=False)


def _tiled(net, x: torch.Tensor, dev: torch.device, divisor: int, tile: int, halo: int,
           reporter: Reporter, net_kwargs: dict | None) -> torch.Tensor:
    tile = max(divisor, tile // divisor * divisor)
    halo = int(math.ceil(halo / divisor) * divisor)
    size = x.shape[-3:]
    out = torch.zeros(size, dtype=torch.float32)
    starts = [list(range(0, s, tile)) for s in size]
    blocks = [(z, y, xx) for z in starts[0] for y in starts[1] for xx in starts[2]]
    for n, (z0, y0, x0) in enumerate(blocks):
        reporter.update(n / len(blocks), f"network: tile {n + 1}/{len(blocks)}")
        core = [(s, min(s + tile, S)) for s, S in zip((z0, y0, x0), size)]
        win = [(max(0, a - halo), min(S, b + halo)) for (a, b), S in zip(core, size)]
        sub = x[..., win[0][0]:win[0][1], win[1][0]:win[1][1], win[2][0]:win[2][1]]
        sub, sub_shape = _pad_to_multiple(sub, divisor)
        pred = _forward(net, sub, dev, net_kwargs)[0, 0]
        sl = tuple(slice(a - w0, b - w0) for (a, b), (w0, _) in zip(core, win))
        out[core[0][0]:core[0][1], core[1][0]:core[1][1], core[2][0]:core[2][1]] = pred[sl]
    reporter.update(1.0, "network done")
    return out
