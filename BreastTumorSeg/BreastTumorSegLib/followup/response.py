"""The change table and the RECIST 1.1 category of every later visit.

Per track and visit: volume, FTV and longest diameter (fragments: their diameters added, as RECIST
asks), each with its absolute and percent change from the baseline and from the previous visit.
Per visit: the totals, the sum of the target lesions' longest diameters and the category.

RECIST 1.1 (:func:`recist_category`), with the breast as the organ: target lesions are the
baseline's measurable lesions (longest diameter >= ``measurable_mm`` = 10 mm), at most 5 and at most
2 per breast, largest first (none measurable: every baseline lesion, and a note says so). A baseline
lesion found only by the look-back (:mod:`.lookback`, flagged ``found_on_later_visit``) was not
measured when the baseline was read: it is a non-target lesion (it is not new, and it counts as a
lesion left), never a target, unless ``lookback_targets`` (the baseline read is the follow-up's own,
made after every visit was seen: such a lesion >= 10 mm is then a target like any other).
With ``second_look_non_targets`` (off by default; fu17, ``docs/decisions/followup-recist-issue31.md``) a
baseline lesion found only by the prior-guided second look (:mod:`.second_look`, flagged ``second_look``:
looked for at the baseline after a later visit was seen, at a lower level or beyond the breast region) is
a non-target for the same reason: RECIST 1.1 chooses the targets when the baseline is read.

* **PD**: an unequivocal new lesion (longest diameter >= ``new_lesion_min_mm`` = 10 mm, the size of a
  measurable lesion: a smaller new finding is listed as a new track but does not decide the category,
  since a few-mm enhancing focus in one visit only is as often a vessel or background enhancement),
  or a sum at least
  20 % and at least 5 mm above the nadir (the smallest sum so far, baseline included; after a
  nadir of 0, 5 mm);
* **CR**: no lesion left at all;
* **PR**: the sum at least 30 % below the baseline's;
* **SD**: otherwise.
"""
from __future__ import annotations

from dataclasses import dataclass

from .lookback import LOOKBACK_FLAG
from .newfind import SEEN_BEFORE_FLAG
from .second_look import SECOND_LOOK_FLAG


@dataclass(frozen=True)
class ResponseSettings:
    measurable_mm: float = 10.0
    max_targets: int = 5
    max_targets_per_breast: int = 2
    new_lesion_min_mm: float = 10.0
    pr_fraction: float = -0.30
    pd_fraction: float = 0.20
    pd_absolute_mm: float = 5.0
    # A baseline lesion found by the look-back may be a target (the follow-up's baseline read includes it;
    # the truth of bench_followup counts every true baseline tumor >= 10 mm). False: non-target (module docstring).
    lookback_targets: bool = False
    # A baseline lesion found only by the second look (flag ``second_look``) is a non-target (module docstring).
    # False: a target like any baseline lesion (main's behaviour before fu17).
    second_look_non_targets: bool = False


def recist_category(sums: list[float], k: int, new_lesion: bool, any_lesion_left: bool,
                    s: ResponseSettings | None = None) -> tuple[str, str]:
    """(category, reason) of visit *k* from the target sums of visits 0..k (see the module docstring)."""
    s = s or ResponseSettings()
    base, now = sums[0], sums[k]
    nadir = min(sums[:k])
    if new_lesion:
        return "PD", "new lesion"
    if now - nadir >= s.pd_absolute_mm and (nadir == 0 or (now - nadir) / nadir >= s.pd_fraction):
        return "PD", f"sum {now:.1f} mm is {now - nadir:+.1f} mm from the nadir {nadir:.1f} mm"
    if not any_lesion_left:
        return "CR", "no lesion left"
    change = (now - base) / base if base > 0 else 0.0
    if change <= s.pr_fraction:
        return "PR", f"sum {now:.1f} mm is {100 * change:+.0f} % from the baseline {base:.1f} mm"
    return "SD", f"sum {now:.1f} mm is {100 * change:+.0f} % from the baseline, {now - nadir:+.1f} mm from the nadir"


def choose_targets(baseline: list[dict], s: ResponseSettings) -> tuple[list[int], str | None]:
    """Track ids of the target lesions among the baseline tracks (dicts with id, diameter, side)."""
    ranked = sorted(baseline, key=lambda t: -t["diameter_mm"])
    chosen, per_side = [], {}
    for t in ranked:
        if t["diameter_mm"] < s.measurable_mm or len(chosen) >= s.max_targets:
            continue
        if per_side.get(t["side"], 0) >= s.max_targets_per_breast and t["side"] != "unknown":
            continue
        per_side[t["side"]] = per_side.get(t["side"], 0) + 1
        chosen.append(t["id"])
    if chosen or not baseline:
        return chosen, None
    return [t["id"] for t in ranked[: s.max_targets]], (
        f"no baseline lesion is measurable (>= {s.measurable_mm:g} mm): every baseline lesion is a target")


