"""`breasttumorseg batch`: the same outputs as `segment`, resume after SIGKILL with every exam
done exactly once, failures recorded while the rest completes, shards, Ray, the doubt worklist.

Exams are tiny phantoms (48 x 48 x 24 voxels at 3 mm, 3 phases) so that each takes about a second.
"""
from __future__ import annotations

import csv
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from BreastTumorSegLib.batch.cases import discover, in_shard, parse_shard
from BreastTumorSegLib.batch.ledger import Ledger
from BreastTumorSegLib.cli import main
from BreastTumorSegLib.core.errors import InputError
from BreastTumorSegLib.training.phantom import make_phantom, write_phantom
from script_fixtures import headless_script

ROOT = Path(__file__).resolve().parents[1]
TINY = dict(shape_mm=(144, 144, 72), spacing=3.0, n_phases=3, n_tumors=1, tumor_radius_mm=9.0)
OUTPUT_SUFFIXES = ("_seg.nii.gz", "_prob.nii.gz", ".seg.nrrd", ".json", "_overview.png")


@pytest.fixture(scope="module")
def templates(tmp_path_factory) -> list[Path]:
    """Three tiny exams written once; tests copy them under new case names."""
    root = tmp_path_factory.mktemp("templates")
    out = []
    for seed in (101, 102, 103):
        ph = make_phantom(seed, **TINY)
        write_phantom(ph, root / ph.case_id)
        for extra in (root / ph.case_id).glob("*_t[ru]*"):  # keep only what a scanner gives (phases, times)
            extra.unlink()
        for extra in (root / ph.case_id).glob("*_breast*"):
            extra.unlink()
        out.append(root / ph.case_id)
    return out


def _write_exams(root: Path, templates: list[Path], n: int, first: int = 0) -> list[str]:
    """*n* exam folders ``case_XXXX`` under *root*, copies of the templates (renamed files)."""
    ids = []
    for i in range(first, first + n):
        src = templates[i % len(templates)]
        cid = f"case_{i:04d}"
        (root / cid).mkdir(parents=True)
        for f in src.iterdir():
            (root / cid / f.name.replace(src.name, cid)).write_bytes(f.read_bytes())
        ids.append(cid)
    return ids


def _env() -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT / "BreastTumorSeg"))
    env.pop("PYTHONSTARTUP", None)
    return env


def _summary(path: Path) -> dict:
    data = json.loads(path.read_text())
    data.pop("timings_s")
    return data


def _image(path: Path) -> tuple:
    img = sitk.ReadImage(str(path))
    return sitk.GetArrayFromImage(img), img.GetOrigin(), img.GetSpacing(), img.GetDirection()


def _nrrd(path: Path) -> bytes:
    """The file without its comment lines (pynrrd writes the time of writing in one)."""
    return b"".join(ln for ln in path.read_bytes().splitlines(keepends=True) if not ln.startswith(b"#"))


def _assert_same_outputs(case_id: str, a: Path, b: Path) -> None:
    for suffix in ("_seg.nii.gz", "_prob.nii.gz"):
        x, y = _image(a / f"{case_id}{suffix}"), _image(b / f"{case_id}{suffix}")
        assert np.array_equal(x[0], y[0]) and x[1:] == y[1:], f"{case_id}{suffix} differs"
    assert _nrrd(a / f"{case_id}.seg.nrrd") == _nrrd(b / f"{case_id}.seg.nrrd")
    assert _summary(a / f"{case_id}.json") == _summary(b / f"{case_id}.json")
    shown, expected = (_pixels(d / f"{case_id}_overview.png") for d in (b, a))
    assert shown.shape[1] == 1080 and np.array_equal(shown, expected), f"{case_id}_overview.png differs"
    # the subtraction MIP is drawn: rows 150 and 250 px cross its panel, whose middle 60 % shows 25-44
    # grey levels (a blank subtraction image: 2, the panel's colour and the margin's white)
    grey = shown[..., :3].mean(axis=2)
    middle = slice(int(0.2 * grey.shape[1]), int(0.8 * grey.shape[1]))
    levels = [len(np.unique(np.round(grey[y, middle] * 255))) for y in (150, 250)]
    assert min(levels) >= 16, f"{case_id}_overview.png: no subtraction image drawn ({levels} grey levels)"


