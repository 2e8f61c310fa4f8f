"""Data parallel under torchrun: this process's rank, its share of each batch, and means over ranks.

Under `torchrun` (WORLD_SIZE > 1) every rank draws the same global batch of start offsets and
trains on its own slice, wrapped in DistributedDataParallel (gloo on CPU, nccl on CUDA). The
averaged gradient is then the single-process gradient of the same global batch. Only rank 0
evaluates and writes files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank_device(device: torch.device) -> torch.device:
    """The device this rank trains on: under torchrun on CUDA, the GPU of its LOCAL_RANK."""
    if world_size() > 1 and device.type == "cuda":
        # Chosen before NCCL starts, so its communicator binds to this GPU.
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    return device


@dataclass
class _Process:
    """Where this process sits in a torchrun job (rank 0 of 1 when run alone)."""

    rank: int = 0
    world_size: int = 1
    owns_group: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def start(cls, device: torch.device) -> "_Process":
        if world_size() <= 1:
            return cls()
        owns_group = not dist.is_initialized()
        if owns_group:
            dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
        return cls(dist.get_rank(), dist.get_world_size(), owns_group)

    def local_part(self, global_batch: np.ndarray) -> np.ndarray:
        """This rank's contiguous share of the global batch (the ranks' shares concatenate to it)."""
        local = len(global_batch) // self.world_size
        return global_batch[self.rank * local : (self.rank + 1) * local]

    def mean(self, value: float) -> float:
        """The mean of `value` over ranks (every rank gets the same number, so they decide alike)."""
        if self.world_size == 1:
            return value
        tensor = torch.tensor([value], dtype=torch.float64)
        dist.all_reduce(tensor)  # gloo has no AVG; SUM then divide
        return tensor.item() / self.world_size

    def close(self) -> None:
        if self.owns_group:
            dist.destroy_process_group()
