"""The training engine: one `train(config) -> TrainResult` that the assets and the CLI call.

A run lives in one directory:

    out_dir/config.json      the resolved TrainConfig
    out_dir/data_files.json  the size in bytes of each data file the run trains and scores on
    out_dir/metrics.jsonl    one JSON object per log step, appended and flushed as it happens
    out_dir/ckpt/latest.pt   every `checkpoint_every` steps and at the end (atomic)
    out_dir/ckpt/previous.pt the checkpoint latest.pt replaced (a fallback if latest.pt is damaged)
    out_dir/ckpt/final.pt    at the end of a completed run
    out_dir/result.json      the TrainResult of a completed or diverged run, written last

One writer per run directory: `train` holds an exclusive `RunLock` (fcntl.flock) for the whole run,
so a second process training into the same out_dir fails at once with an error naming the
directory and the holder's pid, before it reads or writes anything. The lock file sits beside the
directory (`<parent>/.<name>.lock`), not in it, so it stays put while the directory is archived.
The lock is re-entrant within one thread: a caller that already holds it (the asset layer, which
archives under it) can call `train`. Under torchrun only rank 0 takes it, as only rank 0 writes.

Resume: with `resume=True` ("auto", the default) `train` continues from `ckpt/latest.pt`. The
checkpoint holds the model, the optimizer, every RNG state (torch, cuda, numpy, python and the
batch sampler), the counters, the config and the data file sizes, and metrics.jsonl is cut back to
the checkpoint's step. On CPU, N steps straight and N/2 steps + kill + resume give the same
parameters bit for bit. Only a run started with the same config is resumed: every TrainConfig
field (model, data paths, optimizer, schedule, batch, seed, dtype, ...) and the data file sizes
must equal the stored ones, except those in `RESUME_MAY_CHANGE` (where the run is written, the
log/eval/checkpoint cadence, device and compile: how a run is watched and executed, not what it
computes). Any other difference raises `ResumeMismatch` listing the fields. The same holds for a
run directory without a checkpoint whose config.json differs. `resume=False` ("never") starts
over: an earlier run in out_dir is first moved to `<parent>/_archive/<name>-<time>-<pid>`, so
nothing written is lost.

Checkpoints survive their own corruption: before latest.pt is replaced, the file it replaces is kept
as previous.pt. If latest.pt is unreadable (truncated, empty, garbage) or missing, resume falls
back to previous.pt with a RuntimeWarning naming the bad file, which is kept as
`latest.pt.corrupt-<time>`. With no readable checkpoint left, `CheckpointError` names the file and
says what to do. A checkpoint write that fails (a full disk: ENOSPC) raises an OSError naming the
path and leaves the checkpoint it would have replaced intact.

Interrupts: `train(..., should_stop=fn)` calls `fn()` at every step boundary; when it returns
true the run writes ckpt/latest.pt and returns status "interrupted" (no final.pt, no result.json),
and training again with the same config resumes from there. The assets pass a watcher of the
launching process, so a training step whose launcher was killed stops instead of training on.

A diverging run (non-finite loss, or loss above `divergence_factor` x its first loss) stops with
status "diverged" instead of raising, so a learning-rate sweep records it as a result.

Data parallel: under `torchrun` (WORLD_SIZE > 1) every rank draws the same global batch of start
offsets and trains on its own slice, wrapped in DistributedDataParallel (gloo on CPU, nccl on
CUDA). The averaged gradient is then the single-process gradient of the same global batch. Only
rank 0 evaluates and writes files.

dtype "bfloat16" runs forward passes under torch.autocast on the chosen device (the loss is taken
in float32); tf32 applies to CUDA matmuls; compile wraps the training forward in torch.compile.

CLI (console script `cs336-train`): `python -m cs336_core.training --config cfg.json [--field value
...]`, with a flag for every TrainConfig and ModelConfig field (`--resume never` starts over);
prints the TrainResult as JSON.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import errno
import fcntl
import json
import math
import os
import pickle
import random
import shutil
import sys
import threading
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Callable

import numpy as np
import torch
import torch.distributed as dist

from cs336_core.data import (
    batch_at,
    check_long_enough,
    check_token_ids,
    load_tokens,
    sample_starts,
    validation_batches,
)
from cs336_core.files import atomic_path, atomic_write_json, atomic_write_text
from cs336_core.model import ModelConfig, TransformerLM
from cs336_core.optim import AdamW, clip_gradients, cross_entropy, lr_cosine_schedule
from cs336_core.progress import ConsoleProgress, ProgressFn

DEVICES = ("auto", "cpu", "cuda", "mps")
DTYPES = ("float32", "bfloat16")
# The keys of every metrics.jsonl line (val_loss is null on steps without an evaluation).
METRIC_FIELDS = ("step", "tokens", "wall_seconds", "train_loss", "val_loss", "lr", "grad_norm", "tokens_per_second")
MetricsCallback = Callable[[dict[str, Any]], None]
RESUME_MODES = {"auto": True, "never": False}
# TrainConfig fields that may differ between a run and its resumption: they say where the run is
# written, how often it is logged, evaluated and checkpointed, and where and how it executes, but
# not what it computes. Any other difference (a different learning rate, batch, seed, data, model,
# dtype, schedule, evaluation set, ...) would splice two different runs into one.
RESUME_MAY_CHANGE = ("out_dir", "resume", "log_every", "eval_every", "checkpoint_every", "device", "compile")


# --------------------------------------------------------------------------------------------
# Configuration


@dataclass
class TrainConfig:
    """Everything a run needs; `None` defaults are resolved on construction and saved resolved.

    Give the length either as `max_steps` or as `total_tokens` (steps = ceil(total_tokens /
    (batch_size * context_length))). `lr_min` defaults to lr_max / 10, `warmup_steps` to 5% of the
    steps, `cosine_cycle_steps` to all steps, `eval_batch_size` to `batch_size`. `grad_clip=None`
    and `checkpoint_every=0` switch those off; `eval_every=0` evaluates only at the end;
    `divergence_factor=None` keeps only the non-finite-loss check.
    """

    train_path: str
    out_dir: str
    model: ModelConfig
    valid_path: str | None = None
    token_dtype: str = "uint16"  # of raw token files (.bin); a .npy file carries its own dtype
    batch_size: int = 32
    max_steps: int | None = None
    total_tokens: int | None = None
    lr_max: float = 1e-3
    lr_min: float | None = None
    warmup_steps: int | None = None
    cosine_cycle_steps: int | None = None
    betas: tuple[float, float] = (0.9, 0.95)
    eps: float = 1e-8
    weight_decay: float = 0.1
    grad_clip: float | None = 1.0
    eval_every: int = 100
    eval_batches: int = 20
    eval_batch_size: int | None = None
    eval_seed: int = 0  # fixed apart from `seed` so every run of a sweep scores the same windows
    log_every: int = 10
    checkpoint_every: int = 500
    seed: int = 0
    device: str = "auto"
    dtype: str = "float32"
    compile: bool = False
    tf32: bool = True
    divergence_factor: float | None = 3.0
    resume: bool = True  # also "auto" (= True) or "never" (= False: archive an earlier run, start over)

    def __post_init__(self):
        if isinstance(self.model, dict):
            self.model = ModelConfig.from_dict(self.model)
        if not isinstance(self.model, ModelConfig):
            raise ValueError(f"TrainConfig.model must be a ModelConfig or dict, got {type(self.model).__name__}")
        for name in ("train_path", "out_dir", "valid_path"):
            value = getattr(self, name)
            if isinstance(value, os.PathLike):
                setattr(self, name, os.fspath(value))
            elif value is not None and not isinstance(value, str):
                raise ValueError(f"TrainConfig.{name} must be a path string, got {value!r}")
        if not self.train_path or not self.out_dir:
            raise ValueError("TrainConfig.train_path and TrainConfig.out_dir must not be empty")
        if self.token_dtype not in ("uint16", "uint32", "int32", "int64"):
            raise ValueError(f"TrainConfig.token_dtype must be uint16, uint32, int32 or int64, got {self.token_dtype!r}")
        _check_int(self, "batch_size", minimum=1)
        if (self.max_steps is None) == (self.total_tokens is None):
            raise ValueError(
                f"set exactly one of max_steps and total_tokens (got max_steps={self.max_steps!r}, "
                f"total_tokens={self.total_tokens!r})"
            )
        _check_int(self, "max_steps", minimum=1, optional=True)
        _check_int(self, "total_tokens", minimum=1, optional=True)
        _check_float(self, "lr_max", minimum=0.0, exclusive=True)
        if self.lr_min is None:
            self.lr_min = self.lr_max / 10
        _check_float(self, "lr_min", minimum=0.0)
        if self.lr_min > self.lr_max:
            raise ValueError(f"lr_min={self.lr_min} exceeds lr_max={self.lr_max}")
        if self.warmup_steps is None:
            self.warmup_steps = self.steps // 20
        if self.cosine_cycle_steps is None:
            self.cosine_cycle_steps = self.steps
        _check_int(self, "warmup_steps", minimum=0)
        _check_int(self, "cosine_cycle_steps", minimum=0)
        if self.cosine_cycle_steps < self.warmup_steps:
            raise ValueError(
                f"cosine_cycle_steps={self.cosine_cycle_steps} must be >= warmup_steps={self.warmup_steps}"
            )
        if not isinstance(self.betas, (tuple, list)) or len(self.betas) != 2:
            raise ValueError(f"TrainConfig.betas must be a pair of floats, got {self.betas!r}")
        self.betas = (float(self.betas[0]), float(self.betas[1]))
        if not all(0.0 <= beta < 1.0 for beta in self.betas):
            raise ValueError(f"TrainConfig.betas must each lie in [0, 1), got {self.betas}")
        _check_float(self, "eps", minimum=0.0, exclusive=True)
        _check_float(self, "weight_decay", minimum=0.0)
        _check_float(self, "grad_clip", minimum=0.0, exclusive=True, optional=True)
        _check_int(self, "eval_every", minimum=0)
        _check_int(self, "eval_batches", minimum=1)
        if self.eval_batch_size is None:
            self.eval_batch_size = self.batch_size
        _check_int(self, "eval_batch_size", minimum=1)
        _check_int(self, "eval_seed", minimum=0)
        _check_int(self, "log_every", minimum=1)
        _check_int(self, "checkpoint_every", minimum=0)
        _check_int(self, "seed", minimum=0)
        if self.device not in DEVICES and not (isinstance(self.device, str) and self.device.startswith("cuda:")):
            raise ValueError(f"TrainConfig.device must be one of {DEVICES} or 'cuda:N', got {self.device!r}")
        if self.dtype not in DTYPES:
            raise ValueError(f"TrainConfig.dtype must be one of {DTYPES}, got {self.dtype!r}")
        if isinstance(self.resume, str) and self.resume in RESUME_MODES:
            self.resume = RESUME_MODES[self.resume]
        for name in ("compile", "tf32", "resume"):
            if not isinstance(getattr(self, name), bool):
                also = ' (or "auto", "never")' if name == "resume" else ""
                raise ValueError(f"TrainConfig.{name} must be true or false{also}, got {getattr(self, name)!r}")
        _check_float(self, "divergence_factor", minimum=1.0, exclusive=True, optional=True)

    @property
    def tokens_per_step(self) -> int:
        return self.batch_size * self.model.context_length

    @property
    def steps(self) -> int:
        if self.max_steps is not None:
            return self.max_steps
        return math.ceil(self.total_tokens / self.tokens_per_step)

    def to_dict(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        data["model"] = self.model.to_dict()
        data["betas"] = list(self.betas)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown TrainConfig fields: {sorted(unknown)}")
        missing = {"train_path", "out_dir", "model"} - set(data)
        if missing:
            raise ValueError(f"TrainConfig needs {sorted(missing)}")
        return cls(**data)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str) -> "TrainConfig":
        return cls.from_dict(json.loads(text))


def _check_int(config: TrainConfig, name: str, minimum: int, optional: bool = False) -> None:
    value = getattr(config, name)
    if value is None and optional:
        return
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"TrainConfig.{name} must be an int >= {minimum}, got {value!r}")


def _check_float(config: TrainConfig, name: str, minimum: float, exclusive: bool = False, optional: bool = False) -> None:
    value = getattr(config, name)
    if value is None and optional:
        return
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (value > minimum if exclusive else value >= minimum)
    if not ok:
        relation = ">" if exclusive else ">="
        raise ValueError(f"TrainConfig.{name} must be a finite number {relation} {minimum}, got {value!r}")
    setattr(config, name, float(value))


@dataclass
class TrainResult:
    status: str  # "completed" | "diverged" | "interrupted" (should_stop; resumable, no result.json)
    steps: int
    tokens: int
    wall_seconds: float
    tokens_per_second: float  # tokens / time spent in optimizer steps (evaluation and checkpoints excluded)
    final_train_loss: float | None
    final_val_loss: float | None
    best_val_loss: float | None
    checkpoint_path: str | None
    metrics_path: str
    out_dir: str
    message: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {k: _json_number(v) for k, v in dataclasses.asdict(self).items()}


def _json_number(value):
    """JSON has no NaN or infinity; a non-finite loss is recorded as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


