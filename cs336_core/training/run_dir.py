"""A run directory: its layout, the rule for resuming what is in it, and archiving it.

    out_dir/config.json      the resolved TrainConfig
    out_dir/data_files.json  the size in bytes of each data file the run trains and scores on
    out_dir/metrics.jsonl    one JSON object per log step, appended and flushed as it happens
    out_dir/ckpt/latest.pt   every `checkpoint_every` steps and at the end (atomic)
    out_dir/ckpt/previous.pt the checkpoint latest.pt replaced (a fallback if latest.pt is damaged)
    out_dir/ckpt/final.pt    at the end of a completed run
    out_dir/result.json      the TrainResult of a completed or diverged run, written last

Resume: with `resume=True` ("auto", the default) `train` continues from `ckpt/latest.pt`. The
checkpoint holds the model, the optimizer, every RNG state (torch, cuda, numpy, python and the
batch sampler), the counters, the config and the data file sizes, and metrics.jsonl is cut back to
the checkpoint's step. On CPU, N steps straight and N/2 steps + kill + resume give the same
parameters bit for bit. Only a run started with the same config is resumed: every TrainConfig
field (model, data paths, optimizer, schedule, batch, seed, dtype, ...) and the data file sizes
must equal the stored ones, except those in `RESUME_MAY_CHANGE` (where the run is written, the
log/eval/checkpoint cadence, device, compile, the wall-clock budget, the MFU peak and tracking: how
a run is watched and executed and how long it may go on, not what each step computes). Any other difference raises `ResumeMismatch` listing the fields. The same holds for a
run directory without a checkpoint whose config.json differs. `resume=False` ("never") starts
over: an earlier run in out_dir is first moved to `<parent>/_archive/<name>-<time>-<pid>`, so
nothing written is lost.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
import warnings
from pathlib import Path
from typing import Any, Callable

from cs336_core.files import atomic_write_json, atomic_write_text, remove_stale_partials
from cs336_core.training.checkpoint import CheckpointError, newest_readable, set_aside
from cs336_core.training.config import TrainConfig

# TrainConfig fields that may differ between a run and its resumption: they say where the run is
# written, how often it is logged, evaluated and checkpointed, and where and how it executes, but
# not what it computes. Any other difference (a different learning rate, batch, seed, data, model,
# dtype, schedule, evaluation set, ...) would splice two different runs into one.
# The wall-clock budget may change too: raising it is how a run stopped by it goes on.
RESUME_MAY_CHANGE = ("out_dir", "resume", "log_every", "eval_every", "checkpoint_every", "device", "compile",
                     "max_wall_seconds", "peak_flops", "tracking", "tracking_project")


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


class RunFiles:
    """The paths of one run directory, and what a new session of the run does to them."""

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

    def start_session(self, step: int, resumed_from: Path | None, config_json: str,
                      data_sizes: dict[str, int | None]) -> None:
        """Ready the directory for a session that trains on from `step` (0: a fresh start)."""
        self.ckpt_dir.mkdir(parents=True, exist_ok=True)
        for directory in (self.out_dir, self.ckpt_dir):
            remove_stale_partials(directory)  # a killed writer's temporary files; nothing reads them
        if resumed_from is not None and resumed_from != self.latest:
            set_aside(self.latest)  # or the next save would keep it as previous.pt
        if step == 0:  # a fresh start replaces whatever an earlier session of this config left here
            for stale in (self.latest, self.previous, self.final, self.result):
                stale.unlink(missing_ok=True)
        else:
            self.result.unlink(missing_ok=True)
        self.keep_metrics_through(step)
        atomic_write_text(self.config, config_json)
        atomic_write_json(self.data_files, data_sizes)

    def keep_metrics_through(self, step: int) -> None:
        """Cut metrics.jsonl back to the lines of steps <= `step` (also drops a torn last line)."""
        kept = []
        if self.metrics.exists():
            for line in self.metrics.read_text(encoding="utf-8").splitlines():
                with contextlib.suppress(json.JSONDecodeError):
                    if json.loads(line)["step"] <= step:
                        kept.append(line + "\n")
        atomic_write_text(self.metrics, "".join(kept))


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


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON ({error}); train with resume='never' to archive this run "
                         "and start over") from None


def resume_point(config: TrainConfig) -> tuple[Path, dict[str, Any]] | None:
    """The checkpoint `train(config)` resumes from, as (path, contents), or None for a fresh start.

    Raises ResumeMismatch when the run stored in out_dir (its checkpoint, or config.json and
    data_files.json when it has no checkpoint yet) was started with another config, and
    CheckpointError when checkpoints exist but none is readable.
    """
    files = RunFiles(config.out_dir)
    found = newest_readable(files.latest, files.previous)
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
    if not RunFiles(out_dir).holds_run():
        return None
    stem = out_dir.parent / "_archive" / f"{out_dir.name}-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}"
    archive, n = stem, 1
    while archive.exists():  # archived twice within a second
        archive, n = stem.with_name(f"{stem.name}-{n}"), n + 1
    archive.parent.mkdir(parents=True, exist_ok=True)
    os.replace(out_dir, archive)
    return archive


def _result_status(path: Path) -> str | None:
    """The status in a result.json; None if it cannot be read (then the run counts as finished)."""
    with contextlib.suppress(OSError, ValueError, AttributeError):
        return json.loads(path.read_text(encoding="utf-8")).get("status")
    return None


def resume_or_archive(config: TrainConfig, log: Callable[[str], None] = lambda message: None) -> int:
    """What a rerun of `config` does with its run directory; returns the step training will resume from.

    Call it holding the directory's RunLock. An unfinished run (killed, stopped on request, or
    stopped by its wall-clock budget, which a larger budget continues) that `config` may resume is
    resumed from its checkpoint. A finished run, one started with another config, or one without a
    readable checkpoint is archived, so the rerun trains afresh without losing the old one. `log`
    hears why a run was archived and any fallback to the previous checkpoint.
    """
    files = RunFiles(config.out_dir)
    if not files.out_dir.exists():
        return 0
    reason = "it had finished" if files.result.exists() and _result_status(files.result) != "budget" else None
    if reason is None:
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                found = resume_point(config)
            for warning in caught:
                log(str(warning.message))
            return int(found[1]["iteration"]) if found else 0
        except (ValueError, CheckpointError) as error:  # ResumeMismatch is a ValueError
            reason = str(error)
    archive = archive_run_dir(files.out_dir)
    if archive is not None:
        log(f"archived the earlier run in {files.out_dir} to {archive} because {reason}")
    return 0
