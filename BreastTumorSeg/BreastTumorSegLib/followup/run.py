"""The whole follow-up of one patient, and its outputs.

    from BreastTumorSegLib.io import load_exam
    from BreastTumorSegLib.followup.run import run_followup, write_followup
    res = run_followup([load_exam("visit1"), load_exam("visit2")], dates=["2024-01-08", "2024-03-04"])
    write_followup(res, "out/")          # followup.json, followup.csv, followup.png, label maps

Order: every visit is checked (:mod:`.visits`), every later visit registered to the baseline
(:mod:`.register`; a wrong exam is refused before anything is segmented), then each visit is
segmented by the engine (:func:`~..engine.pipeline.segment_exam`, any model; with an FTV-rule model,
one fat-suppression decision for the patient: visits whose own decision differs from the series'
(:func:`series_fat_suppression`) are segmented again with it), its FTV measured with the same FTV rule
(same PE and SER thresholds and fat-suppression decision at every visit; :mod:`..kinetics.ftv`)
inside the engine's breast mask, the pieces of one tumor joined by enhancing tissue merged into one
lesion (:mod:`.fragments`, opt-in), each baseline lesion looked for where it was in the later visits
(:mod:`.prior`: enhancing remnants the segmentation left out; and, in each baseline lesion's own place,
tissue enhancing by the weaker rule of :mod:`.guided`), the lesions followed as tracks in the
baseline frame (:mod:`.match`), every lesion first seen after the baseline looked for in the baseline
(:mod:`.lookback`, in the FTV mask or the weaker rule's tissue; what is found there joins the baseline
and the tracks are followed again; then the later visits split or join the baseline's lesions, :mod:`.evidence`,
and the tracks are followed once more; then the second look, :mod:`.second_look`, and once more), each
track's volume measured by one outline rule at every visit (:mod:`.measure`) and the change table
built (:mod:`.response`).
Nothing is written until everything is computed; :func:`write_followup` writes all files or none.
:func:`run_followup` is :func:`segment_visits` (check, register, segment: the costly part, picklable)
then :func:`follow` (everything after), so a benchmark can keep the first and re-measure the second.
"""
from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from .. import __version__
from ..core.exam import DCEExam
from ..core.progress import Reporter
from ..core.results import Lesion, SegmentationResult
from ..engine.pipeline import segment_exam
from ..engine.settings import split_settings
from ..engine.postprocess import lesion_table
from ..io.atomic import StagedOutputs, atomic_target, write_image, write_json, write_text
from ..kinetics.ftv import FTVSettings, functional_tumor_volume, roi_array
from ..core.imageutil import from_array
from . import FOLLOWUP_MODEL
from ..preprocess.breast_region import breast_region
from .diameters import DiameterSettings, union_diameters
from .empty_baseline import EMPTY_BASELINE_FLAG, EmptyBaselineSettings, reread
from .evidence import SPLIT_FLAG, EvidenceSettings, baseline_corrections
from .fragments import FragmentSettings, merge_fragments
from .guided import GUIDED_FLAG, GuidedSettings, GuidedTissue, empty_places
from .lookback import LOOKBACK_FLAG, look_back
from .measure import MeasureSettings, measure_tracks, visit_outline
from .newfind import (NEW_ENHANCEMENT_FLAG, SEEN_BEFORE_FLAG, NewEnhancementSettings, earlier_in_visit,
                      new_enhancement, seen_before)
from .second_look import SECOND_LOOK_FLAG, SecondLookSettings, second_look as look_again
from .prior import PriorSettings, find_remnants, labels_like, neighbourhoods, to_visit_grid
from .relative import RELATIVE_FLAG, lesion_levels, relative_remnants
from .match import MatchSettings, Track, VisitLesions, match_visits, visit_lesions
from .register import VisitRegistration, VisitRegistrationSettings, register_visit
from .response import ResponseSettings, change_table
from .visits import check_visits, visit_name


@dataclass
class Visit:
    """One visit's exam, segmentation and registration to the baseline (None for the baseline)."""

    exam: DCEExam
    date: str | None
    result: SegmentationResult
    registration: VisitRegistration | None
    components: sitk.Image  # labels 1..N on the visit's grid = ``lesions``
    lesions: list[Lesion]
    ftv_ml: dict[int, float]
    ftv_summary: dict
    in_baseline: VisitLesions