# --------------------------------------------------------------------------------------------
# Checkpoints


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The plain module under DistributedDataParallel and torch.compile wrappers."""
    while True:
        if isinstance(model, torch.nn.parallel.DistributedDataParallel):
            model = model.module
        elif hasattr(model, "_orig_mod"):
            model = model._orig_mod
        else:
            return model


class CheckpointError(RuntimeError):
    """A checkpoint file that cannot be read back (truncated, empty, garbage, or missing entries)."""


def save_checkpoint(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    iteration: int,
    out: str | os.PathLike | BinaryIO,
    **extra: Any,
) -> None:
    """Write model, optimizer and iteration (plus any `extra` entries) to a path or binary file.

    A path is written atomically: a crash or a full disk mid-write leaves the previous file in place,
    and a failed write raises an OSError that names the path (ENOSPC for a full disk).
    """
    state = {"model": _unwrap(model).state_dict(), "optimizer": optimizer.state_dict(), "iteration": int(iteration)}
    state.update(extra)
    if not isinstance(out, (str, os.PathLike)):
        torch.save(state, out)
        return
    try:
        with atomic_path(out) as tmp, open(tmp, "wb") as f:
            # Through a Python file a failed write raises OSError with its errno; torch's own path
            # writer reports a full disk only as "[enforce fail at inline_container.cc] unexpected pos".
            torch.save(state, f)
    except Exception as error:
        cause = _os_error_behind(error)
        if cause is None:
            raise
        what = "no space left on device (ENOSPC)" if cause.errno == errno.ENOSPC else cause.strerror or str(cause)
        raise OSError(cause.errno, f"{what} while writing checkpoint {out}; the file it would replace is intact",
                      str(out)) from error


def _os_error_behind(error: BaseException) -> OSError | None:
    """The OSError that caused `error`, if any (torch's zip writer masks it with its own RuntimeError)."""
    while error is not None:
        if isinstance(error, OSError):
            return error
        error = error.__cause__ or error.__context__
    return None


# Entries train() writes beside model/optimizer/iteration; resume needs every one of them.
_RUN_CHECKPOINT_KEYS = ("model", "optimizer", "iteration", "config", "rng", "counters")


def read_checkpoint(src: str | os.PathLike | BinaryIO) -> dict[str, Any]:
    """The whole checkpoint dictionary, tensors on CPU (plain data only: weights_only loading).

    A file that is not a readable checkpoint raises CheckpointError naming it.
    """
    if isinstance(src, (str, os.PathLike)) and not Path(src).is_file():
        raise FileNotFoundError(f"checkpoint not found: {src}")
    name = src if isinstance(src, (str, os.PathLike)) else getattr(src, "name", "checkpoint stream")
    try:
        state = torch.load(src, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises EOFError, RuntimeError, UnpicklingError, ... for bad bytes
        raise CheckpointError(f"{name} is not a readable checkpoint: {_unreadable_reason(error)}") from error
    if not isinstance(state, dict):
        raise CheckpointError(f"{name} is not a checkpoint: it holds a {type(state).__name__}, not a dict")
    return state


def _unreadable_reason(error: Exception) -> str:
    """Why torch.load failed, in words that do not point at unsafe workarounds.

    (torch's UnpicklingError advises weights_only=False, i.e. running arbitrary pickled code from a
    file that is already known to be damaged or foreign; that advice is not passed on.)
    """
    if isinstance(error, EOFError):
        return "the file is empty or cut short"
    if isinstance(error, pickle.UnpicklingError):
        return "its contents are not a checkpoint this code wrote (garbage or a foreign pickle)"
    text = str(error).strip()
    first_sentence = text.splitlines()[0].split(". ")[0] if text else type(error).__name__
    return f"damaged or truncated ({first_sentence})"


def load_checkpoint(
    src: str | os.PathLike | BinaryIO, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None = None
) -> int:
    """Restore `model` (and `optimizer` if given) from a checkpoint; return its iteration."""
    state = read_checkpoint(src)
    _unwrap(model).load_state_dict(state["model"])
    if optimizer is not None:
        optimizer.load_state_dict(state["optimizer"])
    return state["iteration"]


def _rng_state(batch_rng: np.random.Generator) -> dict[str, Any]:
    # Plain lists instead of numpy arrays so the checkpoint loads with weights_only=True.
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": [kind, keys.tolist(), pos, has_gauss, cached],
        "python": random.getstate(),
        "batches": batch_rng.bit_generator.state,
    }


def _set_rng_state(state: dict[str, Any], batch_rng: np.random.Generator) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))
    random.setstate(state["python"])
    batch_rng.bit_generator.state = state["batches"]


