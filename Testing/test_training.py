"""Training pipeline: dataset layouts, folds, cache, config, smoke training, resume, logs."""
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from BreastTumorSegLib.training import datasets
from BreastTumorSegLib.core.errors import InputError
from BreastTumorSegLib.training.config import TrainerConfig, load_config
from BreastTumorSegLib.training.patches import PatchSampler, input_scales, loss_fn, task_cases
from BreastTumorSegLib.training.trainer import train

ROOT = Path(__file__).resolve().parents[1]
TINY_PHANTOM = dict(shape_mm=(220, 140, 90), spacing=3.0, n_phases=4, n_tumors=1, tumor_radius_mm=14,
                    motion_mm=0)
TINY_ST = {"type": "st_transformer", "base": 4, "levels": 2, "max_channels": 8, "dim": 16, "heads": 2,
           "depth": 1, "window": 2, "dropout": 0.0}


@pytest.fixture(scope="module")
def phantom_root(tmp_path_factory):
    """Two tiny phantoms written in the MAMA-MIA layout."""
    from BreastTumorSegLib.training.phantom import make_phantom, write_phantom

    root = tmp_path_factory.mktemp("mamamia")
    for seed in (1001, 1002):
        write_phantom(make_phantom(seed, **TINY_PHANTOM), root, layout="mamamia")
    return root


@pytest.fixture(scope="module")
def tiny_cases(phantom_root, tmp_path_factory):
    data = {"source": "folder", "root": str(phantom_root), "val_cases": ["phantom_1002"], "register": False}
    train_c, val_c = datasets.load_split(data, 3.0, tmp_path_factory.mktemp("cache"), log=lambda *a: None)
    return train_c + val_c, val_c


def _cfg(**kw):
    base = dict(name="tiny", task="tumor", architecture=TINY_ST, spacing_mm=3.0, patch=16, batch=2, epochs=2,
                steps_per_epoch=6, lr=1e-2, warmup_steps=2, tumor_fraction=0.5, threads=1)
    base.update(kw)
    return TrainerConfig(**base)


# ------------------------------------------------------------------------------ dataset layer
def test_scan_mamamia_layout(phantom_root):
    recs = datasets.scan_dataset(phantom_root)
    assert [r.case_id for r in recs] == ["phantom_1001", "phantom_1002"]
    r = recs[0]
    assert len(r.phases) == 4 and r.phases[0].name == "phantom_1001_0000.nii.gz"
    assert r.label.name == "phantom_1001.nii.gz" and r.breast is not None
    truth = json.loads((phantom_root / "truth" / "phantom_1001.json").read_text())
    assert r.times_min == truth["acquisition_times_min"]


def test_times_table_overrides_and_is_checked(phantom_root, tmp_path):
    table = tmp_path / "clinical.csv"
    table.write_text("patient_id,acquisition_times_min\nphantom_1001,0;1.1;2.2;3.3\n")
    recs = datasets.scan_dataset(phantom_root, table)
    assert recs[0].times_min == [0.0, 1.1, 2.2, 3.3]
    table.write_text("case_id,t0,t1\nphantom_1001,0,1.5\n")
    with pytest.raises(InputError, match="2 acquisition times for 4 phases"):
        datasets.scan_dataset(phantom_root, table)


def test_nnunet_layout_and_missing_labels(tmp_path):
    img = sitk.Image(8, 8, 8, sitk.sitkFloat32)
    (tmp_path / "imagesTr").mkdir()
    (tmp_path / "labelsTr").mkdir()
    for case in ("a", "b"):
        for k in range(3):
            sitk.WriteImage(img, str(tmp_path / "imagesTr" / f"{case}_{k:04d}.nii.gz"))
    sitk.WriteImage(sitk.Image(8, 8, 8, sitk.sitkUInt8), str(tmp_path / "labelsTr" / "a.nii.gz"))
    with pytest.raises(InputError, match=r"1 case\(s\) have no tumor mask.*Fix: add"):
        datasets.scan_dataset(tmp_path)
    recs = datasets.scan_dataset(tmp_path, require_label=False)
    assert [len(r.phases) for r in recs] == [3, 3] and recs[1].label is None
    (tmp_path / "imagesTr" / "b_0001.nii.gz").unlink()
    with pytest.raises(InputError, match="without gaps"):
        datasets.scan_dataset(tmp_path, require_label=False)


