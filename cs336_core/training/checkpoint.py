"""Checkpoints: save, read and load them, the RNG state they carry, and the fallback to previous.pt.

A path is written atomically: a crash or a full disk mid-write leaves the file it would replace in
place, and a failed write raises an OSError naming the path (ENOSPC for a full disk). Before a
run replaces latest.pt, the file it replaces is kept as previous.pt. If latest.pt is unreadable
(truncated, empty, garbage) or missing, resume falls back to previous.pt with a RuntimeWarning
naming the bad file, which the run keeps as `latest.pt.corrupt-<time>`. With no readable
checkpoint left, `CheckpointError` names the files and says what to do.
"""

from __future__ import annotations

import errno
import os
import pickle
import random
import time
import warnings
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch

from cs336_core.files import atomic_copy, atomic_path
from cs336_core.model import ModelConfig, TransformerLM

# Entries train() writes beside model/optimizer/iteration; resume needs every one of them.
RUN_CHECKPOINT_KEYS = ("model", "optimizer", "iteration", "config", "rng", "counters")


class CheckpointError(RuntimeError):
    """A checkpoint file that cannot be read back (truncated, empty, garbage, or missing entries)."""


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The plain module under DistributedDataParallel and torch.compile wrappers."""
    while True:
        if isinstance(model, torch.nn.parallel.DistributedDataParallel):
            model = model.module
        elif hasattr(model, "_orig_mod"):
            model = model._orig_mod
        else:
            return model


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


def load_model(src: str | os.PathLike | BinaryIO) -> TransformerLM:
    """The model of a checkpoint written by `train()`: its config's model shape with its weights, on
    CPU in eval mode (ready for `cs336_core.decoding.generate`)."""
    state = read_checkpoint(src)
    try:
        config = ModelConfig.from_dict(state["config"]["model"])
    except (KeyError, TypeError) as error:
        raise CheckpointError(f"{getattr(src, 'name', src)} holds no model config (not written by train()): "
                              f"{error!r}") from error
    model = TransformerLM.from_config(config)
    model.load_state_dict(state["model"])
    return model.eval()


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


def rng_state(batch_rng: np.random.Generator) -> dict[str, Any]:
    # Plain lists instead of numpy arrays so the checkpoint loads with weights_only=True.
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": [kind, keys.tolist(), pos, has_gauss, cached],
        "python": random.getstate(),
        "batches": batch_rng.bit_generator.state,
    }


def set_rng_state(state: dict[str, Any], batch_rng: np.random.Generator) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))
    random.setstate(state["python"])
    batch_rng.bit_generator.state = state["batches"]


# --------------------------------------------------------------------------------------------
# A run's latest.pt and its fallback previous.pt


def read_run_checkpoint(path: Path) -> dict[str, Any]:
    state = read_checkpoint(path)
    missing = [key for key in RUN_CHECKPOINT_KEYS if key not in state]
    if missing:
        raise CheckpointError(f"{path} lacks {missing}: it is not a checkpoint of a train() run "
                              "(save_checkpoint alone stores only model, optimizer and iteration)")
    return state


def newest_readable(latest: Path, previous: Path) -> tuple[Path, dict[str, Any]] | None:
    """(path, contents) of the newest readable run checkpoint, `latest` else `previous`; None if neither exists.

    A fallback to `previous` warns, naming the damaged or missing `latest`; with checkpoints present
    but none readable, CheckpointError names them and says what to do.
    """
    problems = []
    for path in (latest, previous):
        if not path.exists():
            continue
        try:
            state = read_run_checkpoint(path)
        except CheckpointError as error:
            problems.append(str(error))
            continue
        if path != latest:
            why = "; ".join(problems) or f"{latest} is missing"
            warnings.warn(f"{why}; resuming from the previous checkpoint {path} (step {state['iteration']}) "
                          "instead", RuntimeWarning, stacklevel=2)
        return path, state
    if problems:
        raise CheckpointError(
            f"{'; '.join(problems)}. No readable checkpoint is left in {latest.parent}: train with "
            "resume='never' (cs336-train --resume never) to archive this run and start over, or move the "
            "damaged file away to restart it from step 0")
    return None


def keep_previous(latest: Path, previous: Path) -> None:
    """Keep the checkpoint in `latest`, about to be replaced, as `previous` (a hard link where possible)."""
    if latest.exists():
        atomic_copy(latest, previous, link=True)


def set_aside(path: Path) -> None:
    """Keep a damaged file for inspection under a name nothing reads, out of the way of new writes."""
    if path.exists():
        os.replace(path, path.with_name(f"{path.name}.corrupt-{time.strftime('%Y%m%dT%H%M%S')}"))
