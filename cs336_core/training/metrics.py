"""What a run records: one metrics.jsonl line per log step, the counters its checkpoints carry, its TrainResult."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Callable

# The keys of every metrics.jsonl line (val_loss is null on steps without an evaluation).
METRIC_FIELDS = ("step", "tokens", "wall_seconds", "train_loss", "val_loss", "lr", "grad_norm", "tokens_per_second")
MetricsCallback = Callable[[dict[str, Any]], None]


def _json_number(value):
    """JSON has no NaN or infinity; a non-finite loss is recorded as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


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


@dataclass
class Counters:
    """Trainer state saved in checkpoints beside model, optimizer and RNG."""

    wall_seconds: float = 0.0
    train_seconds: float = 0.0  # optimizer steps only, evaluation and checkpoints excluded
    initial_loss: float | None = None
    last_train_loss: float | None = None
    last_val_loss: float | None = None
    best_val_loss: float | None = None

    def note_losses(self, train_loss: float, val_loss: float | None) -> None:
        self.last_train_loss = train_loss
        if val_loss is not None:
            self.last_val_loss = val_loss
            if self.best_val_loss is None or val_loss < self.best_val_loss:
                self.best_val_loss = val_loss


@dataclass
class LogWindow:
    """Training losses and time since the last metrics line."""

    losses: list[float] = field(default_factory=list)
    seconds: float = 0.0

    def add(self, loss: float, seconds: float) -> None:
        self.losses.append(loss)
        self.seconds += seconds

    def mean_loss(self) -> float:
        return sum(self.losses) / len(self.losses)


def metrics_record(step: int, tokens_per_step: int, wall_seconds: float, window: LogWindow,
                   val_loss: float | None, lr: float, grad_norm: float) -> dict[str, Any]:
    """One metrics.jsonl line: the step's counters, the window's mean loss and its throughput."""
    return {
        "step": step,
        "tokens": step * tokens_per_step,
        "wall_seconds": wall_seconds,
        "train_loss": _json_number(window.mean_loss()),
        "val_loss": _json_number(val_loss),
        "lr": lr,
        "grad_norm": _json_number(grad_norm),
        "tokens_per_second": len(window.losses) * tokens_per_step / max(window.seconds, 1e-9),
    }
