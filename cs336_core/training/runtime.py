"""Where and how a run executes: its device, torch's thread count, and a watch on the process that launched it."""

from __future__ import annotations

import contextlib
import os
from typing import Iterator

import torch


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={name!r} requested but CUDA is not available to this torch build")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device={name!r} requested but MPS is not available")
    return device


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run a block with `n` torch intra-op threads (0: leave torch's setting alone)."""
    before = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class LauncherWatch:
    """A `should_stop` for train(): true once the process that launched this one has exited.

    A killed parent (the `dagster asset materialize` CLI or a run worker whose step process trains)
    takes nothing down with it: the child is re-parented (getppid changes) and would train on alone,
    holding the run directory. Watched, it stops at the next step boundary with a checkpoint.
    """

    def __init__(self):
        self.parent = os.getppid()

    def __call__(self) -> bool:
        return os.getppid() != self.parent
