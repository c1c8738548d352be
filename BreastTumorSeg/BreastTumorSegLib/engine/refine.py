"""Click-to-correct: positive and negative clicks in patient space edit a segmentation result.

    from BreastTumorSegLib.engine.refine import Click, refine
    refined = refine(exam, result, [Click.ras((12.0, 30.5, -4.0), True),     # "this is tumor"
                                    Click.ras((20.0, 41.0, -2.0), False)])   # "this is not tumor"

A click is a point in patient space (LPS or RAS millimetres) with a sign. Every click changes
only a bounded neighbourhood of the exam (a box around the click, or the bounding box of the one
connected component it falls on), so a click costs well under a second on a 448 x 448 x 160
exam; :class:`Refiner` keeps the state between clicks (the Slicer click mode), :func:`refine`
replays a list of clicks from the original result (undo = replay without the last one).

Method, and why:

* **Positive click** (missed lesion, or an under-segmented one): the lesion is grown from the
  click by the seeded kinetic growth of :mod:`..kinetics.seeded` (early subtraction relative to
  the enhancement at the click, half-maximum boundary, thin vessels and bridges cut by an
  opening), run on a crop of ``max_radius_mm`` around the click whose kinetic maps are computed
  for that crop only. A growth that reaches the crop's limit has leaked (background
  enhancement, a vessel tree) and is redone at stricter fractions of the lesion level
  (``relative_thresholds``). The grown region is added to the mask; a click within
  ``extend_mm`` of the mask only extends it next to the click (the missed rim: the grown part
  within twice the click's distance from the mask, or, when the clicked voxel is below the growth
  threshold, the gap between click and lesion). The model's probability is not
  used to decide what a positive click adds: the click says that the model was wrong there, and
  the contrast kinetics are the evidence every model's output (FTV included) shares.
* **Negative click on a component without positive evidence far from the click** (a false
  lesion, e.g. a lymph node or a blob of background enhancement): the whole 26-connected
  component under the click is removed. A click within ``snap_mm`` of a component counts as on it.
* **Negative click on a leak**: when the component holds positive evidence away from the
  click — an earlier positive click, or a *core* (the component's deepest point, by Euclidean
  distance to its boundary, outside a ball of twice the click's depth) that is thicker than the
  tissue under the click — the component is split by a marker-controlled watershed of the
  negated distance map (SimpleITK): the split falls at the narrowest neck between the lesion
  and the clicked part (a vessel is thinner than the lesion it touches), the clicked part goes,
  the lesion stays. When that split would run through the lesion's body (the dropped part is
  deeper than the click: an over-segmented rim, not a vessel), only the layer under the click,
  as deep as the click, is trimmed.
* Constraints hold after every click: a region grown by a positive click that reaches an
  earlier negative click is split the same way (the negative click's side is dropped), so a
  later click never undoes an earlier one.

The lesion table is recomputed on the changed mask with the pipeline's own measurement
(:func:`~.postprocess.lesion_table`, on the bounding box of the mask); the probability map
records the corrections (1 where a click added tumor, 0 where it removed tumor); the result's
``settings["refine"]`` lists the clicks and what each did.
"""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field, replace

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from ..core.errors import InputError
from ..core.exam import DCEExam
from ..core.imageutil import same_grid, voxel_volume_ml
from ..core.results import SegmentationResult
from ..core.values import parse_point
from ..kinetics.maps import compute_kinetic_maps
from ..kinetics.seeded import SeededSettings, segment_from_seed
from .postprocess import lesion_table

__all__ = ["Click", "RefineSettings", "Refiner", "refine", "parse_click"]

_FULL = np.ones((3, 3, 3), bool)  # 26-connectivity, as the post-processing's components


@dataclass(frozen=True)
class Click:
    """A point in patient space, LPS millimetres, and its sign (True = tumor)."""

    lps: tuple[float, float, float]
    positive: bool = True

    @classmethod
    def ras(cls, point, positive: bool = True) -> "Click":
        x, y, z = (float(v) for v in point)
        return cls((-x, -y, z), positive)

    @classmethod
    def lps_point(cls, point, positive: bool = True) -> "Click":
        return cls(tuple(float(v) for v in point), positive)

    @property
    def ras_point(self) -> tuple[float, float, float]:
        x, y, z = self.lps
        return (-x, -y, z)

    @property
    def sign(self) -> str:
        return "+" if self.positive else "-"

    def as_dict(self) -> dict:
        return {"sign": self.sign, "lps_mm": [round(v, 2) for v in self.lps],
                "ras_mm": [round(v, 2) for v in self.ras_point]}