@dataclass
class FollowupResult:
    visits: list[Visit]
    tracks: list[Track]
    table: dict
    settings: dict = field(default_factory=dict)

    @property
    def baseline(self) -> Visit:
        return self.visits[0]

    def tracks_in_baseline(self, k: int) -> sitk.Image:
        """Visit *k*'s lesions on the baseline grid, each labelled with its track id (uint16)."""
        comp = self.visits[k].in_baseline.components_baseline
        out = np.zeros(comp.shape, np.uint16)
        for t in self.tracks:
            labs = t.members.get(k)
            if labs:
                out[np.isin(comp, labs)] = t.track_id
        img = sitk.GetImageFromArray(out)
        img.CopyInformation(self.baseline.exam.reference)
        return img

    def visit_in_baseline(self, k: int, image: sitk.Image, interpolator=sitk.sitkLinear) -> sitk.Image:
        """*image* of visit *k* (on its grid) resampled into the baseline frame and grid."""
        reg = self.visits[k].registration
        return sitk.Resample(image, self.baseline.exam.reference, reg.transform if reg else sitk.Transform(),
                             interpolator, 0.0)

    def summary(self) -> dict:
        return {
            "engine_version": __version__,
            "n_visits": len(self.visits),
            "visits": [{"visit": k + 1, "case_id": v.exam.case_id, "date": v.date,
                        "model_id": v.result.model_id, "n_lesions": len(v.lesions),
                        "registration_to_baseline": v.registration.qa if v.registration else None,
                        "ftv": v.ftv_summary} for k, v in enumerate(self.visits)],
            "targets": self.table["targets"],
            "exams": self.table["exams"],
            "lesions": self.table["lesions"],
            "notes": self.table["notes"],
            "settings": self.settings,
        }


def _table(result: SegmentationResult, components: sitk.Image) -> list[Lesion]:
    """The lesion table of *components* (labels 1..N) with the sides of *result*'s breast layout."""
    layout = result.settings.get("layout") or {}
    return lesion_table(components, result.probability, layout.get("midline_x"), layout.get("unilateral_side"))


def _components(result: SegmentationResult) -> tuple[sitk.Image, list[Lesion]]:
    cc = sitk.RelabelComponent(sitk.ConnectedComponent(sitk.Cast(result.label > 0, sitk.sitkUInt8), True),
                               sortByObjectSize=True)
    return cc, _table(result, cc)


def _merged(exam: DCEExam, result: SegmentationResult, comp: sitk.Image, lesions: list[Lesion], ftv,
            s: FragmentSettings, measure: MeasureSettings | None) -> tuple[sitk.Image, list[Lesion]]:
    """The visit's lesions with the pieces of one tumor merged (:mod:`.fragments`)."""
    if not s.enabled or len(lesions) < 2:
        return comp, lesions
    outline = (visit_outline(comp, sitk.GetArrayFromImage(exam.pre), ftv, result.breast_mask, s.outline_margin_mm,
                             measure) if s.outline_margin_mm > 0 else None)
    merged, n = merge_fragments(comp, outline, sitk.GetArrayFromImage(ftv.mask) > 0, s)
    if not n:
        return comp, lesions
    out = _table(result, merged)
    old, new = sitk.GetArrayFromImage(comp), sitk.GetArrayFromImage(merged)
    pairs = np.unique(np.stack([new[old > 0], old[old > 0]]), axis=1)
    pieces = np.bincount(pairs[0], minlength=len(out) + 1)
    for les in out:
        if pieces[les.label] > 1:
            les.flags.append("merged_fragments")
            les.notes.append(f"{pieces[les.label]} pieces of the segmentation joined by enhancing tissue: one "
                             "lesion (follow-up fragment merge)")
    return merged, out


def _visit_ftv(exam: DCEExam, result: SegmentationResult, settings: FTVSettings):
    registered = exam.with_phases(result.registered_phases) if result.registered_phases else exam
    return functional_tumor_volume(registered, roi=result.breast_mask, settings=settings)