def _pixels(path: Path) -> np.ndarray:
    import matplotlib.image

    return matplotlib.image.imread(path)


def _entropy_bits(p: np.ndarray) -> np.ndarray:
    q = np.clip(p.astype(np.float64), 1e-6, 1 - 1e-6)
    return -(q * np.log2(q) + (1 - q) * np.log2(1 - q))


def _assert_doubt_matches_outputs(out: Path, case_id: str) -> dict:
    """The JSON's ``doubt`` recomputed from the written label and probability maps (engine/doubt.py's
    definitions: mean binary entropy inside the lesions; soft Dice disagreement over p >= 0.05)."""
    summary = json.loads((out / f"{case_id}.json").read_text())
    doubt = summary["doubt"]
    prob = sitk.GetArrayFromImage(sitk.ReadImage(str(out / f"{case_id}_prob.nii.gz"))).astype(np.float64)
    label = sitk.GetArrayFromImage(sitk.ReadImage(str(out / f"{case_id}_seg.nii.gz"))) > 0
    mass = prob[prob >= 0.05].sum() + label.sum()
    soft = 0.0 if mass == 0 else 1.0 - 2.0 * prob[label].sum() / mass
    assert doubt["soft_disagreement"] == pytest.approx(min(max(soft, 0.0), 1.0), abs=1e-4), (case_id, doubt)
    if label.any():
        assert doubt["uncertainty"] == pytest.approx(_entropy_bits(prob[label]).mean(), abs=1e-4), (case_id, doubt)
    assert ("no_lesion_found" in doubt["flags"]) == (summary["n_lesions"] == 0) == (not label.any()), (case_id, doubt)
    qa = summary["breast_mask_qa"]
    implausible = any(not (qa.get(k) or {}).get("plausible", True) for k in ("learned", "classical"))
    assert ("breast_mask_implausible" in doubt["flags"]) == implausible, (case_id, doubt, qa)
    return summary


def _no_partial_files(out: Path) -> None:
    stray = [p for p in out.rglob("*") if p.name.startswith((".staging-", ".tmp")) or p.suffix == ".tmp"]
    assert stray == [], stray
    assert list((out / ".batch" / "work").iterdir()) == []


# ------------------------------------------------------------------ same outputs as segment
@pytest.fixture(scope="module")
def three_exams(tmp_path_factory, templates):
    root = tmp_path_factory.mktemp("exams")
    ids = _write_exams(root, templates, 3)
    seg_out = tmp_path_factory.mktemp("segment_out")
    for cid in ids:
        # the network (not the default rule-based ftv): models loaded once per worker is the point below
        assert main(["segment", str(root / cid), "--output", str(seg_out), "--quiet", "--model", "st-demo"]) == 0
    return root, ids, seg_out