def parse_click(text: str, frame: str = "ras") -> Click:
    """``"x,y,z"`` or ``"x,y,z,+"`` / ``"x,y,z,-"`` (mm; no sign = positive) -> :class:`Click`."""
    parts = text.replace(",", " ").split()
    positive = True
    if len(parts) == 4 and parts[3] in ("+", "-", "pos", "neg"):
        positive = parts[3] in ("+", "pos")
        parts = parts[:3]
    try:
        values = parse_point(" ".join(parts))
    except InputError:
        raise InputError(f"cannot read a click from '{text}'", f"--click-{frame}",
                         "write it as X,Y,Z in millimetres with an optional sign, e.g. 12.5,-40,8,+ or "
                         "12.5,-40,8,- (a negative first value needs the = form: --click-ras=-12,30,5,-)")
    return Click.ras(values, positive) if frame == "ras" else Click.lps_point(values, positive)


@dataclass(frozen=True)
class RefineSettings:
    max_radius_mm: float = 40.0  # a positive click grows a lesion at most this far
    snap_mm: float = 3.0  # a negative click this close to a component counts as on it
    extend_mm: float = 3.0  # a positive click this close to the mask extends it locally
    min_extend_mm: float = 3.0  # radius of the smallest local extension
    relative_thresholds: tuple[float, ...] = (0.5, 0.6, 0.7, 0.8)  # tried in turn while the growth leaks
    seeded: SeededSettings = field(default_factory=lambda: SeededSettings(max_radius_mm=40.0))