def _lesion_ftv(exam: DCEExam, ftv, components: sitk.Image, n: int) -> dict[int, float]:
    inside = sitk.GetArrayViewFromImage(ftv.mask) > 0
    comp = sitk.GetArrayViewFromImage(components)
    counts = np.bincount(comp[inside].ravel(), minlength=n + 1)
    vox_ml = float(np.prod(exam.reference.GetSpacing())) / 1000.0
    return {lab: float(counts[lab]) * vox_ml for lab in range(1, n + 1)}


def _flagged(res: SegmentationResult, comp: sitk.Image, lesions: list[Lesion], flag: str, note: str):
    """*comp*'s lesion table: *lesions* first, then the labels added after them, flagged *flag*."""
    more = _table(res, comp)
    for les in more[len(lesions):]:
        les.flags.append(flag)
        les.notes.append(note)
    return comp, lesions + more[len(lesions):]


def _with_remnants(res: SegmentationResult, components: sitk.Image, lesions: list[Lesion], ftv,
                   extent_visit: np.ndarray, prior: PriorSettings) -> tuple[sitk.Image, list[Lesion]]:
    """The visit's lesions plus the enhancing remnants of known lesions it left out (:mod:`.prior`)."""
    comp, added = find_remnants(components, ftv.mask, extent_visit, prior)
    if not added:
        return components, lesions
    return _flagged(res, comp, lesions, "remnant_of_known_lesion",
                    "enhancing tissue (FTV rule) where an earlier visit's lesion was, left out by the "
                    "segmentation; added by the follow-up")


def _with_guided(res: SegmentationResult, components: sitk.Image, lesions: list[Lesion], tissue: np.ndarray,
                 place_visit: np.ndarray, g: GuidedSettings) -> tuple[sitk.Image, list[Lesion]]:
    """The visit's lesions plus what the weaker, track-guided rule finds in the known lesions' own places
    (:mod:`.guided`)."""
    comp, added = find_remnants(components, from_array(tissue.astype(np.uint8), components), place_visit,
                                PriorSettings(min_remnant_ml=g.min_ml))
    if not added:
        return components, lesions
    return _flagged(res, comp, lesions, GUIDED_FLAG,
                    "tissue enhancing by the follow-up's weaker, noise-based rule where an earlier visit's lesion "
                    "was (track-guided search); added by the follow-up")


def _earlier(k: int, exams, results, regs, guided, pe: float) -> tuple[np.ndarray, np.ndarray]:
    """On visit *k*'s grid: where an earlier visit enhanced (weaker rule at local-mean PE *pe*) and where an
    earlier visit was not read (outside its breast region), each through the registrations."""
    def in_visit(arrays):
        return earlier_in_visit([(arr, exams[j].reference, regs[j].transform if regs[j] else None)
                                 for j, arr in enumerate(arrays)], exams[0].reference, exams[k].reference,
                                regs[k].transform)

    return (in_visit([guided.tissue(j, pe) for j in range(k)]),
            in_visit([~roi_array(results[j].breast_mask, exams[j].reference)[0] for j in range(k)]))


def _flag_seen_before(visits, tracks, exams, results, regs, guided, s: NewEnhancementSettings) -> None:
    """Flag ``enhanced_before`` the segmented lesions of tracks that start after the baseline lying mostly
    where an earlier visit enhanced or was not read (:func:`.newfind.seen_before`)."""
    for k in range(1, len(visits)):
        labs = [lab for t in tracks if t.first_visit == k for lab in t.members[k]
                if NEW_ENHANCEMENT_FLAG not in visits[k].lesions[lab - 1].flags]
        if not labs:
            continue
        before, unlooked = _earlier(k, exams, results, regs, guided, s.seen_before_pe)
        comp = sitk.GetArrayViewFromImage(visits[k].components)
        for lab in labs:
            les = visits[k].lesions[lab - 1]
            if seen_before(comp == lab, before, ~unlooked) >= s.seen_before_share and SEEN_BEFORE_FLAG not in les.flags:
                les.flags.append(SEEN_BEFORE_FLAG)
                les.notes.append("an earlier visit enhanced (or was not read) where most of this lesion lies: "
                                 "not an unequivocal new lesion")


