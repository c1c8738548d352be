"""The follow-up benchmark counts a refused series as a row (every decision wrong) and goes on."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from BreastTumorSegLib.training.phantom.families import make_exam
from BreastTumorSegLib.training.phantom.series import make_visit_series

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import bench_followup  # noqa: E402

SMALL = dict(size=(128, 96, 40), spacing=(2.4, 2.4, 4.0))


def test_a_refused_series_is_a_row_counted_wrong_and_the_run_goes_on(tmp_path, monkeypatch):
    made = {}

    def small_series(fam, seed, n_visits=2, new_lesion_at=None):
        s = make_visit_series(fam, seed, n_visits=n_visits, new_lesion_at=new_lesion_at, **SMALL)
        if seed == 6000:  # visit 2 is another patient's exam: the follow-up refuses it
            s.visits[1].exam = make_exam("heterogeneous", 6003, spacing=(2.4, 2.4, 4.0)).exam
        made[seed] = s
        return s

    monkeypatch.setattr(bench_followup, "make_visit_series", small_series)
    out = tmp_path / "bench.json"
    assert bench_followup.main(["--families", "ellipse", "--seeds", "6000-6001", "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    refused, done = res["series"]
    assert "visit 2" in refused["refused"] and "anatomy" in refused["refused"]
    n_refused = len(made[6000].visits[0].tumors)  # one decision per baseline tumor at visit 2
    assert n_refused >= 1 and refused["matching_correct"] == f"0/{n_refused}"
    assert refused["recist_correct"] == [False] and refused["recist"] == ["baseline", "refused"]
    assert all(d["cause"] == "series refused" for d in refused["decisions"])
    assert "refused" not in done and len(done["registration_error_mm"]) == done["visits"] - 1  # the next was measured
    summary = res["summary"]
    assert summary["series"] == 2 and summary["refused_series"] == ["ellipse:6000"]
    n_done = int(done["matching_correct"].split("/")[1])
    right = int(done["matching_correct"].split("/")[0])
    assert summary["matching_correct"] == f"{right}/{n_refused + n_done}"
    assert summary["recist_correct"] == f"{sum(done['recist_correct'])}/{1 + len(done['recist_correct'])}"

