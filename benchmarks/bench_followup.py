"""Follow-up across visits (issue 31) on synthetic patient series with known truth.

    OMP_NUM_THREADS=1 python benchmarks/bench_followup.py --families ellipse,heterogeneous --seeds 5000-5009
    ... --cache /tmp/fu_cache    # keep each series' segmentations (a few MB a series): re-measure the follow-up

Per series (:func:`~BreastTumorSegLib.training.phantom.series.make_visit_series`): the baseline is an
exam of a family no model was trained on (``ellipse`` and ``irregular`` are evaluation-only), the
later visits the same patient repositioned (known affine: rotation <= 4 degrees, translation <= 8 mm,
scale/shear <= 2 %), with fresh noise, each tumor shrinking to a known fraction, fragmenting,
disappearing or staying, and (every third series) a new lesion. 2 or 3 visits (alternating).
The whole follow-up runs as the command does (``run_followup``, model ``ftv`` by default; the
engine's within-exam motion correction is skipped: these families have no motion within an exam).

Measured against the truth:

* **registration error**: mean distance (mm) between where the estimated and the true transform
  send the baseline's breast voxels (every 50th), per later visit;
* **lesion matching**: for every truth lesion at every later visit, the decision is right when
  its segmented lesions at that visit belong to exactly the track(s) of its baseline lesions
  (present), when those tracks have no lesion at that visit (disappeared), or when they form a
  track of their own that starts there (new); a baseline tumor the segmentation missed counts as wrong;
* **volume change error**: |reported % change - true % change| from the baseline, in percentage
  points, for every tumor present at both visits (median and 90th percentile); the reported volume
  is the change table's (per track and visit: what ``followup.csv`` says), summed over the tracks
  of the tumor's baseline lesions;
* **RECIST**: the category from the segmentation against the category from the true masks
  (the same rule: :func:`~BreastTumorSegLib.followup.response.recist_category`; targets the true
  baseline tumors >= 10 mm, fragments' diameters added; a true new lesion is PD).

A series the follow-up refuses (one of its visits refused, e.g. by the same-patient check of
:mod:`~BreastTumorSegLib.followup.register`) is a row of its own (``refused``: the message): every
matching decision and every later visit's category of that series counted wrong, no volume change or
registration measured (``refused_series`` in the summary); the run goes on with the next series.

Per-error diagnostic (in each series' row): every wrong matching decision has a ``cause`` (missed at
the baseline, with the share of the tumor inside the engine's breast region; a piece that started a
new track; a track left empty; a gone tumor with a lesion left in its track; a new lesion joined to a
known track or not segmented) and every wrong category the true and segmented target sums, the
follow-up's reasons and its new tracks (``recist_errors``).
"""
from __future__ import annotations

import argparse
import gzip
import json
import pickle
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import SimpleITK as sitk

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "BreastTumorSeg"))

from BreastTumorSegLib.core.errors import InputError  # noqa: E402
from BreastTumorSegLib.followup.register import registration_error_mm  # noqa: E402
from BreastTumorSegLib.followup.response import ResponseSettings, choose_targets, recist_category  # noqa: E402
from BreastTumorSegLib.followup.diameters import DiameterSettings  # noqa: E402
from BreastTumorSegLib.followup.empty_baseline import EmptyBaselineSettings  # noqa: E402
from BreastTumorSegLib.followup.evidence import EvidenceSettings  # noqa: E402
from BreastTumorSegLib.followup.measure import MeasureSettings  # noqa: E402
from BreastTumorSegLib.followup.guided import GuidedSettings  # noqa: E402
from BreastTumorSegLib.followup.newfind import NewEnhancementSettings  # noqa: E402
from BreastTumorSegLib.followup.run import follow, segment_visits  # noqa: E402
from BreastTumorSegLib.followup.second_look import SecondLookSettings  # noqa: E402
from BreastTumorSegLib.core.values import parse_seeds  # noqa: E402
from BreastTumorSegLib.training.phantom.series import make_visit_series  # noqa: E402


