"""The DCE exam: an ordered set of co-located 3D phases with acquisition times.

Phase 0 is the pre-contrast image; phases 1..N are post-contrast. All phases share one grid
(the pre-contrast grid) once an exam is constructed: every loader (files, DICOM, Slicer nodes)
builds it with :func:`assemble_exam`, which resamples phases acquired on other grids.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import SimpleITK as sitk

from .errors import InputError
from .imageutil import describe_grid, resample_to, same_grid

MIN_PHASES = 2
MAX_PHASES = 8
# When a loader finds no acquisition times it assumes this spacing between phases.
DEFAULT_PHASE_INTERVAL_MIN = 1.5
# A DCE series is minutes long; phase times spanning more than a day are a broken file or option
# (seconds or a time stamp written as minutes) and would overflow the kinetic maps.
MAX_TIME_SPAN_MIN = 24 * 60.0


@dataclass
class DCEExam:
    """An ordered DCE-MRI exam.

    Attributes
    ----------
    phases:
        3D float32 images, ``phases[0]`` pre-contrast, ``phases[1:]`` post-contrast, all on one grid.
    times_min:
        Acquisition time of each phase in minutes after the pre-contrast phase (``times_min[0] == 0``).
    case_id:
        Name used for output files.
    sources:
        Where each phase came from (file names), for messages.
    metadata:
        Free-form facts (``times_assumed``, scanner, ...). Never patient identifiers.
    native:
        Phases as acquired on another grid than phase 0's (index -> float32 image), kept by
        :func:`assemble_exam` so that motion correction resamples each phase once, from its own
        grid, instead of a second time. Dropped by :meth:`with_phases` (new phases, new pixels).
    """

    phases: list[sitk.Image]
    times_min: list[float] | None = None
    case_id: str = "case"
    sources: list[str] = field(default_factory=list)
    metadata: dict = field(default_factory=dict)
    native: dict = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if len(self.sources) != len(self.phases):
            self.sources = [f"phase {i}" for i in range(len(self.phases))]
        self.validate()

    # ----------------------------------------------------------------------------- properties
    @property
    def n_phases(self) -> int:
        return len(self.phases)

    @property
    def pre(self) -> sitk.Image:
        return self.phases[0]

    @property
    def post(self) -> list[sitk.Image]:
        return self.phases[1:]

    @property
    def first_post(self) -> sitk.Image:
        return self.phases[1]

    @property
    def reference(self) -> sitk.Image:
        """The image that defines the exam's grid (the pre-contrast phase)."""
        return self.phases[0]

    def arrays(self, dtype=np.float32) -> np.ndarray:
        """All phases as one (phase, z, y, x) array."""
        return np.stack([sitk.GetArrayViewFromImage(p).astype(dtype, copy=False) for p in self.phases])

    def with_phases(self, phases: list[sitk.Image], **metadata) -> "DCEExam":
        """A copy of this exam with new phase images (same times and names)."""
        meta = dict(self.metadata)
        meta.update(metadata)
        return DCEExam(list(phases), None if self.times_min is None else list(self.times_min),
                       self.case_id, list(self.sources), meta)

    def subset(self, indices: list[int]) -> "DCEExam":
        """An exam made of the given phases (index 0 must be kept as pre-contrast)."""
        if not indices or indices[0] != 0:
            raise InputError("a phase subset must start with the pre-contrast phase 0", self.case_id)
        times = None if self.times_min is None else [self.times_min[i] for i in indices]
        return DCEExam([self.phases[i] for i in indices], times, self.case_id,
                       [self.sources[i] for i in indices], dict(self.metadata),
                       {n: self.native[i] for n, i in enumerate(indices) if i in self.native})

    # ----------------------------------------------------------------------------- validation
    def validate(self) -> None:
        n = len(self.phases)
        if n < MIN_PHASES:
            raise InputError(
                f"a DCE exam needs a pre-contrast and at least one post-contrast phase, found {n} phase(s)",
                self.case_id,
                "give the pre-contrast image first, then every post-contrast phase in acquisition order")
        if n > MAX_PHASES:
            raise InputError(f"at most {MAX_PHASES} phases are supported, found {n}", self.case_id,
                             "pass the pre-contrast and up to 7 post-contrast phases")
        for i, img in enumerate(self.phases):
            src = self.sources[i]
            if not isinstance(img, sitk.Image):
                raise InputError(f"phase {i} is not an image ({type(img).__name__})", src)
            if img.GetDimension() != 3 or img.GetNumberOfComponentsPerPixel() != 1:
                raise InputError(
                    f"phase {i} is not a scalar 3D volume (dimension {img.GetDimension()}, "
                    f"{img.GetNumberOfComponentsPerPixel()} component(s))", src,
                    "give one 3D volume per phase, or a single 4D NIfTI holding all phases")
            if min(img.GetSize()) < 2:
                raise InputError(f"phase {i} has size {img.GetSize()}, which is not a 3D volume (a single slice "
                                 "or a single row)", src, "give the whole 3D volume of every phase; a 2D slice "
                                 "cannot be segmented")
            if not same_grid(img, self.phases[0]):
                raise InputError(
                    f"phase {i} ({describe_grid(img)}) is not on the pre-contrast grid "
                    f"({describe_grid(self.phases[0])})", src,
                    "load the exam with breasttumorseg's loaders, which resample phases onto the pre-contrast grid")
            arr = sitk.GetArrayViewFromImage(img)
            if not np.all(np.isfinite(arr)):
                bad = int(np.size(arr) - np.count_nonzero(np.isfinite(arr)))
                raise InputError(f"phase {i} contains {bad} NaN or infinite voxel(s)", src,
                                 "re-export the image from the scanner or DICOM; NaN/Inf are not valid MR intensities")
        if self.times_min is not None:
            t = np.asarray(self.times_min, dtype=float)
            if t.shape != (n,):
                raise InputError(f"{t.size} acquisition time(s) given for {n} phases", self.case_id,
                                 "give exactly one time (minutes) per phase")
            if not np.all(np.isfinite(t)):
                raise InputError("acquisition times contain NaN or infinity", self.case_id,
                                 "give one finite time in minutes per phase, e.g. 0, 1.5, 3")
            if np.any(np.diff(t) <= 0):
                raise InputError(f"acquisition times must increase strictly, got {list(map(float, t))}",
                                 self.case_id, "list the phases in acquisition order with their times in minutes")
            if t[-1] - t[0] > MAX_TIME_SPAN_MIN:
                raise InputError(f"acquisition times span {t[-1] - t[0]:.6g} minutes, more than a day "
                                 f"(got {list(map(float, t))})", self.case_id,
                                 "give each phase's time in minutes after the first phase, e.g. 0,1.5,3")

    def effective_times(self) -> np.ndarray:
        """Times in minutes, relative to the pre-contrast phase; assumed evenly spaced when unknown."""
        if self.times_min is None:
            return np.arange(self.n_phases, dtype=float) * DEFAULT_PHASE_INTERVAL_MIN
        t = np.asarray(self.times_min, dtype=float)
        return t - t[0]


