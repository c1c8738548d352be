"""Reader-study statistics against hand calculations and scipy/statsmodels; a simulated 4-reader study.

The simulated readers are the true lesion boundary moved outwards by a bias (mm, negative =
inwards) plus smooth random noise. Which reader "wins" depends on the reference, and the tests
state why:

* intersection of the other readers (Hirsch et al.): the intersection is pulled towards the most
  eroding reader, so readers rank by how little they dilate: R1 (−0.5 mm) > R2 (+0.3) > R3 (+1.0)
  > R4 (+2.0);
* majority of the other three: the reference follows the middle of the others' biases, so the
  readers nearest the middle (R2, R3) lead and the most extreme dilator (R4) is last.
"""
from __future__ import annotations

import argparse
import csv
import inspect
import json
import math

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import stats as sps

from BreastTumorSegLib.evaluation import metrics as M
from BreastTumorSegLib.evaluation import readerstudy as RS
from BreastTumorSegLib.evaluation import simulation as SIM
from BreastTumorSegLib.evaluation import report
from BreastTumorSegLib.evaluation import stats as S
from BreastTumorSegLib.cli import reader_study as cli
from BreastTumorSegLib.core.errors import InputError, OutputExistsError

R = SIM.SimulatedRater
READERS = (R("R1", -0.5, 0.8), R("R2", 0.3, 1.0), R("R3", 1.0, 1.2), R("R4", 2.0, 1.5))
GOOD_MODEL = R("model", 0.5, 1.8)
BAD_MODEL = R("model", 4.5, 1.2)  # over-segments by 4.5 mm: far worse than the weakest reader


# ============================================================================== statistics
# A worked example, small enough to check by hand: six paired differences (model − reader Dice).
D6 = np.array([0.020, -0.030, 0.045, 0.070, 0.012, -0.008])
LOW, HIGH = -0.10, 0.05


def test_tost_wilcoxon_worked_example():
    """TOST by hand on 6 differences with bounds (−0.10, +0.05).

    Lower test, H0: centre ≤ −0.10. d + 0.10 are all positive, so W+ = 1+2+…+6 = 21, and under H0
    each of the 2⁶ = 64 sign patterns is equally likely: P(W+ ≥ 21) = 1/64 = 0.015625.
    Upper test, H0: centre ≥ +0.05. d − 0.05 = (−0.030, −0.080, −0.005, +0.020, −0.038, −0.058);
    ranks of |·|: 0.005→1, 0.020→2, 0.030→3, 0.038→4, 0.058→5, 0.080→6; only +0.020 is positive,
    so W+ = 2 and P(W+ ≤ 2) = #{∅, {1}, {2}} / 64 = 3/64 = 0.046875.
    TOST p = max = 0.046875: equivalent at α = 0.05, not at α = 0.04.
    """
    t = S.tost_wilcoxon(D6, LOW, HIGH, alpha=0.05)
    assert t.statistic_lower == 21 and t.statistic_upper == 2
    assert t.p_lower == pytest.approx(1 / 64, abs=1e-12)
    assert t.p_upper == pytest.approx(3 / 64, abs=1e-12)
    assert t.p_value == pytest.approx(3 / 64, abs=1e-12)
    assert t.equivalent
    assert not S.tost_wilcoxon(D6, LOW, HIGH, alpha=0.04).equivalent
    assert t.extra["method_lower"] == t.extra["method_upper"] == "exact"
    # the same numbers straight from scipy, one-sided tests on the shifted differences
    assert sps.wilcoxon(D6 - LOW, alternative="greater").pvalue == pytest.approx(t.p_lower)
    assert sps.wilcoxon(D6 - HIGH, alternative="less").pvalue == pytest.approx(t.p_upper)


