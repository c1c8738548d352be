"""Reader-study sessions (BreastTumorSegLib.study and `breasttumorseg study`): blinding, seeded
orders, wash-out, timing, versioned autosaves, kill -9 during saves, concurrent readers, locks,
hand-edited folders, and export -> `reader-study` report on a simulated study with known truth."""
from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from BreastTumorSegLib.cli import main
from BreastTumorSegLib.core.errors import InputError
from BreastTumorSegLib.evaluation.simulation import SimulatedRater, simulate_case
from BreastTumorSegLib.study.coordinator import import_mask, init_study, study_status
from BreastTumorSegLib.study.definition import load_study, reading_order
from BreastTumorSegLib.study.session import ReaderSession, SubmittedError, audit_log
from BreastTumorSegLib.study.storage import Lock, StudyLockedError, iter_versions
from study_fixtures import Clock, write_model_outputs, write_study_exam

ROOT = Path(__file__).resolve().parents[1]
WORKER = Path(__file__).with_name("study_worker.py")
SEEDS = (2, 3, 4, 6)
READERS = (SimulatedRater("R1", -1.0, 1.5), SimulatedRater("R2", 0.5, 2.0), SimulatedRater("R3", 2.0, 2.0))
MODEL = SimulatedRater("model", 0.5, 1.0)


@pytest.fixture(scope="module")
def exams(tmp_path_factory):
    """Four small phantom exams (one tumor each), their truth, and a simulated model's outputs."""
    root = tmp_path_factory.mktemp("exams")
    rows, truths, sims = ["case,path"], {}, {}
    rng = np.random.default_rng(0)
    (root / "model").mkdir()
    for s in SEEDS:
        case, ph, truth = write_study_exam(root, s)
        rows.append(f"{case},{case}")
        assert sitk.GetArrayFromImage(truth).sum() > 20
        truths[case] = truth
        sim = simulate_case(case, truth, READERS, MODEL, rng)
        sims[case] = sim
        write_model_outputs(root / "model", case, sim)
    (root / "cases.csv").write_text("\n".join(rows) + "\n")
    return {"root": root, "cases": root / "cases.csv", "model": root / "model", "truths": truths, "sims": sims}


def make_study(exams, out: Path, readers=("a", "b"), arms=("unaided", "assisted"), **kw) -> Path:
    kw.setdefault("seed", 11)
    kw.setdefault("breast_region", False)  # the end-to-end test keeps it (a few seconds per exam)
    init_study(exams["cases"], list(readers), list(arms), out, model="ftv" if "assisted" in arms else None,
               model_outputs=exams["model"] if "assisted" in arms else None, **kw)
    return out


def strings_in(obj, seen=None) -> list[str]:
    """Every string reachable from *obj*'s public attributes (what a front end could show)."""
    seen = seen if seen is not None else set()
    if id(obj) in seen:
        return []
    seen.add(id(obj))
    if isinstance(obj, (str, Path)):
        return [str(obj)]
    if isinstance(obj, dict):
        return [s for k, v in obj.items() for s in strings_in(k, seen) + strings_in(v, seen)]
    if isinstance(obj, (list, tuple, set)):
        return [s for v in obj for s in strings_in(v, seen)]
    if hasattr(obj, "__dict__"):
        return [s for k, v in vars(obj).items() if not k.startswith("_") for s in strings_in(v, seen)]
    return []


# ------------------------------------------------------------------------------------ blinding
def test_an_unaided_session_exposes_no_model_or_other_reader_path(exams, tmp_path):
    study = make_study(exams, tmp_path / "S", readers=("a", "b"))
    other = ReaderSession.open_study(study, "b")
    ov = other.open()
    other.activity(edit=True)
    other.save(ov.starting_mask())
    other.end()

    s = ReaderSession.open_study(study, "a")
    view = s.open()
    while view.arm != "unaided":
        view = s.open(s.position + 1)
    exposed = strings_in(view) + strings_in(s) + [view.title]
    exposed += [str(x) for item in s.items() for x in item.values()]
    assert exposed
    for text in exposed:
        assert "model" not in text and "/readers/b" not in text, text
        assert not any(cid in text for cid in exams["truths"]), f"case id leaked: {text}"
    assert view.title.startswith("case ") and " of 8" in view.title
    assert sitk.GetArrayFromImage(view.starting_mask()).sum() == 0  # unaided starts empty
    exam = view.load_exam()
    assert exam.case_id == view.label and all(view.label in src for src in exam.sources)
    assert not any(cid in json.dumps(exam.metadata, default=str) for cid in exams["truths"])
    # the assisted reading of the same reader starts from the model's mask
    i = next(k for k, it in enumerate(s.items()) if it["arm"] == "assisted" and it["available"])
    av = s.open(i)
    label = av.label
    case_id = next(c.id for c in load_study(study).cases if c.label == label)
    want = sitk.ReadImage(str(exams["model"] / f"{case_id}_seg.nii.gz"))
    assert np.array_equal(sitk.GetArrayFromImage(av.starting_mask()), sitk.GetArrayFromImage(want))
    s.end()
    with pytest.raises(InputError, match="not a reader"):
        ReaderSession.open_study(study, "mallory")


