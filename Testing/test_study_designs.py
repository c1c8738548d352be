"""Every study design reports in one command, and readers score each breast (issue 29, items 3-4).

* unaided readers + ``--model`` (the Hirsch et al. design): the model is run at ``study init``, the
  export carries its rows, ``reader-study`` gives the model-vs-readers report;
* no model: ``reader-study`` gives the inter-reader report (leave-one-out, pairwise Dice, Fleiss' kappa);
* ``--scores probability,birads``: readers' per-breast scores, blinded, timed, saved at once,
  locked on submit, exported as the table ``reader-study --scores`` reads; the hybrid AUC appears.

Small phantoms (4 mm voxels, one tumour each) and simulated readers with known biases.
"""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from sklearn.metrics import roc_auc_score
from statsmodels.stats.inter_rater import fleiss_kappa

from BreastTumorSegLib.cli import main
from BreastTumorSegLib.core.errors import InputError
from BreastTumorSegLib.evaluation.interreader import fleiss_kappa_binary
from BreastTumorSegLib.evaluation.simulation import SimulatedRater, simulate_case
from BreastTumorSegLib.study.coordinator import init_study
from BreastTumorSegLib.study.definition import load_study
from BreastTumorSegLib.study.session import ReaderSession, SubmittedError, audit_log
from study_fixtures import Clock, write_model_outputs, write_study_exam

SEEDS = (2, 3, 6)
READERS = (SimulatedRater("a", -0.5, 1.0), SimulatedRater("b", 0.5, 1.5), SimulatedRater("c", 3.0, 2.0))
MODEL = SimulatedRater("model", 0.5, 1.0)


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2 * (a & b).sum() / (a.sum() + b.sum())


def arr(img_or_path) -> np.ndarray:
    img = sitk.ReadImage(str(img_or_path)) if isinstance(img_or_path, (str, Path)) else img_or_path
    return sitk.GetArrayFromImage(img) > 0


@pytest.fixture(scope="module")
def exams(tmp_path_factory):
    """Three phantom exams, their truth (mask, tumour side), simulated readers' masks on disk, and a
    simulated model's outputs (for --model-outputs)."""
    root = tmp_path_factory.mktemp("designs")
    rows, truth_rows, out = ["case,path"], ["case,side,malignant"], {"masks": {}, "truth": {}, "side": {}}
    rng = np.random.default_rng(0)
    (root / "model").mkdir()
    for s in SEEDS:
        case, ph, truth = write_study_exam(root, s)
        rows.append(f"{case},{case}")
        side = ph.tumors[0]["side"]
        out["side"][case] = side
        truth_rows += [f"{case},left,{int(side == 'left')}", f"{case},right,{int(side == 'right')}"]
        out["truth"][case] = truth
        sim = simulate_case(case, truth, READERS, MODEL, rng)
        for r, m in sim.readers.items():
            path = root / f"{r}_{case}.nii.gz"
            sitk.WriteImage(m, str(path))
            out["masks"][(r, case)] = path
        write_model_outputs(root / "model", case, sim)
    (root / "cases.csv").write_text("\n".join(rows) + "\n")
    (root / "truth.csv").write_text("\n".join(truth_rows) + "\n")
    out.update(root=root, cases=root / "cases.csv", truth_csv=root / "truth.csv", model=root / "model")
    return out


def reader_probability(reader: str, case: str, side: str, exams) -> float:
    """Reader a scores the tumour side high (a good reader); b and c are noisier."""
    malignant = exams["side"][case] == side
    noise = {"a": 0.0, "b": 35.0, "c": 45.0}[reader]
    rng = np.random.default_rng([SEEDS.index(int(case[1:])), ord(reader), side == "left"])
    return float(np.clip((75.0 if malignant else 25.0) + noise * rng.standard_normal(), 0, 100))