def test_tost_paired_t_worked_example():
    """Paired t TOST on the same 6 differences, by hand.

    mean = 0.109/6 = 0.0181667, SD = 0.0359245, SE = SD/√6 = 0.0146661;
    t_low = (mean + 0.10)/SE = 8.0571, p = P(T₅ > 8.0571) = 2.38e-4;
    t_high = (mean − 0.05)/SE = −2.1705, p = P(T₅ < −2.1705) = 0.04104.
    """
    t = S.tost_paired_t(D6, LOW, HIGH)
    assert t.estimate == pytest.approx(0.0181667, abs=1e-7)
    assert t.statistic_lower == pytest.approx(8.0571, abs=1e-4)
    assert t.statistic_upper == pytest.approx(-2.1705, abs=1e-4)
    assert t.p_lower == pytest.approx(2.384e-4, rel=1e-3)
    assert t.p_upper == pytest.approx(0.04104, rel=1e-3)
    se = D6.std(ddof=1) / math.sqrt(6)
    assert t.p_lower == pytest.approx(sps.t.sf((D6.mean() - LOW) / se, 5))
    assert t.p_upper == pytest.approx(sps.t.cdf((D6.mean() - HIGH) / se, 5))
    assert t.equivalent and t.p_value == pytest.approx(t.p_upper)


def test_wilcoxon_matches_scipy_and_handles_zeros():
    rng = np.random.default_rng(3)
    d = rng.normal(0.02, 0.05, 80)
    w = S.wilcoxon_signed_rank(d)
    ref = sps.wilcoxon(d)
    assert w.p_value == pytest.approx(ref.pvalue) and w.statistic == pytest.approx(ref.statistic)
    assert w.method == "asymptotic"  # n > 50
    # zeros are dropped ("wilcox" convention) and reported
    dz = np.r_[D6, 0.0, 0.0]
    wz = S.wilcoxon_signed_rank(dz)
    assert wz.n == 8 and wz.n_nonzero == 6
    assert wz.p_value == pytest.approx(sps.wilcoxon(D6).pvalue)
    # nothing to test: p = 1
    assert S.wilcoxon_signed_rank(np.zeros(5)).p_value == 1.0
    with pytest.raises(ValueError):
        S.wilcoxon_signed_rank([0.1, float("nan")])


def test_hodges_lehmann_by_hand():
    # Walsh averages of (1, 2, 4): 1, 1.5, 2.5, 2, 3, 4 -> median 2.25
    assert S.hodges_lehmann([1, 2, 4]) == pytest.approx(2.25)
    assert S.wilcoxon_signed_rank([1, 2, 4]).hodges_lehmann == pytest.approx(2.25)


def test_bootstrap_ci_is_seeded_and_brackets_the_median():
    v = np.random.default_rng(0).normal(0.8, 0.05, 40)
    lo, hi = S.bootstrap_ci(v, n_resamples=1000, seed=1)
    assert lo < np.median(v) < hi
    assert (lo, hi) == S.bootstrap_ci(v, n_resamples=1000, seed=1)
    generator = "rng" if "rng" in inspect.signature(sps.bootstrap).parameters else "random_state"  # scipy < 1.15
    ref = sps.bootstrap((v,), np.median, n_resamples=1000, method="percentile",
                        **{generator: np.random.default_rng(1)}).confidence_interval
    assert (lo, hi) == pytest.approx((ref.low, ref.high))
    assert S.bootstrap_ci([0.7, 0.7, 0.7]) == (0.7, 0.7)


def test_roc_auc_equals_mann_whitney_with_ties():
    rng = np.random.default_rng(5)
    y = rng.random(400) < 0.3
    s = np.round(rng.random(400) * 0.6 + 0.4 * y, 1)  # coarse scores: many ties
    curve = S.roc_curve(s, y)
    u = sps.mannwhitneyu(s[y], s[~y]).statistic / (y.sum() * (~y).sum())
    assert curve.auc == pytest.approx(u, abs=1e-12)
    assert S.auc_mann_whitney(s, y) == pytest.approx(u, abs=1e-12)
    assert curve.fpr[0] == 0 and curve.tpr[-1] == 1 and curve.fpr[-1] == 1
    assert np.all(np.diff(curve.fpr) >= 0) and np.all(np.diff(curve.tpr) >= 0)
    assert math.isnan(S.roc_curve([0.1, 0.2], [1, 1]).auc)