def truth_diameters(labels: sitk.Image) -> dict[int, float]:
    """Per truth label: the sum of its connected pieces' longest diameters (RECIST fragments)."""
    out = {}
    arr = sitk.GetArrayViewFromImage(labels)
    for lab in np.unique(arr[arr > 0]):
        cc = sitk.ConnectedComponent(labels == int(lab), True)
        stats = sitk.LabelShapeStatisticsImageFilter()
        stats.ComputeFeretDiameterOn()
        stats.Execute(cc)
        out[int(lab)] = float(sum(stats.GetFeretDiameter(c) for c in stats.GetLabels()))
    return out


def truth_recist(series, sums_out: list | None = None) -> list[str]:
    """The true category of every visit; the target sums are appended to *sums_out* when given."""
    s = ResponseSettings()
    diam = [truth_diameters(v.tumor_labels) for v in series.visits]
    base = [{"id": t["label"], "diameter_mm": diam[0].get(t["label"], 0.0),
             "side": "left" if t["centroid_lps"][0] > 0 else "right"} for t in series.visits[0].tumors]
    targets, _ = choose_targets(base, s)
    sums = [sum(d.get(i, 0.0) for i in targets) for d in diam]
    if sums_out is not None:
        sums_out += [round(x, 1) for x in sums]
    out = ["baseline"]
    for k in range(1, len(series.visits)):
        new = bool(series.new_lesions[k]) and not series.new_lesions[k - 1]
        out.append(recist_category(sums, k, new, bool(diam[k]), s)[0])
    return out


def assign(pred: sitk.Image, truth: sitk.Image) -> dict[int, int]:
    """Predicted lesion label -> the truth label it overlaps most (0: none)."""
    p, t = sitk.GetArrayViewFromImage(pred), sitk.GetArrayViewFromImage(truth)
    out = {}
    for lab in np.unique(p[p > 0]):
        hit = t[p == lab]
        hit = hit[hit > 0]
        out[int(lab)] = int(np.bincount(hit).argmax()) if hit.size else 0
    return out


def decision_slots(series) -> list[tuple[int, int, int, str]]:
    """Every matching decision the truth asks for: (later visit k, truth label, visit it appeared, kind)."""
    vols = [{t["label"] for t in v.tumors} for v in series.visits]
    appear = {}
    for k in range(len(series.visits)):
        for lab in sorted(vols[k]):
            appear.setdefault(lab, k)
    return [(k, lab, k0, "new" if k0 == k else "present" if lab in vols[k] else "disappeared")
            for k in range(1, len(series.visits)) for lab, k0 in appear.items() if k0 <= k]


def refused_row(fam: str, seed: int, series, message: str) -> dict:
    """The row of a series the follow-up refused: every matching decision and every later visit's
    category counted wrong, no volume change or registration measured, the refusal's message kept."""
    decisions = [{"visit": k + 1, "truth_label": lab, "kind": kind, "correct": False,
                  "missed_when_it_appeared": False, "cause": "series refused"}
                 for k, lab, _, kind in decision_slots(series)]
    want = truth_recist(series)
    return {"family": fam, "seed": seed, "visits": len(series.visits), "refused": message,
            "fates": series.fates, "new_lesions": series.new_lesions, "recist_truth": want,
            "recist": ["baseline"] + ["refused"] * (len(want) - 1), "registration_error_mm": [],
            "matching_correct": f"0/{len(decisions)}", "volume_change_errors_pp": [],
            "decisions": decisions, "recist_correct": [False] * (len(want) - 1)}