# -------------------------------------------------------------------------------- order, wash-out
def test_order_is_reproducible_from_the_recorded_seed_and_respects_the_washout(exams, tmp_path):
    study = load_study(make_study(exams, tmp_path / "S", readers=("a", "b", "c"), washout_cases=3))
    labels = [c.label for c in study.cases]
    for k, r in enumerate(study.readers):
        order = study.orders[r]
        assert order == reading_order(labels, ["unaided", "assisted"], study.seed, k, 3)
        assert sorted(order) == sorted((lab, a) for lab in labels for a in ("unaided", "assisted"))
        first = order[:len(labels)]
        assert sorted(lab for lab, _ in first) == sorted(labels)  # every case once before any second reading
        assert sum(a == "unaided" for _, a in first) == len(labels) // 2  # first arms balanced
        for lab in labels:
            i, j = [n for n, (l2, _) in enumerate(order) if l2 == lab]
            assert j - i >= 3
    assert len({tuple(o) for o in study.orders.values()}) > 1  # readers get different orders
    again = load_study(make_study(exams, tmp_path / "S2", readers=("a", "b", "c"), washout_cases=3))
    assert again.orders == study.orders and [c.label for c in again.cases] == labels
    other = load_study(make_study(exams, tmp_path / "S3", readers=("a", "b", "c"), washout_cases=3, seed=12))
    assert other.orders != study.orders
    with pytest.raises(InputError, match="wash-out"):
        make_study(exams, tmp_path / "S4", washout_cases=5)


def test_washout_in_days_holds_the_second_reading_back(exams, tmp_path):
    study = make_study(exams, tmp_path / "S", readers=("a",), washout_days=14)
    now = [1_700_000_000.0]
    s = ReaderSession.open_study(study, "a", now=lambda: now[0])
    n = len(exams["truths"])
    for i in range(n):  # the first readings
        v = s.open(i)
        s.submit(v.starting_mask())
    ok, why = s.available(n)
    assert not ok and "wash-out" in why
    with pytest.raises(InputError, match="cannot be opened yet"):
        s.open(n)
    assert s.next() is None
    now[0] += 15 * 86400
    assert s.available(n)[0]
    assert s.next().index == n
    s.end()


# ------------------------------------------------------------------------------------- timing
def test_active_time_stops_when_idle_and_paused_and_edits_are_counted(exams, tmp_path):
    study = make_study(exams, tmp_path / "S", readers=("a",), arms=("unaided",), idle_timeout_s=60)
    clock = Clock()
    s = ReaderSession.open_study(study, "a", clock=clock)
    v = s.open()
    clock.t += 20; s.activity(edit=True)      # 20 s active
    clock.t += 300; s.activity(edit=True)     # away 5 min: only the 60 s before the timer stopped count
    clock.t += 10; s.activity()               # 10 s, a look, no edit
    s.pause(); clock.t += 500; s.resume()     # an explicit pause counts nothing
    clock.t += 30; s.pause(reason="background"); clock.t += 100
    clock.t += 5; s.activity(edit=True)       # coming back resumes; the background time is not counted
    assert s.active_seconds() == pytest.approx(20 + 60 + 10 + 30 + 0)
    s.submit(v.starting_mask())
    st = json.loads((study / "readers" / "a" / "state.json").read_text())["items"][f"{v.label}/unaided"]
    assert st["active_s"] == pytest.approx(120) and st["edits"] == 3
    assert st["wall_s"] == pytest.approx(20 + 300 + 10 + 500 + 30 + 105)
    events = [e["event"] for e in audit_log(load_study(study), "a")]
    assert {"opened", "idle", "paused", "resumed", "saved", "submitted"} <= set(events)
    s.end()
    assert study_status(study)[0]["done"] == 1 and study_status(study)[0]["active_s"] == pytest.approx(120)