# ------------------------------------------------------------------ the Hirsch design: unaided + model
@pytest.fixture(scope="module")
def hirsch(exams, tmp_path_factory):
    """`study init --arms unaided --model ftv --scores probability,birads --truth` (the model is RUN on
    every case), readers a and b read in sessions (timed, scored), c's masks are imported, then export."""
    tmp = tmp_path_factory.mktemp("hirsch")
    study = tmp / "S"
    assert main(["study", "init", "--cases", str(exams["cases"]), "--readers", "a,b,c", "--arms", "unaided",
                 "--model", "ftv", "--scores", "probability,birads", "--truth", str(exams["truth_csv"]),
                 "--output", str(study), "--seed", "3", "--no-breast-region"]) == 0
    s_def = load_study(study)
    by_label = {c.label: c.id for c in s_def.cases}
    for r in ("a", "b"):
        clock = Clock()
        s = ReaderSession.open_study(study, r, clock=clock)
        v = s.open()
        while v is not None:
            case = by_label[v.label]
            assert v.score_kinds == ("probability", "birads") and v.model_scores is None  # unaided: blinded
            clock.t += 120
            s.activity(edit=True)
            s.set_scores({side: {"probability": reader_probability(r, case, side, exams),
                                 "birads": "4B" if exams["side"][case] == side else "2"} for side in ("left", "right")})
            s.submit(sitk.ReadImage(str(exams["masks"][(r, case)])))
            v = s.next()
        s.end()
    for c in s_def.cases:
        pl, pr = (reader_probability("c", c.id, side, exams) for side in ("left", "right"))
        assert main(["study", "import", str(study), "--reader", "c", "--case", c.id, "--mask",
                     str(exams["masks"][("c", c.id)]), "--probability", f"{pl:.1f},{pr:.1f}",
                     "--birads", "3,3"]) == 0
    table = tmp / "out" / "table.csv"
    assert main(["study", "export", str(study), "--output", str(table)]) == 0
    return {"study": study, "table": table, "scores": table.with_name("table.scores.csv"), "tmp": tmp,
            "def": load_study(study)}


def test_unaided_study_with_a_model_runs_it_exports_its_rows_and_gives_the_hirsch_report(exams, hirsch, capsys):
    rows = list(csv.DictReader(hirsch["table"].open()))
    model_rows = [r for r in rows if r["reader"] == "model"]
    assert len(rows) == len(SEEDS) * 4 and len(model_rows) == len(SEEDS)
    assert hirsch["def"].model["name"] == "ftv" and len(hirsch["def"].model["sha256"]) == 64
    for r in model_rows:  # the model was run on the exam: its mask finds the phantom's tumour
        got = arr(hirsch["table"].parent / r["mask"])
        assert dice(got, arr(exams["truth"][r["case"]])) > 0.5
    report = hirsch["tmp"] / "report"
    capsys.readouterr()
    assert main(["reader-study", str(hirsch["table"]), "--output", str(report), "--bootstrap", "100",
                 "--quiet", "--margins", "-0.1", "0.1"]) == 0, capsys.readouterr().err
    s = json.loads((report / "summary.json").read_text())
    assert s["study"]["readers"] == ["a", "b", "c"] and s["study"]["n_eval_cases"] == len(SEEDS)
    assert set(s["model"]["median_dice"]) == {"excl-a", "excl-b", "excl-c"}
    for r in ("a", "b", "c"):  # each reader against the intersection of the other two, as computed here
        others = [o for o in ("a", "b", "c") if o != r]
        want = np.median([dice(arr(exams["masks"][(r, c)]), arr(exams["masks"][(others[0], c)])
                               & arr(exams["masks"][(others[1], c)])) for c in [c.id for c in hirsch["def"].cases]])
        assert s["readers"][r]["median_dice"] == pytest.approx(want)
        assert 0 <= s["readers"][r]["wilcoxon_p"] <= 1 and 0 <= s["readers"][r]["tost_p"] <= 1
    model_dice = [dice(arr(hirsch["table"].parent / m["mask"]), arr(exams["masks"][("b", m["case"])])
                       & arr(exams["masks"][("c", m["case"])])) for m in model_rows]
    assert s["model"]["median_dice"]["excl-a"] == pytest.approx(np.median(model_dice))
    assert "wilcoxon_p" in s["comparison"] and s["comparison"]["bounds"]["low"] == -0.1
    assert s["hybrid"] is None  # no --scores: no hybrid section