def test_batch_with_two_workers_writes_exactly_what_segment_writes(three_exams, tmp_path):
    root, ids, seg_out = three_exams
    out = tmp_path / "batch"
    assert main(["batch", str(root), "--output", str(out), "--workers", "2", "--progress", "none",
                 "--model", "st-demo"]) == 0
    for cid in ids:
        _assert_same_outputs(cid, seg_out, out)
        summary = _assert_doubt_matches_outputs(out, cid)
        # The tiny exams hold no tumor in their 144 mm field of view (the phantom places it outside;
        # truth empty), and st-demo finds none: its highest probability inside the breast is
        # near 0 (measured uncertainty 0.0 on all three; 1e-3 would give 0.011).
        assert summary["n_lesions"] == 0 and summary["doubt"]["uncertainty"] < 0.01, (cid, summary["doubt"])
    names = sorted(p.name for p in out.iterdir() if not p.name.startswith("."))
    assert names == sorted([f"{c}{s}" for c in ids for s in OUTPUT_SUFFIXES] + ["failures.csv", "worklist.csv"])
    # the models are loaded once per worker, not once per exam
    loads = [e for e in Ledger(out).events() if e["event"] == "models_loaded"]
    assert len(loads) == 2 and len({e["worker"] for e in loads}) == 2
    assert {e["model_id"].split("@")[0] for e in loads} == {"st-demo"}
    rows = list(csv.DictReader(open(out / "worklist.csv")))
    assert sorted(r["case"] for r in rows) == sorted(ids)
    # a second run finds everything complete and computes nothing
    assert main(["batch", str(root), "--output", str(out), "--progress", "none", "--model", "st-demo"]) == 0
    assert sum(e["event"] == "started" for e in Ledger(out).events()) == len(ids)


def test_ray_engine_gives_the_same_outputs(three_exams, tmp_path):
    """Ray actors against the local engine on the same exams (the kinetic model: no PyTorch to
    import in each actor, which keeps the test short; st-demo is compared with `segment` above)."""
    ray = pytest.importorskip("ray")
    root, ids, _ = three_exams
    options = ["--model", "ftv", "--progress", "none"]
    assert main(["batch", str(root), "--output", str(tmp_path / "local"), *options]) == 0
    os.environ["PYTHONPATH"] = os.pathsep.join([str(ROOT / "BreastTumorSeg"), os.environ.get("PYTHONPATH", "")])
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        out = tmp_path / "ray"
        code = main(["batch", str(root), "--output", str(out), "--engine", "ray", "--workers", "2", *options])
    finally:
        ray.shutdown()
    assert code == 0
    for cid in ids:
        _assert_same_outputs(cid, tmp_path / "local", out)
    loads = [e for e in Ledger(out).events() if e["event"] == "models_loaded"]
    assert len(loads) == 2 and all(e["model_id"].startswith("ftv") for e in loads)