def test_roc_accumulator_matches_exact_and_streams():
    rng = np.random.default_rng(6)
    y = rng.random(20_000) < 0.05
    s = np.clip(rng.normal(0.2 + 0.5 * y, 0.2), 0, 1)
    exact = S.roc_curve(s, y).auc
    acc = S.RocAccumulator(bins=10_000)
    acc.add(s[:7000], y[:7000])
    acc.add(s[7000:], y[7000:])
    assert acc.curve().auc == pytest.approx(exact, abs=1e-4)
    # scores already on the bin grid: identical to the exact AUC
    q = np.floor(s * 100) / 100
    acc_q = S.RocAccumulator(bins=100)
    acc_q.add(q + 1e-9, y)
    assert acc_q.curve().auc == pytest.approx(S.roc_curve(q, y).auc, abs=1e-12)


def test_hybrid_average_fixes_independent_errors():
    """Reader and model each misorder one (benign, malignant) pair: AUC 8/9 each.

    The reader over-scores benign case 3 (0.7 > malignant 0.6); the model over-scores benign case 2
    (0.5 > malignant 0.4). Averaged (λ = 0.5): benign 0.15, 0.35, 0.40 vs malignant 0.75, 0.60,
    0.85 — every pair in order, AUC 1.
    """
    y = [0, 0, 0, 1, 1, 1]
    reader = [0.1, 0.2, 0.7, 0.6, 0.8, 0.9]
    model = [0.2, 0.5, 0.1, 0.9, 0.4, 0.8]
    h = S.hybrid_auc(reader, model, y, reader="R")
    assert h.reader_auc == pytest.approx(8 / 9) and h.model_auc == pytest.approx(8 / 9)
    assert h.auc[0] == pytest.approx(8 / 9) and h.auc[-1] == pytest.approx(8 / 9)
    assert h.auc_at(0.5) == pytest.approx(1.0)
    assert h.best_auc == pytest.approx(1.0) and 0 < h.best_lambda < 1
    ranked = S.hybrid_auc(reader, model, y, normalize="rank")
    assert ranked.reader_auc == pytest.approx(8 / 9)  # ranks keep each rater's ordering
    with pytest.raises(ValueError):
        S.hybrid_auc(reader, model, [1] * 6)


def test_holm_matches_statsmodels_definition():
    assert S.holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])


# ============================================================================== references
def _img(arr) -> sitk.Image:
    return sitk.GetImageFromArray(np.asarray(arr, np.uint8)[None])


def test_combine_masks_by_hand():
    a = _img([[1, 1, 1, 0, 0]])
    b = _img([[0, 1, 1, 1, 0]])
    c = _img([[0, 0, 1, 1, 1]])
    arr = lambda img: sitk.GetArrayFromImage(img)[0, 0].tolist()  # noqa: E731
    assert arr(RS.combine_masks([a, b, c], "intersection")) == [0, 0, 1, 0, 0]
    assert arr(RS.combine_masks([a, b, c], "majority")) == [0, 1, 1, 1, 0]
    d = _img([[1, 0, 0, 0, 1]])
    # 4 masks: a voxel needs 3 votes; votes are (2, 2, 3, 2, 2) and a 2-2 tie stays background
    assert arr(RS.combine_masks([a, b, c, d], "majority")) == [0, 0, 1, 0, 0]
    # STAPLE: three identical masks give that mask; a voxel only one rater marks is dropped
    same = RS.combine_masks([b, b, b], "staple")
    assert arr(same) == [0, 1, 1, 1, 0]
    assert arr(RS.combine_masks([b, b, _img([[0, 1, 1, 1, 1]])], "staple")) == [0, 1, 1, 1, 0]
    refs = RS.leave_one_out_references({"A": a, "B": b, "C": c})
    assert arr(refs["A"]) == [0, 0, 1, 1, 0]  # B ∩ C
    assert arr(refs["C"]) == [0, 1, 1, 0, 0]  # A ∩ B
    with pytest.raises(ValueError):
        RS.combine_masks([a, b], "mean")