def evaluate(series, res) -> dict:
    track_of = {}  # (visit, lesion label) -> track id
    for t in res.tracks:
        for k, labs in t.members.items():
            for lab in labs:
                track_of[(k, lab)] = t.track_id
    first = {t.track_id: t.first_visit for t in res.tracks}
    members = {t.track_id: t.members for t in res.tracks}
    owned = []  # [visit] truth label -> set of tracks of its segmented lesions
    for k, v in enumerate(res.visits):
        m = {}
        for lab, tl in assign(v.components, series.visits[k].tumor_labels).items():
            if tl:
                m.setdefault(tl, set()).add(track_of[(k, lab)])
        owned.append(m)
    vols = [{t["label"]: t["volume_ml"] for t in v.tumors} for v in series.visits]
    # the volume the follow-up reports (its change table), per track and visit
    reported = {(r["track"], r["visit"] - 1): r["volume_ml"] for r in res.table["lesions"]}
    decisions, vol_err = [], []
    for k, lab, k0, kind in decision_slots(series):
        start = owned[k0].get(lab, set())
        now = owned[k].get(lab, set())
        if kind == "new":  # new at this visit
            ok = bool(now) and all(first[t] == k for t in now)
        elif kind == "present":  # present at both
            ok = bool(start) and now == start
            if start and k0 == 0:
                seg0 = sum(reported.get((t, k0), 0.0) for t in start)
                segk = sum(reported.get((t, k), 0.0) for t in start)
                true_pct = 100 * (vols[k][lab] / vols[k0][lab] - 1)
                seg_pct = 100 * (segk / seg0 - 1) if seg0 > 0 else float("nan")
                vol_err.append(abs(seg_pct - true_pct))
        else:  # disappeared
            ok = bool(start) and all(not members[t].get(k) for t in start)
        d = {"visit": k + 1, "truth_label": lab, "kind": kind, "correct": bool(ok),
             "missed_when_it_appeared": not start}
        if not ok:
            d["cause"] = error_cause(kind, start, now, k, k0, first, members, owned)
            d["truth_ml"] = {"appeared": round(vols[k0].get(lab, 0.0), 3), "now": round(vols[k].get(lab, 0.0), 3)}
            if not start:  # missed: was it inside the engine's breast region at all?
                t_k0 = sitk.GetArrayViewFromImage(series.visits[k0].tumor_labels) == lab
                roi = sitk.GetArrayViewFromImage(res.visits[k0].result.breast_mask) > 0
                d["in_breast_region"] = round(float(np.mean(roi[t_k0])), 2) if t_k0.any() else None
            d["flags_now"] = sorted({f for t in (now or start) for lab_k in members[t].get(k, [])
                                     for f in res.visits[k].lesions[lab_k - 1].flags})
        decisions.append(d)
    return {"decisions": decisions, "volume_errors_pp": vol_err}


def error_cause(kind: str, start: set, now: set, k: int, k0: int, first: dict, members: dict, owned: list) -> str:
    """Why one matching decision is wrong, in a few words (the benchmark's per-error diagnostic)."""
    if not start:
        return ("new lesion not segmented" if kind == "new" else
                "missed at the baseline" if k0 == 0 else "missed when it appeared")
    if kind == "new":
        return "new lesion joined an existing track (looked back or in an extent)"
    if kind == "disappeared":
        return "gone but a lesion is left in its track (remnant/false positive)"
    if not now:
        gone = [t for t in start if not members[t].get(k)]
        return ("present but not found (track empty)" if len(gone) == len(start) else
                "present but its lesions at this visit belong to another truth's track")
    if now - start:
        others = [t for t in now - start if first[t] == k]
        return ("a piece started a new track (false new lesion)" if others else
                "a piece joined another track")
    return "present but one of its baseline tracks is empty (a piece lost)"


class RefusedSeries(Exception):
    """The follow-up refused one of the series' visits: *message* says which and why."""

    def __init__(self, series, message: str):
        super().__init__(message)
        self.series, self.message = series, message


def segmented_series(fam: str, seed: int, n_visits: int, new_lesion: bool, model: str, cache: Path | None):
    """(series, segmented visits, seconds to generate, seconds to segment); the segmentations from
    *cache* when there. Only the segmentations are kept (gzip, without the exams and the subtraction
    images, a few MB a series): the series is made again from its seed (deterministic, ~8 s), since
    pickled exams (~250 MB a series) filled the shared disk."""
    key = cache / f"{fam}_{seed}_{n_visits}{'_new' if new_lesion else ''}_{model}.seg.gz" if cache else None
    t0 = time.perf_counter()
    series = make_visit_series(fam, seed, n_visits=n_visits, new_lesion_at=(n_visits - 1) if new_lesion else None)
    t_gen = time.perf_counter() - t0
    exams = [v.exam for v in series.visits]
    if key is not None and key.exists():
        with gzip.open(key, "rb") as f:
            seg, t_seg = pickle.load(f)
        return series, replace(seg, exams=exams), t_gen, t_seg
    t0 = time.perf_counter()
    try:
        seg = segment_visits(exams, dates=series.dates, model=model, register=False, device="cpu")
    except InputError as e:  # the follow-up refused a visit (e.g. its same-patient check)
        raise RefusedSeries(series, str(e)) from e
    t_seg = time.perf_counter() - t0
    if key is not None:
        key.parent.mkdir(parents=True, exist_ok=True)
        kept = replace(seg, exams=[], results=[replace(r, subtraction=None) for r in seg.results])
        tmp = key.with_suffix(".tmp")
        with gzip.open(tmp, "wb", compresslevel=3) as f:
            pickle.dump((kept, t_seg), f)
        tmp.replace(key)
    return series, seg, t_gen, t_seg