def test_kfold_is_case_level_disjoint_and_order_free():
    ids = [f"case{i:03d}" for i in range(23)]
    folds = datasets.kfold_splits(ids, 5, seed=3)
    vals = [set(v) for _, v in folds]
    assert sorted(c for v in vals for c in v) == sorted(ids)  # every case validated exactly once
    for tr, va in folds:
        assert not set(tr) & set(va) and len(tr) + len(va) == len(ids)
        assert 4 <= len(va) <= 5
    assert datasets.kfold_splits(ids[::-1], 5, seed=3) == folds
    assert datasets.kfold_splits(ids, 5, seed=4) != folds
    with pytest.raises(InputError):
        datasets.kfold_splits(ids[:3], 5)


def test_cache_is_reused_and_invalidated(phantom_root, tmp_path, monkeypatch):
    rec = datasets.scan_dataset(phantom_root)[0]
    cache = datasets.CaseCache(tmp_path, log=lambda *a: None)
    key = datasets.record_key(rec, 3.0, False)
    first = cache.get(key, lambda: datasets.prepare_record(rec, 3.0, register=False))
    assert first["phases"].shape[0] == 6 and first["label"].sum() > 0 and "pre_coarse" in first

    def fail():
        raise AssertionError("the cache was not used")
    again = cache.get(key, fail)
    for k in first:
        assert np.array_equal(first[k], again[k])
    # Read memory-mapped from disk: a large dataset does not have to fit in RAM.
    assert isinstance(again["phases"], np.memmap)
    # A half-written entry (no completion marker, e.g. after a kill) is prepared again.
    (cache.path(key) / "complete").unlink()
    calls = []
    cache.get(key, lambda: calls.append(1) or datasets.prepare_record(rec, 3.0, register=False))
    assert calls == [1] and (cache.path(key) / "complete").exists()
    # Touching a source file changes the key: the case is prepared again.
    p = rec.label
    p.write_bytes(p.read_bytes())
    assert datasets.record_key(rec, 3.0, False) != key


def test_prepared_case_matches_the_engine_inputs(tiny_cases):
    c = tiny_cases[0][0]
    t = len(c["times"]) - 1
    assert c["phases"].shape[0] == 2 * t and c["phases"].dtype == np.float16
    # sub_k = phase_k - pre: the pre-contrast is the same for every k
    pre = c["phases"][0::2].astype(np.float32) - c["phases"][1::2].astype(np.float32)
    assert np.abs(pre - pre[0]).max() < 0.02
    assert c["label"].sum() > 0 and (c["label"] & c["breast"]).sum() > 0.8 * c["label"].sum()


# ------------------------------------------------------------------------------ config
def test_config_json_toml_and_overrides(tmp_path):
    cfg = load_config(ROOT / "configs" / "st-demo.json", ["epochs=3", "data.val_seeds=\"2000-2001\""])
    assert cfg.epochs == 3 and cfg.data["val_seeds"] == "2000-2001" and cfg.input_kind == "phases"
    toml = tmp_path / "c.toml"
    toml.write_text('name = "x"\ntask = "breast"\n[architecture]\ntype = "unet3d"\nbase = 4\n')
    assert load_config(toml).input_kind == "pre"
    toml.write_text('name = "x"\nepochz = 3\n')
    with pytest.raises(InputError, match="unknown config key"):
        load_config(toml)
    with pytest.raises(InputError, match="enhancement_gain must be in"):
        load_config(ROOT / "configs" / "st-demo-finetune.json", ["augment.enhancement_gain=1.5"])
    assert load_config(ROOT / "configs" / "st-demo-finetune.json").augment["enhancement_gain"] == 0.3