def test_readers_scores_are_exported_and_the_hybrid_reader_model_auc_is_reported(exams, hirsch, capsys):
    rows = list(csv.DictReader(hirsch["scores"].open()))
    units = {(c, side) for c in exams["side"] for side in ("left", "right")}
    truth = {(c, side): int(exams["side"][c] == side) for c, side in units}
    model = {(r["case"], r["side"]): float(r["score"]) for r in rows if r["reader"] == "model"}
    assert set(model) == units  # the model's per-breast scores are always in the export
    for r in rows:
        assert int(r["malignant"]) == truth[(r["case"], r["side"])]
    prob = {(r["reader"], r["case"], r["side"]): float(r["score"]) for r in rows if r["kind"] == "probability"
            and r["reader"] != "model"}
    assert len(prob) == 3 * len(units) and all(0 <= v <= 1 for v in prob.values())
    assert prob[("a", "P002", exams["side"]["P002"])] == pytest.approx(0.75)  # 75 % -> 0.75
    assert {r["value"] for r in rows if r["kind"] == "birads" and r["reader"] == "c"} == {"3"}
    report = hirsch["tmp"] / "report_scores"
    capsys.readouterr()
    assert main(["reader-study", str(hirsch["table"]), "--scores", str(hirsch["scores"]), "--output", str(report),
                 "--bootstrap", "100", "--quiet", "--margins", "-0.1", "0.1"]) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    s = json.loads((report / "summary.json").read_text())
    hyb = {h["reader"]: h for h in s["hybrid"]}
    assert set(hyb) == {"a", "b", "c"}
    order = sorted(units)
    y = [truth[u] for u in order]
    for r in ("a", "b", "c"):  # 0.5 * reader + 0.5 * model, by hand
        mix = [0.5 * prob[(r, *u)] + 0.5 * model[u] for u in order]
        assert hyb[r]["hybrid_auc_at_0.5"] == pytest.approx(roc_auc_score(y, mix))
        assert hyb[r]["reader_auc"] == pytest.approx(roc_auc_score(y, [prob[(r, *u)] for u in order]))
    assert hyb["a"]["reader_auc"] == 1.0  # the good reader separates the tumour side from the other
    assert f"hybrid 0.5·a + 0.5·model: AUC {hyb['a']['hybrid_auc_at_0.5']:.3f}" in out
    assert "Human–AI hybrid" in (report / "summary.md").read_text()
    # BI-RADS instead (rank scale): reader c gave 3 everywhere, so c alone is at chance
    report2 = hirsch["tmp"] / "report_birads"
    assert main(["reader-study", str(hirsch["table"]), "--scores", str(hirsch["scores"]), "--score-kind", "birads",
                 "--output", str(report2), "--bootstrap", "50", "--quiet", "--margins", "-0.1", "0.1"]) == 0
    hb = {h["reader"]: h for h in json.loads((report2 / "summary.json").read_text())["hybrid"]}
    assert hb["c"]["reader_auc"] == 0.5 and hb["a"]["reader_auc"] == 1.0 and hb["a"]["normalize"] == "rank"