def _change(now, base, prev) -> dict:
    def pct(a, b):
        return None if a is None or b is None or b == 0 else round(100.0 * (a - b) / b, 2)

    def diff(a, b):
        return None if a is None or b is None else round(a - b, 4)

    return {"change_from_baseline": diff(now, base), "percent_from_baseline": pct(now, base),
            "change_from_previous": diff(now, prev), "percent_from_previous": pct(now, prev)}


MEASURES = ("volume_ml", "ftv_ml", "longest_diameter_mm")


def change_table(tracks, visits, ftv: list[dict[int, float]], dates: list[str | None],
                 settings: ResponseSettings | None = None, measured: dict | None = None) -> dict:
    """``{"lesions": [...], "exams": [...], "targets": [...], "notes": [...]}`` (module docstring).

    *tracks* from :func:`~.match.match_visits`, *visits* their :class:`~.match.VisitLesions`,
    *ftv[k]* maps visit *k*'s lesion labels to their FTV (mL). *measured*: (track id, visit) ->
    volume and longest diameter of the track's lesion there by one outline rule at every visit
    (:mod:`.measure`); they replace the segmented lesions' sums."""
    s = settings or ResponseSettings()
    n = len(visits)

    def measure(t, k):
        labs = t.members.get(k)
        if not labs:
            return None
        les = [visits[k].lesions[lab - 1] for lab in labs]
        return {"volume_ml": sum(x.volume_ml for x in les), "ftv_ml": sum(ftv[k].get(lab, 0.0) for lab in labs),
                "longest_diameter_mm": sum(x.longest_diameter_mm for x in les), "n_fragments": len(les),
                "side": les[0].side, "looked_back": all(LOOKBACK_FLAG in x.flags for x in les),
                "enhanced_before": all(SEEN_BEFORE_FLAG in x.flags for x in les),
                "second_looked": all(SECOND_LOOK_FLAG in x.flags for x in les),
                **(measured or {}).get((t.track_id, k), {})}

    table = {t.track_id: [measure(t, k) for k in range(n)] for t in tracks}
    base_tracks = [{"id": t.track_id, "diameter_mm": table[t.track_id][0]["longest_diameter_mm"],
                    "side": table[t.track_id][0]["side"]} for t in tracks
                   if t.first_visit == 0 and (s.lookback_targets or not table[t.track_id][0]["looked_back"])
                   and not (s.second_look_non_targets and table[t.track_id][0]["second_looked"])]
    targets, note = choose_targets(base_tracks, s)
    notes = [note] if note else []
    rows = []
    for t in tracks:
        for k in range(n):
            m = table[t.track_id][k]
            if k < t.first_visit:
                continue
            seen_before = any(table[t.track_id][j] for j in range(t.first_visit, k))
            status = ("baseline" if k == 0 else "new" if k == t.first_visit else
                      "present" if m else "disappeared" if seen_before else "absent")
            row = {"track": t.track_id, "visit": k + 1, "date": dates[k], "status": status,
                   "target": t.track_id in targets, "n_fragments": m["n_fragments"] if m else 0,
                   "centroid_baseline_lps_mm": [round(float(c), 2) for c in t.centroid] if k == t.first_visit else None,
                   "lesion_labels": list(t.members.get(k, []))}
            first = table[t.track_id][t.first_visit]
            prev = table[t.track_id][k - 1] if k > t.first_visit else None
            for key in MEASURES:
                now = m[key] if m else 0.0
                row[key] = round(now, 4)
                ch = _change(now, first[key] if t.first_visit == 0 else None,
                             (prev[key] if prev else 0.0) if k > t.first_visit else None)
                row.update({f"{key}_{name}": v for name, v in ch.items()})
            rows.append(row)
    sums = [sum((table[i][k] or {}).get("longest_diameter_mm", 0.0) for i in targets) for k in range(n)]
    exams, totals = [], []
    for k in range(n):
        present = [table[t.track_id][k] for t in tracks if table[t.track_id][k]]
        tot = {"volume_ml": sum(m["volume_ml"] for m in present), "ftv_ml": sum(m["ftv_ml"] for m in present),
               "sum_target_diameters_mm": sums[k]}
        totals.append(tot)
        new = [t.track_id for t in tracks if t.first_visit == k and k > 0]
        unequivocal = [i for i in new if table[i][k]["longest_diameter_mm"] >= s.new_lesion_min_mm
                       and not table[i][k]["enhanced_before"]]
        gone = [t.track_id for t in tracks if k > 0 and t.first_visit < k and table[t.track_id][k - 1]
                and not table[t.track_id][k]]
        row = {"visit": k + 1, "date": dates[k], "n_lesions": len(present), "new_tracks": new,
               "disappeared_tracks": gone}
        for key, now in tot.items():
            row[key] = round(now, 4)
            if k:
                row.update({f"{key}_{name}": v for name, v in
                            _change(now, totals[0][key], totals[k - 1][key]).items()})
        if k:
            row["recist"], row["recist_reason"] = recist_category(sums, k, bool(unequivocal), bool(present), s)
        else:
            row["recist"], row["recist_reason"] = "baseline", f"{len(targets)} target lesion(s), sum {sums[0]:.1f} mm"
        exams.append(row)
    return {"lesions": rows, "exams": exams, "targets": targets, "notes": notes}