def _with_new_enhancement(res: SegmentationResult, components: sitk.Image, lesions: list[Lesion], k: int, exams,
                          results, regs, guided, s: NewEnhancementSettings) -> tuple[sitk.Image, list[Lesion]]:
    """Visit *k*'s lesions plus the tissue enhancing there by the weaker rule where no earlier visit
    enhanced, inside the breast region of every earlier visit (:mod:`.newfind`)."""
    before, unlooked = _earlier(k, exams, results, regs, guided, s.earlier_pe)
    comp, added = new_enhancement(components, guided.tissue(k), before, s, ~unlooked)
    if not added:
        return components, lesions
    return _flagged(res, comp, lesions, NEW_ENHANCEMENT_FLAG,
                    "tissue enhancing by the follow-up's weaker rule where no earlier visit enhanced "
                    "(registered): a new lesion the segmentation missed; added by the follow-up")


def _follow(exams, dates, results, regs, segmented, m: MatchSettings, prior: PriorSettings, s: FTVSettings,
            guided=None, newfind: NewEnhancementSettings | None = None):
    """Visits and tracks from each visit's (components, lesions, FTV result); the baseline's lesions
    are the prior of the later visits (:mod:`.prior`; with *guided*, a :class:`.guided.GuidedTissue`, also by the
    weaker rule of :mod:`.guided` in their own places)."""
    base_ref = exams[0].reference
    spacing_zyx = np.asarray(base_ref.GetSpacing())[::-1]
    extent = place = None
    levels = {}
    visits = []
    for k, (e, res, (comp, lesions, ftv)) in enumerate(zip(exams, results, segmented)):
        if k == 0 and prior.enabled:
            base = sitk.GetArrayFromImage(comp).astype(np.int32)
            extent = neighbourhoods(base, spacing_zyx, prior.margin_mm)
            if guided is not None:
                place = neighbourhoods(base, spacing_zyx, guided.settings.remnant_margin_mm)
                wide = neighbourhoods(base, spacing_zyx, guided.settings.empty_margin_mm)
                levels = lesion_levels(base, ftv.maps.array("pe_early"), guided.settings.relative_share,
                                       guided.settings.relative_min_pe) if guided.settings.relative_share > 0 else {}
        elif extent is not None:
            comp, lesions = _with_remnants(res, comp, lesions, ftv,
                                           to_visit_grid(extent, base_ref, e.reference, regs[k].transform), prior)
            if place is not None and place.any():
                comp, lesions = _with_guided(res, comp, lesions, guided.tissue(k),
                                             to_visit_grid(place, base_ref, e.reference, regs[k].transform),
                                             guided.settings)
                if guided.settings.empty_margin_mm > 0:
                    comp, lesions = _with_guided(res, comp, lesions, guided.tissue(k), empty_places(
                        comp, extent, wide, base_ref, e.reference, regs[k].transform), guided.settings)
                found, n = relative_remnants(comp, extent, wide, levels, lambda pe, k=k: guided.tissue(k, pe), base_ref,
                                             e.reference, regs[k].transform, guided.settings.min_ml)
                if n:
                    comp, lesions = _flagged(res, found, lesions, RELATIVE_FLAG, "tissue enhancing at the lesion's own "
                                             "level where a baseline lesion was and nothing else was (follow-up)")
            if guided is not None and newfind is not None and newfind.enabled:
                comp, lesions = _with_new_enhancement(res, comp, lesions, k, exams, results, regs, guided, newfind)
        ftv_ml = _lesion_ftv(e, ftv, comp, len(lesions))
        vis = visit_lesions(comp, lesions, base_ref, regs[k].transform if regs[k] else None)
        visits.append(Visit(e, dates[k], res, regs[k], comp, lesions, ftv_ml,
                            {"ftv_ml_in_breast": round(ftv.ftv_ml, 4),
                             "ftv_ml_in_lesions": round(sum(ftv_ml.values()), 4),
                             "fat_suppressed": ftv.fat_suppression["fat_suppressed"],
                             "background_threshold": round(float(ftv.background_threshold), 4),
                             "pe_threshold_percent": s.pe_threshold, "ser_min": s.ser_min}, vis))
    return visits, match_visits([v.in_baseline for v in visits], m, spacing_zyx)


