"""The deformable level in PyTorch (hf-deepali): a cubic B-spline free-form deformation, CPU or GPU.

``estimate_bspline(fixed, moving, mask)`` fits a free-form deformation (control points every
``control_spacing_mm``) that maps the *fixed* (reference) grid into *moving* (already aligned
by the linear levels and resampled onto the same coarse grid), by minimising the masked Parzen
mutual information of deepali plus its B-spline bending energy. The result is returned as a
SimpleITK displacement field on the fixed grid, in millimetres and patient axes, so the engine
composes it with the linear transform and resamples each phase once, with SimpleITK.

deepali is optional (``pip install "breasttumorseg[deform]"``); :func:`available` says whether it
is importable, and the engine falls back to SimpleITK's B-spline without it.
"""
from __future__ import annotations

import numpy as np
import SimpleITK as sitk


def available() -> bool:
    try:
        import deepali.spatial  # noqa: F401
    except ImportError:
        return False
    return True


def estimate_bspline(fixed: sitk.Image, moving: sitk.Image, mask: sitk.Image, control_spacing_mm: float = 40.0,
                     iterations: int = 40, bending_weight: float = 0.05, lr: float = 0.01,
                     device: str = "cpu", samples: int = 20_000) -> sitk.Image:
    """Displacement field (sitkVectorFloat64, mm, on *fixed*'s grid): fixed point p -> p + u(p) in *moving*."""
    import torch
    from deepali.core import Grid
    from deepali.losses import functional as L
    from deepali.spatial import FreeFormDeformation, ImageTransformer

    grid = Grid.from_sitk(fixed, align_corners=True)
    stride = [max(1, int(round(control_spacing_mm / s))) for s in fixed.GetSpacing()]

    def tensor(img):
        return torch.from_numpy(np.array(sitk.GetArrayViewFromImage(img), dtype=np.float32))[None, None].to(device)

    torch.manual_seed(0)  # the metric's random voxel samples: the same result on every run
    f, m, w = tensor(fixed), tensor(moving), tensor(mask)
    scale = float(torch.quantile(f[w > 0][:200_000], 0.99)) or 1.0  # MI bins over a common range
    f, m = (f / scale).clamp(0, 1.5), (m / scale).clamp(0, 1.5)
    ffd = FreeFormDeformation(grid, stride=stride).to(device)
    warp = ImageTransformer(ffd).to(device)
    opt = torch.optim.Adam(ffd.parameters(), lr=lr)
    for _ in range(iterations):
        opt.zero_grad()
        warped = warp(m)
        loss = L.mi_loss(warped, f, mask=w, vmin=0.0, vmax=1.5, num_bins=32, num_samples=samples)
        loss = loss + bending_weight * L.bending_loss(ffd.data(), mode="bspline", stride=stride)
        loss.backward()
        opt.step()
    with torch.no_grad():
        ffd.update()
        disp = ffd.disp(grid)[0]  # (3, z, y, x), normalised: -1..1 spans the grid's corners along i, j, k
    extent = (np.asarray(fixed.GetSize()) - 1) * np.asarray(fixed.GetSpacing())
    d = disp.detach().cpu().numpy().astype(np.float64)
    along = d * (extent / 2.0)[:, None, None, None]  # mm along the grid axes i, j, k
    world = np.tensordot(np.asarray(fixed.GetDirection()).reshape(3, 3), along, axes=1)  # mm, patient axes
    field = sitk.GetImageFromArray(np.moveaxis(world, 0, -1), isVector=True)
    field.CopyInformation(fixed)
    return field
