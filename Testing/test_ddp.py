"""DistributedDataParallel on CPU: two gloo processes train one model and end with equal weights."""
import json
import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from BreastTumorSegLib.training.config import TrainerConfig
from BreastTumorSegLib.training.trainer import train
from cli_fixtures import free_port

TINY_ST = {"type": "st_transformer", "base": 4, "levels": 2, "max_channels": 8, "dim": 16, "heads": 2,
           "depth": 1, "window": 2, "dropout": 0.0}


def _worker(rank: int, world: int, port: int, cfg: TrainerConfig, cases, out: str) -> None:
    from safetensors.torch import save_file

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    try:
        outcome = train(cfg, out, cases=cases, log=lambda *a: None)
        save_file({k: v.contiguous() for k, v in outcome.final_state.items()}, os.path.join(out, f"rank{rank}.st"))
        with open(os.path.join(out, f"rank{rank}.json"), "w") as fh:
            json.dump({"history": outcome.history, "has_card": outcome.card is not None}, fh)
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


@pytest.fixture(scope="module")
def cases():
    from BreastTumorSegLib.training.datasets import prepare_phantom

    kw = dict(shape_mm=(220, 140, 90), spacing=3.0, n_phases=3, n_tumors=1, tumor_radius_mm=14, motion_mm=0)
    c = [prepare_phantom(s, 3.0, **kw) for s in (1003, 1004)]
    return c, c[1:]


def test_two_process_ddp_gives_identical_weights(cases, tmp_path):
    from safetensors.torch import load_file

    cfg = TrainerConfig(name="ddp", architecture=TINY_ST, spacing_mm=3.0, patch=16, batch=2, epochs=1,
                        steps_per_epoch=4, lr=1e-2, warmup_steps=1, tumor_fraction=0.5, threads=1)
    mp.spawn(_worker, args=(2, free_port(), cfg, cases, str(tmp_path)), nprocs=2, join=True)
    w0, w1 = load_file(tmp_path / "rank0.st"), load_file(tmp_path / "rank1.st")
    assert w0.keys() == w1.keys()
    for k in w0:
        assert torch.equal(w0[k], w1[k]), k
    # the weights moved, and only rank 0 wrote the model, the card and the log
    torch.manual_seed(0)
    from BreastTumorSegLib.models.nets import build_network
    init = build_network(TINY_ST).state_dict()
    assert any(not torch.equal(init[k], w0[k]) for k in init if k != "input_scale")
    r0 = json.loads((tmp_path / "rank0.json").read_text())
    r1 = json.loads((tmp_path / "rank1.json").read_text())
    assert r0["has_card"] and not r1["has_card"] and len(r0["history"]) == 1
    assert (tmp_path / "ddp.safetensors").exists() and (tmp_path / "log.jsonl").exists()
    epochs = [json.loads(x) for x in (tmp_path / "log.jsonl").read_text().splitlines()]
    # one epoch of 4 steps, in which two processes x batch 2 x 4 steps = 16 patches were trained
    epoch_records = [e for e in epochs if e["type"] == "epoch"]
    assert [(e["epoch"], e["step"], e["patches"]) for e in epoch_records] == [(1, 4, 2 * 2 * 4)], epoch_records
    assert epoch_records[0]["patches_per_s"] > 0