# ============================================================================== simulated studies
@pytest.fixture(scope="module")
def good_study():
    cases, truth = SIM.simulate_study(20, 4, readers=READERS, model=GOOD_MODEL, seed=1)
    scores, malignant = SIM.simulate_scores(400, seed=2)
    result = RS.run_reader_study(cases, RS.StudyConfig(n_bootstrap=500), scores, malignant)
    return cases, truth, result


def test_simulated_readers_are_ordered_by_their_bias_against_truth(good_study):
    cases, truth, _ = good_study
    med = {r.name: np.median([M.dice(c.readers[r.name], truth[c.case_id]) for c in cases]) for r in READERS}
    assert med["R1"] > med["R2"] > med["R3"] > med["R4"]


def test_intersection_reference_ranks_readers_by_how_little_they_dilate(good_study):
    _, _, res = good_study
    s = res.summary
    assert s["reader_order"] == ["R1", "R2", "R3", "R4"]
    assert [s["readers"][r]["rank"] for r in res.readers] == [1, 2, 3, 4]
    # nobody is scored against a reference that contains their own mask
    for row in res.rows:
        if row["kind"] == "reader":
            assert row["rater"] not in row["reference_readers"].split("+")
    assert len(res.rows) == 16 * 4 * 2  # evaluation cases x references x (reader, model)


def test_good_model_is_equivalent_to_the_readers(good_study):
    _, _, res = good_study
    c = res.summary["comparison"]
    b = c["bounds"]
    medians = [res.summary["readers"][r]["median_dice"] for r in res.readers]
    assert b["low"] == pytest.approx(min(medians) - np.mean(medians))
    assert b["high"] == pytest.approx(max(medians) - np.mean(medians))
    assert c["equivalent"] and c["tost_p"] < 0.05
    assert c["tost"]["p_lower"] < 0.05 and c["tost"]["p_upper"] < 0.05
    assert c["tost_paired_t"]["equivalent"]
    # every reported p-value is the library call on the reported vector
    d = res.mean_delta()
    assert c["wilcoxon_p"] == pytest.approx(sps.wilcoxon(d).pvalue)
    assert c["tost"]["p_lower"] == pytest.approx(sps.wilcoxon(d - b["low"], alternative="greater").pvalue)
    assert c["tost"]["p_upper"] == pytest.approx(sps.wilcoxon(d - b["high"], alternative="less").pvalue)
    # the model beats the most dilating reader on that reader's reference, and loses to R1
    r4, r1 = res.summary["readers"]["R4"], res.summary["readers"]["R1"]
    assert r4["median_delta_dice"] > 0 and r4["wilcoxon_p"] < 0.05
    assert r1["median_delta_dice"] < 0 and r1["wilcoxon_p"] < 0.05
    assert r1["wilcoxon_p_holm"] >= r1["wilcoxon_p"]


def test_threshold_is_tuned_on_tuning_cases_only(good_study):
    cases, _, res = good_study
    t = res.tuning
    assert res.tune_cases == [c.case_id for c in cases[:4]]
    assert not set(res.tune_cases) & set(res.eval_cases)
    assert t["chosen"] == t["thresholds"][int(np.argmax(t["mean_dice_tune"]))]
    assert res.summary["model"]["threshold"]["value"] == t["chosen"]
    # the evaluation rows use masks made at that threshold
    case = cases[4]
    ref = RS.leave_one_out_references(case.readers)["R1"]
    model_mask = case.model_prob >= t["chosen"]
    row = next(r for r in res.rows if r["case"] == case.case_id and r["rater"] == "model"
               and r["reference"] == "excl-R1")
    assert row["dice"] == pytest.approx(M.dice(model_mask, ref))


