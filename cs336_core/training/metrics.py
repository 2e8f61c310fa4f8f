"""What a run records: one metrics.jsonl line per log step, the counters its checkpoints carry, its TrainResult."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

# The keys of every metrics.jsonl line (val_loss is null on steps without an evaluation; mfu is
# null when the device's peak is unknown, see throughput). The line of a run stopped by its
# wall-clock budget adds "stopped": "budget".
METRIC_FIELDS = ("step", "tokens", "wall_seconds", "train_loss", "val_loss", "lr", "grad_norm", "tokens_per_second",
                 "mfu")
MetricsCallback = Callable[[dict[str, Any]], None]


def _json_number(value):
    """JSON has no NaN or infinity; a non-finite loss is recorded as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


@dataclass
class TrainResult:
    # "completed" | "diverged" | "budget" (max_wall_seconds spent; resumable with a larger budget)
    # | "interrupted" (should_stop; resumable, no result.json)
    status: str
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
    mfu: float | None = None  # of the whole run's tokens_per_second; None when the peak is unknown
    peak_flops: float | None = None  # per device, the one MFU is measured against
    peak_flops_source: str = ""  # where peak_flops comes from (the table's device and precision, or the config)

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
                   val_loss: float | None, lr: float, grad_norm: float,
                   mfu: Callable[[float], float | None] = lambda tokens_per_second: None) -> dict[str, Any]:
    """One metrics.jsonl line: the step's counters, the window's mean loss and its throughput.

    `mfu` turns the window's tokens per second into its model FLOPs utilization (see throughput).
    """
    tokens_per_second = len(window.losses) * tokens_per_step / max(window.seconds, 1e-9)
    return {
        "step": step,
        "tokens": step * tokens_per_step,
        "wall_seconds": wall_seconds,
        "train_loss": _json_number(window.mean_loss()),
        "val_loss": _json_number(val_loss),
        "lr": lr,
        "grad_norm": _json_number(grad_norm),
        "tokens_per_second": tokens_per_second,
        "mfu": mfu(tokens_per_second),
    }


def progress_info(record: dict[str, Any] | None, last_val_loss: float | None) -> dict[str, Any] | None:
    """What a progress reporter shows beside the step count: the newest metrics line's loss,
    throughput and MFU, and the last validation loss (rounded by cs336_core.progress.format_info)."""
    if record is None:
        return None
    mfu = record["mfu"]
    return {"loss": record["train_loss"], "val": last_val_loss, "tok/s": record["tokens_per_second"],
            "mfu": None if mfu is None else f"{100 * mfu:.1f}%"}


def throttled(callback: MetricsCallback, interval: float,
              clock: Callable[[], float] = time.monotonic) -> MetricsCallback:
    """`callback` for every metrics line that carries a validation loss or ends the run (a budget
    stop), and for the other lines at most once per `interval` seconds of `clock`.

    For a live view of a run (Dagster observations, a dashboard): the evaluations are the curve and
    come at the run's own cadence, while the training-loss lines between them can come many times a
    second on a small model, more than a viewer needs or an event log should store.
    """
    last: float | None = None

    def observe(record: dict[str, Any]) -> None:
        nonlocal last
        now = clock()
        if record.get("val_loss") is not None or record.get("stopped") or last is None or now - last >= interval:
            last = now
            callback(record)

    return observe


def read_metrics(path: str | os.PathLike) -> "pd.DataFrame":
    """One row per logged step of a run's metrics.jsonl, sorted by step.

    A torn last line (a run killed mid-write) is ignored; a step logged twice (a resumed run)
    keeps its last record. Null losses (training writes non-finite values as null) become NaN.
    Every metric training writes (`METRIC_FIELDS`) is a column, NaN where a record lacks it.
    It lives here, beside the metrics it reads, rather than in cs336_core.reporting, so that the
    training asset reading its run's metrics does not depend (and go stale) on the plotting code.
    """
    import pandas as pd  # here: training itself never needs pandas, only readers of finished runs do

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"metrics file not found: {path}")
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    records = []
    for number, line in enumerate(lines, start=1):
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            if number != len(lines):
                raise ValueError(f"{path}, line {number} is not JSON: {line[:80]!r}") from None
    frame = pd.DataFrame.from_records(records)
    for column in METRIC_FIELDS:
        if column not in frame:
            frame[column] = math.nan
    frame = frame.astype({c: "float64" for c in METRIC_FIELDS if c != "step"})
    if len(frame):
        frame["step"] = frame["step"].astype("int64")
        frame = frame.drop_duplicates("step", keep="last").sort_values("step")
    return frame.reset_index(drop=True)