# ------------------------------------------------------------------------------------ no model
def test_a_study_without_a_model_gives_the_inter_reader_report(exams, tmp_path, capsys):
    study = tmp_path / "S"
    init_study(exams["cases"], ["a", "b", "c"], ["unaided"], study, seed=1, breast_region=False)
    for (r, c), path in exams["masks"].items():
        assert main(["study", "import", str(study), "--reader", r, "--case", c, "--mask", str(path)]) == 0
    table = tmp_path / "t.csv"
    assert main(["study", "export", str(study), "--output", str(table)]) == 0
    assert not (tmp_path / "t.scores.csv").exists()  # no scores in this study
    report = tmp_path / "report"
    capsys.readouterr()
    assert main(["reader-study", str(table), "--output", str(report), "--bootstrap", "100", "--quiet"]) == 0, \
        capsys.readouterr().err
    out = capsys.readouterr().out
    s = json.loads((report / "summary.json").read_text())
    assert s["study"]["design"].startswith("inter-reader") and "no model" in out
    cases = sorted(exams["side"])
    m = {(r, c): arr(exams["masks"][(r, c)]) for r in "abc" for c in cases}
    for r in "abc":
        o1, o2 = [o for o in "abc" if o != r]
        assert s["readers"][r]["median_dice"] == pytest.approx(np.median([dice(m[r, c], m[o1, c] & m[o2, c])
                                                                         for c in cases]))
    for a, b in (("a", "b"), ("a", "c"), ("b", "c")):
        want = np.median([dice(m[a, c], m[b, c]) for c in cases])
        assert s["pairwise_dice"][a][b] == pytest.approx(want) == s["pairwise_dice"][b][a]
    # reader c dilates by 3 mm: the least agreement with the others
    assert s["reader_order"][-1] == "c" and s["pairwise_dice"]["a"]["b"] > s["pairwise_dice"]["a"]["c"]
    # Fleiss' kappa per case = statsmodels' on the same voxels (the box around the masks + 2 voxels)
    kappas = {row["case"]: float(row["fleiss_kappa"]) for row in csv.DictReader((report / "fleiss_kappa.csv").open())}
    for c in cases:
        union = m["a", c] | m["b", c] | m["c", c]
        box = tuple(slice(max(int(i.min()) - 2, 0), int(i.max()) + 3) for i in np.nonzero(union))
        n = (m["a", c][box].astype(int) + m["b", c][box] + m["c", c][box]).ravel()
        assert kappas[c] == pytest.approx(fleiss_kappa(np.stack([3 - n, n], 1)))
    assert 0.3 < s["fleiss_kappa"]["pooled"] < 1.0
    md = (report / "summary.md").read_text()
    assert "Pairwise Dice" in md and "Fleiss" in md
    # with --scores there is no model to mix with: one clear error, exit 2
    sc = tmp_path / "sc.csv"
    sc.write_text("case,reader,score,malignant\nP002,a,0.5,1\n")
    assert main(["reader-study", str(table), "--scores", str(sc), "--output", str(tmp_path / "r2"), "--quiet"]) == 2
    assert "needs the model's rows" in capsys.readouterr().err


def test_a_table_with_model_rows_for_some_cases_only_still_stops(exams, tmp_path, capsys):
    """Inter-reader mode is for studies without a model, not a cover for missing model rows."""
    lines = ["case,reader,mask"] + [f"{c},{r},{exams['masks'][(r, c)]}" for r in "abc" for c in sorted(exams["side"])]
    lines.append(f"P002,model,{exams['model'] / 'P002_seg.nii.gz'}")
    table = tmp_path / "t.csv"
    table.write_text("\n".join(lines) + "\n")
    assert main(["reader-study", str(table), "--output", str(tmp_path / "r"), "--quiet"]) == 2
    assert "has no model mask" in capsys.readouterr().err


def test_fleiss_kappa_of_two_raters_is_scotts_pi_and_perfect_agreement_is_one():
    # two raters, items with 2, 2, 0, 0, 1 "tumour" votes: P̄ = 0.8, p1 = 0.5, Pe = 0.5 -> kappa 0.6
    assert fleiss_kappa_binary(np.bincount([2, 2, 0, 0, 1], minlength=3))[0] == pytest.approx(0.6)
    assert fleiss_kappa_binary([10, 0, 0, 5])[0] == pytest.approx(1.0)
    rng = np.random.default_rng(1)
    n = rng.integers(0, 5, 400)
    assert fleiss_kappa_binary(np.bincount(n, minlength=5))[0] == pytest.approx(fleiss_kappa(np.stack([4 - n, n], 1)))


