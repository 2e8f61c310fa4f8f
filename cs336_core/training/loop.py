"""The run loop: `train(config) -> TrainResult`, which the assets and the CLI call.

Interrupts: `train(..., should_stop=fn)` calls `fn()` at every step boundary; when it returns
true the run writes ckpt/latest.pt and returns status "interrupted" (no final.pt, no result.json),
and training again with the same config resumes from there.

A diverging run (non-finite loss, or loss above `divergence_factor` x its first loss) stops with
status "diverged" instead of raising, so a learning-rate sweep records it as a result.

A run whose wall-clock budget (`max_wall_seconds`, over all its sessions) is spent after a step
evaluates, writes ckpt/latest.pt and result.json and returns status "budget"; training again with a
larger budget resumes it (see TrainConfig). Every metrics line carries tokens_per_second and mfu
(see throughput); progress reporters that take `info` also hear the loss, val loss, tok/s and MFU.

dtype "bfloat16" runs forward passes under torch.autocast on the chosen device (the loss is taken
in float32); tf32 applies to CUDA matmuls; compile wraps the training forward in torch.compile.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import time
from pathlib import Path
from typing import Callable

import torch

from cs336_core.data import batch_at, sample_starts
from cs336_core.files import atomic_write_json
from cs336_core.model import TransformerLM
from cs336_core.optim import build_optimizer, clip_gradients, cross_entropy, lm_loss, lr_cosine_schedule, set_lr
from cs336_core.progress import ProgressFn, report
from cs336_core.training.checkpoint import keep_previous, rng_state, save_checkpoint, set_rng_state
from cs336_core.training.config import TrainConfig
from cs336_core.training.distributed import _Process, rank_device
from cs336_core.training.inputs import load_data, seed_everything
from cs336_core.training.lock import RunLock
from cs336_core.training.metrics import (Counters, LogWindow, MetricsCallback, TrainResult, metrics_record,
                                         progress_info)
from cs336_core.training.run_dir import RunFiles, archive_run_dir, data_file_sizes, resume_point
from cs336_core.training.runtime import resolve_device
from cs336_core.training.stops import Stops
from cs336_core.training.throughput import RunMFU
from cs336_core.training.tracking import check_available, open_tracker


def train(config: TrainConfig, callback: MetricsCallback | None = None, progress: ProgressFn | None = None,
          should_stop: Callable[[], bool] | None = None) -> TrainResult:
    """Train (or resume) the run described by `config` in its run directory (see run_dir).

    `should_stop` is asked at every step boundary; once it returns true the run checkpoints and
    returns status "interrupted".
    """
    check_available(config)  # a tracker that cannot be imported fails before anything is read or locked
    device = rank_device(resolve_device(config.device))
    process = _Process.start(device)
    try:
        with RunLock(config.out_dir) if process.is_main else contextlib.nullcontext():
            return _Run(config, device, process, callback, progress, should_stop).run()
    finally:
        process.close()


class _Run:
    """One session of a run: set up in the constructor, trained by `run()`."""

    def __init__(self, config: TrainConfig, device: torch.device, process: _Process,
                 callback: MetricsCallback | None, progress: ProgressFn | None,
                 should_stop: Callable[[], bool] | None = None):
        if config.batch_size % process.world_size:
            raise ValueError(f"batch_size={config.batch_size} is not divisible by world size {process.world_size}")
        self.config, self.device, self.process = config, device, process
        self.callback, self.progress = callback, progress
        self.stops = Stops(config, process, should_stop, self.wall_seconds)
        self.files = RunFiles(config.out_dir)
        self.context_length = config.model.context_length
        self.train_tokens, self.val_batches = load_data(config, device, with_validation=process.is_main)
        if device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = config.tf32
            torch.backends.cudnn.allow_tf32 = config.tf32
        self.batch_rng = seed_everything(config.seed)
        self.model = TransformerLM.from_config(config.model).to(device)
        # Built on the plain model, before DDP/compile wrapping, so Muon's groups see the real modules.
        muon = (dict(muon_lr=config.muon_lr, momentum=config.muon_momentum, muon_weight_decay=config.muon_weight_decay)
                if config.optimizer == "muon" else {})
        self.optimizer = build_optimizer(self.model, config.optimizer, lr=config.lr_max, betas=config.betas,
                                         eps=config.eps, weight_decay=config.weight_decay, **muon)
        self.counters = Counters()
        self.data_files = data_file_sizes(config)
        self.step = self._resume_or_start()
        self.train_model = self._wrap_for_training()
        self.mfu = RunMFU(config, device, process.world_size)
        self.last_record: dict | None = None  # the newest metrics line, which progress reports show
        self.tracker = None

    def _resume_or_start(self) -> int:
        found = resume_point(self.config) if self.config.resume else None
        if not self.config.resume and self.process.is_main:
            archive_run_dir(self.files.out_dir)
        step = 0
        if found is not None:
            state = found[1]
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            set_rng_state(state["rng"], self.batch_rng)
            self.counters = Counters(**state["counters"])
            step = state["iteration"]
        if self.process.is_main:
            self.files.start_session(step, found[0] if found else None, self.config.to_json(), self.data_files)
        return step

    def _wrap_for_training(self) -> torch.nn.Module:
        """The model as the training forward calls it; checkpoints and evaluation use the plain one."""
        model: torch.nn.Module = self.model
        if self.process.world_size > 1:
            model = torch.nn.parallel.DistributedDataParallel(
                model, device_ids=[self.device.index] if self.device.type == "cuda" else None
            )
        if self.config.compile:
            model = torch.compile(model)
        return model

    def _autocast(self):
        if self.config.dtype == "bfloat16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _save(self, path: Path) -> None:
        """Checkpoint on rank 0, after the metrics so far are on disk (resume cuts lines past it)."""
        if not self.process.is_main:
            return
        os.fsync(self.metrics_file.fileno())
        self.counters.wall_seconds = self.wall_seconds()
        if path == self.files.latest:
            keep_previous(self.files.latest, self.files.previous)
        save_checkpoint(
            self.model, self.optimizer, self.step, path,
            config=self.config.to_dict(), rng=rng_state(self.batch_rng),
            counters=dataclasses.asdict(self.counters), data_files=self.data_files,
        )

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
        set_lr(self.optimizer, lr)  # each group at its own peak (lr_scale) times the schedule
        starts = sample_starts(len(self.train_tokens), config.batch_size, self.context_length, self.batch_rng)
        x, y = batch_at(self.train_tokens, process.local_part(starts), self.context_length, self.device)
        with self._autocast():
            logits = self.train_model(x)
        # z-loss joins the gradient only; the logged loss stays the cross-entropy that validation reports.
        loss, ce = lm_loss(logits.float(), y, z_loss=config.z_loss)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        # clip_gradients also measures the norm; an infinite threshold measures without clipping.
        grad_norm = clip_gradients(self.model.parameters(), config.grad_clip or math.inf)
        return process.mean(ce.item()), grad_norm, lr

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
        window = LogWindow()
        status, message = "completed", ""
        if self.step < total_steps and self.stops.spent_before(self.counters.wall_seconds):  # resumed, budget spent
            status, message = "budget", self.stops.budget_message(self.step, total_steps)
        self.metrics_file = open(files.metrics, "a", encoding="utf-8") if is_main else None
        try:
            self.tracker = open_tracker(config, self.step) if is_main else None
            self._report_progress(total_steps)
            while status == "completed" and self.step < total_steps:
                if self.stops.requested():
                    status, message = "interrupted", Stops.interrupt_message(self.step, total_steps)
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
                over_budget = not finished and not divergence and self.stops.over_budget()
                if divergence or finished or over_budget or evaluate_now or self.step % config.log_every == 0:
                    self._log(window, lr, grad_norm, evaluate=evaluate_now or finished or over_budget,
                              stopped="budget" if over_budget else None)
                    window = LogWindow()
                if divergence:
                    status, message = "diverged", divergence
                    break
                self._report_progress(total_steps)
                if over_budget:
                    status, message = "budget", self.stops.budget_message(self.step, total_steps)
                    break
                if config.checkpoint_every and self.step % config.checkpoint_every == 0 and not finished:
                    self._save(files.latest)
            if status in ("completed", "budget"):
                if self.step == start_step:  # resumed a finished run: nothing trained, score it again
                    self.counters.last_val_loss = self.evaluate()
                if status == "completed":
                    self._save(files.final)
                self._save(files.latest)
        finally:
            if self.metrics_file is not None:
                self.metrics_file.close()
            if self.tracker is not None:
                self.tracker.close()
        result = self._result(status, message)
        if is_main and status != "interrupted":  # an interrupted run is not finished: it resumes
            atomic_write_json(files.result, result.to_dict())
        return result

    def _result(self, status: str, message: str) -> TrainResult:
        files, tokens = self.files, self.step * self.config.tokens_per_step
        checkpoint = files.final if status == "completed" else files.latest
        train_seconds = self.counters.train_seconds
        tokens_per_second = tokens / train_seconds if train_seconds else 0.0
        return TrainResult(
            status=status,
            steps=self.step,
            tokens=tokens,
            wall_seconds=self.wall_seconds(),
            tokens_per_second=tokens_per_second,
            final_train_loss=self.counters.last_train_loss,
            final_val_loss=self.counters.last_val_loss if status in ("completed", "budget") else None,
            best_val_loss=self.counters.best_val_loss,
            checkpoint_path=str(checkpoint) if checkpoint.exists() else None,
            metrics_path=str(files.metrics),
            out_dir=str(files.out_dir),
            message=message,
            mfu=self.mfu(tokens_per_second) if train_seconds else None,
            peak_flops=self.mfu.peak_flops,
            peak_flops_source=self.mfu.source,
        )

    def _report_progress(self, total_steps: int) -> None:
        if self.progress and self.process.is_main:
            info = progress_info(self.last_record, self.counters.last_val_loss)
            report(self.progress, "train", self.step, total_steps, info)

    def _log(self, window: LogWindow, lr: float, grad_norm: float, evaluate: bool, stopped: str | None = None) -> None:
        """Append one metrics line (rank 0) and hand it to the callback and the tracker."""
        val_loss = self.evaluate() if evaluate and self.process.is_main else None
        self.counters.note_losses(window.mean_loss(), val_loss)
        record = metrics_record(self.step, self.config.tokens_per_step, self.wall_seconds(), window, val_loss, lr,
                                grad_norm, mfu=self.mfu)
        if stopped:
            record["stopped"] = stopped
        self.last_record = record
        if self.process.is_main:
            self.metrics_file.write(json.dumps(record) + "\n")
            self.metrics_file.flush()
            if self.callback:
                self.callback(record)
            if self.tracker is not None:
                self.tracker.log(record)