# ----------------------------------------------------------------------------- saving, locking
def test_autosaves_are_versioned_never_overwritten_and_submissions_are_locked(exams, tmp_path):
    study = make_study(exams, tmp_path / "S", readers=("a",), arms=("unaided",), autosave_s=30)
    clock = Clock()
    s = ReaderSession.open_study(study, "a", clock=clock)
    v = s.open()
    base = v.starting_mask()
    arr = sitk.GetArrayFromImage(base)
    assert s.maybe_autosave(base) is None  # nothing changed
    saved = []
    for k in range(3):
        arr.reshape(-1)[k] = 1
        m = sitk.GetImageFromArray(arr); m.CopyInformation(base)
        clock.t += 10; s.activity(edit=True)
        assert s.maybe_autosave(m) is None  # < 30 s since the last save
        clock.t += 25
        saved.append(s.maybe_autosave(m))
    assert [p.name for p in saved] == ["v0001.nii.gz", "v0002.nii.gz", "v0003.nii.gz"]
    sums = [int(sitk.GetArrayFromImage(sitk.ReadImage(str(p))).sum()) for p in saved]
    assert sums == [1, 2, 3]  # each version kept as it was
    # a version file appearing meanwhile (another writer) is never replaced: the next number is taken
    (v.folder / "v0004.nii.gz").write_bytes(saved[0].read_bytes())
    s.activity(edit=True)
    assert s.save(m).name == "v0005.nii.gz"
    final = s.submit()
    assert final.name == "submitted.nii.gz" and not os.access(final, os.W_OK) or os.geteuid() == 0
    assert not (final.stat().st_mode & 0o222)
    with pytest.raises(SubmittedError):
        s.save(m)
    with pytest.raises(SubmittedError):
        s.submit(m)
    assert s.open(0).locked
    case = next(c for c in load_study(study).cases if c.label == v.label)
    with pytest.raises(StudyLockedError, match="in use by reader a"):
        import_mask(study, "a", case.id, saved[0], "unaided")  # the reader's session holds the lock
    s.end()
    with pytest.raises(InputError, match="locked"):
        import_mask(study, "a", case.id, saved[0])
    # a mask on another grid is refused, naming the reason
    s = ReaderSession.open_study(study, "a")
    s.next()
    with pytest.raises(InputError, match="reference grid"):
        s.save(sitk.Image([3, 3, 3], sitk.sitkUInt8))
    s.end()


def test_one_reader_cannot_open_two_sessions_and_a_stale_lock_is_taken_over(exams, tmp_path):
    study = make_study(exams, tmp_path / "S", readers=("a",), arms=("unaided",))
    s = ReaderSession.open_study(study, "a")
    with pytest.raises(StudyLockedError, match="in use by reader a"):
        ReaderSession.open_study(study, "a")
    s.end()
    lock = study / "readers" / "a" / "session.lock"
    # a crashed process on this machine: dead pid
    dead = subprocess.Popen([sys.executable, "-c", "pass"]); dead.wait()
    lock.write_text(json.dumps({"pid": dead.pid, "host": os.uname().nodename, "owner": "reader a",
                                "heartbeat": time.time()}))
    s = ReaderSession.open_study(study, "a")
    assert s._lock.recovered["pid"] == dead.pid
    s.end()
    # another machine that stopped sending heartbeats 20 minutes ago; a recent one is respected
    lock.write_text(json.dumps({"pid": 1, "host": "elsewhere", "owner": "reader a", "heartbeat": time.time() - 1200}))
    ReaderSession.open_study(study, "a").end()
    lock.write_text(json.dumps({"pid": 1, "host": "elsewhere", "owner": "reader a", "heartbeat": time.time() - 60}))
    with pytest.raises(StudyLockedError):
        ReaderSession.open_study(study, "a")
    assert not Lock(lock, "x").is_stale(json.loads(lock.read_text()))
    lock.unlink()
    # a session whose lock was taken over (it looked dead) is told so at its next heartbeat
    clock = Clock()
    s = ReaderSession.open_study(study, "a", clock=clock)
    lock.write_text(json.dumps({"pid": 1, "host": "elsewhere", "owner": "reader a", "heartbeat": time.time()}))
    clock.t += 61
    with pytest.raises(StudyLockedError, match="taken over"):
        s.keep_alive()
    assert json.loads(lock.read_text())["host"] == "elsewhere"  # the other session's lock is left alone
    lock.unlink()


