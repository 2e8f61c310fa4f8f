"""Optional experiment tracking: every metrics.jsonl line also goes to TensorBoard or Weights & Biases.

Neither package is a dependency: `TrainConfig.tracking` ("tensorboard" | "wandb") switches one on,
its package is imported only then, and a missing package fails the run before it trains
(`TrackingUnavailable`, naming the package to install). Only rank 0 tracks.

  tensorboard  event files in out_dir/tensorboard (`tensorboard --logdir OUT_DIR`), one scalar per
               metric under its metrics.jsonl name. A resumed session purges the events past its
               checkpoint's step, as metrics.jsonl is cut back, so a curve never doubles back.
  wandb        a W&B run in project `tracking_project` (default "cs336") named after out_dir, with
               the config; WANDB_MODE=offline works without a network (`wandb sync` uploads later).
               A resumed session continues the same W&B run (its id is kept in out_dir/wandb_run_id);
               a fresh start begins a new one.
"""

from __future__ import annotations

import importlib
import secrets
from pathlib import Path
from typing import Any, Protocol

from cs336_core.files import atomic_write_text
from cs336_core.training.config import TrainConfig

# The module each tracker imports, and the package that provides it.
_MODULES = {"tensorboard": ("torch.utils.tensorboard", "tensorboard"), "wandb": ("wandb", "wandb")}


class TrackingUnavailable(RuntimeError):
    """Tracking is switched on, but its package is not installed."""


class Tracker(Protocol):
    def log(self, record: dict[str, Any]) -> None: ...

    def close(self) -> None: ...


def _import(tracking: str):
    module, package = _MODULES[tracking]
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise TrackingUnavailable(
            f"TrainConfig.tracking={tracking!r} needs the {package} package, which cannot be imported ({error}): "
            f"pip install {package}, or set tracking to null") from error


def check_available(config: TrainConfig) -> None:
    """Raise TrackingUnavailable now, before any data is read, if the run's tracker cannot be imported."""
    if config.tracking is not None:
        _import(config.tracking)


def _scalars(record: dict[str, Any]) -> dict[str, float]:
    """The numbers of a metrics line, without the step (the x axis) and the nulls."""
    return {key: value for key, value in record.items()
            if key != "step" and isinstance(value, (int, float)) and not isinstance(value, bool)}


class TensorBoardTracker:
    def __init__(self, config: TrainConfig, start_step: int):
        tensorboard = _import("tensorboard")
        # Events past the checkpoint's step were logged by a session that died after it; metrics.jsonl
        # drops those lines on resume, and TensorBoard drops events at steps >= purge_step.
        self.writer = tensorboard.SummaryWriter(log_dir=str(Path(config.out_dir) / "tensorboard"),
                                                purge_step=start_step + 1)

    def log(self, record: dict[str, Any]) -> None:
        for key, value in _scalars(record).items():
            self.writer.add_scalar(key, value, global_step=record["step"])
        self.writer.flush()  # a killed run keeps what it logged, as metrics.jsonl does

    def close(self) -> None:
        self.writer.close()


class WandbTracker:
    def __init__(self, config: TrainConfig, start_step: int):
        wandb = _import("wandb")
        out_dir = Path(config.out_dir)
        id_file = out_dir / "wandb_run_id"
        # A fresh start must not reuse the id: W&B drops steps that go back on an existing run.
        if start_step and id_file.exists():
            run_id = id_file.read_text(encoding="utf-8").strip()
        else:
            run_id = secrets.token_hex(6)  # W&B run ids: lower-case letters and digits
            atomic_write_text(id_file, run_id)
        self.run = wandb.init(project=config.tracking_project or "cs336", name=out_dir.name, id=run_id,
                              resume="allow", dir=str(out_dir), config=config.to_dict())

    def log(self, record: dict[str, Any]) -> None:
        self.run.log(_scalars(record), step=record["step"])

    def close(self) -> None:
        self.run.finish()


def open_tracker(config: TrainConfig, start_step: int) -> Tracker | None:
    """The tracker `config.tracking` asks for, ready to log from `start_step` on; None when off."""
    if config.tracking == "tensorboard":
        return TensorBoardTracker(config, start_step)
    if config.tracking == "wandb":
        return WandbTracker(config, start_step)
    return None