# --------------------------------------------------------------------------------------------
# Devices and processes


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
        world_size = int(os.environ.get("WORLD_SIZE", "1"))
        if world_size <= 1:
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


# --------------------------------------------------------------------------------------------
# Run directories: one writer, the resume rule, archiving


class RunLockedError(RuntimeError):
    """Another process (or another thread of this one) is training into the run directory."""


# The run locks this process holds: lock file -> [descriptor, owning thread id, depth]. flock belongs
# to an open file description, so a second open() of the same file here would conflict with the
# first; re-entry reuses the held descriptor instead.
_HELD_LOCKS: dict[Path, list] = {}
_HELD_LOCKS_GUARD = threading.Lock()


def _forget_locks_in_child() -> None:
    # A forked child shares the parent's lock descriptions: it closes its copies, so the lock ends
    # when the parent lets go and the child never takes the parent's lock for its own.
    global _HELD_LOCKS_GUARD
    for descriptor, _, _ in _HELD_LOCKS.values():
        os.close(descriptor)
    _HELD_LOCKS.clear()
    _HELD_LOCKS_GUARD = threading.Lock()


os.register_at_fork(after_in_child=_forget_locks_in_child)


class RunLock:
    """The exclusive lock of one writer on a run directory, held from `with` to its end.

    The lock file is `<parent>/.<name>.lock`, beside the directory, so it stays in place while the
    directory is archived under it. A second process fails at once with RunLockedError naming the
    directory and the holder's pid. Re-entrant within one thread: a caller holding it can call
    `train` on the same directory; another thread of the same process is refused like a process.
    """

    def __init__(self, out_dir: str | os.PathLike):
        self.out_dir = Path(out_dir).resolve()
        self.path = self.out_dir.parent / f".{self.out_dir.name}.lock"

    def __enter__(self) -> "RunLock":
        with _HELD_LOCKS_GUARD:
            held = _HELD_LOCKS.get(self.path)
            if held is None:
                _HELD_LOCKS[self.path] = [self._acquire(), threading.get_ident(), 1]
            elif held[1] == threading.get_ident():
                held[2] += 1
            else:
                raise RunLockedError(f"{self.out_dir} is in use by another thread of this process "
                                     f"(pid {os.getpid()}); train into another out_dir")
        return self

    def _acquire(self) -> int:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(descriptor, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(descriptor)
            raise RunLockedError(
                f"{self.out_dir} is in use by another training process (pid {holder}; lock file {self.path}): "
                "wait for it to finish or stop it, or train into another out_dir") from None
        except BaseException:
            os.close(descriptor)
            raise
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, f"{os.getpid()}\n".encode(), 0)
        return descriptor

    def __exit__(self, *exc_info) -> None:
        with _HELD_LOCKS_GUARD:
            held = _HELD_LOCKS[self.path]
            held[2] -= 1
            if held[2] == 0:
                del _HELD_LOCKS[self.path]
                os.close(held[0])  # closing the last descriptor releases the flock