def test_an_enhancement_gain_of_one_or_more_is_refused_with_one_message(tmp_path, capsys):
    """k = 1 +/- g must stay positive: ``breasttumorseg train`` (the one training command line; the
    trainer module has none) refuses g outside [0, 1) with one message and exit code 2, before
    anything is written."""
    from BreastTumorSegLib.cli import main as cli_main
    from BreastTumorSegLib.training import trainer

    assert not hasattr(trainer, "main")
    argv = ["--config", str(ROOT / "configs" / "unet-demo.json"), "--set", "augment.enhancement_gain=1.5"]
    assert cli_main(["train"] + argv + ["--output", str(tmp_path / "run2")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "enhancement_gain must be in [0, 1)" in err[0] and "0.7-1.3" in err[0]
    assert not (tmp_path / "run2").exists()


def test_per_patch_dice_weighs_a_small_tumor_as_much_as_a_large_one():
    target = torch.zeros(2, 1, 8, 8, 8)
    target[0, :, :6, :6, :6] = 1  # a large tumor, found
    target[1, :, 0, 0, 0] = 1  # a one-voxel tumor, missed
    logits = torch.where(target > 0, 10.0, -10.0)
    logits[1, :, 0, 0, 0] = -10.0
    batch, per_patch = loss_fn(logits, target).item(), loss_fn(logits, target, per_patch_dice=True).item()
    # per patch, the missed tumor's soft Dice loss is 1/2 (smoothing 1), half of which enters the mean;
    # over the batch it is one voxel of 217
    assert batch < 0.05 and per_patch > 0.24


def test_onecycle_schedule_is_torch_onecycle():
    from BreastTumorSegLib.training.trainer import lr_factor

    cfg = TrainerConfig(epochs=4, steps_per_epoch=50, warmup_steps=10, schedule="onecycle", lr=2e-3)
    opt = torch.optim.AdamW(torch.nn.Linear(2, 2).parameters(), lr=cfg.lr)
    ref = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=200, pct_start=0.05)
    for step in range(200):
        assert opt.param_groups[0]["lr"] == pytest.approx(cfg.lr * lr_factor(cfg, step), rel=1e-9, abs=1e-15)
        opt.step()
        if step < 199:
            ref.step()
    with pytest.raises(InputError, match="schedule"):
        TrainerConfig.from_dict({"schedule": "linear"})


def test_unet_demo_configs_are_the_recipe_of_the_shipped_card():
    """configs/unet-demo.json, -finetune.json and -finetune-2.json: the three runs that made the shipped
    unet-demo; the last is the one its card records."""
    from BreastTumorSegLib.core.values import parse_seeds

    shipped = json.loads((ROOT / "BreastTumorSeg" / "BreastTumorSegLib" / "models" / "shipped" / "unet-demo.json"
                          ).read_text())
    runs = [load_config(ROOT / "configs" / f) for f in
            ("unet-demo.json", "unet-demo-finetune.json", "unet-demo-finetune-2.json")]
    assert [r.epochs * r.steps_per_epoch for r in runs] == [1600, 5000, 2500]
    assert [len(parse_seeds(r.data["train_seeds"])) for r in runs] == [160, 200, 200]
    assert runs[0].init_from == "" and runs[1].augment["enhancement_gain"] == 0.3
    assert runs[1].init_from.startswith("runs/unet-demo/") and runs[2].init_from.startswith("runs/unet-demo-finetune/")
    rec, last = shipped["training"]["config"], runs[2]
    assert parse_seeds(last.data["train_seeds"]) == rec["train_seeds"]
    assert parse_seeds(last.data["val_seeds"]) == rec["val_seeds"]
    assert last.data["size"] == rec["phantom_size"] and last.steps_per_epoch == rec["val_every"]
    assert last.epochs * last.steps_per_epoch == rec["steps"]
    for key in ("spacing_mm", "patch", "batch", "lr", "weight_decay", "tumor_fraction", "per_patch_dice", "seed"):
        assert getattr(last, key) == rec[key], key
    assert last.augment["enhancement_gain"] == rec["enhancement_gain"]
    assert last.warmup_steps == 0.05 * rec["steps"] and last.schedule == "onecycle"  # OneCycleLR, pct_start 0.05
    assert last.architecture == shipped["architecture"] and last.input_kind == "hirsch"
    assert all(r.threshold_candidates == [0.3, 0.4, 0.5, 0.6, 0.7] for r in runs)


def test_unet_demo_config_smoke_run_and_continuation(phantom_root, tmp_path, capsys):
    """configs/unet-demo.json made tiny with --set: a card + weights the registry loads, the threshold tuned
    on validation; the next run of the recipe continues from that card (SHA-256 checked)."""
    from BreastTumorSegLib.cli import main as cli_main
    from BreastTumorSegLib.models.registry import get_segmenter
    from BreastTumorSegLib.models.weights import load_verified_state_dict

    def main(argv):
        return cli_main(["train"] + argv)

    tiny = ["name=tiny-unet", "spacing_mm=3.0", "patch=16", "batch=2", "epochs=2", "steps_per_epoch=3",
            "warmup_steps=2", "threads=1", f"cache_dir={json.dumps(str(tmp_path / 'cache'))}",
            'architecture={"type": "unet3d", "in_channels": 3, "out_channels": 1, "base": 4, "levels": 2}',
            "data=" + json.dumps({"source": "folder", "root": str(phantom_root), "val_cases": ["phantom_1002"],
                                  "register": False})]
    sets = [a for kv in tiny for a in ("--set", kv)]
    assert main(["--config", str(ROOT / "configs" / "unet-demo.json"), "--output", str(tmp_path / "r1")] + sets) == 0
    card_path = tmp_path / "r1" / "tiny-unet.json"
    card = json.loads(card_path.read_text())
    assert card["inputs"]["kind"] == "hirsch" and card["architecture"]["base"] == 4
    tuning = card["validation"]["threshold_tuning"]
    assert set(tuning["median_dice_by_threshold"]) == {"0.3", "0.4", "0.5", "0.6", "0.7"}
    assert card["postprocess"]["threshold"] == tuning["chosen"]
    assert card["training"]["config"]["schedule"] == "onecycle" and card["training"]["steps"] == 6
    seg = get_segmenter("tiny-unet", extra_dirs=[tmp_path / "r1"])
    start = load_verified_state_dict(tmp_path / "r1" / card["weights"], card["sha256"])
    for k, v in seg.net.state_dict().items():
        assert torch.equal(v, start[k]), k
    # run 2 of the recipe from run 1's card, lr 0: the learned weights are exactly the starting ones
    ft = ["--config", str(ROOT / "configs" / "unet-demo-finetune.json"),
          "--set", f"init_from={json.dumps(str(card_path))}",
          "--set", "lr=0.0", "--set", "epochs=1", "--set", "threshold_candidates=[]"]
    assert main(ft + ["--output", str(tmp_path / "r2")] + sets) == 0
    tuned = load_verified_state_dict(tmp_path / "r2" / "tiny-unet.safetensors",
                                     json.loads((tmp_path / "r2" / "tiny-unet.json").read_text())["sha256"])
    learned = [k for k in start if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))]
    assert len(learned) > 10 and all(torch.equal(start[k], tuned[k]) for k in learned)
    # weights that are not the ones the card names are refused
    w = tmp_path / "r1" / card["weights"]
    w.write_bytes(w.read_bytes()[:-4] + b"\0\0\0\0")
    capsys.readouterr()
    assert main(ft + ["--output", str(tmp_path / "r3")] + sets) == 2
    assert re.search("(?i)sha-?256", capsys.readouterr().err)
    # --retune re-chooses the threshold of a card the trainer wrote, in the card's folder
    r2_card = tmp_path / "r2" / "tiny-unet.json"
    assert main(["--retune", str(r2_card), "--output", str(tmp_path / "r4")]) == 2  # it takes no other folder
    assert "--retune" in capsys.readouterr().err and not (tmp_path / "r4").exists()
    assert main(["--retune", str(r2_card)]) == 0
    assert "threshold_tuning" in json.loads(r2_card.read_text())["validation"]


