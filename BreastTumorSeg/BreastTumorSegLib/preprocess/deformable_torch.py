"""The deformable level in PyTorch (hf-deepali): a cubic B-spline free-form deformation, CPU or GPU.

``estimate_bspline(fixed, moving, mask)`` fits a free-form deformation (control points every
``control_spacing_mm``) that maps the *fixed* (reference) grid into *moving* (already aligned
by the linear levels and resampled onto the same grid), by minimising one minus the squared
local normalized cross-correlation (LNCC, windows of ~12.5 mm) inside *mask* plus a bending
penalty on the control points (Adam). LNCC, not mutual information: the phases differ mainly by
contrast uptake, which changes intensities in large regions but hardly the local structure of
non-enhancing tissue, and LNCC uses every voxel where deepali's MI used 20,000 random ones (the
MI version stayed at the affine TRE on the phantoms). The estimation runs on the bounding box of
the mask (plus a margin). The result is returned as a SimpleITK displacement field on the fixed
grid, in millimetres and patient axes, so the engine composes it with the linear transform and
resamples each phase once, with SimpleITK.

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


def _box(x, k: int):
    """Mean over a k x k x k window (k odd; stride 1; at the edges the mean of what is inside), separably
    from cumulative sums: ~2x faster than avg_pool on one thread, forward and backward."""
    import torch
    import torch.nn.functional as F
    p = k // 2
    for dim in (2, 3, 4):
        n = x.shape[dim]
        c = F.pad(x, [0, 0] * (4 - dim) + [p + 1, p]).cumsum(dim)  # F.pad lists the last axis first
        i = torch.arange(n, dtype=x.dtype, device=x.device)
        count = (torch.clamp(i + p, max=n - 1) - torch.clamp(i - p, min=0) + 1).reshape([n] + [1] * (4 - dim))
        x = (c.narrow(dim, k, n) - c.narrow(dim, 0, n)) / count
    return x


def lncc_loss(a, b, mask, k: int, eps: float = 1e-4, b_stats=None):
    """1 - mean over *mask* of the squared local NCC of *a* and *b* in k-voxel windows. *b_stats*: the
    window means of b and b*b (``_box(cat([b, b*b]), k)``), computed once when b is the fixed image."""
    import torch
    mb, bb = (b_stats if b_stats is not None else _box(torch.cat([b, b * b], 1), k)).split(1, 1)
    ma, aa, ab = _box(torch.cat([a, a * a, a * b], 1), k).split(1, 1)
    va, vb, cov = (aa - ma * ma).clamp_min(0), (bb - mb * mb).clamp_min(0), ab - ma * mb
    cc = cov * cov / (va * vb + eps)
    return 1 - (cc * mask).sum() / mask.sum().clamp_min(1)


def _tensor(img: sitk.Image, device: str = "cpu"):
    """(1, 1, z, y, x) float32 tensor of *img*."""
    import torch

    return torch.from_numpy(np.array(sitk.GetArrayViewFromImage(img), dtype=np.float32))[None, None].to(device)


def _window_voxels(img: sitk.Image, window_mm: float) -> int:
    """The local-NCC window of about *window_mm* on *img*'s grid: an odd number of voxels, at least 3."""
    return max(3, 2 * int(round(window_mm / float(np.mean(img.GetSpacing())) / 2)) + 1)


def local_ncc(fixed: sitk.Image, moving: sitk.Image, mask: sitk.Image, window_mm: float = 12.5) -> float:
    """Mean squared local NCC of two images on the same grid inside *mask* (what the deformable level
    maximises; 1 = every window linearly related), for its acceptance check and QA."""
    import torch

    with torch.no_grad():
        return float(1 - lncc_loss(_tensor(moving), _tensor(fixed), (_tensor(mask) > 0).float(),
                                   _window_voxels(fixed, window_mm)))


def _crop(fixed: sitk.Image, moving: sitk.Image, mask: sitk.Image, margin_mm: float, *more: sitk.Image):
    """The images cut to the bounding box of *mask* plus *margin_mm*, and the index where it starts."""
    images = (fixed, moving, mask, *more)
    m = sitk.GetArrayViewFromImage(mask) > 0
    if not m.any():
        return images, (0, 0, 0)
    idx = np.argwhere(m)  # (k, j, i)
    pad = [int(np.ceil(margin_mm / sp)) for sp in fixed.GetSpacing()[::-1]]
    lo = np.maximum(idx.min(0) - pad, 0)
    hi = np.minimum(idx.max(0) + 1 + pad, m.shape)
    lo_xyz, size_xyz = [int(v) for v in lo[::-1]], [int(v) for v in (hi - lo)[::-1]]
    return tuple(sitk.RegionOfInterest(img, size_xyz, lo_xyz) for img in images), tuple(lo_xyz)