def _looked_back(results, segmented, visits, tracks, prior: PriorSettings, guided=None):
    """The baseline's (components, lesions, FTV) with the lesions found by looking back from the tracks
    that start after the baseline (:mod:`.lookback`; with *guided*, in the FTV mask or the weaker rule's
    tissue, :mod:`.guided`); None when nothing was found."""
    later = [np.isin(visits[t.first_visit].in_baseline.components_baseline, t.members[t.first_visit])
             for t in tracks if t.first_visit > 0]
    if not later:
        return None
    comp0, lesions0, ftv0 = segmented[0]
    spacing_zyx = np.asarray(comp0.GetSpacing())[::-1]
    enhancing = sitk.GetArrayFromImage(ftv0.mask) > 0
    if guided is not None:
        enhancing |= guided.tissue(0)
    labels, added = look_back(later, sitk.GetArrayFromImage(comp0), enhancing, spacing_zyx, prior)
    if not added:
        return None
    comp, lesions = _flagged(results[0], labels_like(labels, comp0), lesions0, LOOKBACK_FLAG,
                             "enhancing tissue (FTV rule) where a lesion of a later visit is, left out by the "
                             "baseline's segmentation; added by the follow-up's look-back, so that lesion is "
                             "not new")
    return comp, lesions, ftv0


def _corrected_baseline(results, segmented, visits, tracks, guided, ev: EvidenceSettings):
    """The baseline's (components, lesions, FTV) with the lesions the later visits split or join
    (:mod:`.evidence`); None when nothing changes. A lesion keeps the flags of the lesions it came from."""
    comp0, lesions0, ftv0 = segmented[0]
    old = sitk.GetArrayFromImage(comp0).astype(np.int32)
    enhancing = sitk.GetArrayFromImage(ftv0.mask) > 0
    if guided is not None:
        enhancing |= guided.tissue(0)
    found = baseline_corrections(old, [v.in_baseline for v in visits], tracks, enhancing,
                                 np.asarray(comp0.GetSpacing())[::-1], ev, ftv0.maps.array("pe_early"))
    if found is None:
        return None
    labels, flag_of = found
    comp = labels_like(labels, comp0)
    lesions = _table(results[0], comp)
    pairs = np.unique(np.stack([labels[old > 0], old[old > 0]]), axis=1)
    for new, was in zip(*pairs):
        les = lesions[int(new) - 1]
        les.flags += [f for f in lesions0[int(was) - 1].flags if f not in les.flags]
    for new, flag in flag_of.items():
        lesions[new - 1].flags.append(flag)
        lesions[new - 1].notes.append("baseline lesion split between two lesions of a later visit (two tumors)"
                                      if flag == SPLIT_FLAG else "baseline pieces joined: one lesion of a later "
                                      "visit covers them and the baseline's enhancing tissue connects them")
    return comp, lesions, ftv0


def _second_looked(exams, results, segmented, visits, tracks, regs, look: SecondLookSettings) -> bool:
    """*segmented* (changed in place) with what the prior-guided second look found (:mod:`.second_look`)."""
    found = look_again(exams, results, segmented, visits, tracks, regs, look)
    for k, labels in found.items():
        comp, lesions = _flagged(results[k], labels_like(labels, visits[k].components), visits[k].lesions,
                                 SECOND_LOOK_FLAG, "found by the follow-up's second look where another visit's "
                                 "lesion was (the model's maps at a lower level, compact and enhancing)")
        segmented[k] = (comp, lesions, segmented[k][2])
    return bool(found)


def _reread(exams, results, segmented, visits, regs, s: EmptyBaselineSettings) -> bool:
    """*segmented* (changed in place) with what reading an empty baseline again found (:mod:`.empty_baseline`)."""
    found = reread(exams, results, [ftv for _, _, ftv in segmented],
                   [sitk.GetArrayFromImage(v.components) for v in visits], regs, s)
    for k, labels in found.items():
        comp, lesions = _flagged(results[k], labels_like(labels, visits[k].components), visits[k].lesions,
                                 EMPTY_BASELINE_FLAG, "the baseline had no lesion: read again with a relaxed rule")
        segmented[k] = (comp, lesions, segmented[k][2])
    return bool(found)