class ResumeMismatch(ValueError):
    """The run stored in out_dir was started with another config; `differences` lists the fields."""

    def __init__(self, source: Path, differences: list[str]):
        self.source, self.differences = source, differences
        super().__init__(
            f"cannot resume from {source}: it was written by a run with a different config "
            f"({'; '.join(differences)}). Resuming would splice two different runs into one: train with "
            "resume='never' (cs336-train --resume never) to archive the earlier run and start over, or use "
            f"another out_dir. Only {', '.join(RESUME_MAY_CHANGE)} may change on resume."
        )


class _RunFiles:
    def __init__(self, out_dir: str | os.PathLike):
        self.out_dir = Path(out_dir)
        self.config = self.out_dir / "config.json"
        self.data_files = self.out_dir / "data_files.json"
        self.metrics = self.out_dir / "metrics.jsonl"
        self.ckpt_dir = self.out_dir / "ckpt"
        self.latest = self.ckpt_dir / "latest.pt"
        self.previous = self.ckpt_dir / "previous.pt"
        self.final = self.ckpt_dir / "final.pt"
        self.result = self.out_dir / "result.json"

    def holds_run(self) -> bool:
        return any(path.exists() for path in (self.config, self.metrics, self.ckpt_dir, self.result))

    def remove_partial_writes(self) -> None:
        """A killed process can leave atomic_path's temporary file behind; it is never read."""
        for directory in (self.out_dir, self.ckpt_dir):
            for leftover in directory.glob(".*.partial"):
                leftover.unlink(missing_ok=True)

    def keep_metrics_through(self, step: int) -> None:
        """Cut metrics.jsonl back to the lines of steps <= `step` (also drops a torn last line)."""
        kept = []
        if self.metrics.exists():
            for line in self.metrics.read_text(encoding="utf-8").splitlines():
                with contextlib.suppress(json.JSONDecodeError):
                    if json.loads(line)["step"] <= step:
                        kept.append(line + "\n")
        atomic_write_text(self.metrics, "".join(kept))

    def readable_checkpoint(self) -> tuple[Path, dict[str, Any]] | None:
        """(path, contents) of the newest readable checkpoint, latest.pt else previous.pt; None if neither exists.

        A fallback to previous.pt warns, naming the damaged or missing latest.pt; with checkpoints
        present but none readable, CheckpointError names them and says what to do.
        """
        problems = []
        for path in (self.latest, self.previous):
            if not path.exists():
                continue
            try:
                state = _read_run_checkpoint(path)
            except CheckpointError as error:
                problems.append(str(error))
                continue
            if path != self.latest:
                why = "; ".join(problems) or f"{self.latest} is missing"
                warnings.warn(f"{why}; resuming from the previous checkpoint {path} (step {state['iteration']}) "
                              "instead", RuntimeWarning, stacklevel=2)
            return path, state
        if problems:
            raise CheckpointError(
                f"{'; '.join(problems)}. No readable checkpoint is left in {self.ckpt_dir}: train with "
                "resume='never' (cs336-train --resume never) to archive this run and start over, or move the "
                "damaged file away to restart it from step 0")
        return None

    def set_aside(self, path: Path) -> None:
        """Keep a damaged file for inspection under a name nothing reads, out of the way of new writes."""
        if path.exists():
            os.replace(path, path.with_name(f"{path.name}.corrupt-{time.strftime('%Y%m%dT%H%M%S')}"))

    def keep_previous(self) -> None:
        """Keep the checkpoint latest.pt is about to replace as previous.pt (a hard link, not a copy)."""
        if not self.latest.exists():
            return
        with atomic_path(self.previous) as tmp:
            tmp.unlink()
            try:
                os.link(self.latest, tmp)
            except OSError:  # a filesystem without hard links
                shutil.copyfile(self.latest, tmp)