def test_probability_map_auc_and_hybrid(good_study):
    _, _, res = good_study
    aucs = res.summary["model"]["auc"]
    assert set(aucs) == {"excl-R1", "excl-R2", "excl-R3", "excl-R4"}
    assert all(0.99 < a <= 1.0 for a in aucs.values())
    hy = {h["reader"]: h for h in res.summary["hybrid"]}
    assert set(hy) == {"R1", "R2", "R3", "R4"}
    # Independent binormal errors: the 50/50 average has separation (s_r + s_m)/√2, which beats the
    # model (s_m = 1.4) for R1–R3 (s_r = 1.6, 1.3, 1.0) by a margin that 400 cases resolve, and
    # beats every reader alone; for R4 (0.8) the expected gain over the model is marginal.
    for r in ("R1", "R2", "R3"):
        assert hy[r]["hybrid_auc_at_0.5"] > max(hy[r]["reader_auc"], hy[r]["model_auc"])
    assert all(h["hybrid_auc_at_0.5"] > h["reader_auc"] for h in hy.values())


def test_report_files(good_study, tmp_path):
    _, _, res = good_study
    written = report.write_report(res, tmp_path / "rep")
    names = {p.name for p in written}
    assert {"per_case.csv", "summary.json", "summary.md", "dice_distribution.png", "delta_dice.png",
            "roc.png", "roc.csv", "threshold.png", "threshold.csv", "hybrid.png", "hybrid.csv"} <= names
    for p in written:
        if p.suffix == ".png":
            assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 10_000
    summary = json.loads((tmp_path / "rep" / "summary.json").read_text())
    assert summary["median_dice"]["model"]["excl-R3"] == pytest.approx(res.summary["median_dice"]["model"]["excl-R3"])
    rows = list(csv.DictReader((tmp_path / "rep" / "per_case.csv").open()))
    assert len(rows) == len(res.rows) and "hd95_mm" in rows[0]
    md = (tmp_path / "rep" / "summary.md").read_text()
    assert "showed equivalence" in md and "| R4 | excl-R4 |" in md
    with pytest.raises(OutputExistsError):
        report.write_report(res, tmp_path / "rep")


def test_bad_model_is_not_equivalent():
    cases, _ = SIM.simulate_study(10, 0, readers=READERS, model=BAD_MODEL, seed=4)
    res = RS.run_reader_study(cases, RS.StudyConfig(n_bootstrap=200))
    c = res.summary["comparison"]
    assert not c["equivalent"]
    assert c["median_delta_dice"] < c["bounds"]["low"]
    assert c["wilcoxon_p"] < 0.05 and c["tost"]["p_lower"] > 0.5
    assert res.summary["model"]["threshold"]["source"] == "fixed (no tuning cases)"
    assert "was not shown" in report.paper_paragraph(res)


def test_majority_reference_favours_readers_near_the_middle():
    cases, _ = SIM.simulate_study(10, 0, readers=READERS, model=GOOD_MODEL, seed=5)
    res = RS.run_reader_study(cases, RS.StudyConfig(reference="majority", n_bootstrap=200))
    order = res.summary["reader_order"]
    assert order[-1] == "R4"
    assert set(order[:2]) == {"R2", "R3"}


def test_study_input_errors():
    cases, _ = SIM.simulate_study(3, 0, readers=READERS[:3], model=GOOD_MODEL, seed=0, size_xyz=(40, 40, 12))
    broken = [RS.StudyCase(c.case_id, dict(c.readers), c.model_mask, c.model_prob, split=c.split) for c in cases]
    del broken[1].readers["R2"]
    with pytest.raises(InputError, match="missing: R2"):
        RS.run_reader_study(broken)
    no_model = [RS.StudyCase(c.case_id, c.readers) for c in cases]
    with pytest.raises(InputError, match="no model"):
        RS.run_reader_study(no_model)
    with pytest.raises(InputError, match="at least 2"):
        RS.run_reader_study([RS.StudyCase("x", {"R1": cases[0].readers["R1"]}, cases[0].readers["R1"])])
    with pytest.raises(InputError, match="margins"):
        RS.run_reader_study(cases, RS.StudyConfig(margins=(0.05, 0.1)))
    # 3 cases: one-sided exact Wilcoxon p >= 1/8 whatever the data, so TOST can never succeed
    res = RS.run_reader_study(cases, RS.StudyConfig(n_bootstrap=100, margins=(-0.5, 0.5)))
    assert not res.summary["comparison"]["equivalent"]
    assert res.summary["comparison"]["tost_p"] == pytest.approx(1 / 8)
    assert "cannot be shown" in res.summary["comparison"]["note"]


