"""Synthetic bilateral breast DCE-MRI phantoms with exact ground truth.

``make_phantom(seed)`` builds a prone patient in physical LPS space (torso, chest wall, lungs,
an enhancing heart, enhancing vessels, two breasts with fat and fibroglandular tissue, 0-3
tumors) and samples it on a randomly chosen grid (orientation, spacing, origin), then
acquires 2-8 phases::

    S(t) = S0 * gain * bias(x) * (1 + E(t))   -> rigid motion -> Rician noise

with analytic enhancement curves ``E(t)`` (:mod:`.kinetics`), so the true relative
enhancement of every tumor at every phase is known exactly. Everything random comes from
``numpy.random.default_rng([seed, stream])`` with one stream per concern (anatomy, tissue,
texture, tumors, kinetics, acquisition, motion, noise): the same seed and overrides give
bit-identical output, and overriding the acquisition (spacing, orientation, phases, noise)
keeps the same patient and tumors.

Motion convention: ``phantom.motion[k]`` is the rigid transform that *corrects* phase k, in
SimpleITK's resampling sense: ``sitk.Resample(exam.phases[k], exam.reference, motion[k])``
puts phase k back into the frame of phase 0, where the ground-truth masks are. It maps
points of the reference frame to points of phase k, i.e. it is what an ideal registration
with phase 0 fixed and phase k moving would return. ``motion[0]`` is the identity.

Sub-modules: :mod:`.anatomy` (the patient), :mod:`.lesions` (tumors),
:mod:`.render` (voxel maps), :mod:`.geometry` (grids, shapes),
:mod:`.kinetics` (curves, early/late phases).

This is one family among several (:mod:`.families`): :mod:`.randomized` (domain-randomised
anatomy, contrast, orientation, field of view and scale), :mod:`.ellipse` (a held-out family for
evaluation only) and :mod:`.hybrid` (real breast MRI with inserted lesions).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ...core.errors import InputError
from ...core.exam import MAX_PHASES, MIN_PHASES, DCEExam
from ...core.imageutil import voxel_volume_ml
from ...io.atomic import StagedOutputs, check_no_overwrite, write_image, write_json
from .anatomy import FAT_SIGNAL, Anatomy, sample_anatomy, sample_fgt, sample_tissue
from .geometry import F32, ORIENTATIONS, VoxelGrid, direction_matrix, make_grid, random_unit_vector
from .kinetics import (CURVE_TYPES, Curve, classify_curve, design_tumor_curve, early_late_phases,
                               normalised_fast_curve, normalised_slow_curve)
from .lesions import KINDS, MARGINS, Tumor, set_margin
from .render import RenderedMaps, make_texture, place_decoys, place_tumors, render

__all__ = ["Phantom", "make_phantom", "write_phantom", "early_late_phases", "classify_curve",
           "SIZES", "CLINICAL_SIZE", "CLINICAL_SPACING", "FAT_SIGNAL"]

SIZES = ("small", "clinical")
CLINICAL_SIZE = (448, 448, 160)  # (i, j, k)
CLINICAL_SPACING = (0.75, 0.75, 1.25)
SMALL_MAX_VOXELS = 3_000_000
MAX_TUMORS = 5
_STREAMS = {"anatomy": 1, "tissue": 2, "texture": 3, "tumors": 4, "kinetics": 5, "acquisition": 6,
            "motion": 7, "noise": 8, "orientation": 9, "times": 10, "scanner": 11, "decoys": 12,
            "margins": 13}


def _rng(seed: int, stream: str) -> np.random.Generator:
    return np.random.default_rng([seed, _STREAMS[stream]])


@dataclass
class Phantom:
    """A synthetic DCE exam with its ground truth (all images on the exam grid)."""

    exam: DCEExam
    tumor_mask: sitk.Image  # uint8, 1 = tumor (union of tumors)
    tumor_labels: sitk.Image  # uint8, tumor i labelled i + 1
    breast_mask: sitk.Image  # uint8, both breasts down to the chest-wall muscle
    tumors: list[dict]
    motion: list[sitk.Transform]  # per phase; see the module docstring for the direction
    params: dict = field(default_factory=dict)

    @property
    def case_id(self) -> str:
        return self.exam.case_id

    def truth(self) -> dict:
        """Everything known about the phantom, JSON-ready."""
        return {"case_id": self.case_id, "acquisition_times_min": list(self.exam.times_min),
                "tumors": self.tumors, "motion": [_transform_dict(t) for t in self.motion],
                "motion_convention": "sitk.Resample(phase_k, phase_0, motion[k]) aligns phase k with phase 0 "
                                     "and the masks", "params": self.params}


# ------------------------------------------------------------------------------ parameters
def _check(cond: bool, problem: str, fix: str | None = None) -> None:
    if not cond:
        raise InputError(problem, "make_phantom", fix)


def _per_tumor(value, n: int, name: str) -> list | None:
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        _check(len(value) == n, f"{name} lists {len(value)} value(s) for {n} tumor(s)", f"give one {name} per tumor")
        return list(value)
    return [value] * n


def _acquisition(seed: int, size: str, shape_mm, spacing, orientation, n_phases, times_min, anat: Anatomy) -> dict:
    rng = _rng(seed, "acquisition")
    acq: dict = {"size": size}
    # orientation and direction matrix (own stream: choosing one does not move the patient)
    orng = _rng(seed, "orientation")
    names = list(ORIENTATIONS)
    drawn = names[int(orng.choice(4, p=[0.6, 0.15, 0.1, 0.15]))]
    if size == "clinical" and orientation is None:
        drawn = "axial"
    if orientation is None or isinstance(orientation, str):
        name = orientation or drawn
        _check(name in ORIENTATIONS, f"unknown orientation {name!r}", f"use one of {', '.join(ORIENTATIONS)}")
        direction, info = direction_matrix(name, orng)
    else:
        direction = np.asarray(orientation, dtype=float).reshape(3, 3)
        _check(np.allclose(direction.T @ direction, np.eye(3), atol=1e-4), "the direction matrix is not orthonormal")
        name, info = "custom", {}
    acq.update(orientation=name, direction=direction.ravel().round(8).tolist(), **info)
    # spacing (in-plane i, j; slice k)
    if size == "small":
        drawn_sp = [float(rng.uniform(1.5, 2.0))] * 2 + [float(rng.uniform(1.8, 3.0))]
    else:
        drawn_sp = list(CLINICAL_SPACING)
        rng.uniform(size=2)
    if spacing is not None:
        sp = np.broadcast_to(np.asarray(spacing, dtype=float), (3,)).tolist()
        _check(all(0.2 <= s <= 10 for s in sp), f"spacing {sp} mm is outside 0.2-10 mm")
    else:
        sp = drawn_sp
    acq["spacing"] = [float(s) for s in sp]
    # field of view in the anatomy frame (L-R, A-P, S-I) and where the patient lies on the table
    tip_y = min(b.y0 - b.depth - b.nipple_len for b in anat.breasts)
    margins = rng.uniform([5, 8, 0], [20, 25, 1])
    height = float(rng.uniform(150, 190))
    y_back = float(rng.uniform(1.1 * anat.ay, 2 * anat.ay + 15))
    lo = np.array([-(anat.ax + margins[0]), tip_y - margins[1], -height / 2])
    hi = np.array([anat.ax + margins[0], y_back, height / 2])
    if shape_mm is not None:
        ext = np.broadcast_to(np.asarray(shape_mm, dtype=float), (3,))
        _check(bool(np.all(ext > 10)), f"shape_mm {list(ext)} must be > 10 mm on every axis")
        lo = np.array([-ext[0] / 2, tip_y - margins[1], -ext[2] / 2])
        hi = lo + ext
        hi[0], hi[2] = ext[0] / 2, ext[2] / 2
    offset = rng.uniform([-30, -60, -150], [30, 60, 150])
    jitter = rng.uniform(-8, 8, 3)
    center_anat = (lo + hi) / 2 + jitter
    if size == "clinical" and shape_mm is None:
        center_anat = np.array([0.0, tip_y - 12.0 + 0.5 * CLINICAL_SIZE[1] * sp[1], 0.0]) + jitter
    acq.update(fov_lo_mm=lo.round(3).tolist(), fov_hi_mm=hi.round(3).tolist(), patient_offset_mm=offset.round(3).tolist())
    grid_size = CLINICAL_SIZE if size == "clinical" and shape_mm is None and spacing is None else None
    grid = make_grid(center_anat + offset, hi - lo, direction, sp, grid_size)
    if size == "small" and spacing is None:  # keep small phantoms small
        n = int(np.prod(grid.GetSize()))
        if n > SMALL_MAX_VOXELS:
            sp = [s * (n / SMALL_MAX_VOXELS) ** (1 / 3) for s in sp]
            acq["spacing"] = sp
            grid = make_grid(center_anat + offset, hi - lo, direction, sp)
    acq["grid_size"] = list(grid.GetSize())
    acq["origin"] = list(grid.GetOrigin())
    # phases and times
    rng = _rng(seed, "times")
    drawn_n = int(rng.integers(3, 8))
    first = float(rng.uniform(1.0, 2.5))
    gaps = rng.uniform(0.8, 2.0, MAX_PHASES)
    if times_min is not None:
        times = [float(t) for t in times_min]
        _check(MIN_PHASES <= len(times) <= MAX_PHASES, f"{len(times)} acquisition times given",
               f"give {MIN_PHASES}-{MAX_PHASES} times, the pre-contrast one first")
        _check(times[0] == 0 and all(b > a for a, b in zip(times, times[1:])),
               f"acquisition times {times} must start at 0 and increase")
        _check(n_phases is None or n_phases == len(times), "n_phases disagrees with times_min")
    else:
        n = drawn_n if n_phases is None else int(n_phases)
        _check(MIN_PHASES <= n <= MAX_PHASES, f"n_phases={n_phases}", f"use {MIN_PHASES}-{MAX_PHASES}")
        times = [0.0] + list(np.round(first + np.concatenate([[0.0], np.cumsum(gaps[: n - 2])]), 4))
    acq["times_min"] = [float(t) for t in times]
    acq["n_phases"] = len(times)
    # scanner
    rng = _rng(seed, "scanner")
    acq["gain"] = float(np.exp(rng.uniform(np.log(0.3), np.log(5.0))))
    acq["bias"] = float(rng.uniform(0.0, 0.2))
    acq["bias_waves"] = [{"k_per_mm": (random_unit_vector(rng) * 2 * math.pi / rng.uniform(250, 600)).tolist(),
                          "phase": float(rng.uniform(0, 2 * math.pi)), "weight": float(rng.uniform(0.3, 1.0))}
                         for _ in range(3)]
    # breast-coil sensitivity: full in the breasts, falling off behind the chest wall
    acq["coil_floor"] = float(rng.uniform(0.05, 0.4))
    acq["coil_length_mm"] = float(rng.uniform(30, 90))
    acq["noise"] = float(rng.uniform(0.01, 0.04))
    acq["motion_mm"] = float(rng.uniform(0.0, 2.0))
    # cardiac pulsation ghosts: faint copies of the heart along the phase-encoding axis
    acq["ghosting"] = float(rng.uniform(0.02, 0.1)) if rng.uniform() < 0.5 else 0.0
    acq["phase_encode_axis"] = "ij"[int(rng.integers(2))]
    acq["ghost_phase_factors"] = rng.uniform(0.5, 1.5, MAX_PHASES).round(4).tolist()
    return acq, grid, offset


def _tumor_specs(seed: int, n_tumors, tumor_radius_mm, tumor_kind, curve, tumor_side=None) -> list[dict]:
    rng = _rng(seed, "tumors")
    drawn_n = int(rng.choice([1, 2], p=[0.6, 0.4]))
    n = drawn_n if n_tumors is None else int(n_tumors)
    _check(0 <= n <= MAX_TUMORS, f"n_tumors={n_tumors}", f"use 0-{MAX_TUMORS}")
    radii = _per_tumor(tumor_radius_mm, n, "tumor_radius_mm")
    kinds = _per_tumor(tumor_kind, n, "tumor_kind")
    curves = _per_tumor(curve, n, "curve")
    sides = _per_tumor(tumor_side, n, "tumor_side")
    specs = []
    side0 = "left" if rng.uniform() < 0.5 else "right"
    for i in range(n):
        d = {"kind": "mass" if rng.uniform() < 0.8 else "nonmass",
             "radius_mass": float(np.exp(rng.uniform(np.log(4.0), np.log(20.0)))),
             "radius_nonmass": float(rng.uniform(10.0, 25.0)),
             "side": side0 if rng.uniform() < 0.75 else ("right" if side0 == "left" else "left"),
             "s0_factor": float(rng.uniform(0.85, 1.15)),
             "curve": str(rng.choice(CURVE_TYPES, p=[0.3, 0.3, 0.4])),
             "peak": float(rng.uniform(0.8, 2.5))}
        if kinds is not None:
            _check(kinds[i] in KINDS, f"tumor_kind {kinds[i]!r}", f"use one of {KINDS}")
            d["kind"] = kinds[i]
        if curves is not None:
            _check(curves[i] in CURVE_TYPES, f"curve {curves[i]!r}", f"use one of {CURVE_TYPES}")
            d["curve"] = curves[i]
        if sides is not None:
            _check(sides[i] in ("left", "right"), f"tumor_side {sides[i]!r}", "use left or right")
            d["side"] = sides[i]
        d["radius"] = d["radius_mass"] if d["kind"] == "mass" else d["radius_nonmass"]
        if radii is not None:
            _check(2.0 <= float(radii[i]) <= 40.0, f"tumor radius {radii[i]} mm", "use 2-40 mm")
            d["radius"] = float(radii[i])
        specs.append(d)
    return specs


# ------------------------------------------------------------------------------ make_phantom
def make_phantom(seed: int, *, shape_mm=None, spacing=None, orientation=None, n_phases=None, times_min=None,
                 n_tumors=None, tumor_radius_mm=None, tumor_kind=None, curve=None, bpe=None, motion_mm=None,
                 noise=None, gain=None, bias=None, heart: bool = True, vessels: bool = True,
                 decoys: bool = True, ghosting=None, size: str = "small", tumor_side=None, tumor_margin=None,
                 tumor_rim=None) -> Phantom:
    """Build the phantom of *seed*; keyword overrides replace the corresponding random draw.

    Overrides: ``shape_mm`` field of view (L-R, A-P, S-I mm); ``spacing`` mm (scalar or
    (in-plane i, in-plane j, slice k)); ``orientation`` "axial" / "sagittal" / "coronal" /
    "oblique" or a 3x3 direction matrix; ``n_phases`` (2-8) or ``times_min`` (minutes, first 0);
    ``n_tumors`` (0-5), ``tumor_radius_mm`` / ``tumor_kind`` ("mass", "nonmass") / ``curve``
    ("persistent", "plateau", "washout"): one value or one per tumor; ``bpe`` parenchymal
    enhancement at 6 min; ``motion_mm`` largest inter-phase shift (0 = no motion; rotations up
    to 0.75 degree per mm); ``noise`` Rician sigma as a fraction of the fat signal (0 = none);
    ``decoys`` adds breast findings that are not tumors (0-3 dark non-enhancing cysts, 0-2
    lymph nodes with a fatty hilum and moderate fast enhancement); ``ghosting`` amplitude of the
    cardiac pulsation ghosts (two copies of the heart shifted by a third of the field of view
    along the phase-encoding axis, relative to the heart's signal; drawn 0 or 0.02-0.1; 0 = none);
    ``gain`` scanner scale; ``bias`` bias-field amplitude (0 = a flat receive field: no bias and
    no breast-coil falloff behind the chest wall); ``heart`` / ``vessels``
    switch the enhancing decoys. ``tumor_side`` ("left", "right"), ``tumor_margin`` (a mass's margin:
    "smooth", "lobulated", "spiculated"; see :func:`.lesions.set_margin`) and ``tumor_rim`` (rim
    enhancement: the core deeper than 2-3.5 mm enhances at 15-35 % of the rim) are one value or one
    per tumor (used by :mod:`.malignancy`); unset, nothing is drawn for them and the phantom is the
    same as before they existed. ``size="small"`` (<= 3 M voxels, 1.5-3 mm) or ``"clinical"``
    (448 x 448 x 160, 0.75 x 0.75 x 1.25 mm axial).
    """
    _check(isinstance(seed, (int, np.integer)) and seed >= 0, f"seed must be a non-negative integer, got {seed!r}")
    _check(size in SIZES, f"size {size!r}", f"use one of {SIZES}")
    seed = int(seed)
    anat = sample_anatomy(_rng(seed, "anatomy"), heart=heart, vessels=vessels)
    anat.tissue = sample_tissue(_rng(seed, "tissue"), bpe)
    _check(0.0 <= anat.tissue["bpe"] <= 3.0, f"bpe={bpe}", "use 0-3 (relative enhancement)")
    tex_rng = _rng(seed, "texture")
    anat.fgt = sample_fgt(tex_rng)
    acq, grid_img, offset = _acquisition(seed, size, shape_mm, spacing, orientation, n_phases, times_min, anat)
    for key, val in (("motion_mm", motion_mm), ("noise", noise), ("gain", gain), ("bias", bias),
                     ("ghosting", ghosting)):
        if val is not None:
            _check(float(val) >= 0 and (key != "gain" or float(val) > 0), f"{key}={val}", "use a non-negative value")
            acq[key] = float(val)
    grid = VoxelGrid(grid_img, offset)

    textures = [make_texture(tex_rng, anat, b, offset) for b in anat.breasts]
    specs = _tumor_specs(seed, n_tumors, tumor_radius_mm, tumor_kind, curve, tumor_side)
    for s in specs:
        s["s0"] = anat.tissue["s_fgt"] * s["s0_factor"]
    tumors = place_tumors(_rng(seed, "tumors"), anat, textures, specs, grid.voxel_mm)
    _set_margins(_rng(seed, "margins"), tumors, tumor_margin, tumor_rim)
    times = np.asarray(acq["times_min"])
    kin_rng = _rng(seed, "kinetics")
    curves = [design_tumor_curve(kin_rng, t.curve_kind, t.peak, times) for t in tumors]

    decoy_list = place_decoys(_rng(seed, "decoys"), anat, textures, tumors) if decoys else []
    maps = render(anat, grid, textures, tumors, decoy_list)
    slow = normalised_slow_curve(anat.tissue["tau_slow_min"])
    fast = normalised_fast_curve(anat.tissue["tau_fast_min"], anat.tissue["k_fast_per_min"])
    motion, motion_params = _motion(_rng(seed, "motion"), len(times), acq["motion_mm"], anat, offset)
    chest_y = float(np.mean([b.y0 for b in anat.breasts])) + anat.cavity_depth
    phases = _acquire(seed, maps, grid, times, slow, fast, curves, motion, acq, chest_y)

    case_id = f"phantom_{seed:04d}"
    exam = DCEExam(phases, [float(t) for t in times], case_id, [f"{case_id}_{i:04d}" for i in range(len(phases))],
                   {"synthetic": True, "seed": seed, "times_assumed": False, "resampled_phases": []})
    labels = sitk.GetImageFromArray(maps.tumor_label)
    labels.CopyInformation(grid_img)
    mask = sitk.GetImageFromArray((maps.tumor_label > 0).astype(np.uint8))
    mask.CopyInformation(grid_img)
    breast = sitk.GetImageFromArray(maps.breast)
    breast.CopyInformation(grid_img)

    tumor_info = [_tumor_dict(i, t, c, maps, grid_img, times, offset) for i, (t, c) in enumerate(zip(tumors, curves))]
    params = {"seed": seed, **acq, "anatomy": anat.as_dict(), "motion": motion_params,
              "slow_curve": slow.as_dict(), "fast_curve": fast.as_dict()}
    params["anatomy"].pop("vessels", None)
    params["decoys"] = [d.as_dict() for d in decoy_list]
    params["vessels"] = [{"name": v.name, "radius_mm": v.radius, "n_points": len(v.points)} for v in anat.vessels]
    return Phantom(exam, mask, labels, breast, tumor_info, motion, _jsonable(params))


def _set_margins(rng: np.random.Generator, tumors: list[Tumor], margin, rim) -> None:
    margins, rims = _per_tumor(margin, len(tumors), "tumor_margin"), _per_tumor(rim, len(tumors), "tumor_rim")
    for i, t in enumerate(tumors):
        if margins is not None and t.kind == "mass":
            _check(margins[i] in MARGINS, f"tumor_margin {margins[i]!r}", f"use one of {MARGINS}")
            set_margin(rng, t, margins[i])
        if rims is not None and rims[i]:
            t.rim_mm, t.core_fraction = float(rng.uniform(2.0, 3.5)), float(rng.uniform(0.15, 0.35))


def _tumor_dict(i: int, t: Tumor, curve: Curve, maps: RenderedMaps, grid_img: sitk.Image, times: np.ndarray,
                offset: np.ndarray) -> dict:
    n_vox = int(np.count_nonzero(maps.tumor_label == i + 1))
    vol = n_vox * voxel_volume_ml(grid_img)
    e = curve(times)
    e[0] = 0.0
    early, late = early_late_phases(times)
    d = {"label": i + 1, "kind": t.kind, "side": t.side, "center_lps": (t.center + offset).round(3).tolist(),
         "radius_mm": float(t.radius_mm), "semi_axes_mm": np.round(t.radii, 3).tolist(),
         "volume_ml": float(vol), "n_voxels": n_vox,
         "equivalent_radius_mm": float((3 * vol * 1000 / (4 * math.pi)) ** (1 / 3)),
         "s0": float(t.s0), "curve": t.curve_kind, "curve_params": curve.as_dict(),
         "enhancement": [float(v) for v in e], "pe_percent": [float(100 * v) for v in e],
         "peak_enhancement": float(e[1:].max()), "early_phase": early, "late_phase": late,
         "ser": None if late is None else float(e[early] / e[late]),
         "signal_change_early_late": None if late is None else float((e[late] - e[early]) / (1 + e[early]))}
    if t.kind == "nonmass":
        d["n_blobs"] = int(len(t.blobs))
    if t.spicules:
        d["n_spicules"] = len(t.spicules)
    if t.rim_mm > 0:
        d["rim_mm"], d["core_fraction"] = t.rim_mm, t.core_fraction
    return d


# ------------------------------------------------------------------------------ acquisition
def _motion(rng, n: int, level_mm: float, anat: Anatomy, offset) -> tuple[list[sitk.Transform], list[dict]]:
    center = (np.array([0.0, float(np.mean([b.y0 for b in anat.breasts])), 0.0]) + offset).tolist()
    out, params = [], []
    for k in range(n):
        shift = random_unit_vector(rng) * rng.uniform(0, 1) * level_mm
        angles = random_unit_vector(rng) * rng.uniform(0, 1) * math.radians(0.75 * level_mm)
        if k == 0 or level_mm == 0:
            shift, angles = np.zeros(3), np.zeros(3)
        t = sitk.Euler3DTransform()
        t.SetCenter(center)
        t.SetRotation(*[float(a) for a in angles])
        t.SetTranslation([float(s) for s in shift])
        out.append(t)
        params.append({"translation_mm": shift.round(5).tolist(), "angles_deg": np.degrees(angles).round(5).tolist()})
    return out, params


def _receive_field(grid: VoxelGrid, acq: dict, chest_y: float) -> np.ndarray | None:
    """Scanner-fixed multiplicative field: smooth bias waves times the breast-coil falloff.

    ``bias = 0`` switches both off (a perfectly flat receive field). Each wave is a plane wave
    ``cos(k . x + phase)``; along the grid it factorises into three 1D complex exponentials,
    which is much cheaper than a cosine per voxel.
    """
    if acq["bias"] <= 0:
        return None
    nz, ny, nx = grid.shape
    base = grid.origin - grid.offset  # anatomy frame: fixed to the grid, it only shifts the phases
    steps = [np.arange(n, dtype=float) * s for n, s in zip(grid.size, grid.spacing)]  # along i, j, k
    total = sum(w["weight"] for w in acq["bias_waves"])
    waves = []
    for w in acq["bias_waves"]:
        kv = np.asarray(w["k_per_mm"], dtype=float)
        proj = grid.direction.T @ kv  # phase advance per mm along i, j, k
        ei, ej, ek = (np.exp(1j * proj[a] * steps[a]).astype(np.complex64) for a in range(3))
        c = np.complex64(w["weight"] / total * np.exp(1j * (kv @ base + w["phase"])))
        waves.append((c * ej[:, None] * ei[None, :], ek))
    cy = grid.direction[1] * grid.spacing  # y per index step (i, j, k)
    yi, yj, yk = ((np.arange(n) * cy[a]).astype(F32) for a, n in ((0, nx), (1, ny), (2, nz)))
    out = np.empty(grid.shape, F32)
    for kk in range(nz):
        acc = np.zeros((ny, nx), F32)
        for plane, ek in waves:
            acc += (plane * ek[kk]).real
        y = yj[:, None] + yi[None, :] + (yk[kk] + F32(base[1]))
        coil = np.exp(-np.maximum(y - F32(chest_y), F32(0)) * F32(1 / acq["coil_length_mm"]))
        out[kk] = (F32(1) + F32(acq["bias"]) * acc) * (F32(acq["coil_floor"]) + F32(1 - acq["coil_floor"]) * coil)
    return out


def _acquire(seed: int, maps: RenderedMaps, grid: VoxelGrid, times, slow: Curve, fast: Curve, curves: list[Curve],
             motion: list[sitk.Transform], acq: dict, chest_y: float) -> list[sitk.Image]:
    """Phases from the rendered maps: kinetics -> motion -> gain x receive field -> Rician noise."""
    rng = _rng(seed, "noise")
    scale = _receive_field(grid, acq, chest_y)
    gain = F32(acq["gain"])
    if scale is not None:
        scale *= gain
    sigma = F32(acq["noise"] * FAT_SIGNAL * acq["gain"])
    work = np.empty(grid.shape, F32)
    buf = np.empty(grid.shape, F32)
    phases = []
    for k, t in enumerate(times):
        np.multiply(maps.w_slow, F32(slow(t)), out=work)
        work += maps.s0
        work += np.multiply(maps.w_fast, F32(fast(t)), out=buf)
        for box, w, c in zip(maps.tumor_boxes, maps.tumor_w, curves):
            if box is not None:
                work[box] += w * F32(c(t))
        if not _is_identity(motion[k]):
            img = sitk.GetImageFromArray(work)
            img.CopyInformation(grid.image)
            img = sitk.Resample(img, grid.image, motion[k].GetInverse(), sitk.sitkLinear, 0.0, sitk.sitkFloat32, True)
            np.copyto(work, sitk.GetArrayViewFromImage(img))
            del img
        _add_ghosts(work, maps, acq, k)
        work *= scale if scale is not None else gain
        if sigma > 0:  # Rician: magnitude of (signal + complex Gaussian noise)
            rng.standard_normal(dtype=F32, out=buf)
            buf *= sigma
            work += buf
            np.square(work, out=work)
            rng.standard_normal(dtype=F32, out=buf)
            buf *= sigma
            np.square(buf, out=buf)
            work += buf
            np.sqrt(work, out=work)
        img = sitk.GetImageFromArray(work)
        img.CopyInformation(grid.image)
        phases.append(img)
    return phases


def _add_ghosts(work: np.ndarray, maps: RenderedMaps, acq: dict, k: int) -> None:
    """Add the cardiac pulsation ghosts of phase *k* to *work* (scanner frame, before gain)."""
    if acq["ghosting"] <= 0 or maps.heart_box is None:
        return
    source = work[maps.heart_box] * maps.heart_alpha * F32(acq["ghosting"] * acq["ghost_phase_factors"][k])
    axis = 2 if acq["phase_encode_axis"] == "i" else 1  # numpy axis of index axis i or j
    n = work.shape[axis]
    box = list(maps.heart_box)
    for shift in (n // 3, -(n // 3)):
        target = list(box)
        target[axis] = (np.arange(box[axis].start, box[axis].stop) + shift) % n  # wraps like aliasing
        work[tuple(target)] += source


def _is_identity(t: sitk.Transform) -> bool:
    return bool(np.allclose(t.GetParameters(), 0.0))


def _transform_dict(t: sitk.Transform) -> dict:
    e = sitk.Euler3DTransform(t)
    return {"type": "Euler3DTransform", "center_lps": list(e.GetCenter()), "angles_rad": [e.GetAngleX(), e.GetAngleY(),
            e.GetAngleZ()], "translation_mm": list(e.GetTranslation()), "matrix": list(e.GetMatrix())}


def _jsonable(o):
    if isinstance(o, dict):
        return {str(k): _jsonable(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_jsonable(v) for v in o]
    if isinstance(o, np.ndarray):
        return _jsonable(o.tolist())
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    return o


# ------------------------------------------------------------------------------ writing
LAYOUTS = ("folder", "mamamia")


def phantom_paths(case_id: str, n_phases: int, layout: str = "folder") -> dict[str, Path]:
    """Relative output paths of a phantom (see :func:`write_phantom`)."""
    _check(layout in LAYOUTS, f"layout {layout!r}", f"use one of {LAYOUTS}")
    if layout == "folder":
        paths = {f"phase_{i:04d}": Path(f"{case_id}_{i:04d}.nii.gz") for i in range(n_phases)}
        paths.update(times=Path(f"{case_id}.json"), tumor=Path(f"{case_id}_tumor.nii.gz"),
                     labels=Path(f"{case_id}_tumor_labels.nii.gz"), breast=Path(f"{case_id}_breast.nii.gz"),
                     truth=Path(f"{case_id}_truth.json"))
        return paths
    img = Path("images") / case_id
    paths = {f"phase_{i:04d}": img / f"{case_id}_{i:04d}.nii.gz" for i in range(n_phases)}
    paths.update(times=img / f"{case_id}.json", tumor=Path("segmentations/expert") / f"{case_id}.nii.gz",
                 labels=Path("segmentations/labels") / f"{case_id}.nii.gz",
                 breast=Path("segmentations/breast") / f"{case_id}.nii.gz", truth=Path("truth") / f"{case_id}.json")
    return paths


def write_phantom(ph: Phantom, root, layout: str = "folder", overwrite: bool = True) -> dict[str, Path]:
    """Write a phantom's phases and ground truth under *root*; returns name -> path.

    ``layout="folder"``: ``root/<case>_0000.nii.gz ...`` (phases), ``root/<case>.json``
    (``{"acquisition_times_min": [...]}``), ``root/<case>_tumor.nii.gz`` (tumor mask),
    ``root/<case>_tumor_labels.nii.gz``, ``root/<case>_breast.nii.gz``, ``root/<case>_truth.json``
    (tumor kinetics, motion, every parameter). ``load_exam(root)`` reads the exam back.

    ``layout="mamamia"`` mirrors the MAMA-MIA dataset: ``root/images/<case>/<case>_0000.nii.gz``
    ..., the times as ``root/images/<case>/<case>.json`` (so ``load_exam(root/images/<case>)``
    finds them; MAMA-MIA itself keeps them in its clinical table),
    ``root/segmentations/expert/<case>.nii.gz`` (tumor mask), ``root/segmentations/labels/``,
    ``root/segmentations/breast/`` and ``root/truth/<case>.json``.

    Files are staged in a hidden folder under *root* and moved into place only when all are
    written. With ``overwrite=False`` existing files are refused before anything is written.
    """
    root = Path(root)
    rel = phantom_paths(ph.case_id, ph.exam.n_phases, layout)
    paths = {k: root / v for k, v in rel.items()}
    check_no_overwrite(paths.values(), overwrite)
    with StagedOutputs(root, overwrite) as out:
        staged = {k: out.path(v.name, v.parent) for k, v in rel.items()}
        for i, img in enumerate(ph.exam.phases):
            write_image(staged[f"phase_{i:04d}"], img)
        write_json(staged["times"], {"acquisition_times_min": list(ph.exam.times_min)})
        write_image(staged["tumor"], ph.tumor_mask)
        write_image(staged["labels"], ph.tumor_labels)
        write_image(staged["breast"], ph.breast_mask)
        write_json(staged["truth"], ph.truth())
        out.commit()
    return paths