def _read_run_checkpoint(path: Path) -> dict[str, Any]:
    state = read_checkpoint(path)
    missing = [key for key in _RUN_CHECKPOINT_KEYS if key not in state]
    if missing:
        raise CheckpointError(f"{path} lacks {missing}: it is not a checkpoint of a train() run "
                              "(save_checkpoint alone stores only model, optimizer and iteration)")
    return state


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON ({error}); train with resume='never' to archive this run "
                         "and start over") from None


def data_file_sizes(config: TrainConfig) -> dict[str, int | None]:
    """The size in bytes of each data file of a run: a rebuilt token file under the same path shows here."""
    return {name: (os.path.getsize(path) if path else None)
            for name, path in (("train_path", config.train_path), ("valid_path", config.valid_path))}


def config_differences(stored: dict[str, Any], now: dict[str, Any], prefix: str = "") -> list[str]:
    """'field: stored value, value now' for each TrainConfig field that differs, RESUME_MAY_CHANGE aside."""
    differences = []
    for key in sorted(set(stored) | set(now)):
        if not prefix and key in RESUME_MAY_CHANGE:
            continue
        before, after = stored.get(key, "<absent>"), now.get(key, "<absent>")
        if isinstance(before, dict) and isinstance(after, dict):
            differences += config_differences(before, after, prefix=f"{prefix}{key}.")
        elif before != after:
            differences.append(f"{prefix}{key}: {before!r} stored, {after!r} now")
    return differences


def _data_differences(stored: dict[str, Any] | None, config: TrainConfig) -> list[str]:
    if stored is None:
        return ["data file sizes: not recorded by the stored run"]
    now = data_file_sizes(config)
    return [f"size of {name} {getattr(config, name)}: {stored.get(name)!r} bytes stored, {now[name]!r} now"
            for name in now if stored.get(name) != now[name]]