class Refiner:
    """Apply clicks one at a time to a copy of *result* (the exam must be the one segmented:
    the registered phases when the pipeline registered them)."""

    def __init__(self, exam: DCEExam, result: SegmentationResult, settings: RefineSettings | None = None):
        self.exam = exam
        self.original = result
        self.settings = settings or RefineSettings()
        self.ref = exam.reference
        if not same_grid(result.label, self.ref):
            raise InputError("the segmentation is not on the exam's pre-contrast grid", "refine",
                             "refine the result of this exam (same size, spacing, origin and direction)")
        self.spacing = np.asarray(self.ref.GetSpacing(), float)[::-1]  # (z, y, x)
        self.shape = tuple(int(n) for n in self.ref.GetSize()[::-1])
        self.label = sitk.GetArrayFromImage(result.label).astype(bool)
        if result.probability is not None and same_grid(result.probability, self.ref):
            self.prob = sitk.GetArrayFromImage(result.probability).astype(np.float32, copy=False)
        else:
            self.prob = self.label.astype(np.float32)
        self.clicks: list[Click] = []
        self.log: list[dict] = []
        self._arrays = [sitk.GetArrayViewFromImage(p) for p in exam.phases]

    # ------------------------------------------------------------------------- geometry
    def index_of(self, click: Click) -> tuple[int, int, int]:
        """(z, y, x) voxel of *click*; a clear error when it lies outside the image."""
        cidx = self.ref.TransformPhysicalPointToContinuousIndex(tuple(float(v) for v in click.lps))
        ijk = tuple(int(round(c)) for c in cidx)
        if any(i < 0 or i >= n for i, n in zip(ijk, self.ref.GetSize())):
            lo = self.ref.TransformIndexToPhysicalPoint((0, 0, 0))
            hi = self.ref.TransformIndexToPhysicalPoint(tuple(n - 1 for n in self.ref.GetSize()))
            ras = ", ".join(f"{v:.1f}" for v in click.ras_point)
            raise InputError(
                f"click at RAS ({ras}) mm is outside the image (corner voxels at RAS "
                f"{tuple(round(v, 1) for v in (-lo[0], -lo[1], lo[2]))} and "
                f"{tuple(round(v, 1) for v in (-hi[0], -hi[1], hi[2]))})", "refine",
                "click inside the exam; a point in LPS coordinates goes with --click-lps, RAS with --click-ras")
        return ijk[::-1]

    def _box(self, center, radius_mm: float) -> tuple[slice, ...]:
        half = np.ceil(radius_mm / self.spacing).astype(int)
        c = np.asarray(center)
        lo, hi = np.maximum(c - half, 0), np.minimum(c + half + 1, self.shape)
        return tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))

    def _crop_image(self, array: np.ndarray, box) -> sitk.Image:
        img = sitk.GetImageFromArray(np.ascontiguousarray(array[box]))
        img.SetSpacing(self.ref.GetSpacing())
        img.SetDirection(self.ref.GetDirection())
        img.SetOrigin(self.ref.TransformIndexToPhysicalPoint(tuple(int(s.start) for s in box[::-1])))
        return img

    def _component_box(self, mask: np.ndarray, point) -> tuple[np.ndarray, tuple[slice, ...]] | None:
        """The 26-connected component of *mask* at *point* (or within ``snap_mm`` of it), as a
        boolean array on its own bounding box (1 voxel margin) and that box; None if none."""
        search = self._box(point, self.settings.snap_mm)
        local = mask[search]
        if not local.any():
            return None
        p = np.asarray(point) - [s.start for s in search]
        if not local[tuple(p)]:
            zz, yy, xx = np.nonzero(local)
            d2 = (((np.stack([zz, yy, xx], 1) - p) * self.spacing) ** 2).sum(1)
            k = int(np.argmin(d2))
            if d2[k] > self.settings.snap_mm ** 2:
                return None
            p = np.array([zz[k], yy[k], xx[k]])
        start = p + [s.start for s in search]
        # Grow a box until it holds the whole component (cheap: components are small).
        box = self._box(start, 20.0)
        while True:
            lab, _ = ndimage.label(mask[box], structure=_FULL)
            comp = lab == lab[tuple(start - [s.start for s in box])]
            touches = [(comp.take(0, axis=a).any() and box[a].start > 0) or
                       (comp.take(-1, axis=a).any() and box[a].stop < self.shape[a]) for a in range(3)]
            if not any(touches):
                break
            box = tuple(slice(max(0, s.start - 2 * (s.stop - s.start)), min(n, s.stop + 2 * (s.stop - s.start)))
                        for s, n in zip(box, self.shape))
        idx = np.nonzero(comp)
        lo = [int(i.min()) for i in idx]
        hi = [int(i.max()) + 1 for i in idx]
        lo = [max(0, a - 1) for a in lo]
        hi = [min(n, b + 1) for b, n in zip(hi, [s.stop - s.start for s in box])]
        inner = tuple(slice(a, b) for a, b in zip(lo, hi))
        full_box = tuple(slice(s.start + a, s.start + b) for s, a, b in zip(box, lo, hi))
        return comp[inner], full_box

    # ------------------------------------------------------------------------- the split
    def _split(self, comp: np.ndarray, box, keep_points, drop_points) -> np.ndarray:
        """Voxels of *comp* (on *box*) on the side of *drop_points*, split from *keep_points*
        at the narrowest neck (marker watershed of the negated distance to the boundary)."""
        img = sitk.GetImageFromArray(comp.astype(np.uint8))
        img.SetSpacing(self.ref.GetSpacing())
        depth = sitk.SignedMaurerDistanceMap(img, insideIsPositive=True, squaredDistance=False,
                                             useImageSpacing=True)
        markers = np.zeros(comp.shape, np.uint8)
        off = np.asarray([s.start for s in box])
        for p in keep_points:
            markers[tuple(np.asarray(p) - off)] = 1
        for p in drop_points:
            markers[tuple(np.asarray(p) - off)] = 2
        mk = sitk.GetImageFromArray(markers)
        mk.CopyInformation(img)
        ws = sitk.MorphologicalWatershedFromMarkers(sitk.Cast(-depth, sitk.sitkFloat32), mk,
                                                    markWatershedLine=False, fullyConnected=True)
        return (sitk.GetArrayFromImage(ws) == 2) & comp

    def _depth(self, comp: np.ndarray) -> np.ndarray:
        return ndimage.distance_transform_edt(np.pad(comp, 1), sampling=self.spacing)[1:-1, 1:-1, 1:-1]

    def _distance_to(self, mask: np.ndarray, point) -> float:
        """Distance (mm) from voxel *point* to the nearest voxel of *mask* (inf when empty)."""
        if not mask.any():
            return float("inf")
        if mask[tuple(point)]:
            return 0.0
        idx = np.stack(np.nonzero(mask), 1)
        return float(np.sqrt((((idx - np.asarray(point)) * self.spacing) ** 2).sum(1).min()))

    def _inside(self, point, box, comp) -> bool:
        p = np.asarray(point) - [s.start for s in box]
        return bool(np.all(p >= 0) and np.all(p < comp.shape) and comp[tuple(p)])

    # ------------------------------------------------------------------------- clicks
    def add(self, click: Click) -> dict:
        """Apply one click; returns what it did (also appended to ``log``)."""
        t0 = time.perf_counter()
        point = self.index_of(click)
        if click.positive:
            entry = self._positive(click, point)
        else:
            entry = self._negative(point)
        self.clicks.append(click)
        entry = {**click.as_dict(), **entry, "seconds": round(time.perf_counter() - t0, 3)}
        self.log.append(entry)
        return entry

    def _negative_points(self):
        return [self.index_of(c) for c in self.clicks if not c.positive]

    def _positive_points(self):
        return [self.index_of(c) for c in self.clicks if c.positive]

    def _positive(self, click: Click, point) -> dict:
        box = self._box(point, self.settings.max_radius_mm + 3 * self.settings.seeded.smoothing_mm)
        phases = [self._crop_image(a, box) for a in self._arrays]
        crop = DCEExam(phases, list(self.exam.times_min) if self.exam.times_min else None,
                       self.exam.case_id, metadata=dict(self.exam.metadata))
        maps = compute_kinetic_maps(crop)
        seeded = self.settings.seeded
        local = np.asarray(point) - [s.start for s in box]
        current = self.label[box]
        near_mm = self._distance_to(current, local)
        extend = near_mm <= self.settings.extend_mm
        # A region that reaches the limit around the click has leaked (into background
        # enhancement, a vessel tree): a stricter fraction of the lesion level is tried. An
        # extension is cut to the click's neighbourhood anyway and keeps the first fraction.
        fractions = self.settings.relative_thresholds[:1] if extend else self.settings.relative_thresholds
        try:
            for fraction in fractions:
                grown = segment_from_seed(crop, click.lps, maps, replace(seeded, relative_threshold=fraction))
                region = sitk.GetArrayViewFromImage(grown.mask) > 0
                if not self._reaches(region, grown.seed_index[::-1], seeded.max_radius_mm):
                    break
        except InputError as exc:
            return {"action": "none", "note": exc.problem}
        # Earlier negative clicks inside the grown region: split them off.
        negatives = [p for p in self._negative_points()
                     if self._inside(p, box, region)]
        seed = tuple(int(v) for v in np.asarray(grown.seed_index[::-1]) + [s.start for s in box])
        negatives = [p for p in negatives if tuple(p) != seed]  # a later click on the same voxel wins
        if negatives:
            region = region & ~self._split(region, box, [seed], negatives)
        if extend:
            # Extending a segmented lesion: only the part next to the click, as deep as the
            # click lies outside the lesion (the missed rim), never the whole grown region.
            radius = max(2.0 * near_mm + float(self.spacing.max()), self.settings.min_extend_mm)
            ball = _ball_mask(local, region.shape, self.spacing, radius)
            region = region & ~current & ball
            lab, _ = ndimage.label(region, structure=_FULL)
            at = lab[tuple(local)] if region[tuple(local)] else 0
            region = lab == at if at else np.zeros_like(region)
            if not region.any() and near_mm > 0:
                # The click's voxel is below the growth threshold (a partial-volume rim): the
                # reader says it is tumor, so the gap between it and the lesion is filled.
                region = _ball_mask(local, region.shape, self.spacing, max(near_mm, float(self.spacing.min())))
                region &= ~current
        before = current.copy()
        self.label[box] |= region
        added = self.label[box] & ~before
        self.prob[box][added] = 1.0
        n = int(added.sum())
        return {"action": ("extended" if extend else "added") if n else "none", "voxels": n,
                "volume_ml": round(n * voxel_volume_ml(self.ref), 4), "relative_threshold": fraction,
                "notes": list(grown.notes)}

    def _reaches(self, region: np.ndarray, seed_zyx, radius_mm: float) -> bool:
        """Whether *region* comes within one voxel of the sphere of *radius_mm* around the seed."""
        idx = np.stack(np.nonzero(region), 1)
        if idx.size == 0:
            return False
        d2 = (((idx - np.asarray(seed_zyx)) * self.spacing) ** 2).sum(1)
        return bool(np.sqrt(d2.max()) >= radius_mm - float(self.spacing.max()))

    def _negative(self, point) -> dict:
        found = self._component_box(self.label, point)
        if found is None:
            return {"action": "none", "note": f"no segmented tissue within {self.settings.snap_mm:g} mm"}
        comp, box = found
        off = np.asarray([s.start for s in box])
        p_local = np.clip(np.asarray(point) - off, 0, np.asarray(comp.shape) - 1)
        if not comp[tuple(p_local)]:  # snapped: use the component voxel nearest the click
            idx = np.stack(np.nonzero(comp), 1)
            p_local = idx[int(np.argmin((((idx - p_local) * self.spacing) ** 2).sum(1)))]
        click_pt = tuple(int(v) for v in p_local + off)
        # Earlier positive clicks on this component are kept (a later click on the same voxel wins).
        keep = [p for p in self._positive_points() if self._inside(p, box, comp) and tuple(p) != click_pt]
        how = ["positive click"] if keep else []
        # The lesion core: the deepest point away from the click, when it is thicker than the
        # tissue under the click (a vessel or a rim is thinner than the lesion it leaves).
        depth = self._depth(comp)
        d_click = float(depth[tuple(p_local)])
        near = _ball_mask(p_local, comp.shape, self.spacing, 2 * d_click + float(self.spacing.max()))
        far = np.where(near, 0.0, depth)
        k = int(np.argmax(far))
        if far.flat[k] > d_click:
            keep.append(tuple(int(v) for v in np.asarray(np.unravel_index(k, comp.shape)) + off))
            how.append("lesion core")
        if keep:
            drop = self._split(comp, box, keep, [click_pt])
            action = "cut"
            if drop.any() and float(depth[drop].max()) > d_click + float(self.spacing.max()):
                # No thin part to cut off (the split ran through the lesion's body, e.g. a click
                # on an over-segmented rim): peel only the layer under the click, as deep as the
                # click lies, next to it.
                ball = _ball_mask(p_local, comp.shape, self.spacing, 2 * d_click + float(self.spacing.max()))
                drop = comp & ball & (depth <= d_click + 0.5 * float(self.spacing.min()))
                action = "trimmed"
        else:
            drop = comp
            action = "removed"
        self.label[box] &= ~drop
        self.prob[box][drop] = 0.0
        n = int(drop.sum())
        out = {"action": action if n else "none", "voxels": n, "volume_ml": round(n * voxel_volume_ml(self.ref), 4)}
        if action in ("cut", "trimmed"):
            out["kept_by"] = " and ".join(how)
        return out

    # ------------------------------------------------------------------------- result
    def result(self) -> SegmentationResult:
        """The refined result: label, probability, lesion table, clicks recorded."""
        t0 = time.perf_counter()
        label = sitk.GetImageFromArray(self.label.astype(np.uint8))
        label.CopyInformation(self.ref)
        prob = sitk.GetImageFromArray(self.prob)
        prob.CopyInformation(self.ref)
        lesions = self._lesions()
        out = copy.copy(self.original)
        settings = dict(self.original.settings)
        settings["refine"] = {"clicks": list(self.log), "n_clicks": len(self.log),
                              "method": "seeded kinetic growth (+), component removal or watershed cut (-)"}
        timings = dict(self.original.timings)
        timings["refine"] = sum(e.get("seconds", 0.0) for e in self.log) + time.perf_counter() - t0
        return replace(out, label=label, probability=prob, lesions=lesions, settings=settings, timings=timings)

    def _lesions(self):
        any_z, any_y, any_x = (self.label.any(axis=a) for a in ((1, 2), (0, 2), (0, 1)))
        if not any_z.any():
            return []
        box = tuple(slice(int(np.argmax(v)), int(len(v) - np.argmax(v[::-1]))) for v in (any_z, any_y, any_x))
        cc = sitk.RelabelComponent(sitk.ConnectedComponent(self._crop_image(self.label.view(np.uint8), box), True),
                                   sortByObjectSize=True)
        prob = self._crop_image(self.prob, box)
        layout = self.original.settings.get("layout") or {}
        if layout.get("unilateral_side"):
            return lesion_table(cc, prob, side=layout["unilateral_side"])
        midline = layout.get("midline_x")
        if midline is None and self.original.breast_mask is not None:
            from .postprocess import midline_x
            midline = midline_x(self.original.breast_mask)
        return lesion_table(cc, prob, None if midline is None else float(midline))


def _ball_mask(center, shape, spacing, radius_mm) -> np.ndarray:
    grids = np.ogrid[tuple(slice(0, n) for n in shape)]
    d2 = sum(((g - c) * sp) ** 2 for g, c, sp in zip(grids, center, spacing))
    return d2 <= radius_mm ** 2


def refine(exam: DCEExam, result: SegmentationResult, clicks, settings: RefineSettings | None = None
           ) -> SegmentationResult:
    """*result* corrected by *clicks* (:class:`Click` objects, applied in order from *result*)."""
    refiner = Refiner(exam, result, settings)
    for click in clicks:
        refiner.add(click)
    return refiner.result()
