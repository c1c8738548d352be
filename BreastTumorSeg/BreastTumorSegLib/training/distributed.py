"""One process or several (``torchrun``): the process group, this rank and its device."""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist



# ------------------------------------------------------------------------------ distributed
@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()


def setup_distributed(device: torch.device) -> Dist:
    """Join the process group when launched by torchrun (``WORLD_SIZE`` > 1)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Dist(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def pick_device(name: str, d_local_rank: int) -> torch.device:
    from ..models.inference import select_device

    dev = select_device(name)
    if dev.type == "cuda":
        dev = torch.device("cuda", d_local_rank % torch.cuda.device_count())
        torch.cuda.set_device(dev)
    return dev