# ============================================================================== CLI
def _parse(argv):
    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers())
    return parser.parse_args(["reader-study", *argv])


def _write_study(folder, cases) -> str:
    lines = ["case,reader,mask,prob"]
    for c in cases:
        for r, m in c.readers.items():
            sitk.WriteImage(m, str(folder / f"{c.case_id}_{r}.nii.gz"))
            lines.append(f"{c.case_id},{r},{c.case_id}_{r}.nii.gz,")
        sitk.WriteImage(c.model_prob, str(folder / f"{c.case_id}_prob.nii.gz"))
        lines.append(f"{c.case_id},model,,{c.case_id}_prob.nii.gz")
    (folder / "table.csv").write_text("\n".join(lines) + "\n")
    return str(folder / "table.csv")


def test_cli_reader_study_writes_summary(tmp_path, capsys):
    cases, _ = SIM.simulate_study(6, 0, readers=READERS[:3], model=GOOD_MODEL, seed=7, size_xyz=(48, 48, 16))
    table = _write_study(tmp_path, cases)
    out = tmp_path / "report"
    args = _parse([table, "--output", str(out), "--margins", "-0.2", "0.2", "--bootstrap", "200", "--quiet"])
    assert args.func(args) == 0
    s = json.loads((out / "summary.json").read_text())
    for r in ("R1", "R2", "R3"):
        assert set(s["median_dice"][r]) == {f"excl-{r}"}
        assert 0 < s["readers"][r]["wilcoxon_p"] <= 1 and 0 < s["readers"][r]["tost_p"] <= 1
    assert set(s["median_dice"]["model"]) == {"excl-R1", "excl-R2", "excl-R3"}
    assert s["comparison"]["bounds"] == {"low": -0.2, "high": 0.2, "source": "user-given margins"}
    assert 0 < s["comparison"]["wilcoxon_p"] <= 1 and 0 < s["comparison"]["tost_p"] <= 1
    # 6 cases: the exact one-sided p can reach 1/64 < 0.05, so no small-sample warning
    assert s["comparison"]["note"] is None
    assert "TOST p" in capsys.readouterr().out
    with pytest.raises(OutputExistsError):
        args.func(args)


def test_cli_table_errors_name_the_file(tmp_path):
    cases, _ = SIM.simulate_study(2, 0, readers=READERS[:2], model=GOOD_MODEL, seed=8, size_xyz=(32, 32, 10))
    table = _write_study(tmp_path, cases)
    bad = tmp_path / "bad.csv"
    bad.write_text("case,rater,file\nA,R1,x.nii.gz\n")
    with pytest.raises(InputError, match="lacks column") as err:
        RS.read_study_table(bad)
    assert "bad.csv" in str(err.value)
    # a reader mask on another grid is refused, naming both files
    other = sitk.Image(33, 32, 10, sitk.sitkUInt8)
    sitk.WriteImage(other, str(tmp_path / f"{cases[0].case_id}_R2.nii.gz"))
    args = _parse([table, "--output", str(tmp_path / "r"), "--quiet"])
    with pytest.raises(InputError) as err:
        args.func(args)
    assert f"{cases[0].case_id}_R1.nii.gz" in str(err.value) and f"{cases[0].case_id}_R2.nii.gz" in str(err.value)
    assert not (tmp_path / "r" / "summary.json").exists()