def estimate_bspline(fixed: sitk.Image, moving: sitk.Image, mask: sitk.Image, control_spacing_mm: float = 40.0,
                     iterations: int = 20, bending_weight: float = 1.0, lr: float = 0.01, device: str = "cpu",
                     loss: str = "lncc", window_mm: float = 12.5, samples: int = 20_000,
                     margin_mm: float = 15.0, preserve: sitk.Image | None = None,
                     volume_weight: float = 0.0) -> sitk.Image:
    """Displacement field (sitkVectorFloat64, mm, on *fixed*'s grid): fixed point p -> p + u(p) in *moving*.

    *iterations* Adam steps (learning rate *lr*, in the deformation's normalised units) on *fixed*'s
    grid, cut to the bounding box of *mask* plus *margin_mm*; outside it the field continues with its
    edge values. ``loss`` "lncc" (default) or "mi" (deepali's Parzen mutual information on *samples*
    voxels, the first version). *bending_weight* weighs the squared second differences of the
    control-point displacements (cheap: deepali's exact B-spline bending energy cost more than the
    image term per step). *volume_weight* weighs the mean squared divergence of the displacement
    (mm/mm) over *preserve* (the enhancing voxels, i.e. lesions, left out of the metric): they keep
    their volume, which the image term cannot see there.
    """
    import torch
    from deepali.core import Grid
    from deepali.losses import functional as L
    from deepali.spatial import FreeFormDeformation, ImageTransformer

    full = fixed
    if preserve is None:
        preserve = sitk.Image(fixed.GetSize(), sitk.sitkUInt8)
        preserve.CopyInformation(fixed)
    (fixed, moving, mask, preserve), lo = _crop(fixed, moving, mask, margin_mm, preserve)
    grid = Grid.from_sitk(fixed, align_corners=True)
    stride = [max(1, int(round(control_spacing_mm / s))) for s in fixed.GetSpacing()]
    k = _window_voxels(fixed, window_mm)

    torch.manual_seed(0)  # the MI metric's random voxel samples: the same result on every run
    f, m, w = _tensor(fixed, device), _tensor(moving, device), (_tensor(mask, device) > 0).float()
    keep = (_tensor(preserve, device) > 0).float()[..., 1:, 1:, 1:]
    # a normalised displacement's difference between neighbouring voxels along i, j, k -> mm/mm
    per_index = torch.tensor((np.asarray(fixed.GetSize()) - 1) / 2.0, dtype=torch.float32)
    scale = float(torch.quantile(f[w > 0][:200_000], 0.99)) if bool((w > 0).any()) else 1.0
    scale = scale or 1.0
    f, m = (f / scale).clamp(0, 1.5), (m / scale).clamp(0, 1.5)  # MI bins over a common range
    with torch.no_grad():
        f_stats = _box(torch.cat([f, f * f], 1), k)  # the fixed image's window means, once
    ffd = FreeFormDeformation(grid, stride=stride).to(device)
    warp = ImageTransformer(ffd).to(device)
    opt = torch.optim.Adam(ffd.parameters(), lr=lr)
    for _ in range(iterations):
        opt.zero_grad()
        warped = warp(m)
        if loss == "mi":
            val = L.mi_loss(warped, f, mask=w, vmin=0.0, vmax=1.5, num_bins=32, num_samples=samples)
        else:
            val = lncc_loss(warped, f, w, k, b_stats=f_stats)
        if volume_weight and bool(keep.any()):  # lesions keep their volume: no divergence in them
            u = ffd.disp(grid)  # (1, 3, z, y, x), normalised
            div = ((u[:, 0, 1:, 1:, 1:] - u[:, 0, 1:, 1:, :-1]) * per_index[0]
                   + (u[:, 1, 1:, 1:, 1:] - u[:, 1, 1:, :-1, 1:]) * per_index[1]
                   + (u[:, 2, 1:, 1:, 1:] - u[:, 2, :-1, 1:, 1:]) * per_index[2])
            val = val + volume_weight * (div[:, None] ** 2 * keep).sum() / keep.sum()
        if bending_weight:
            val = val + bending_weight * L.bending_loss(ffd.data())  # finite differences of the control points
        val.backward()
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
    if field.GetSize() != full.GetSize():  # back onto the whole grid, continued with its edge values
        upper = [int(n - c - l) for n, c, l in zip(full.GetSize(), field.GetSize(), lo)]
        field = sitk.ZeroFluxNeumannPad(field, list(lo), upper)
        field.CopyInformation(full)
    return field