def assemble_exam(phases: list[sitk.Image], times_min: list[float] | None, case_id: str,
                  sources: list[str], metadata: dict | None = None) -> DCEExam:
    """A :class:`DCEExam` from phases as loaded (pre-contrast first, any pixel type, any grid).

    Every phase is cast to float32. A 3D phase on another grid than phase 0's must cover at least
    ``MIN_PHASE_COVERAGE`` of it (otherwise :class:`InputError` naming the phase's source) and is resampled onto it (linear);
    the phase as acquired is kept in ``exam.native`` for motion correction.
    ``metadata`` is copied and gets ``resampled_phases`` (indices of the resampled phases) and
    ``times_assumed`` (no acquisition times given). Everything else is checked by
    :meth:`DCEExam.validate`.
    """
    images = [img if img.GetPixelID() == sitk.sitkFloat32 else sitk.Cast(img, sitk.sitkFloat32)
              for img in phases]
    sources = list(sources)
    resampled = []
    native = {}
    for i in range(1, len(images)):
        if images[i].GetDimension() == 3 and images[0].GetDimension() == 3 and not same_grid(images[i], images[0]):
            check_overlap(images[i], images[0], sources[i], sources[0])
            native[i] = images[i]
            images[i] = resample_to(images[i], images[0])
            resampled.append(i)
    meta = dict(metadata or {})
    meta["resampled_phases"] = resampled
    meta["times_assumed"] = times_min is None
    return DCEExam(images, None if times_min is None else [float(t) for t in times_min], case_id, sources, meta,
                   native)


