"""A held-out synthetic family for evaluation only: ``make_ellipse_family(seed)``.

It mimics an independently written generator (not ours, and never used for training): a
bilateral axial exam, 256 x 192 x 64 voxels of 1.2 x 1.2 x 2.5 mm, an elliptic torso, two
plain rounded breasts in front of it, a strongly enhancing heart inside the chest, a few small
enhancing vessels, fibroglandular blobs, 1-2 round tumors, Gaussian noise, no motion, 4-6
phases every 1.5 min. The code is deliberately simple and shares nothing with the training
families beyond the :class:`~.Phantom` container and the tumor curve design.
"""
from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from ...core.exam import DCEExam
from ...core.imageutil import voxel_volume_ml
from . import Phantom
from .kinetics import design_tumor_curve

FAMILY = "ellipse"
SIZE = (256, 192, 64)  # i (x), j (y), k (z)
SPACING = (1.2, 1.2, 2.5)


def make_ellipse_family(seed: int, *, size=SIZE, spacing=SPACING, n_phases=None, lesions=None,
                        bpe=None) -> Phantom:
    """An exam of the held-out "ellipse" family (axial, identity direction, LPS).

    ``lesions`` (used by :mod:`.malignancy`) replaces the 1-2 drawn tumors: one dict per lesion
    with ``side`` ("left"/"right"), ``radius_mm``, ``curve``, ``rim`` (core enhancing at 30 %)
    and ``spicules`` (number of thin spikes 1.3-2 radii long); ``bpe`` the glandular enhancement
    at 6 min (default 0.05)."""
    rng = np.random.default_rng([int(seed), 777])
    nx, ny, nz = size
    sx, sy, sz = spacing
    origin = (-(nx - 1) * sx / 2, -(ny - 1) * sy / 2, -(nz - 1) * sz / 2)
    z, y, x = np.meshgrid(*(o + np.arange(n) * s for o, n, s in zip(origin[::-1], (nz, ny, nx), (sz, sy, sx))),
                          indexing="ij", sparse=True)
    # torso centred a little posterior; breasts (spheres squashed front-back) anterior (-y)
    tx, ty = rng.uniform(120, 145), rng.uniform(70, 85)
    tyc = rng.uniform(15, 30)
    torso = np.broadcast_to(((x / tx) ** 2 + ((y - tyc) / ty) ** 2) <= 1, (nz, ny, nx))
    front = tyc - ty
    chest = ((x / (tx - 18)) ** 2 + ((y - tyc - 4) / (ty - 18)) ** 2) <= 1
    breasts, fgt = np.zeros(torso.shape, bool), np.zeros(torso.shape, bool)  # (z, y, x)
    centers = []
    for sign in (1, -1):
        r = rng.uniform(45, 60)
        c = (sign * rng.uniform(65, 80), front + 5, rng.uniform(-10, 10))
        centers.append(c)
        ball = ((x - c[0]) ** 2 + ((y - c[1]) / 0.9) ** 2 + (z - c[2]) ** 2) <= r * r
        ball &= y < tyc  # rounded in front, merging into the torso behind
        breasts |= ball
        for _ in range(int(rng.integers(4, 9))):
            b = np.array(c) + rng.uniform(-0.5, 0.5, 3) * r - [0, 0.3 * r, 0]
            fgt |= ball & (((x - b[0]) ** 2 + (y - b[1]) ** 2 + (z - b[2]) ** 2) <= rng.uniform(8, 18) ** 2)
    heart = (((x - rng.uniform(0, 25)) / 55) ** 2 + ((y - tyc - 10) / 42) ** 2 + (z / 50) ** 2) <= 1
    heart &= chest
    vessels = np.zeros(torso.shape, bool)
    for _ in range(int(rng.integers(3, 7))):
        vx, vy, rr = rng.uniform(-tx * 0.8, tx * 0.8), rng.uniform(front + 5, tyc + ty * 0.6), rng.uniform(1.5, 3)
        vessels |= ((x - vx) ** 2 + (y - vy) ** 2 <= rr * rr) & (torso | breasts)
    tumors, labels = [], np.zeros(torso.shape, np.uint8)
    core = np.zeros(torso.shape, bool)
    for i in range(int(rng.integers(1, 3)) if lesions is None else len(lesions)):
        want = {} if lesions is None else lesions[i]
        side = int(rng.integers(2)) if "side" not in want else (0 if want["side"] == "left" else 1)  # +x = left
        c = np.array(centers[side]) + rng.uniform(-20, 20, 3) - [0, 15, 0]
        r = float(want.get("radius_mm", rng.uniform(5, 14)))
        d2 = (x - c[0]) ** 2 + (y - c[1]) ** 2 + (z - c[2]) ** 2
        m = (d2 <= r * r) & breasts & (labels == 0)
        for _ in range(int(want.get("spicules", 0))):
            u = rng.normal(size=3)
            u /= np.linalg.norm(u)
            along = np.clip((x - c[0]) * u[0] + (y - c[1]) * u[1] + (z - c[2]) * u[2], 0, r * rng.uniform(1.3, 2.0))
            m |= (((x - c[0] - along * u[0]) ** 2 + (y - c[1] - along * u[1]) ** 2 + (z - c[2] - along * u[2]) ** 2)
                  <= rng.uniform(0.7, 1.2) ** 2) & breasts & (labels == 0)
        if want.get("rim"):
            core |= m & (d2 <= (r - 2.5) ** 2)
        labels[m] = i + 1
        curve = want.get("curve") or str(rng.choice(["persistent", "plateau", "washout"]))
        tumors.append({"center": c, "radius": r, "curve": curve, "request": i if lesions is not None else None})
    n = int(rng.integers(4, 7)) if n_phases is None else int(n_phases)
    times = [0.0] + [1.5 * k for k in range(1, n)]
    # signals: fat bright (no fat suppression), glandular tissue and muscle darker
    s0 = np.where(torso | breasts, 1.0, 0.0)
    s0 = np.where(chest, 0.35, s0)
    s0 = np.where(fgt, 0.45, s0)
    s0 = np.where(heart, 0.5, s0)
    s0 = np.where(vessels, 0.4, s0)
    s0 = np.where(labels > 0, 0.45, s0)
    pe_heart, pe_vessel = rng.uniform(2.5, 4.0), rng.uniform(1.5, 3.0)
    curves = [design_tumor_curve(rng, t["curve"], float(rng.uniform(1.0, 2.0)), times) for t in tumors]
    noise = rng.uniform(0.01, 0.03)
    phases = []
    for t in times:
        blood = (1 - np.exp(-t / 0.3)) * np.exp(-0.08 * t) if t > 0 else 0.0
        img = s0 * (1 + heart * pe_heart * blood + vessels * pe_vessel * blood + fgt * (0.05 if bpe is None else bpe) * t / 6)
        for i, cv in enumerate(curves):
            img = img + s0 * (labels == i + 1) * float(cv(t)) * np.where(core, 0.3, 1.0)
        img = (img + rng.normal(0, noise, img.shape)) * 1000.0
        im = sitk.GetImageFromArray(img.astype(np.float32))
        im.SetSpacing(spacing)
        im.SetOrigin(origin)
        phases.append(im)
    case_id = f"ellipse_{int(seed):04d}"
    exam = DCEExam(phases, times, case_id, [f"{case_id}_{i:04d}" for i in range(n)],
                   {"synthetic": True, "family": FAMILY, "seed": int(seed), "times_assumed": False,
                    "resampled_phases": []})

    def image(a) -> sitk.Image:
        im = sitk.GetImageFromArray(np.asarray(a, np.uint8))
        im.CopyInformation(phases[0])
        return im

    vml = voxel_volume_ml(phases[0])
    info = []
    for i, (t, cv) in enumerate(zip(tumors, curves)):
        m = labels == i + 1
        if not m.any():
            continue
        zz, yy, xx = np.nonzero(m)
        cen = [float(origin[0] + xx.mean() * sx), float(origin[1] + yy.mean() * sy), float(origin[2] + zz.mean() * sz)]
        info.append({"label": i + 1, "kind": "mass", "curve": t["curve"], "side": "left" if cen[0] > 0 else "right",
                     "request": t["request"],
                     "centroid_lps": cen, "radius_mm": float(t["radius"]), "n_voxels": int(m.sum()),
                     "volume_ml": float(m.sum() * vml), "curve_params": cv.as_dict()})
    heart_arr = np.broadcast_to(heart, labels.shape)
    params = {"family": FAMILY, "seed": int(seed), "orientation": "axial", "spacing": list(spacing),
              "grid_size": list(size), "times_min": times, "n_phases": n, "pe_heart": float(pe_heart),
              "pe_vessel": float(pe_vessel), "noise": float(noise)}
    ph = Phantom(exam, image(labels > 0), image(labels), image(breasts), info,
                 [sitk.Euler3DTransform() for _ in range(n)], params)
    ph.heart_mask = image(heart_arr)
    return ph