def resume_point(config: TrainConfig) -> tuple[Path, dict[str, Any]] | None:
    """The checkpoint `train(config)` resumes from, as (path, contents), or None for a fresh start.

    Raises ResumeMismatch when the run stored in out_dir (its checkpoint, or config.json and
    data_files.json when it has no checkpoint yet) was started with another config, and
    CheckpointError when checkpoints exist but none is readable.
    """
    files = _RunFiles(config.out_dir)
    found = files.readable_checkpoint()
    if found is not None:
        source, stored_config, stored_data = found[0], found[1]["config"], found[1].get("data_files")
    elif files.config.exists():
        source, stored_config = files.config, _read_json(files.config)
        stored_data = _read_json(files.data_files) if files.data_files.exists() else None
    else:
        return None
    differences = config_differences(stored_config, config.to_dict()) + _data_differences(stored_data, config)
    if differences:
        raise ResumeMismatch(source, differences)
    return found


def archive_run_dir(out_dir: str | os.PathLike) -> Path | None:
    """Move the run in `out_dir` to <parent>/_archive/<name>-<time>-<pid>; return where (None: no run there).

    The caller holds the directory's RunLock, so no writer is using what is moved.
    """
    out_dir = Path(out_dir)
    if not _RunFiles(out_dir).holds_run():
        return None
    stem = out_dir.parent / "_archive" / f"{out_dir.name}-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}"
    archive, n = stem, 1
    while archive.exists():  # archived twice within a second
        archive, n = stem.with_name(f"{stem.name}-{n}"), n + 1
    archive.parent.mkdir(parents=True, exist_ok=True)
    os.replace(out_dir, archive)
    return archive


# --------------------------------------------------------------------------------------------
# The run


@dataclass
class _Counters:
    """Trainer state saved in checkpoints beside model, optimizer and RNG."""

    wall_seconds: float = 0.0
    train_seconds: float = 0.0  # optimizer steps only, evaluation and checkpoints excluded
    initial_loss: float | None = None
    last_train_loss: float | None = None
    last_val_loss: float | None = None
    best_val_loss: float | None = None


def train(config: TrainConfig, callback: MetricsCallback | None = None, progress: ProgressFn | None = None,
          should_stop: Callable[[], bool] | None = None) -> TrainResult:
    """Train (or resume) the run described by `config`; see the module docstring for the files.

    `should_stop` is asked at every step boundary; once it returns true the run checkpoints and
    returns status "interrupted".
    """
    device = resolve_device(config.device)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and device.type == "cuda":
        # One GPU per rank, chosen before NCCL starts so its communicator binds to that GPU.
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    process = _Process.start(device)
    try:
        with RunLock(config.out_dir) if process.is_main else contextlib.nullcontext():
            return _Run(config, device, process, callback, progress, should_stop).run()
    finally:
        process.close()