MIN_PHASE_COVERAGE = 0.8  # a phase covering less of the pre-contrast volume is refused
# Plausible voxel spacing in mm: anything outside is a broken header (metres, or microns).
SPACING_RANGE_MM = (0.01, 50.0)


def check_signal(exam: DCEExam) -> DCEExam:
    """Refuse phases without any signal (all voxels equal, e.g. all zero): nothing can be segmented.
    Every loader applies it (NIfTI/NRRD/MHA files, 4D files, DICOM, the Slicer module's volumes)."""
    for i, img in enumerate(exam.phases):
        arr = sitk.GetArrayViewFromImage(img)
        lo, hi = float(arr.min()), float(arr.max())
        if lo == hi:
            raise InputError(f"phase {i} holds no image (every voxel is {lo:g})", exam.sources[i],
                             "check the export; this phase is empty")
    return exam


def check_spacing(spacing, what: str, src: object) -> None:
    """Refuse a voxel spacing outside :data:`SPACING_RANGE_MM` (non-finite included)."""
    lo, hi = SPACING_RANGE_MM
    spacing = np.asarray(spacing, float)[:3]
    if not np.all(np.isfinite(spacing)) or np.any(spacing < lo) or np.any(spacing > hi):
        raise InputError(f"{what} has voxel spacing {', '.join(f'{v:g}' for v in spacing)} mm, outside the "
                         f"plausible {lo:g}-{hi:g} mm", src,
                         "fix the spacing in the header (units must be millimetres) or re-export the image")


def check_overlap(img: sitk.Image, ref: sitk.Image, src: str, ref_src: str) -> None:
    """Refuse a phase (from *src*) that does not overlap the pre-contrast volume (from *ref_src*) at all."""

    def bounds(im):
        size = np.asarray(im.GetSize()) - 1
        corners = np.array([[i, j, k] for i in (0, size[0]) for j in (0, size[1]) for k in (0, size[2])], float)
        pts = np.array([im.TransformContinuousIndexToPhysicalPoint(c.tolist()) for c in corners])
        return pts.min(0), pts.max(0)

    lo_a, hi_a = bounds(img)
    lo_b, hi_b = bounds(ref)
    if np.any(hi_a < lo_b) or np.any(hi_b < lo_a):
        raise InputError(
            f"this phase ({describe_grid(img)}) does not overlap the pre-contrast image "
            f"{ref_src} ({describe_grid(ref)})", src,
            "check that all phases belong to the same exam and series")
    # How much of the pre-contrast box the phase covers (boxes in patient axes; along an axis where
    # the pre-contrast box is flat, a single slice, only containment counts).
    inter = np.clip(np.minimum(hi_a, hi_b) - np.maximum(lo_a, lo_b), 0, None)
    extent = hi_b - lo_b
    thick = extent > 1e-6
    covered = float(np.prod(inter[thick] / extent[thick])) if thick.any() else 1.0
    if covered < MIN_PHASE_COVERAGE:
        raise InputError(
            f"this phase ({describe_grid(img)}) covers only {100 * covered:.0f} % of the pre-contrast "
            f"image {ref_src} ({describe_grid(ref)}); the rest would have no post-contrast signal",
            src, "give phases acquired with the same field of view (the same DCE series), "
                 "or crop the pre-contrast image to the region every phase covers")