# ------------------------------------------------------------------------- scoring in a session
def test_scores_are_blinded_timed_saved_at_once_required_for_submit_and_locked(exams, tmp_path):
    study = init_study(exams["cases"], ["a"], ["unaided", "assisted"], tmp_path / "S", seed=4, model="ftv",
                       model_outputs=exams["model"], breast_region=False, scores=["probability"])
    model_scores = {c.label: c.model["scores"] for c in study.cases}
    for c in study.cases:  # the simulated model's mask lies on the tumour's side only
        side = exams["side"][c.id]
        assert c.model["scores"][side] > 0.5 and c.model["scores"]["right" if side == "left" else "left"] == 0.0
    clock = Clock()
    s = ReaderSession(study, "a", clock=clock)
    v = s.open()
    arms = []
    while v is not None:
        arms.append(v.arm)
        if v.arm == "assisted":
            assert v.model_scores == model_scores[v.label]  # assisted: the model's per-breast scores are shown
        else:
            assert v.model_scores is None  # the unaided reading shows no model score
        with pytest.raises(InputError, match="scores of both breasts"):
            s.submit(v.starting_mask())
        with pytest.raises(InputError, match="percentage"):
            s.set_scores({"left": {"probability": 120}, "right": {"probability": 10}})
        before = s.active_seconds()
        clock.t += 30
        s.set_scores({"left": {"probability": 10}})
        with pytest.raises(InputError, match="scores of both breasts"):
            s.submit(v.starting_mask())
        s.set_scores({"right": {"probability": 90}})
        assert s.active_seconds() == pytest.approx(before + 30)  # scoring is reading time
        state = json.loads((study.folder / "readers" / "a" / "state.json").read_text())
        assert state["items"][f"{v.label}/{v.arm}"]["scores"] == {"left": {"probability": 10.0},
                                                                  "right": {"probability": 90.0}}  # saved at once
        s.submit(v.starting_mask())
        with pytest.raises(SubmittedError):
            s.set_scores({"left": {"probability": 50}})
        v = s.next()
    s.end()
    assert sorted(arms) == ["assisted"] * 3 + ["unaided"] * 3
    assert len([e for e in audit_log(study, "a") if e["event"] == "scored"]) == 2 * 6
    # the export carries the readers' scores of both arms and the model's (no truth given: empty)
    table = tmp_path / "t.csv"
    assert main(["study", "export", str(study.folder), "--output", str(table)]) == 0
    rows = list(csv.DictReader(table.with_name("t.scores.csv").open()))
    assert len([r for r in rows if r["reader"] == "a"]) == 2 * 2 * 3 and len([r for r in rows if r["reader"] == "model"]) == 6
    assert {r["malignant"] for r in rows} == {""}


def test_model_scores_come_from_the_classifier_when_present_else_from_the_lesions_per_side(monkeypatch):
    import sys
    import types

    from BreastTumorSegLib.study.model_scores import breast_scores

    label = sitk.Image(20, 10, 6, sitk.sitkUInt8)
    label.SetOrigin((-10.0, 0.0, 0.0))  # LPS x from -10 to +9 mm: +x is the patient's left
    label[15:18, 4:6, 2:4] = 1  # a lesion at x = +5..+7 mm
    prob = sitk.Cast(label, sitk.sitkFloat32) * 0.8
    monkeypatch.setitem(sys.modules, "BreastTumorSegLib.engine.classify", None)  # not installed
    assert breast_scores(object(), label, prob) == {"left": pytest.approx(0.8), "right": 0.0}
    label.SetDirection((-1, 0, 0, 0, 1, 0, 0, 0, 1))  # the same voxels now lie on the right
    label.SetOrigin((10.0, 0.0, 0.0))
    prob.CopyInformation(label)
    assert breast_scores(None, label, prob) == {"left": 0.0, "right": pytest.approx(0.8)}
    fake = types.ModuleType("BreastTumorSegLib.engine.classify")
    fake.classify_exam = lambda exam: {"left": 0.3, "right": 0.9}
    monkeypatch.setitem(sys.modules, "BreastTumorSegLib.engine.classify", fake)
    assert breast_scores(object(), label, prob) == {"left": 0.3, "right": 0.9}