class _Run:
    def __init__(self, config: TrainConfig, device: torch.device, process: _Process,
                 callback: MetricsCallback | None, progress: ProgressFn | None,
                 should_stop: Callable[[], bool] | None = None):
        if config.batch_size % process.world_size:
            raise ValueError(f"batch_size={config.batch_size} is not divisible by world size {process.world_size}")
        self.config, self.device, self.process = config, device, process
        self.callback, self.progress, self.should_stop = callback, progress, should_stop
        self.files = _RunFiles(config.out_dir)
        self.context_length = config.model.context_length

        self.train_tokens = self._open_tokens(config.train_path)
        check_long_enough(self.train_tokens, self.context_length, name=f"training set {config.train_path}")
        check_token_ids(self.train_tokens, config.model.vocab_size, name=f"training set {config.train_path}")
        self.val_batches = []
        if config.valid_path is not None and process.is_main:
            val_tokens = self._open_tokens(config.valid_path)
            check_token_ids(val_tokens, config.model.vocab_size, name=f"validation set {config.valid_path}")
            self.val_batches = validation_batches(
                val_tokens, config.eval_batch_size, self.context_length, config.eval_batches, config.eval_seed, device
            )

        if device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = config.tf32
            torch.backends.cudnn.allow_tf32 = config.tf32
        torch.manual_seed(config.seed)
        np.random.seed(config.seed)
        random.seed(config.seed)
        self.batch_rng = np.random.default_rng(config.seed)
        self.model = TransformerLM.from_config(config.model).to(device)
        self.optimizer = AdamW(
            self.model.parameters(), lr=config.lr_max, betas=config.betas, eps=config.eps,
            weight_decay=config.weight_decay,
        )
        self.counters = _Counters()
        self.data_files = data_file_sizes(config)
        self.step = self._resume_or_start()

        self.train_model: torch.nn.Module = self.model
        if process.world_size > 1:
            self.train_model = torch.nn.parallel.DistributedDataParallel(
                self.model, device_ids=[device.index] if device.type == "cuda" else None
            )
        if config.compile:
            self.train_model = torch.compile(self.train_model)

    def _open_tokens(self, path: str) -> np.ndarray:
        return load_tokens(path, dtype=None if path.endswith(".npy") else self.config.token_dtype)

    def _autocast(self):
        if self.config.dtype == "bfloat16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _resume_or_start(self) -> int:
        files, config = self.files, self.config
        found = resume_point(config) if config.resume else None
        if not config.resume and self.process.is_main:
            archive_run_dir(files.out_dir)
        step = 0
        if found is not None:
            state = found[1]
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            _set_rng_state(state["rng"], self.batch_rng)
            self.counters = _Counters(**state["counters"])
            step = state["iteration"]
        if self.process.is_main:
            files.out_dir.mkdir(parents=True, exist_ok=True)
            files.ckpt_dir.mkdir(exist_ok=True)
            files.remove_partial_writes()
            if found is not None and found[0] != files.latest:
                files.set_aside(files.latest)  # or the next save would keep it as previous.pt
            if step == 0:  # a fresh start replaces whatever an earlier session of this config left here
                for stale in (files.latest, files.previous, files.final, files.result):
                    stale.unlink(missing_ok=True)
            else:
                files.result.unlink(missing_ok=True)
            files.keep_metrics_through(step)
            atomic_write_text(files.config, config.to_json())
            atomic_write_json(files.data_files, self.data_files)
        return step

    def _save(self, path: Path) -> None:
        """Checkpoint on rank 0, after the metrics so far are on disk (resume cuts lines past it)."""
        if not self.process.is_main:
            return
        os.fsync(self.metrics_file.fileno())
        self.counters.wall_seconds = self.wall_seconds()
        if path == self.files.latest:
            self.files.keep_previous()
        save_checkpoint(
            self.model, self.optimizer, self.step, path,
            config=self.config.to_dict(), rng=_rng_state(self.batch_rng),
            counters=dataclasses.asdict(self.counters), data_files=self.data_files,
        )

    def _stop_requested(self) -> bool:
        if self.should_stop is None:
            return False
        # Every rank leaves the loop at the same step, or the others would wait in a collective forever.
        return self.process.mean(1.0 if self.should_stop() else 0.0) > 0

    @torch.no_grad()
    def evaluate(self) -> float | None:
        if not self.val_batches:
            return None
        self.model.eval()
        losses = []
        for x, y in self.val_batches:
            with self._autocast():
                logits = self.model(x)
            losses.append(cross_entropy(logits.float(), y).item())
        self.model.train()
        return sum(losses) / len(losses)

    def forward_backward(self) -> tuple[float, float, float]:
        """Gradients of the next global batch at the scheduled lr; returns (loss, grad_norm, lr).

        The optimizer step is left to the caller, which first checks the loss for divergence.
        """
        config, process = self.config, self.process
        lr = lr_cosine_schedule(self.step, config.lr_max, config.lr_min, config.warmup_steps, config.cosine_cycle_steps)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        starts = sample_starts(len(self.train_tokens), config.batch_size, self.context_length, self.batch_rng)
        x, y = batch_at(self.train_tokens, process.local_part(starts), self.context_length, self.device)
        with self._autocast():
            logits = self.train_model(x)
        loss = cross_entropy(logits.float(), y)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        # clip_gradients also measures the norm; an infinite threshold measures without clipping.
        grad_norm = clip_gradients(self.model.parameters(), config.grad_clip or math.inf)
        return process.mean(loss.item()), grad_norm, lr

    def divergence(self, loss: float, step: int) -> str | None:
        """Why this loss means the run has diverged, or None."""
        if not math.isfinite(loss):
            return f"loss became {loss} at step {step}"
        initial, factor = self.counters.initial_loss, self.config.divergence_factor
        if initial is not None and factor is not None and loss > factor * initial:
            return (f"loss {loss:.4g} exceeded divergence_factor {factor:g} x initial loss {initial:.4g} "
                    f"at step {step}")
        return None

    def wall_seconds(self) -> float:
        """Wall-clock time of the run so far, summed over every session that resumed it."""
        return self.wall_before + time.perf_counter() - self.session_start

    def run(self) -> TrainResult:
        config, files, is_main = self.config, self.files, self.process.is_main
        total_steps = config.steps
        self.session_start, self.wall_before = time.perf_counter(), self.counters.wall_seconds
        start_step = self.step
        window = _LogWindow()
        status, message = "completed", ""
        self.metrics_file = open(files.metrics, "a", encoding="utf-8") if is_main else None
        try:
            self._report_progress(total_steps)
            while self.step < total_steps:
                if self._stop_requested():
                    status = "interrupted"
                    message = (f"stopped at step {self.step} of {total_steps} on request (should_stop); "
                               "train again with the same config to resume from its checkpoint")
                    self._save(files.latest)
                    break
                tick = time.perf_counter()
                loss, grad_norm, lr = self.forward_backward()
                divergence = self.divergence(loss, self.step + 1)
                if divergence is None:
                    self.optimizer.step()
                self.step += 1
                if self.device.type == "cuda":
                    torch.cuda.synchronize()
                elapsed = time.perf_counter() - tick
                self.counters.train_seconds += elapsed
                window.add(loss, elapsed)
                if self.counters.initial_loss is None and divergence is None:
                    self.counters.initial_loss = loss

                evaluate_now = bool(config.eval_every) and self.step % config.eval_every == 0
                finished = self.step == total_steps
                if divergence or finished or evaluate_now or self.step % config.log_every == 0:
                    self._log(window, lr, grad_norm, evaluate=evaluate_now or finished)
                    window = _LogWindow()
                if divergence:
                    status, message = "diverged", divergence
                    break
                self._report_progress(total_steps)
                if config.checkpoint_every and self.step % config.checkpoint_every == 0 and not finished:
                    self._save(files.latest)
            if status == "completed":
                if self.step == start_step:  # resumed a finished run: nothing trained, score it again
                    self.counters.last_val_loss = self.evaluate()
                self._save(files.final)
                self._save(files.latest)
        finally:
            if self.metrics_file is not None:
                self.metrics_file.close()

        checkpoint = files.final if status == "completed" else files.latest
        train_seconds = self.counters.train_seconds
        result = TrainResult(
            status=status,
            steps=self.step,
            tokens=self.step * config.tokens_per_step,
            wall_seconds=self.wall_seconds(),
            tokens_per_second=self.step * config.tokens_per_step / train_seconds if train_seconds else 0.0,
            final_train_loss=self.counters.last_train_loss,
            final_val_loss=self.counters.last_val_loss if status == "completed" else None,
            best_val_loss=self.counters.best_val_loss,
            checkpoint_path=str(checkpoint) if checkpoint.exists() else None,
            metrics_path=str(files.metrics),
            out_dir=str(files.out_dir),
            message=message,
        )
        if is_main and status != "interrupted":  # an interrupted run is not finished: it resumes
            atomic_write_json(files.result, result.to_dict())
        return result

    def _report_progress(self, total_steps: int) -> None:
        if self.progress and self.process.is_main:
            self.progress("train", self.step, total_steps)

    def _log(self, window: "_LogWindow", lr: float, grad_norm: float, evaluate: bool) -> None:
        """Append one metrics line (rank 0) and hand it to the callback."""
        counters = self.counters
        val_loss = self.evaluate() if evaluate and self.process.is_main else None
        counters.last_train_loss = window.mean_loss()
        if val_loss is not None:
            counters.last_val_loss = val_loss
            if counters.best_val_loss is None or val_loss < counters.best_val_loss:
                counters.best_val_loss = val_loss
        record = {
            "step": self.step,
            "tokens": self.step * self.config.tokens_per_step,
            "wall_seconds": self.wall_seconds(),
            "train_loss": _json_number(counters.last_train_loss),
            "val_loss": _json_number(val_loss),
            "lr": lr,
            "grad_norm": _json_number(grad_norm),
            "tokens_per_second": len(window.losses) * self.config.tokens_per_step / max(window.seconds, 1e-9),
        }
        if self.process.is_main:
            self.metrics_file.write(json.dumps(record) + "\n")
            self.metrics_file.flush()
            if self.callback:
                self.callback(record)