def second_look_settings(value: str) -> SecondLookSettings:
    """--second-look's value as settings (on, off, back, forward, both, or a probability level)."""
    directions = {"back": (True, False, False), "forward": (False, True, False), "both": (True, True, False),
                  "found": (True, False, True)}
    if value in directions:
        back, forward, found = directions[value]
        return SecondLookSettings(enabled=True, look_back=back, look_forward=forward, forward_found=found)
    if value in ("on", "off"):
        return SecondLookSettings(enabled=value == "on")
    return SecondLookSettings(enabled=True, level=float(value))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--families", default="ellipse,irregular")
    p.add_argument("--seeds", default="5000-5009")
    p.add_argument("--model", default="ftv")
    p.add_argument("--json", type=Path, default=None, help="write every series' numbers here")
    p.add_argument("--cache", type=Path, default=None,
                   help="keep each series' segmentations here (gzip pickles, a few MB each) and reuse them: the "
                        "follow-up's later steps can then be re-measured without segmenting again")
    p.add_argument("--only", default=None,
                   help="comma-separated family:seed pairs: run only these series of the list (each keeps the "
                        "visits and new lesion its position in the list gives it)")
    p.add_argument("--start-index", type=int, default=0,
                   help="index of the first series (it sets 2 or 3 visits and every third a new lesion): "
                        "to run one family of a longer list alone, give its position, e.g. 10")
    p.add_argument("--new-enhancement", default=None, metavar="on|off|ML",
                   help="the follow-up's new-enhancement search (followup/newfind.py): on, off, or on with this "
                        "minimum volume (mL); default: the follow-up's default")
    p.add_argument("--evidence", default=None, metavar="split,join[,kinetic]|off",
                   help="the later visits as evidence about the baseline (followup/evidence.py): 'split', 'join', "
                        "'split,join' or 'off', with 'kinetic' also the split of touching tumors without a neck by "
                        "their enhancement (followup/kinetic_split.py); default: the follow-up's default")
    p.add_argument("--kinetic-spread", type=float, default=None, metavar="K",
                   help="with --evidence ...,kinetic: split only when the two PE medians differ by at least K times "
                        "their spread (EvidenceSettings.kinetic_spread); default: the setting's default")
    p.add_argument("--guided-empty", type=float, default=None, metavar="MM",
                   help="look again for a known lesion whose track would be empty in its mask grown by MM "
                        "(GuidedSettings.empty_margin_mm; 0: off); default: the follow-up's default")
    p.add_argument("--seen-before", type=float, default=None, metavar="SHARE",
                   help="a segmented lesion first seen after the baseline is no unequivocal new lesion when this "
                        "share of it lies where an earlier visit enhanced or was not read (NewEnhancementSettings."
                        "seen_before_share; 0: off); default: the follow-up's default")
    p.add_argument("--diameters", default=None, choices=("segmented", "union", "outline", "outline-union"),
                   help="a track's RECIST diameter at a visit: its segmented lesions' diameters added (segmented), the "
                        "diameter of their union (union, followup/diameters.py), its outline's pieces added (outline, "
                        "MeasureSettings.diameters) or the diameter of its whole outline (outline-union); default: the "
                        "follow-up's default")
    p.add_argument("--second-look", default=None, metavar="on|off|back|forward|both|found|LEVEL",
                   help="the prior-guided second look (followup/second_look.py): on (the settings' directions), off, "
                        "back (SecondLookSettings.look_back only), forward (look_forward only), both (fu13's step), "
                        "found (back, and forward for the tracks it found: forward_found), "
                        "or on with this probability level (SecondLookSettings.level); default: the follow-up's "
                        "default")
    p.add_argument("--empty-baseline", default=None, choices=("on", "off"),
                   help="read a baseline with no lesion at all again with a relaxed rule (followup/empty_baseline.py, "
                        "EmptyBaselineSettings.enabled); default: the follow-up's default")
    p.add_argument("--relative-level", type=float, default=None, metavar="SHARE",
                   help="a baseline lesion still missing at a later visit looked for at SHARE x its own median early PE "
                        "(followup/relative.py, GuidedSettings.relative_share; 0: off); default: the follow-up's default")
    p.add_argument("--measure-in-ftv", default=None, choices=("on", "off"),
                   help="volume measured from each lesion's voxels in the plain FTV mask (MeasureSettings.ftv_seeds; "
                        "with --model ftv-outline: docs/decisions/followup-outline-find-issue31.md)")
    p.add_argument("--ftv-diameters", default=None, choices=("on", "off"),
                   help="longest diameter of each lesion's FTV-mask pieces (MeasureSettings.ftv_diameters)")
    p.add_argument("--second-look-non-targets", default=None, choices=("on", "off"),
                   help="a baseline lesion found only by the second look is a non-target (ResponseSettings."
                        "second_look_non_targets); default: the follow-up's default")
    a = p.parse_args(argv)
    response = (None if a.second_look_non_targets is None else
                ResponseSettings(second_look_non_targets=a.second_look_non_targets == "on"))
    empty = None if a.empty_baseline is None else EmptyBaselineSettings(enabled=a.empty_baseline == "on")
    second = None if a.second_look is None else second_look_settings(a.second_look)
    diameters = None if a.diameters is None else DiameterSettings(union=a.diameters.endswith("union"))
    measure = None if a.diameters is None else MeasureSettings(diameters=a.diameters.startswith("outline"))
    if a.measure_in_ftv is not None:
        measure = replace(measure or MeasureSettings(), ftv_seeds=a.measure_in_ftv == "on")
    if a.ftv_diameters is not None:
        measure = replace(measure or MeasureSettings(), ftv_diameters=a.ftv_diameters == "on")
    guided = None if a.guided_empty is None else GuidedSettings(empty_margin_mm=a.guided_empty)
    if a.relative_level is not None:
        guided = replace(guided or GuidedSettings(), relative_share=a.relative_level)
    ev_parts = [] if a.evidence is None else a.evidence.split(",")
    evidence = (None if a.evidence is None else
                EvidenceSettings(split="split" in ev_parts, join="join" in ev_parts, kinetic_split="kinetic" in ev_parts))
    if a.kinetic_spread is not None:
        evidence = replace(evidence or EvidenceSettings(), kinetic_spread=a.kinetic_spread)
    newfind = (None if a.new_enhancement is None else NewEnhancementSettings(enabled=a.new_enhancement == "on")
               if a.new_enhancement in ("on", "off") else
               NewEnhancementSettings(enabled=True, min_ml=float(a.new_enhancement)))
    if a.seen_before is not None:
        newfind = replace(newfind or NewEnhancementSettings(), seen_before_share=a.seen_before)
    rows, all_dec, all_err, reg_err, recist_ok = [], [], [], [], []
    n = a.start_index
    only = set(a.only.split(",")) if a.only else None
    for fam in a.families.split(","):
        for seed in parse_seeds(a.seeds):
            n_visits = 2 + (n % 2)
            if only is not None and f"{fam}:{seed}" not in only:
                n += 1
                continue
            try:
                series, seg, t_gen, t_seg = segmented_series(fam, seed, n_visits, n % 3 == 2, a.model, a.cache)
            except RefusedSeries as refusal:  # a row of its own, every decision wrong; the run goes on
                row = refused_row(fam, seed, refusal.series, refusal.message)
                all_dec += row["decisions"]
                recist_ok += row["recist_correct"]
                rows.append(row)
                print(json.dumps(row), flush=True)
                n += 1
                continue
            t0 = time.perf_counter()
            res = follow(seg, response=response, newfind=newfind, evidence=evidence, guided=guided, measure=measure,
                         diameters=diameters, second_look=second, empty_baseline=empty)
            t_run = t_seg + time.perf_counter() - t0
            base = series.visits[0]
            where = np.argwhere(sitk.GetArrayViewFromImage(base.breast_mask) > 0)[::50][:, ::-1]
            pts = [base.exam.pre.TransformIndexToPhysicalPoint([int(v) for v in q]) for q in where]
            errs = [registration_error_mm(res.visits[k].registration.transform, series.to_baseline[k], pts)
                    for k in range(1, n_visits)]
            ev = evaluate(series, res)
            true_sums = []
            want = truth_recist(series, true_sums)
            got = [e["recist"] for e in res.table["exams"]]
            ok = [w == g for w, g in zip(want[1:], got[1:])]
            reg_err += errs
            all_dec += ev["decisions"]
            all_err += ev["volume_errors_pp"]
            recist_ok += ok
            row = {"family": fam, "seed": seed, "visits": n_visits, "fates": series.fates,
                   "fractions": [[round(f, 3) for f in fr] for fr in series.fractions],
                   "new_lesions": series.new_lesions, "recist_truth": want, "recist": got,
                   "registration_error_mm": [round(e, 3) for e in errs],
                   "matching_correct": f"{sum(d['correct'] for d in ev['decisions'])}/{len(ev['decisions'])}",
                   "volume_change_errors_pp": [round(e, 2) for e in ev["volume_errors_pp"]],
                   "generate_s": round(t_gen, 1), "followup_s": round(t_run, 1)}
            row["decisions"] = ev["decisions"]
            row["recist_correct"] = ok
            if not all(ok):  # the per-error diagnostic: the sums and the reason the follow-up gave
                row["recist_errors"] = {"truth_target_sums_mm": true_sums,
                                        "target_sums_mm": [round(e["sum_target_diameters_mm"], 1)
                                                           for e in res.table["exams"]],
                                        "reasons": [e["recist_reason"] for e in res.table["exams"]],
                                        "new_tracks": [e["new_tracks"] for e in res.table["exams"]]}
            rows.append(row)
            print(json.dumps(row), flush=True)
            n += 1
    summary = {
        "series": len(rows), "model": a.model, "families": a.families, "seeds": a.seeds,
        "matching_correct": f"{sum(d['correct'] for d in all_dec)}/{len(all_dec)}",
        "matching_percent": round(100 * np.mean([d["correct"] for d in all_dec]), 1) if all_dec else None,
        "matching_by_kind": {kind: f"{sum(d['correct'] for d in all_dec if d['kind'] == kind)}/"
                                   f"{sum(1 for d in all_dec if d['kind'] == kind)}"
                             for kind in ("present", "disappeared", "new")},
        "matching_wrong_because_missed_when_it_appeared": sum(1 for d in all_dec if not d["correct"]
                                                              and d["missed_when_it_appeared"]),
        "volume_change_error_pp_median": round(float(np.median(all_err)), 2) if all_err else None,
        "volume_change_error_pp_p90": round(float(np.percentile(all_err, 90)), 2) if all_err else None,
        "volume_changes_measured": len(all_err),
        "recist_correct": f"{sum(recist_ok)}/{len(recist_ok)}",
        "recist_percent": round(100 * np.mean(recist_ok), 1) if recist_ok else None,
        "refused_series": [f"{r['family']}:{r['seed']}" for r in rows if "refused" in r],
        "registration_error_mm_mean": round(float(np.mean(reg_err)), 3) if reg_err else None,
        "registration_error_mm_max": round(float(np.max(reg_err)), 3) if reg_err else None,
        "followup_s_median": (round(float(np.median([r["followup_s"] for r in rows if "followup_s" in r])), 1)
                              if reg_err else None),
    }
    print(json.dumps(summary, indent=1))
    if a.json:
        a.json.write_text(json.dumps({"summary": summary, "series": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
