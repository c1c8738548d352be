"""Phantoms with a known motion field per phase: rigid, affine or smooth non-rigid breast deformation.

``make_moving_phantom(seed, kind)`` builds a motion-free phantom (:func:`make_phantom` with
``motion_mm=0``) and moves every post-contrast phase with a known transform, so a registration
can be scored in millimetres: the target registration error (TRE) on tissue landmarks (points in
the breasts and the tumor centres) before and after registration.

Convention (as for ``Phantom.motion``): ``motion[k]`` maps points of the reference frame (phase
0, where the masks are) to points of phase k, i.e. it is what an ideal registration with phase 0
fixed returns; ``sitk.Resample(phase_k, phase_0, motion[k])`` undoes the motion. For ``kind``
``"deformable"`` it is ``A_k(D_k(p))``: a bounded affine ``A_k`` after a smooth displacement
``D_k`` (a divergence-free flow centred on each breast, a few mm: volume kept, Jacobian
determinant close to 1);
the phases are moved with its inverse (the displacement inverted with
``sitk.InvertDisplacementField``). The receive field and the noise move with the tissue here
(they are fixed to the scanner in :func:`make_phantom`'s own rigid motion), a small difference.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

from ...core.exam import DCEExam
from . import Phantom, make_phantom

KINDS = ("none", "rigid", "affine", "deformable")


@dataclass
class MovingPhantom:
    """A motion-free phantom, the same exam with known motion, and landmarks to score it."""

    phantom: Phantom  # its exam is the aligned truth; its masks sit on the reference grid
    exam: DCEExam  # phases 1.. moved by the inverse of ``motion[k]``
    motion: list[sitk.Transform]  # reference point -> point of phase k
    landmarks_lps: np.ndarray  # (n, 3) tissue points of the reference frame (breasts, tumor centres)
    kind: str
    params: list[dict]
    tumor_masks: list  # per phase: the tumor mask moved like the phase (float32, linear), None for phase 0

    def lesion_volume_ml(self, k: int, transform: sitk.Transform | None) -> float:
        """Tumor volume (mL) that phase k shows on the reference grid after *transform* (None: as moved)."""
        ref = self.exam.reference
        moved = self.tumor_masks[k] if k else sitk.Cast(self.phantom.tumor_mask, sitk.sitkFloat32)
        if transform is not None:
            moved = sitk.Resample(moved, ref, transform, sitk.sitkLinear, 0.0, sitk.sitkFloat32)
        return float(sitk.GetArrayViewFromImage(moved).sum() * np.prod(ref.GetSpacing()) / 1000)

    def true_lesion_volume_ml(self) -> float:
        return self.lesion_volume_ml(0, None)

    def true_points(self, k: int, points=None) -> np.ndarray:
        pts = self.landmarks_lps if points is None else np.asarray(points, float)
        return np.array([self.motion[k].TransformPoint(p.tolist()) for p in pts])

    def tre_mm(self, k: int, transform: sitk.Transform | None) -> np.ndarray:
        """Per-landmark error (mm) of *transform* (reference -> phase k; None = no correction)."""
        est = self.landmarks_lps if transform is None else np.array(
            [transform.TransformPoint(p.tolist()) for p in self.landmarks_lps])
        return np.linalg.norm(est - self.true_points(k), axis=1)


def _breast_centres(mask: sitk.Image, rng, n_landmarks: int) -> tuple[list[np.ndarray], np.ndarray]:
    """Centroid of each breast (split at the patient midline x) and tissue landmarks in the breasts."""
    idx = np.argwhere(sitk.GetArrayViewFromImage(mask) > 0)[:, ::-1].astype(float)  # (i, j, k)
    d = np.asarray(mask.GetDirection()).reshape(3, 3)
    pts = np.asarray(mask.GetOrigin()) + (idx * np.asarray(mask.GetSpacing())) @ d.T
    mid = np.median(pts[:, 0])
    centres = [pts[side].mean(0) for side in (pts[:, 0] < mid, pts[:, 0] >= mid) if side.sum() > 10]
    pick = rng.choice(len(pts), size=min(n_landmarks, len(pts)), replace=False)
    return centres, pts[pick]


def _affine(rng, centre, level_mm: float, scale: float | None, kind: str) -> tuple[sitk.AffineTransform, dict]:
    angles = rng.uniform(-1, 1, 3) * np.radians(0.75 * level_mm)
    shift = rng.uniform(-1, 1, 3) * level_mm
    rot = sitk.Euler3DTransform((0, 0, 0), *angles.tolist())
    m = np.asarray(rot.GetMatrix()).reshape(3, 3)
    stretch = np.eye(3)
    if kind != "rigid":
        stretch = np.eye(3) + np.diag(rng.uniform(-0.03, 0.03, 3))
        stretch[0, 1] = stretch[1, 0] = rng.uniform(-0.015, 0.015)
        if scale is not None:
            stretch = np.eye(3) * scale
    a = sitk.AffineTransform(3)
    a.SetCenter([float(c) for c in centre])
    a.SetMatrix((m @ stretch).ravel().tolist())
    a.SetTranslation(shift.tolist())
    return a, {"angles_deg": np.degrees(angles).round(4).tolist(), "translation_mm": shift.round(4).tolist(),
               "stretch": stretch.round(5).tolist()}


def _breast_flow(ref: sitk.Image, centres, rng, amplitude_mm: float, sigma_mm: float, spacing_mm: float):
    """A smooth, volume-preserving displacement field (one local flow per breast) on a coarse grid covering *ref*.

    Breast tissue is nearly incompressible, so each breast's displacement is the curl of a vector
    potential, ``u = curl(b * ((x - c) . n) * w(x))`` with ``w`` a Gaussian of width *sigma_mm*
    around the breast centre ``c`` and ``n``, ``b`` random orthonormal directions: divergence-free
    (the volume is kept to first order, ~1-2 % at second order for these amplitudes), a shift
    of *amplitude_mm* along ``n x b`` at the centre that fades with distance and turns around it,
    as tissue that slides and has to go somewhere. (A Gaussian "bump" shift, the first version,
    compressed or swelled the lesion by up to 10 %, which no registration should be scored on.)
    """
    size = np.asarray(ref.GetSize()) * np.asarray(ref.GetSpacing())
    shape = [int(np.ceil(s / spacing_mm)) + 3 for s in size]
    grid = sitk.Image(shape, sitk.sitkVectorFloat64, 3)
    grid.SetSpacing([spacing_mm] * 3)
    grid.SetDirection(ref.GetDirection())
    d = np.asarray(ref.GetDirection()).reshape(3, 3)
    grid.SetOrigin((np.asarray(ref.GetOrigin()) - d @ np.full(3, spacing_mm)).tolist())
    ii = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), -1).reshape(-1, 3).astype(float)
    pts = np.asarray(grid.GetOrigin()) + (ii * spacing_mm) @ d.T
    disp = np.zeros_like(pts)
    vectors = []
    for c in centres:
        n = rng.normal(size=3)
        n /= np.linalg.norm(n)
        b = rng.normal(size=3)
        b -= (b @ n) * n
        b /= np.linalg.norm(b)
        r = pts - c
        w = np.exp(-(r ** 2).sum(1) / (2 * sigma_mm ** 2))
        grad = w[:, None] * (n[None] - (r @ n)[:, None] * r / sigma_mm ** 2)  # gradient of ((x - c) . n) w
        disp += amplitude_mm * np.cross(grad, b)
        vectors.append((amplitude_mm * np.cross(n, b)).round(4).tolist())
    arr = disp.reshape(*shape, 3).transpose(2, 1, 0, 3)  # (k, j, i, 3) for GetImageFromArray
    field = sitk.GetImageFromArray(arr, isVector=True)
    field.CopyInformation(grid)
    return field, {"amplitude_mm": amplitude_mm, "sigma_mm": sigma_mm, "vectors_mm": vectors,
                   "centres_lps": [np.round(c, 3).tolist() for c in centres], "divergence_free": True}


def make_moving_phantom(seed: int, kind: str = "deformable", level_mm: float = 3.0, deform_mm: float = 4.0,
                        sigma_mm: float = 25.0, scale: float | None = None, n_landmarks: int = 300,
                        **phantom_kwargs) -> MovingPhantom:
    """The phantom of *seed* (``phantom_kwargs`` as for :func:`make_phantom`, without motion) moved by *kind*.

    ``level_mm``: largest shift per axis (rotations up to 0.75 degree per mm); affine adds up to
    3 % scaling and 1.5 % shear, or an isotropic ``scale`` (e.g. 1.15 for a test that must be
    rejected); ``deform_mm``/``sigma_mm``: amplitude and width of the breast deformation.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    ph = make_phantom(seed, motion_mm=0.0, **phantom_kwargs)
    rng = np.random.default_rng([seed, 1801])
    ref = ph.exam.reference
    centres, landmarks = _breast_centres(ph.breast_mask, rng, n_landmarks)
    landmarks = np.vstack([landmarks] + [np.asarray(t["center_lps"])[None] for t in ph.tumors])
    body_centre = np.mean(centres, 0)
    phases, motion, params, masks = [ref], [sitk.Euler3DTransform()], [{}], [None]
    tumor = sitk.Cast(ph.tumor_mask, sitk.sitkFloat32)
    for k in range(1, ph.exam.n_phases):
        if kind == "none":
            phases.append(ph.exam.phases[k])
            masks.append(tumor)
            motion.append(sitk.Euler3DTransform())
            params.append({})
            continue
        a, p = _affine(rng, body_centre, level_mm, scale, kind)
        truth = sitk.CompositeTransform(3)
        truth.AddTransform(a)
        inverse = sitk.CompositeTransform(3)
        if kind == "deformable":
            field, p["deformation"] = _breast_flow(ref, centres, rng, deform_mm, sigma_mm, 4.0)
            inv_field = sitk.InvertDisplacementField(field, maximumNumberOfIterations=50,
                                                     maxErrorToleranceThreshold=1e-3, meanErrorToleranceThreshold=1e-4)
            truth.AddTransform(sitk.DisplacementFieldTransform(sitk.Image(field)))  # truth(p) = A(D(p))
            inverse.AddTransform(sitk.DisplacementFieldTransform(inv_field))
        inverse.AddTransform(a.GetInverse())  # inverse(x) = D^-1(A^-1(x))
        phases.append(sitk.Resample(ph.exam.phases[k], ref, inverse, sitk.sitkLinear, 0.0, sitk.sitkFloat32))
        masks.append(sitk.Resample(tumor, ref, inverse, sitk.sitkLinear, 0.0, sitk.sitkFloat32))
        motion.append(truth)
        params.append(p)
    exam = ph.exam.with_phases(phases, motion_kind=kind)
    return MovingPhantom(ph, exam, motion, landmarks, kind, params, masks)