@dataclass
class _LogWindow:
    """Training losses and time since the last metrics line."""

    losses: list[float] = field(default_factory=list)
    seconds: float = 0.0

    def add(self, loss: float, seconds: float) -> None:
        self.losses.append(loss)
        self.seconds += seconds

    def mean_loss(self) -> float:
        return sum(self.losses) / len(self.losses)


# --------------------------------------------------------------------------------------------
# Command line


def _flag_parser(annotation: str) -> Callable[[str], Any]:
    """Flags take JSON values (numbers, true/false, null, lists); string fields take the text as is."""
    if annotation.startswith("str"):
        return str

    def parse(text: str) -> Any:
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            return text

    return parse


def _add_field_flag(parser, f: dataclasses.Field, dest: str, aliases: list[str] = ()) -> None:
    """`--field-name VALUE` for a dataclass field; a bool flag alone means true (`--compile`)."""
    is_bool = str(f.type) == "bool"
    default = "required" if f.default is dataclasses.MISSING else f"default {f.default}"
    parser.add_argument("--" + f.name.replace("_", "-"), *aliases, dest=dest, type=_flag_parser(str(f.type)),
                        default=argparse.SUPPRESS, nargs="?" if is_bool else None,
                        const=True if is_bool else None, metavar="BOOL" if is_bool else f.name.upper(),
                        help=f"{f.type} ({default})")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cs336-train",
        description="Train a Transformer LM on memory-mapped token files. Resumes OUT_DIR/ckpt/latest.pt if the run "
                    "there was started with the same config (--resume never archives it and starts over).",
    )
    parser.add_argument("--config", help="a TrainConfig JSON file; the flags below override its values")
    aliases = {"train_path": ["--train"], "valid_path": ["--valid"], "max_steps": ["--steps"]}
    for f in dataclasses.fields(TrainConfig):
        if f.name != "model":
            _add_field_flag(parser, f, f.name, aliases.get(f.name, []))
    model_flags = parser.add_argument_group("model (ModelConfig fields)")
    for f in dataclasses.fields(ModelConfig):
        _add_field_flag(model_flags, f, "model." + f.name)
    return parser


def config_from_args(argv: list[str] | None = None) -> TrainConfig:
    parser = build_parser()
    args = vars(parser.parse_args(argv))
    data: dict[str, Any] = {}
    config_path = args.pop("config", None)
    if config_path:
        if not Path(config_path).is_file():
            parser.error(f"config file not found: {config_path}")
        try:
            data = json.loads(Path(config_path).read_text(encoding="utf-8"))
        except json.JSONDecodeError as error:
            parser.error(f"config file {config_path} is not valid JSON: {error}")
    data["model"] = dict(data.get("model", {}))
    for key, value in args.items():
        if key.startswith("model."):
            data["model"][key.removeprefix("model.")] = value
        else:
            data[key] = value
    try:
        return TrainConfig.from_dict(data)
    except (ValueError, TypeError) as error:
        parser.error(str(error))


def main(argv: list[str] | None = None) -> int:
    config = config_from_args(argv)
    is_main = int(os.environ.get("RANK", "0")) == 0
    progress = ConsoleProgress(unit="step") if is_main else None
    try:
        result = train(config, progress=progress)
    except (RunLockedError, ResumeMismatch, CheckpointError) as error:
        # A refusal that says what to do, not a bug: one line instead of a traceback.
        print(f"cs336-train: error: {error}", file=sys.stderr)
        return 2
    finally:
        if progress is not None:
            progress.close()
    if is_main:
        print(json.dumps(result.to_dict(), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