def _env():
    env = dict(os.environ, PYTHONPATH=str(ROOT / "BreastTumorSeg"), OMP_NUM_THREADS="1")
    return env


def test_kill_9_during_autosaves_then_resume_loses_at_most_one_interval(exams, tmp_path):
    autosave = 0.2
    study = make_study(exams, tmp_path / "S", readers=("a",), arms=("unaided",), autosave_s=autosave)
    rng = np.random.default_rng(1)
    last_resumed = 0
    for round_ in range(4):
        proc = subprocess.Popen([sys.executable, str(WORKER), str(study), "a", "edit-loop"], env=_env(),
                                stdout=subprocess.PIPE, text=True)
        edits = {}
        first = proc.stdout.readline().split()
        assert first[0] == "resumed", first
        resumed = int(first[1])
        assert resumed >= last_resumed  # nothing saved before is lost
        t_end = time.time() + rng.uniform(0.6, 1.5)
        while time.time() < t_end:
            line = proc.stdout.readline().split()
            if line and line[0] == "edit":
                edits[int(line[1])] = float(line[2])
        os.kill(proc.pid, signal.SIGKILL)  # most likely in the middle of a save: saves are most of the work
        proc.wait()
        for line in proc.stdout.read().splitlines():
            if line.startswith("edit"):
                edits[int(line.split()[1])] = float(line.split()[2])
        proc.stdout.close()
        # every file is complete and readable; the newest version is what the next session opens
        folder = next((study / "readers" / "a").glob("*/unaided"))
        versions = list(iter_versions(folder))
        assert versions
        for _, p in versions:
            sitk.ReadImage(str(p))
        json.loads((study / "readers" / "a" / "state.json").read_text())
        s = ReaderSession.open_study(study, "a")
        kept = int(sitk.GetArrayFromImage(s.open().starting_mask()).sum())
        s.end()
        last = max(edits)
        assert kept in edits or kept == resumed
        lost_s = edits[last] - edits.get(kept, edits[min(edits)])
        assert lost_s <= autosave + 1.0, (round_, kept, last, lost_s)  # one autosave interval (+ a loaded CPU)
        last_resumed = kept
    assert not list((study / "readers" / "a").rglob(".tmp-*"))  # leftovers of killed writes were removed
    assert any(e["event"] == "session started" and e.get("recovered_stale_lock")
               for e in audit_log(load_study(study), "a"))


def test_two_readers_in_two_processes_do_not_clobber_each_other(exams, tmp_path):
    study = make_study(exams, tmp_path / "S", readers=("a", "b"), arms=("unaided",))
    procs = {r: subprocess.Popen([sys.executable, str(WORKER), str(study), r, "read-all"], env=_env(),
                                 stdout=subprocess.PIPE, text=True) for r in ("a", "b")}
    outs = {r: p.communicate(timeout=120)[0] for r, p in procs.items()}
    assert all(p.returncode == 0 for p in procs.values()), outs
    n = len(exams["truths"])
    for r in ("a", "b"):
        assert outs[r].count("submitted") == n
        st = study_status(study)
        assert next(x for x in st if x["reader"] == r)["done"] == n
        log = audit_log(load_study(study), r)
        assert {e["reader"] for e in log} == {r} and sum(e["event"] == "submitted" for e in log) == n
    s = load_study(study)
    for c in s.cases:  # each reader's own masks, in her own folder
        for k, r in enumerate(("a", "b")):
            m = sitk.ReadImage(str(study / "readers" / r / c.label / "unaided" / "submitted.nii.gz"))
            assert 10 <= sitk.GetArrayFromImage(m).sum() < 10 + n
    # a second session of the same reader in another process is refused while one runs
    s1 = ReaderSession.open_study(study, "a")
    p = subprocess.run([sys.executable, str(WORKER), str(study), "a", "read-all"], env=_env(),
                       capture_output=True, text=True, timeout=60)
    s1.end()
    assert p.returncode == 3 and "locked" in p.stdout