# ------------------------------------------------------------------ SIGKILL at random moments
def test_sigkill_at_random_moments_every_exam_done_exactly_once(tmp_path, templates):
    root = tmp_path / "exams"
    ids = _write_exams(root, templates, 20)
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "BreastTumorSegLib.cli", "batch", str(root), "--output", str(out),
           "--model", "ftv", "--no-register", "--progress", "json"]
    rng = random.Random(15)
    kills, code, stderr = 0, None, ""
    for attempt in range(10):
        proc = subprocess.Popen(cmd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        if attempt < 6:
            # a random moment inside the work: after a random number of progress events (an exam
            # makes about seven: started, its stages, done), then a random fraction of a second
            target = rng.randint(1, 24)
            for _ in range(target):
                if not proc.stdout.readline():
                    break
            time.sleep(rng.uniform(0.0, 0.3))
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                kills += 1
        _, stderr = proc.communicate(timeout=300)
        code = proc.returncode
        if code != -signal.SIGKILL:
            break
    assert code == 0, stderr
    assert kills >= 2, "the runs were not interrupted; make the kills earlier"
    ledger = Ledger(out)
    _no_partial_files(out)
    tokens: dict[str, set] = {}
    for e in ledger.events():
        if e["event"] in ("committed", "rolled_forward"):
            tokens.setdefault(e["case"], set()).add(e["token"])
    for cid in ids:
        assert ledger.is_done(cid, verify="hash"), cid
        # exactly one computation reached its commit record, and it is the one in place
        assert tokens.get(cid) == {ledger.read_done(cid)["token"]}, (cid, tokens.get(cid))
        for suffix in OUTPUT_SUFFIXES:
            assert (out / f"{cid}{suffix}").is_file()
    started = sum(e["event"] == "started" for e in ledger.events())
    print(f"{kills} SIGKILLs, {started} exam starts for {len(ids)} exams")
    assert started > len(ids), "no exam was interrupted while computing"


# ------------------------------------------------------------------ a bad exam in the middle
def test_corrupt_exam_is_listed_and_the_rest_completes(tmp_path, templates):
    root = tmp_path / "exams"
    ids = _write_exams(root, templates, 3)
    bad = root / ids[1] / f"{ids[1]}_0001.nii.gz"
    good = bad.read_bytes()
    bad.write_bytes(good[: len(good) // 2])  # truncated copy
    out = tmp_path / "out"
    args = ["batch", str(root), "--output", str(out), "--model", "ftv", "--no-register", "--progress", "none"]
    assert main(args) == 1
    rows = list(csv.DictReader(open(out / "failures.csv")))
    assert [(r["case"], r["stage"]) for r in rows] == [(ids[1], "load")]
    assert "truncated" in rows[0]["message"] and "\n" not in rows[0]["message"]
    for cid in (ids[0], ids[2]):
        assert (out / f"{cid}_seg.nii.gz").is_file()
    assert not list(out.glob(f"{ids[1]}*"))
    # fixed and re-run: only the failed exam is computed, failures.csv empties
    bad.write_bytes(good)
    assert main(args) == 0
    assert list(csv.DictReader(open(out / "failures.csv"))) == []
    starts = [e["case"] for e in Ledger(out).events() if e["event"] == "started"]
    assert sorted(starts) == sorted(ids + [ids[1]])


def test_manifest_csv_and_bad_manifest(tmp_path, templates):
    root = tmp_path / "exams"
    ids = _write_exams(root, templates, 1)
    folder = root / ids[0]
    manifest = tmp_path / "list.csv"
    phases = ";".join(str(p) for p in sorted(folder.glob(f"{ids[0]}_000*.nii.gz")))
    manifest.write_text(f"case,path,times\nfolder_case,exams/{ids[0]},0;2;4\nfiles_case,{phases},\n")
    cases = discover(manifest)
    assert [c.key for c in cases] == ["files_case", "folder_case"]
    assert cases[1].times == (0.0, 2.0, 4.0) and Path(cases[1].inputs[0]) == folder
    out = tmp_path / "out"
    assert main(["batch", str(manifest), "--output", str(out), "--model", "ftv", "--no-register",
                 "--progress", "none"]) == 0
    assert json.loads((out / "folder_case.json").read_text())["settings"]["times_min"] == [0.0, 2.0, 4.0]
    assert (out / "files_case_seg.nii.gz").is_file()
    manifest.write_text("name,file\nx,y\n")
    with pytest.raises(InputError, match="columns case and path"):
        discover(manifest)


# ------------------------------------------------------------------ shards
def test_shards_cover_every_exam_once():
    keys = [f"case_{i:05d}" for i in range(600)]
    for n in (1, 2, 3, 7):
        owners = [[i for i in range(1, n + 1) if in_shard(k, (i, n))] for k in keys]
        assert all(len(o) == 1 for o in owners)
        sizes = np.bincount([o[0] for o in owners])[1:]
        assert sizes.min() > 0.6 * len(keys) / n  # roughly even
    assert in_shard("case_00001", (1, 3)) == in_shard("case_00001", (1, 3))  # no salted hash
    for bad in ("0/3", "4/3", "1-3", "a/b"):
        with pytest.raises(InputError, match="--shard"):
            parse_shard(bad)


def test_two_shards_into_one_folder_do_every_exam_once(tmp_path, templates):
    root = tmp_path / "exams"
    ids = _write_exams(root, templates, 4)
    out = tmp_path / "out"
    for part in ("1/2", "2/2"):
        assert main(["batch", str(root), "--output", str(out), "--shard", part, "--model", "ftv",
                     "--no-register", "--progress", "none"]) == 0
    starts = sorted(e["case"] for e in Ledger(out).events() if e["event"] == "started")
    assert starts == sorted(ids)
    assert sorted(r["case"] for r in csv.DictReader(open(out / "worklist.csv"))) == sorted(ids)


def test_a_case_held_by_another_process_is_left_alone(tmp_path, templates):
    root = tmp_path / "exams"
    ids = _write_exams(root, templates, 1)
    out = tmp_path / "out"
    ledger = Ledger(out)
    held = ledger.claim(ids[0])
    try:
        code = main(["batch", str(root), "--output", str(out), "--model", "ftv", "--no-register", "--progress", "none"])
    finally:
        ledger.release(held)
    assert code == 1 and not (out / f"{ids[0]}_seg.nii.gz").exists()


def test_unknown_model_and_bad_workers_are_refused_before_anything_runs(tmp_path, capsys):
    root = tmp_path / "exams"
    root.mkdir()
    out = tmp_path / "out"
    assert main(["batch", str(root), "--output", str(out), "--model", "nope"]) == 2
    assert main(["batch", str(root), "--output", str(out), "--workers", "0"]) == 2
    assert main(["batch", str(root), "--output", str(out), "--model", "ftv"]) == 2  # no exams found
    err = capsys.readouterr().err
    assert "unknown model 'nope'" in err and "--workers" in err and "no exams found" in err
    assert not out.exists()


# ------------------------------------------------------------------ the worklist ranks bad results first
def test_doubt_score_ranks_bad_results_first():
    """The score in every JSON (and the worklist order) against the truth: on our phantom family
    (seeds 3000-3005, tiny; three hold no tumor in the field of view) and the domain-randomised
    family (seeds 5000-5001, where st-demo misses the lesion), Spearman(uncertainty, 1 - Dice)
    was 0.78 when measured; every exam is kept, none picked for its result."""
    from scipy.stats import spearmanr

    from BreastTumorSegLib.engine.doubt import doubt_report, worklist_key
    from BreastTumorSegLib.engine.pipeline import SegmentSettings, segment_exam
    from BreastTumorSegLib.models.breast_model import BreastMaskModel
    from BreastTumorSegLib.models.registry import get_segmenter
    from BreastTumorSegLib.training.phantom.families import make_exam

    seg, breast = get_segmenter("st-demo"), BreastMaskModel.load("breastmask-demo")
    specs = [("phantom", s, dict(shape_mm=(150, 120, 60), spacing=3.0, n_phases=3, n_tumors=1, motion_mm=0))
             for s in range(3000, 3006)]
    specs += [("randomized", s, dict(spacing=3.5, motion_mm=0, nonrigid_mm=0, n_lesions=1)) for s in (5000, 5001)]
    bad, doubts = [], []
    for family, seed, kw in specs:
        ph = make_exam(family, seed, **kw)
        result = segment_exam(ph.exam, model=seg, device="cpu",
                              settings=SegmentSettings(breast_model=breast, registration="none"))
        a = sitk.GetArrayViewFromImage(result.label) > 0
        b = sitk.GetArrayViewFromImage(ph.tumor_mask) > 0
        total = int(a.sum() + b.sum())
        bad.append(1.0 - (2.0 * (a & b).sum() / total if total else 1.0))
        doubts.append(doubt_report(result))
    rho = spearmanr([d["uncertainty"] for d in doubts], bad).statistic
    print(f"Spearman(uncertainty, 1 - Dice) = {rho:.2f}; 1 - Dice: {np.round(bad, 2).tolist()}")
    assert rho >= 0.6
    first = min(range(len(doubts)), key=lambda i: worklist_key({**doubts[i], "flags": []}))
    assert bad[first] == max(bad)  # the top of the worklist (by score) is the worst result


# ------------------------------------------------------------------ headless Slicer batch
def test_headless_slicer_batch_arguments():
    sh = headless_script()
    args, cli_argv, cli_args = sh.parse_args(["--batch", "exams", "--output", "out", "--model", "ftv",
                                              "--workers", "2", "--shard", "1/4", "--scenes"])
    assert cli_argv[:4] == ["batch", "exams", "--output", "out"] and args.scenes
    assert cli_args.input == "exams" and cli_args.workers == 2 and cli_args.shard == "1/4"
    for bad in (["--batch", "e", "--input", "a", "--output", "o"],        # one source only
                ["--batch", "e", "--output", "o", "--scene", "o/x.mrb"],  # one scene per exam: --scenes
                ["--input", "a", "--output", "o", "--scenes"]):
        with pytest.raises(SystemExit) as info:
            sh.parse_args(bad)
        assert info.value.code == 2


def test_headless_slicer_batch_writes_outputs_and_a_scene_per_exam(tmp_path, templates):
    pytest.importorskip("slicer")
    root = tmp_path / "exams"
    ids = _write_exams(root, templates, 2)
    out = tmp_path / "out"
    argv = ["--batch", str(root), "--output", str(out), "--model", "ftv", "--no-register", "--progress", "none",
            "--scenes"]
    assert headless_script().main(argv) == 0
    for cid in ids:
        assert (out / f"{cid}_seg.nii.gz").is_file() and (out / "scenes" / f"{cid}.mrb").stat().st_size > 0
    stamp = (out / "scenes" / f"{ids[0]}.mrb").stat().st_mtime_ns
    assert headless_script().main(argv) == 0  # resumed: nothing redone, scenes kept
    assert (out / "scenes" / f"{ids[0]}.mrb").stat().st_mtime_ns == stamp
    assert sum(e["event"] == "started" for e in Ledger(out).events()) == 2


def test_an_exam_whose_outputs_were_damaged_is_redone(tmp_path, templates):
    root = tmp_path / "exams"
    ids = _write_exams(root, templates, 2)
    out = tmp_path / "out"
    args = ["batch", str(root), "--output", str(out), "--model", "ftv", "--no-register", "--progress", "none"]
    assert main(args) == 0
    (out / f"{ids[0]}_overview.png").unlink()           # one output lost
    (out / f"{ids[1]}.json").write_text("{}")           # another one changed
    assert main(args) == 0
    starts = [e["case"] for e in Ledger(out).events() if e["event"] == "started"]
    assert sorted(starts) == sorted(ids + ids)
    assert all(Ledger(out).is_done(c, verify="hash") for c in ids)
    assert json.loads((out / f"{ids[1]}.json").read_text())["case_id"] == ids[1]


# ------------------------------------------------------------------ concurrent runs and signals (issue 27)
def _batch_cmd(root: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "BreastTumorSegLib.cli", "batch", str(root), "--output", str(out), "--model", "ftv",
            "--no-register", "--progress", "none"]


def test_two_concurrent_runs_both_report_every_exam_done(tmp_path, templates):
    """Two runs on one OUT at once: each exam is computed once (by either run), and both runs
    wait for the other's exams and exit 0 instead of calling them 'not finished'."""
    root = tmp_path / "exams"
    ids = _write_exams(root, templates, 4)
    out = tmp_path / "out"
    procs = [subprocess.Popen(_batch_cmd(root, out), env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(2)]
    results = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], results
    committed = [e["case"] for e in Ledger(out).events() if e["event"] == "committed"]
    assert sorted(committed) == sorted(ids)  # exactly once each
    assert all("0 not finished" in stdout for stdout, _ in results)


def test_sigterm_says_which_exams_are_kept(tmp_path, templates):
    root = tmp_path / "exams"
    _write_exams(root, templates, 20)
    out = tmp_path / "out"
    proc = subprocess.Popen(_batch_cmd(root, out), env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not list((out / ".batch" / "done").glob("*.json")):
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    if proc.returncode == 0:
        pytest.skip("the batch finished before the signal")
    done = len(list((out / ".batch" / "done").glob("*.json")))
    assert proc.returncode == 143, err
    assert f"{done} exam(s) complete" in err and "kept" in err and "Traceback" not in err