def follow_segmented(exams: list[DCEExam], dates: list[str | None], results: list[SegmentationResult],
                     regs: list[VisitRegistration | None], matching: MatchSettings | None = None,
                     response: ResponseSettings | None = None, ftv_settings: FTVSettings | None = None,
                     prior: PriorSettings | None = None, measure: MeasureSettings | None = None,
                     fragments: FragmentSettings | None = None, guided: GuidedSettings | None = None,
                     newfind: NewEnhancementSettings | None = None, evidence: EvidenceSettings | None = None,
                     diameters: DiameterSettings | None = None, second_look: SecondLookSettings | None = None,
                     empty_baseline: EmptyBaselineSettings | None = None):
    """FTV, lesions, tracks and change table of segmented, registered visits: (visits, tracks, table,
    the FTV settings used, the matching settings used)."""
    s = ftv_settings or FTVSettings()
    prior = prior or PriorSettings()
    segmented = []
    for k, (e, res) in enumerate(zip(exams, results)):
        comp, lesions = _components(res)
        ftv = _visit_ftv(e, res, s)
        if k == 0 and s.fat_suppressed is None:  # the baseline decides, every visit follows
            s = replace(s, fat_suppressed=bool(ftv.fat_suppression["fat_suppressed"]))
        comp, lesions = _merged(e, res, comp, lesions, ftv, fragments or FragmentSettings(), measure)
        segmented.append((comp, lesions, ftv))
    m = matching or MatchSettings()
    if not prior.enabled:
        m = replace(m, extent_margin_mm=0.0)
    g = guided or GuidedSettings()
    newfind = newfind or NewEnhancementSettings()
    weak = GuidedTissue(exams, results, [ftv for _, _, ftv in segmented], g) if g.enabled and prior.enabled else None
    visits, tracks = _follow(exams, dates, results, regs, segmented, m, prior, s, weak, newfind)
    if prior.enabled and prior.look_back:
        baseline = _looked_back(results, segmented, visits, tracks, prior, weak)
        if baseline is not None:
            segmented[0] = baseline
            visits, tracks = _follow(exams, dates, results, regs, segmented, m, prior, s, weak, newfind)
    evidence = evidence or EvidenceSettings()
    if prior.enabled and evidence.enabled and len(exams) > 1:
        baseline = _corrected_baseline(results, segmented, visits, tracks, weak, evidence)
        if baseline is not None:
            segmented[0] = baseline
            visits, tracks = _follow(exams, dates, results, regs, segmented, m, prior, s, weak, newfind)
    look = second_look or SecondLookSettings()
    if prior.enabled and look.enabled and len(exams) > 1 and _second_looked(exams, results, segmented, visits,
                                                                            tracks, regs, look):
        visits, tracks = _follow(exams, dates, results, regs, segmented, m, prior, s, weak, newfind)
    if prior.enabled and (empty_baseline or EmptyBaselineSettings()).enabled and _reread(
            exams, results, segmented, visits, regs, empty_baseline):
        visits, tracks = _follow(exams, dates, results, regs, segmented, m, prior, s, weak, newfind)
    if weak is not None and newfind.seen_before_share > 0:
        _flag_seen_before(visits, tracks, exams, results, regs, weak, newfind)
    diameters = diameters or DiameterSettings()
    measured = union_diameters(tracks, visits, measure_tracks(tracks, visits, [ftv for _, _, ftv in segmented],
                                                              exams[0].reference, measure, diameters.union), diameters)
    table = change_table(tracks, [v.in_baseline for v in visits], [v.ftv_ml for v in visits], dates, response,
                         measured)
    return visits, tracks, table, s, m


def _fat_decision(model) -> bool | None:
    """The fat-suppression decision of an FTV-rule segmenter's last exam (None for other models)."""
    last = getattr(model, "last_result", None)
    fat = getattr(last, "fat_suppression", None)
    return None if fat is None else bool(fat["fat_suppressed"])


def series_fat_suppression(decisions: list[bool | None]) -> bool | None:
    """One decision for a patient's visits when theirs differ (None: they agree, or no FTV-rule
    model): fat-suppressed when most visits were taken as such; a tie is *not* suppressed, the side
    that loses no enhancing tissue (:mod:`..kinetics.ftv`: the lower background threshold only admits
    unenhanced voxels, which the PE rule rejects)."""
    known = [d for d in decisions if d is not None]
    if len(set(known)) < 2:
        return None
    return sum(known) * 2 > len(known)