def test_sampler_ratio_and_phase_dropout(tiny_cases):
    cfg = _cfg(tumor_fraction=0.2, augment={"phase_dropout": 1.0})
    cases = task_cases(tiny_cases[0], "phases")
    sampler = PatchSampler(cases, cfg, input_scales(cases, "phases"), np.random.default_rng(0))
    centered, counts = 0, []
    for _ in range(200):
        b = sampler.sample(1)
        centered += bool(b["y"][0, 0, 8, 8, 8] > 0) or bool(b["y"].sum() > 0.1 * b["y"].numel())
        counts.append(int(b["phase_mask"].sum()))
        assert b["x"].shape[1] == 2 * b["phase_mask"].shape[1]
    assert 0.1 < centered / 200 < 0.45  # ~1:4 tumor : background, plus background patches touching tumor
    assert set(counts) == {1, 2, 3}  # every subset size of the 3 post-contrast phases


def test_enhancement_gain_scales_uptake_and_keeps_the_pre_contrast_signal(tiny_cases):
    """Stronger or weaker uptake: every enhancement channel times k, the implied pre-contrast unchanged."""
    for arch in (TINY_ST, {"type": "unet3d", "base": 4, "levels": 2}):
        cfg = _cfg(architecture=arch)
        cases = task_cases(tiny_cases[0], cfg.input_kind)
        sampler = PatchSampler(cases, cfg, input_scales(cases, cfg.input_kind), np.random.default_rng(0))
        x = sampler._crop(cases[0], np.array(cases[0].y.shape) // 2)[0]
        k = np.float32(1.3)
        xs = sampler._scale_enhancement(x, k)
        assert xs.shape == x.shape
        if cfg.input_kind == "phases":  # [phase_t, phase_t - pre] pairs
            pairs, spairs = x.reshape(-1, 2, *x.shape[1:]), xs.reshape(-1, 2, *x.shape[1:])
            np.testing.assert_allclose(spairs[:, 1], k * pairs[:, 1], rtol=1e-6)
            np.testing.assert_allclose(spairs[:, 0] - spairs[:, 1], pairs[:, 0] - pairs[:, 1], atol=1e-5)
        else:  # T1c, DCE-in, DCE-out, each divided by its own scale
            s = sampler.scales
            np.testing.assert_allclose(xs[1:], k * x[1:], rtol=1e-6)
            pre, spre = x[0] * s[0] - x[1] * s[1], xs[0] * s[0] - xs[1] * s[1]
            np.testing.assert_allclose(spre, pre, atol=1e-4 * float(np.abs(pre).max()))
        assert np.abs(x[1]).max() > 0  # the patch holds enhancement, so the check above meant something


# ------------------------------------------------------------------------------ training
def _fixed_batches(cases, cfg, n=6):
    tc = task_cases(cases, cfg.input_kind)
    s = PatchSampler(tc, cfg, input_scales(tc, cfg.input_kind), np.random.default_rng(123))
    return [s.sample(2) for _ in range(n)]


def _loss(net, batches):
    net.eval()
    with torch.no_grad():
        return float(np.mean([loss_fn(net(b["x"], b["phase_mask"], b["times"]), b["y"]).item() for b in batches]))


def test_smoke_training_lowers_the_loss(tiny_cases, tmp_path):
    from BreastTumorSegLib.training.validation import build_model

    torch.set_num_threads(1)
    cfg = _cfg(epochs=3, steps_per_epoch=10, augment={"phase_dropout": 0.5})
    batches = _fixed_batches(tiny_cases[0], cfg)
    tc = task_cases(tiny_cases[0], "phases")
    torch.manual_seed(cfg.seed)
    before = _loss(build_model(cfg, input_scales(tc, "phases")), batches)  # the trainer's initial weights
    out = train(cfg, tmp_path, cases=tiny_cases, log=lambda *a: None)
    net = build_model(cfg, input_scales(tc, "phases"))
    net.load_state_dict(out.final_state)
    after = _loss(net, batches)
    print(f"held-out patch loss {before:.3f} -> {after:.3f}")
    assert after < 0.8 * before, (before, after)
    # logs a person can plot, and a loadable model
    lines = [json.loads(x) for x in (tmp_path / "log.jsonl").read_text().splitlines()]
    epochs = [r for r in lines if r["type"] == "epoch"]
    assert [r["epoch"] for r in epochs] == [1, 2, 3] and all(0 <= r["val_dice_median"] <= 1 for r in epochs)
    assert len((tmp_path / "log.csv").read_text().splitlines()) == 4
    card = json.loads((tmp_path / "tiny.json").read_text())
    assert card["inputs"]["kind"] == "phases" and card["validation"]["epoch"] in (1, 2, 3)
    from BreastTumorSegLib.models.registry import get_segmenter
    seg = get_segmenter("tiny", extra_dirs=[tmp_path])
    assert torch.equal(seg.net.input_scale, net.input_scale)
    png = tmp_path / "curves.png"
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "plot_training_log.py"), str(tmp_path / "log.jsonl"),
                        "-o", str(png)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert png.stat().st_size > 1000


