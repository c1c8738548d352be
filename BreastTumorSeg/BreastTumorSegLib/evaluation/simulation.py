"""Simulated reader studies with known truth, for tests, benchmarks and the example report.

Nothing in the analysis uses this module: :mod:`readerstudy` works on real masks only.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import SimpleITK as sitk

from .study_tables import StudyCase


@dataclass(frozen=True)
class SimulatedRater:
    """A simulated segmenter: the true boundary moved by ``bias_mm`` (+ dilates, − erodes) plus a
    smooth random displacement of standard deviation ``noise_mm``."""

    name: str
    bias_mm: float
    noise_mm: float


DEFAULT_SIM_READERS = (SimulatedRater("R1", -0.5, 0.8), SimulatedRater("R2", 0.3, 1.0),
                       SimulatedRater("R3", 1.0, 1.2), SimulatedRater("R4", 2.0, 1.5))
DEFAULT_SIM_MODEL = SimulatedRater("model", 0.5, 1.8)
NOISE_CORRELATION_MM = 2.5  # smoothing length of the simulated boundary noise


def _signed_distance(truth: np.ndarray, spacing_zyx: Sequence[float]) -> np.ndarray:
    """Signed distance (mm) to the other side: negative inside, positive outside, never zero."""
    from scipy import ndimage

    outside = ndimage.distance_transform_edt(~truth, sampling=spacing_zyx)
    inside = ndimage.distance_transform_edt(truth, sampling=spacing_zyx)
    return np.where(truth, -inside, outside)


def _smooth_noise(rng: np.random.Generator, shape, spacing_zyx: Sequence[float]) -> np.ndarray:
    """Unit-variance Gaussian noise, smoothed over ``NOISE_CORRELATION_MM``."""
    from scipy import ndimage

    sigma = [NOISE_CORRELATION_MM / s for s in spacing_zyx]
    f = ndimage.gaussian_filter(rng.standard_normal(shape), sigma)
    return f / (f.std() or 1.0)


def simulate_case(case_id: str, truth: sitk.Image, readers: Sequence[SimulatedRater] = DEFAULT_SIM_READERS,
                  model: SimulatedRater = DEFAULT_SIM_MODEL, rng: np.random.Generator | None = None,
                  split: str = "test", model_prob_width_mm: float = 1.0) -> StudyCase:
    """Readers' masks and the model's probability map made from a true mask (any grid).

    A rater's mask is ``{signed distance to the truth + noise_mm · smooth noise < bias_mm}``; the
    model's probability map is ``sigmoid((bias − distance − noise) / width)``, so thresholding it at
    0.5 gives the model's own mask and other thresholds move its boundary.
    """
    rng = rng or np.random.default_rng(0)
    t = sitk.GetArrayFromImage(truth) > 0
    sp = tuple(truth.GetSpacing()[::-1])
    sdf = _signed_distance(t, sp)

    def image(arr: np.ndarray, pixel) -> sitk.Image:
        img = sitk.GetImageFromArray(arr.astype(pixel))
        img.CopyInformation(truth)
        return img

    masks = {r.name: image(sdf + r.noise_mm * _smooth_noise(rng, t.shape, sp) < r.bias_mm, np.uint8)
             for r in readers}
    margin = model.bias_mm - sdf - model.noise_mm * _smooth_noise(rng, t.shape, sp)
    prob = 1.0 / (1.0 + np.exp(-margin / model_prob_width_mm))
    return StudyCase(case_id, masks, None, image(prob, np.float32), None, split)


def ellipsoid_truth(rng: np.random.Generator, size_xyz: tuple[int, int, int] = (64, 64, 24),
                    spacing: tuple[float, float, float] = (0.8, 0.8, 2.0)) -> sitk.Image:
    """A true tumour mask: one ellipsoid (semi-axes 4–12 mm), a small satellite in a third of cases."""
    shape = tuple(size_xyz[::-1])
    sp = np.asarray(spacing[::-1])
    extent = np.asarray(shape) * sp
    zz, yy, xx = np.meshgrid(*[(np.arange(n) + 0.5) * s for n, s in zip(shape, sp)], indexing="ij")

    def ellipsoid(center, axes) -> np.ndarray:
        return ((zz - center[0]) / axes[0]) ** 2 + ((yy - center[1]) / axes[1]) ** 2 + \
               ((xx - center[2]) / axes[2]) ** 2 <= 1.0

    axes = rng.uniform(4.0, 12.0, 3)
    axes[0] = max(axes[0], 2.5 * sp[0])
    center = extent / 2 + rng.uniform(-3, 3, 3)
    truth = ellipsoid(center, axes)
    if rng.random() < 0.35:
        off = np.array([0.0, 1.0, 1.0]) * (axes.max() + rng.uniform(5, 8)) * rng.choice([-1, 1], 3)
        truth |= ellipsoid(np.clip(center + off, 8, extent - 8), rng.uniform(2.5, 4.0, 3).clip(sp[0] * 1.5))
    img = sitk.GetImageFromArray(truth.astype(np.uint8))
    img.SetSpacing(spacing)
    return img


def simulate_study(n_cases: int = 30, n_tune: int = 6, readers: Sequence[SimulatedRater] = DEFAULT_SIM_READERS,
                   model: SimulatedRater = DEFAULT_SIM_MODEL, seed: int = 0,
                   size_xyz: tuple[int, int, int] = (64, 64, 24), spacing: tuple[float, float, float] = (0.8, 0.8, 2.0),
                   truths: Sequence[sitk.Image] | None = None) -> tuple[list[StudyCase], dict[str, sitk.Image]]:
    """A synthetic reader study with known truth, for tests, demos and the example report.

    Truth masks are ellipsoids (:func:`ellipsoid_truth`) unless given (e.g. phantom tumour masks);
    raters are made by :func:`simulate_case`. The first *n_tune* cases are tuning cases.
    Returns ``(cases, truth_by_case)``.
    """
    rng = np.random.default_rng(seed)
    if truths is not None:
        n_cases = len(truths)
    cases, out = [], {}
    for i in range(n_cases):
        truth = truths[i] if truths is not None else ellipsoid_truth(rng, size_xyz, spacing)
        case_id = f"SIM{i + 1:03d}"
        cases.append(simulate_case(case_id, truth, readers, model, rng, "tune" if i < n_tune else "test"))
        out[case_id] = truth
    return cases, out


def simulate_scores(n_cases: int = 200, readers: Sequence[str] = ("R1", "R2", "R3", "R4"),
                    reader_separation: Sequence[float] = (1.6, 1.3, 1.0, 0.8), model_separation: float = 1.4,
                    prevalence: float = 0.3, model_name: str = "model", seed: int = 0
                    ) -> tuple[dict[str, dict[str, float]], dict[str, int]]:
    """Synthetic per-case malignancy scores in [0, 1] for the hybrid (Wu et al.) analysis.

    Each rater's latent score is ``separation · malignant + N(0, 1)`` with noise independent
    between raters, mapped through a logistic function; independent errors are what makes the
    average of a reader and the model better than either (binormal AUC = Φ(separation / √2)).
    Returns ``(scores[rater][case], malignant[case])``.
    """
    rng = np.random.default_rng(seed)
    labels = (rng.random(n_cases) < prevalence).astype(int)
    labels[:2] = (0, 1)  # both classes present whatever the seed
    cases = [f"EXAM{i + 1:04d}" for i in range(n_cases)]
    scores: dict[str, dict[str, float]] = {}
    for name, sep in list(zip(readers, reader_separation)) + [(model_name, model_separation)]:
        latent = sep * labels + rng.standard_normal(n_cases)
        scores[name] = dict(zip(cases, (1.0 / (1.0 + np.exp(-(latent - sep / 2)))).tolist()))
    return scores, dict(zip(cases, labels.tolist()))