@dataclass
class SegmentedVisits:
    """Every visit checked, registered to the baseline and segmented (the costly part of a follow-up):
    :func:`follow` takes it from here. Picklable, so a benchmark can keep it."""

    exams: list[DCEExam]
    dates: list[str | None]
    results: list[SegmentationResult]
    registrations: list[VisitRegistration | None]
    fat_by_visit: list[bool | None]
    fat_for_patient: bool | None
    ftv_settings: FTVSettings | None
    model_id: str
    registration_settings: VisitRegistrationSettings | None = None


def segment_visits(exams: list[DCEExam], dates: list[str] | None = None, model=FOLLOWUP_MODEL,
                   device: str = "auto", reporter: Reporter | None = None, cancel=None,
                   registration: VisitRegistrationSettings | None = None,
                   ftv_settings: FTVSettings | None = None, **segment_options) -> SegmentedVisits:
    """Check, register and segment every visit (see :func:`run_followup`)."""
    n = len(exams)
    reporter = reporter or Reporter(None, cancel, {"check": 0.2, "register": 1.0 * n, "segment": 4.0 * n})
    with reporter.stage("check"):
        dates = check_visits(exams, dates)
    with reporter.stage("register"):
        regions = []
        for k, e in enumerate(exams):
            regions.append(breast_region(e.pre)[0])
            reporter.update((k + 0.5) / (2 * n), f"breast region of visit {k + 1}")
        regs: list[VisitRegistration | None] = [None]
        for k in range(1, n):
            reporter.update((n + k) / (2 * n), f"registering visit {k + 1} to the baseline")
            regs.append(register_visit(exams[0].pre, regions[0], exams[k].pre, regions[k],
                                       visit_name(k, exams[k]), registration))
    if isinstance(model, str):
        from ..models.registry import get_segmenter

        model = get_segmenter(model)
    results, fat = [], []
    with reporter.stage("segment"):
        settings, options = split_settings(**segment_options)  # register=False included
        for k, e in enumerate(exams):
            reporter.update(k / n, f"segmenting visit {k + 1} of {n}")
            results.append(segment_exam(e, model=model, device=device, cancel=cancel, settings=settings, **options))
            fat.append(_fat_decision(model))
        decided = series_fat_suppression(fat)
        if decided is not None and (ftv_settings is None or ftv_settings.fat_suppressed is None):
            # one patient, one protocol: every visit segmented and measured with the series' decision
            ftv_settings = replace(ftv_settings or FTVSettings(), fat_suppressed=decided)
            fixed = model.with_ftv_settings(fat_suppressed=decided)
            for k, e in enumerate(exams):
                if fat[k] != decided:
                    reporter.update(k / n, f"segmenting visit {k + 1} of {n} again (fat suppression of the series)")
                    results[k] = segment_exam(e, model=fixed, device=device, cancel=cancel, settings=settings,
                                              **options)
                    results[k].settings["fat_suppressed_by_series"] = decided
    return SegmentedVisits(list(exams), dates, results, regs, fat, decided, ftv_settings,
                           getattr(model, "model_id", str(model)), registration)


def follow(seg: SegmentedVisits, matching: MatchSettings | None = None, response: ResponseSettings | None = None,
           prior: PriorSettings | None = None, measure: MeasureSettings | None = None,
           fragments: FragmentSettings | None = None, guided: GuidedSettings | None = None,
           newfind: NewEnhancementSettings | None = None, evidence: EvidenceSettings | None = None,
           diameters: DiameterSettings | None = None, second_look: SecondLookSettings | None = None,
           empty_baseline: EmptyBaselineSettings | None = None) -> FollowupResult:
    """The follow-up of segmented visits (:func:`segment_visits`): tracks, change table, settings."""
    visits, tracks, table, s, m = follow_segmented(seg.exams, seg.dates, seg.results, seg.registrations, matching,
                                                   response, seg.ftv_settings, prior, measure, fragments, guided,
                                                   newfind, evidence, diameters, second_look, empty_baseline)
    prior, guided = prior or PriorSettings(), guided or GuidedSettings()
    guided = replace(guided, enabled=guided.enabled and prior.enabled)  # the search runs inside the prior's steps
    newfind = newfind or NewEnhancementSettings()
    newfind = replace(newfind, enabled=newfind.enabled and guided.enabled)  # it reads the guided rule's tissue
    settings = {"model": seg.model_id, "ftv": {k: v for k, v in vars(s).items()},
                "registration": vars(seg.registration_settings or VisitRegistrationSettings()),
                "matching": vars(m), "response": vars(response or ResponseSettings()),
                "prior": vars(prior), "measure": vars(measure or MeasureSettings()),
                "fragments": vars(fragments or FragmentSettings()), "guided": vars(guided),
                "new_enhancement": vars(newfind), "evidence": vars(evidence or EvidenceSettings()),
                "diameters": vars(diameters or DiameterSettings()),
                "second_look": vars(replace(second_look or SecondLookSettings(), enabled=bool(
                    (second_look or SecondLookSettings()).enabled and prior.enabled))),
                "empty_baseline": vars(empty_baseline or EmptyBaselineSettings()),
                "fat_suppression_by_visit": seg.fat_by_visit, "fat_suppressed_for_the_patient": seg.fat_for_patient}
    return FollowupResult(visits, tracks, table, settings)