def test_resume_continues_exactly(tiny_cases, tmp_path):
    torch.set_num_threads(1)
    cfg = _cfg(epochs=2, steps_per_epoch=4)
    full = train(cfg, tmp_path / "full", cases=tiny_cases, log=lambda *a: None)
    part = tmp_path / "part"  # the same run, interrupted after its first epoch, then resumed
    train(cfg, part, cases=tiny_cases, log=lambda *a: None, max_epochs_this_run=1)
    resumed = train(cfg, part, resume=True, cases=tiny_cases, log=lambda *a: None)
    for k, v in full.final_state.items():
        assert torch.equal(v, resumed.final_state[k]), k
    epochs = [json.loads(x)["epoch"] for x in (part / "log.jsonl").read_text().splitlines()
              if json.loads(x)["type"] == "epoch"]
    assert epochs == [1, 2]


def test_early_stopping(tiny_cases, tmp_path):
    cfg = _cfg(epochs=6, steps_per_epoch=2, lr=0.0, patience=2)
    out = train(cfg, tmp_path, cases=tiny_cases, log=lambda *a: None)
    best = out.card["validation"]["epoch"]
    # It stops `patience` epochs after the best one (or at the last epoch if the best came late).
    assert len(out.history) == min(best + 2, 6)
    assert len(out.history) < 6 or best >= 5


