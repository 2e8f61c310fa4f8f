"""The training engine: one `train(config) -> TrainResult` that the assets and the CLI call.

A run lives in one directory, written by one process at a time, resumable when killed or stopped,
and archived rather than overwritten when started over. One module per concept:

  config       TrainConfig: every knob of a run, defaults resolved and values checked on construction
  run_dir      the run directory's layout, the rule for resuming it (ResumeMismatch), archiving
  lock         RunLock: one writer per run directory
  checkpoint   save/read/load checkpoints, RNG state, the fallback to previous.pt (CheckpointError)
  inputs       the token files a run reads, checked against the model, and its seeds
  loop         train(): the step loop, evaluation, divergence
  stops        stopping early: on request (should_stop) or at the wall-clock budget (max_wall_seconds)
  metrics      metrics.jsonl lines, the counters checkpoints carry, TrainResult
  throughput   model FLOPs per token, the table of dense GPU peaks, MFU
  tracking     optional TensorBoard / Weights & Biases logging of the metrics
  distributed  data parallel under torchrun
  runtime      the device, torch's thread count, the watch on a launching process
  cli          the `cs336-train` command (`python -m cs336_core.training`)
"""

from cs336_core.training.checkpoint import CheckpointError, load_checkpoint, read_checkpoint, save_checkpoint
from cs336_core.training.cli import build_parser, config_from_args, main
from cs336_core.training.config import DEVICES, DTYPES, RESUME_MODES, TrainConfig
from cs336_core.training.lock import RunLock, RunLockedError
from cs336_core.training.loop import train
from cs336_core.training.metrics import METRIC_FIELDS, MetricsCallback, TrainResult
from cs336_core.training.run_dir import (RESUME_MAY_CHANGE, ResumeMismatch, archive_run_dir, config_differences,
                                         data_file_sizes, resume_or_archive, resume_point)
from cs336_core.training.runtime import LauncherWatch, resolve_device, torch_threads
from cs336_core.training.throughput import DENSE_PEAK_FLOPS, flops_per_token
from cs336_core.training.tracking import TrackingUnavailable

__all__ = [
    "CheckpointError", "DENSE_PEAK_FLOPS", "DEVICES", "DTYPES", "LauncherWatch", "METRIC_FIELDS", "MetricsCallback",
    "RESUME_MAY_CHANGE", "RESUME_MODES", "ResumeMismatch", "RunLock", "RunLockedError", "TrackingUnavailable",
    "TrainConfig", "TrainResult", "archive_run_dir", "build_parser", "config_differences", "config_from_args",
    "data_file_sizes", "flops_per_token", "load_checkpoint", "main", "read_checkpoint", "resolve_device",
    "resume_or_archive", "resume_point", "save_checkpoint", "torch_threads", "train",
]