def run_followup(exams: list[DCEExam], dates: list[str] | None = None, model=FOLLOWUP_MODEL,
                 device: str = "auto", progress=None, cancel=None,
                 registration: VisitRegistrationSettings | None = None,
                 matching: MatchSettings | None = None, response: ResponseSettings | None = None,
                 ftv_settings: FTVSettings | None = None, prior: PriorSettings | None = None,
                 measure: MeasureSettings | None = None, fragments: FragmentSettings | None = None,
                 guided: GuidedSettings | None = None, newfind: NewEnhancementSettings | None = None,
                 second_look: SecondLookSettings | None = None, **segment_options) -> FollowupResult:
    """Follow the lesions of *exams* (baseline first); see the module docstring.

    ``model`` is a registry name or a loaded segmenter (loaded once, used for every visit);
    ``segment_options`` go to :func:`segment_exam`. ``progress(stage, fraction, message)``."""
    n = len(exams)
    reporter = Reporter(progress, cancel, {"check": 0.2, "register": 1.0 * n, "segment": 4.0 * n, "match": 0.3})
    seg = segment_visits(exams, dates, model, device, reporter, cancel, registration, ftv_settings,
                         **segment_options)
    with reporter.stage("match"):
        return follow(seg, matching, response, prior, measure, fragments, guided, newfind, second_look=second_look)


OUTPUTS = ("followup.json", "followup.csv", "followup.png")


def output_names(n_visits: int, prefix: str = "") -> dict[str, str]:
    """Every file :func:`write_followup` writes (``prefix`` e.g. ``"patient7_"`` in a batch)."""
    names = {"json": f"{prefix}followup.json", "csv": f"{prefix}followup.csv", "png": f"{prefix}followup.png"}
    for k in range(n_visits):
        names[f"tracks_visit{k + 1}"] = f"{prefix}followup_visit{k + 1}_tracks.nii.gz"
    return names


def csv_text(table: dict) -> str:
    """One row per exam (``level`` exam) then per track and visit (``level`` lesion)."""
    rows = [{"level": "exam", **r} for r in table["exams"]] + [{"level": "lesion", **r} for r in table["lesions"]]
    fields: list[str] = []
    for r in rows:
        fields += [k for k in r if k not in fields]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: json.dumps(v) if isinstance(v, (list, dict)) else ("" if v is None else v)
                    for k, v in r.items()})
    return buf.getvalue()


def write_followup(res: FollowupResult, out_dir, overwrite: bool = False, prefix: str = "") -> dict[str, Path]:
    """Write every output of *res* into *out_dir*: all of them, or none (atomic)."""
    from .picture import render_followup

    names = output_names(len(res.visits), prefix)
    with StagedOutputs(out_dir, overwrite=overwrite) as staged:
        write_json(staged.path(names["json"]), res.summary())
        write_text(staged.path(names["csv"]), csv_text(res.table))
        with atomic_target(staged.path(names["png"])) as tmp:
            render_followup(res, tmp)
        for k in range(len(res.visits)):
            write_image(staged.path(names[f"tracks_visit{k + 1}"]), res.tracks_in_baseline(k))
        staged.commit()
    return {key: Path(out_dir) / name for key, name in names.items()}