def test_train_command_on_a_mamamia_folder(phantom_root, tmp_path):
    """`breasttumorseg train --config ... --output ...` end to end: folder data, cache, card; no silent reuse."""
    import argparse

    from BreastTumorSegLib.cli import train as train_cmd
    from BreastTumorSegLib.core.errors import OutputExistsError

    cfg = {"name": "folder-st", "architecture": TINY_ST, "spacing_mm": 3.0, "patch": 16, "batch": 2, "epochs": 1,
           "steps_per_epoch": 3, "threads": 1, "cache_dir": str(tmp_path / "cache"),
           "data": {"source": "folder", "root": str(phantom_root), "folds": 2, "fold": 1, "register": False}}
    (tmp_path / "cfg.json").write_text(json.dumps(cfg))
    parser = argparse.ArgumentParser()
    train_cmd.register(parser.add_subparsers())
    argv = ["train", "--config", str(tmp_path / "cfg.json"), "-o", str(tmp_path / "run"), "--set", "lr=0.005"]
    args = parser.parse_args(argv)
    assert args.func(args) == 0
    card = json.loads((tmp_path / "run" / "folder-st.json").read_text())
    assert card["training"]["config"]["lr"] == 0.005 and "fold 1 of 2" in card["description"]
    assert len([d for d in (tmp_path / "cache").iterdir() if (d / "complete").exists()]) == 2
    with pytest.raises(OutputExistsError, match="--resume"):
        args.func(parser.parse_args(argv))


def test_fine_tuning_starts_from_the_given_model(tiny_cases, tmp_path):
    """``init_from``: the run starts from the card's verified weights and keeps its input scales."""
    from BreastTumorSegLib.core.errors import BreastTumorSegError
    from BreastTumorSegLib.models.weights import load_verified_state_dict

    torch.set_num_threads(1)
    first = train(_cfg(epochs=1, steps_per_epoch=3), tmp_path / "first", cases=tiny_cases, log=lambda *a: None)
    card_path = tmp_path / "first" / "tiny.json"
    start = load_verified_state_dict(card_path.parent / first.card["weights"], first.card["sha256"])
    # lr 0: no learned weight moves, so they are exactly the starting model's (batch-norm running
    # statistics still follow the new data, as they should when fine-tuning)
    tuned = train(_cfg(epochs=1, steps_per_epoch=2, lr=0.0, init_from=str(card_path)), tmp_path / "tuned",
                  cases=tiny_cases, log=lambda *a: None)
    learned = [k for k in start if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))]
    assert len(learned) > 10
    for k in learned:
        assert torch.equal(start[k], tuned.final_state[k]), k
    assert tuned.card["training"]["config"]["init_from"] == str(card_path)
    # a model of another shape is refused with a message that names the card
    other = dict(TINY_ST, dim=TINY_ST["dim"] * 2)
    with pytest.raises(BreastTumorSegError, match="tiny.json"):
        train(_cfg(architecture=other, init_from=str(card_path)), tmp_path / "bad", cases=tiny_cases,
              log=lambda *a: None)