# --------------------------------------------------------------------------- damaged study folders
def test_a_hand_edited_or_half_copied_study_gives_one_clear_error(exams, tmp_path, capsys):
    study = make_study(exams, tmp_path / "S", readers=("a",), arms=("unaided",))
    s = ReaderSession.open_study(study, "a")
    v = s.open(); s.activity(edit=True); saved = s.save(v.starting_mask()); s.end()
    good = (study / "study.json").read_text()
    cases = [("{" + good[:200], "not valid JSON"),
             (json.dumps({**json.loads(good), "readers": "a"}), "readers: expected list"),
             (json.dumps({**json.loads(good), "format_version": 9}), "format_version"),
             (json.dumps({**json.loads(good), "orders": {"a": json.loads(good)["orders"]["a"][:-1]}}),
              "does not list every case")]
    for text, msg in cases:
        (study / "study.json").write_text(text)
        code = main(["study", "status", str(study)])
        err = capsys.readouterr().err
        assert code == 2 and msg in err and "study.json" in err and len(err.strip().splitlines()) == 1, err
    (study / "study.json").write_text(good)
    # a half-copied autosave: truncated; the session names the file
    data = saved.read_bytes()
    saved.write_bytes(data[: len(data) // 2])
    s = ReaderSession.open_study(study, "a")
    with pytest.raises(InputError, match=saved.name):
        s.open().starting_mask()
    s.end()
    (study / "readers" / "a" / "state.json").write_text("{\"reader\": ")
    code = main(["study", "status", str(study)])
    assert code == 2 and "state.json" in capsys.readouterr().err
    # a torn last audit line (kill during an append) is skipped, the next append starts a new line
    log = study / "readers" / "a" / "audit.jsonl"
    n = len(audit_log(load_study(study), "a"))
    with open(log, "a") as fh:
        fh.write('{"event": "sav')
    assert len(audit_log(load_study(study), "a")) == n


# --------------------------------------------------------------------------------- end to end
def test_cli_study_to_reader_study_report_end_to_end(exams, tmp_path, capsys):
    """init -> three readers read every case in both arms (simulated masks, known times) -> status
    -> import -> export -> `reader-study` report with time and Dice per arm."""
    study = tmp_path / "S"
    assert main(["study", "init", "--cases", str(exams["cases"]), "--readers", "R1,R2,R3", "--arms",
                 "unaided,assisted", "--model", "ftv", "--model-outputs", str(exams["model"]),
                 "--output", str(study), "--seed", "5", "--washout-cases", "2"]) == 0
    assert main(["study", "init", "--cases", str(exams["cases"]), "--readers", "R1", "--output", str(study)]) == 2
    capsys.readouterr()
    s_def = load_study(study)
    by_label = {c.label: c.id for c in s_def.cases}
    minutes = {"unaided": 10.0, "assisted": 4.0}
    for r in ("R1", "R2"):
        clock = Clock()
        s = ReaderSession.open_study(study, r, clock=clock)
        v = s.open()
        while v is not None:
            case = by_label[v.label]
            sim = exams["sims"][case]
            if v.arm == "unaided":
                mask = sim.readers[r]
            else:  # assisted: the reader corrects the model's mask towards her own reading
                start = sitk.GetArrayFromImage(v.starting_mask()) > 0
                own = sitk.GetArrayFromImage(sim.readers[r]) > 0
                mask = sitk.GetImageFromArray((start & own | (own & ~start) & (np.arange(own.size).reshape(own.shape) % 2 == 0)).astype(np.uint8))
                mask.CopyInformation(sim.readers[r])
            for _ in range(int(minutes[v.arm])):
                clock.t += 60; s.activity(edit=True)
            s.submit(mask)
            v = s.next()
        s.end()
    code = main(["study", "status", str(study)])
    out = capsys.readouterr().out
    assert code == 0 and "R1" in out and "0:" in out
    assert main(["study", "export", str(study), "--output", str(tmp_path / "t.csv")]) == 2
    assert "not submitted" in capsys.readouterr().err
    # reader R3 drew in another tool: imported, untimed
    for c in s_def.cases:
        p = tmp_path / f"R3_{c.id}.nii.gz"
        sitk.WriteImage(exams["sims"][c.id].readers["R3"], str(p))
        for arm in ("unaided", "assisted"):
            assert main(["study", "import", str(study), "--reader", "R3", "--case", c.id, "--mask", str(p),
                         "--arm", arm]) == 0
    table = tmp_path / "table" / "study.csv"
    assert main(["study", "export", str(study), "--output", str(table)]) == 0
    rows = list(csv.DictReader(table.open()))
    assert len(rows) == len(s_def.cases) * 7
    r1 = [r for r in rows if r["reader"] == "R1"]
    assert {r["arm"] for r in r1} == {"unaided", "assisted"}
    assert {float(r["time_s"]) for r in r1 if r["arm"] == "unaided"} == {600.0}
    assert all(r["time_s"] == "" and r["imported"] == "1" for r in rows if r["reader"] == "R3")
    # the exported masks are the ones the readers drew
    for r in r1:
        if r["arm"] == "unaided":
            got = sitk.GetArrayFromImage(sitk.ReadImage(str(table.parent / r["mask"])))
            assert np.array_equal(got, sitk.GetArrayFromImage(exams["sims"][r["case"]].readers["R1"]))

    report = tmp_path / "report"
    code = main(["reader-study", str(table), "--output", str(report), "--bootstrap", "200", "--quiet",
                 "--margins", "-0.1", "0.1"])
    assert code == 0, capsys.readouterr().err
    summary = json.loads((report / "summary.json").read_text())
    arms = summary["arms"]["arms"]
    assert set(arms) == {"unaided", "assisted"}
    assert arms["unaided"]["readers"]["R1"]["median_time_s"] == pytest.approx(600)
    assert arms["assisted"]["readers"]["R2"]["median_time_s"] == pytest.approx(240)
    assert arms["unaided"]["readers"]["R3"]["median_time_s"] is None  # imported: untimed
    # unaided Dice per arm agrees with the main analysis (same references)
    assert arms["unaided"]["readers"]["R1"]["median_dice"] == pytest.approx(summary["readers"]["R1"]["median_dice"])
    assert summary["arms"]["comparison"]["time_s"]["median_difference"] == pytest.approx(240 - 600)
    md = (report / "summary.md").read_text()
    assert "## Arms: time and Dice per case" in md and (report / "arms.png").exists()
    assert (report / "arms.csv").exists()
    # the voxel-wise ROC counts voxels inside the breast region (study init stored it) and is reported so
    assert all(r["roi"] for r in rows)
    assert "region of interest" in summary["study"]["roc"] and "whole volume" not in summary["study"]["roc"]
    assert "Caution" not in md and summary["comparison"]["margins_prespecified"] is True
    # the readers stay close to the phantom's truth (a sanity check of the simulated study itself)
    for r in r1:
        got = sitk.GetArrayFromImage(sitk.ReadImage(str(table.parent / r["mask"]))) > 0
        truth = sitk.GetArrayFromImage(exams["truths"][r["case"]]) > 0
        assert 2 * (got & truth).sum() / (got.sum() + truth.sum()) > 0.6


# --------------------------------------------------------------------------------- statistics
def test_derived_margins_are_labelled_exploratory_and_the_hybrid_lambda_is_cross_validated():
    from BreastTumorSegLib.evaluation import stats as S
    from BreastTumorSegLib.evaluation.readerstudy import StudyConfig, run_reader_study
    from BreastTumorSegLib.evaluation.simulation import simulate_scores, simulate_study

    cases, _ = simulate_study(n_cases=8, n_tune=0, seed=3, size_xyz=(32, 32, 12))
    res = run_reader_study(cases, StudyConfig(n_bootstrap=50))
    b = res.summary["comparison"]
    assert b["margins_prespecified"] is False and b["bounds"]["source"].startswith("exploratory")
    from BreastTumorSegLib.evaluation.report import paper_paragraph, summary_markdown

    assert "exploratory" in paper_paragraph(res) and "exploratory" in summary_markdown(res, [])
    # λ by cross-validation: close to, and not above, the in-sample best (which is optimistic)
    scores, y = simulate_scores(n_cases=300, seed=4)
    cases_ = sorted(y)
    h = S.hybrid_auc([scores["R1"][c] for c in cases_], [scores["model"][c] for c in cases_], [y[c] for c in cases_])
    assert h.cv is not None and h.cv["folds"] == 5 and len(h.cv["lambda_per_fold"]) == 5
    assert all(0 < v < 1 for v in h.cv["lambda_per_fold"])  # independent errors: a true mix helps
    assert h.cv["auc"] <= h.best_auc + 1e-12 and h.cv["auc"] > max(h.reader_auc, h.model_auc) - 0.02
    # the in-sample optimum over pure noise is optimistic; the cross-validated AUC is not
    rng = np.random.default_rng(0)
    noise_y = np.r_[np.ones(40), np.zeros(40)]
    hn = S.hybrid_auc(rng.random(80), rng.random(80), noise_y)
    assert hn.best_auc > 0.55 and hn.cv["auc"] < hn.best_auc


def test_init_runs_the_model_for_the_assisted_arm_and_records_its_hash(exams, tmp_path):
    """Without --model-outputs the engine segments each exam (here the rule-based ftv, no weights)."""
    from BreastTumorSegLib.study.coordinator import model_sha256

    one = tmp_path / "one.csv"
    one.write_text(f"case,path\nP002,{exams['root'] / 'P002'}\n")
    with pytest.raises(InputError, match="--threshold"):
        init_study(one, ["a"], ["assisted"], tmp_path / "X", model="ftv", model_outputs=exams["model"], threshold=0.4)
    study = load_study(init_study(one, ["a"], ["assisted"], tmp_path / "S", model="ftv", seed=1, threshold=0.5).folder)
    arm = study.arm("assisted")
    assert arm.model == "ftv" and arm.model_sha256 == model_sha256("ftv") and len(arm.model_sha256) == 64
    assert arm.threshold == 0.5
    case = study.cases[0]
    assert {"mask", "prob", "breast"} <= set(case.model)
    seg = sitk.ReadImage(str(study.folder / case.model["mask"]))
    truth = sitk.GetArrayFromImage(exams["truths"]["P002"]) > 0
    got = sitk.GetArrayFromImage(seg) > 0
    assert 2 * (got & truth).sum() / (got.sum() + truth.sum()) > 0.5  # the model's mask finds the tumour
    s = ReaderSession(study, "a")
    assert np.array_equal(sitk.GetArrayFromImage(s.open().starting_mask()) > 0, got)
    s.end()


def test_a_dicom_case_with_chosen_series_is_read_pseudonymised(tmp_path):
    """CASES.csv may pick a DICOM folder's phases by series number or UID (series column)."""
    from dicom_fixtures import make_fixture_exam, write_siemens_per_phase

    fx = make_fixture_exam(seed=2, n_phases=4, size_xyz=(32, 32, 8))
    write_siemens_per_phase(fx, tmp_path / "dicom")
    (tmp_path / "cases.csv").write_text("case,path,series\nD001,dicom,10;12;13\n")
    study = load_study(init_study(tmp_path / "cases.csv", ["a"], ["unaided"], tmp_path / "S", seed=1,
                                  breast_region=False).folder)
    assert study.cases[0].series == ["10", "12", "13"]
    s = ReaderSession(study, "a")
    exam = s.open().load_exam()
    s.end()
    assert exam.n_phases == 3 and exam.case_id == study.cases[0].label
    assert np.allclose(sitk.GetArrayFromImage(exam.pre), sitk.GetArrayFromImage(fx.exam.pre), atol=1.0)
    assert "dicom" not in exam.metadata and not any("dicom" in src for src in exam.sources)
    (tmp_path / "bad.csv").write_text("case,path,series\nD001,dicom,10;99\n")
    with pytest.raises(InputError, match="case D001"):
        init_study(tmp_path / "bad.csv", ["a"], ["unaided"], tmp_path / "S2", breast_region=False)


def test_submit_saves_a_mask_that_differs_from_the_last_version_even_without_edit_events(exams, tmp_path):
    study = make_study(exams, tmp_path / "S", readers=("a",), arms=("unaided",))
    s = ReaderSession.open_study(study, "a")
    v = s.open()
    a = sitk.GetArrayFromImage(v.starting_mask())
    a.reshape(-1)[:5] = 1
    m = sitk.GetImageFromArray(a); m.CopyInformation(v.starting_mask())
    s.save(m)
    s.submit(m)  # the same mask: no second version
    assert [p.name for _, p in iter_versions(v.folder)] == ["v0001.nii.gz"]
    v = s.next()
    s.save(v.starting_mask())
    b = sitk.GetArrayFromImage(v.starting_mask())
    b.reshape(-1)[:5] = 1
    m = sitk.GetImageFromArray(b); m.CopyInformation(v.starting_mask())
    s.submit(m)  # changed, though no edit was reported: saved first, then submitted
    assert len(list(iter_versions(v.folder))) == 2
    assert sitk.GetArrayFromImage(sitk.ReadImage(str(v.folder / "submitted.nii.gz"))).sum() == 5
    s.end()
