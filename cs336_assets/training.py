"""Training-run assets: the main run per corpus, the learning-rate and batch-size sweeps, ablations.

Each run is `cs336_core.training.train` on a run directory under <data>/runs/, under the
directory's RunLock from the decision to resume or archive to the end of training: a second launch
of the same asset or partition fails at once, naming the directory and the pid of the one running.

A killed run resumes from its last checkpoint when the asset is materialized again with the same
config (core's rule: every TrainConfig field but the cadence/device ones, and the data file sizes);
a finished run, one whose config changed, or one with no readable checkpoint left is moved to
_archive/ beside it first, so nothing already written is lost. The training step watches the
process that launched it (the `dagster asset materialize` CLI or the run worker): when that process
dies, training stops at the next step boundary with a checkpoint, so no orphan trains on and the
rerun resumes. (The Dagster run the dead launcher leaves STARTED is for Dagster's run monitoring.)

Sweeps and ablations are partitioned: each variant materializes, reruns and fails on its own, and a
diverged run is a result (status "diverged"), not a failure: its `converged` check fails as a
warning, so the UI shows the diverged point at a glance.
"""


import dataclasses
import math
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd

from dagster import (AssetCheckResult, AssetCheckSeverity, AssetCheckSpec, AssetExecutionContext,
                     AssetsDefinition, Config, DataVersion, MaterializeResult, MetadataValue,
                     StaticPartitionsDefinition, asset)

from cs336_assets.common import code_version, knobs_metadata, output_data_version, progress_logger
from cs336_assets.presets import (ABLATIONS, Preset, RunSpec, batch_key, lr_key, parse_batch_key, parse_lr_key)
from cs336_assets.resources import Workspace
from cs336_core import reporting
from cs336_core.training import (LauncherWatch, RunLock, TrainConfig, TrainResult, resume_or_archive, torch_threads,
                                 train)

GROUP = "training"
# Sweeps and ablations run on the stories corpus, as in the handout (section 7.2-7.3).
SWEEP_ROLE = "stories"
CORE_MODULES = ("model", "optim", "data", "training")


class RunOverrides(Config):
    """Run-config overrides of the preset's optimisation knobs (unset = the preset's)."""

    max_steps: Optional[int] = None
    batch_size: Optional[int] = None
    lr_max: Optional[float] = None
    checkpoint_interval: Optional[int] = None
    eval_interval: Optional[int] = None
    device: Optional[str] = None

    def apply(self, run: RunSpec) -> RunSpec:
        changes = {name: value for name, value in self.model_dump().items() if value is not None}
        return dataclasses.replace(run, **changes)


def train_config(workspace: Workspace, role: str, run: RunSpec, out_dir: Path, **model_variant) -> TrainConfig:
    """The core TrainConfig of one run: the preset's model for `role` with `model_variant` applied."""
    preset = workspace.get_preset()
    return TrainConfig(
        train_path=str(workspace.tokens_path(role, "train")),
        valid_path=str(workspace.tokens_path(role, "valid")),
        out_dir=str(out_dir),
        model=preset.model_for(role, **model_variant),
        batch_size=run.batch_size,
        max_steps=run.max_steps,
        lr_max=run.lr_max,
        lr_min=run.lr_max * run.lr_min_ratio,
        warmup_steps=int(run.max_steps * run.warmup_fraction),
        betas=(run.beta1, run.beta2),
        weight_decay=run.weight_decay,
        grad_clip=run.grad_clip,
        eval_every=run.eval_interval,
        eval_batches=run.eval_batches,
        log_every=run.log_interval,
        checkpoint_every=run.checkpoint_interval,
        seed=run.seed,
        device=run.device,
    )


def no_nan_check(metrics: pd.DataFrame, result: TrainResult, asset_key: str,
                 severity: AssetCheckSeverity = AssetCheckSeverity.ERROR) -> AssetCheckResult:
    """Every logged training loss is finite, and a completed run's final validation loss is too.

    (Core records a non-finite loss as null, read back as NaN; val_loss is also NaN on steps
    without an evaluation, so only the training loss is checked step by step. A diverged run has
    no final validation loss; the `converged` check reports the divergence.)
    """
    bad = metrics.loc[~np.isfinite(metrics["train_loss"]), "step"].tolist()
    final = result.final_val_loss
    final_finite = final is not None and math.isfinite(final)
    return AssetCheckResult(asset_key=asset_key, check_name="no_nan_in_metrics",
                            passed=len(metrics) > 0 and not bad and (final_finite or result.status != "completed"),
                            severity=severity,
                            metadata={"logged_steps": len(metrics), "non_finite_steps": str(bad[:20]),
                                      "final_val_loss": _finite_or_none(final), "final_val_loss_finite": final_finite,
                                      "status": result.status})


def converged_check(result: TrainResult, asset_key: str,
                    severity: AssetCheckSeverity = AssetCheckSeverity.ERROR) -> AssetCheckResult:
    """The run trained to its last step without diverging (a sweep reports a diverged point as a warning)."""
    return AssetCheckResult(asset_key=asset_key, check_name="converged", passed=result.status == "completed",
                            severity=severity,
                            metadata={"status": result.status, "steps": result.steps, "message": result.message or "",
                                      "final_val_loss": _finite_or_none(result.final_val_loss)})


def target_check(result: TrainResult, preset: Preset, asset_key: str) -> AssetCheckResult:
    """The final validation loss is at or below the preset's target."""
    final = result.final_val_loss
    return AssetCheckResult(
        asset_key=asset_key, check_name="val_loss_at_target",
        passed=final is not None and math.isfinite(final) and final <= preset.target_val_loss,
        metadata={"final_val_loss": _finite_or_none(final), "target": preset.target_val_loss, "preset": preset.name})


def run_training(context: AssetExecutionContext, workspace: Workspace, run_name: str, role: str, run: RunSpec,
                 **model_variant) -> tuple[TrainResult, pd.DataFrame, dict, DataVersion]:
    """Train one run (resuming if interrupted); return (result, metrics, metadata, data version)."""
    run_dir = workspace.run_dir(run_name)
    config = train_config(workspace, role, run, run_dir, **model_variant)
    launcher = LauncherWatch()
    with RunLock(run_dir):  # from the resume-or-archive decision to the last write
        resume_step = resume_or_archive(config, log=context.log.warning)
        if resume_step:
            context.log.info(f"resuming {run_name} from its checkpoint at step {resume_step}")
        context.log.info(f"training {run_name}: {config.steps} steps of {config.tokens_per_step} tokens "
                         f"on {config.device}")
        with torch_threads(run.torch_threads):
            result = train(config, progress=progress_logger(context), should_stop=launcher)
    if result.status == "interrupted":
        raise RuntimeError(f"{run_name}: the process that launched this step (pid {launcher.parent}) has exited; "
                           f"{result.message}")
    context.log.info(f"{run_name}: {result.status} after {result.steps} steps, val loss {result.final_val_loss}")
    metrics = reporting.read_metrics(result.metrics_path)
    metadata = {
        **knobs_metadata(workspace.get_preset(), run=dataclasses.asdict(run), model=config.model.to_dict()),
        "status": result.status,
        "message": result.message or "",
        "steps": result.steps,
        "tokens": result.tokens,
        "resumed_from_step": resume_step,
        "final_val_loss": _finite_or_none(result.final_val_loss),
        "best_val_loss": _finite_or_none(result.best_val_loss),
        "final_train_loss": _finite_or_none(result.final_train_loss),
        "tokens_per_second": round(result.tokens_per_second, 1),
        "wall_clock_seconds": round(result.wall_seconds, 1),
        "run_dir": MetadataValue.path(str(run_dir)),
    }
    return result, metrics, metadata, output_data_version(config.to_dict(), run_dir)


def _finite_or_none(value: float | None) -> float | None:
    return round(value, 4) if value is not None and math.isfinite(value) else None


def _main_run_asset(preset: Preset, role: str) -> AssetsDefinition:
    key = f"{role}_main_run"
    checks = [AssetCheckSpec("no_nan_in_metrics", asset=key),
              AssetCheckSpec("converged", asset=key, description="The run trained to its last step without diverging.")]
    if role == SWEEP_ROLE:
        checks.append(AssetCheckSpec("val_loss_at_target", asset=key,
                                     description="Final validation loss at or below the preset's target."))

    @asset(
        name=key,
        group_name=GROUP,
        deps=[f"{role}_tokens"],
        kinds={"pytorch"},
        check_specs=checks,
        code_version=code_version(__file__, CORE_MODULES, {"run": dataclasses.asdict(preset.run),
                                                 "model": preset.model_for(role).to_dict()}),
        description=f"The main training run on the {role} corpus (checkpoint + metrics).",
    )
    def main_run(context: AssetExecutionContext, config: RunOverrides, workspace: Workspace) -> MaterializeResult:
        preset_now = workspace.get_preset()
        result, metrics, metadata, version = run_training(context, workspace, key, role, config.apply(preset_now.run))
        check_results = [no_nan_check(metrics, result, key), converged_check(result, key)]
        if role == SWEEP_ROLE:
            check_results.append(target_check(result, preset_now, key))
            metadata["target_val_loss"] = preset_now.target_val_loss
        return MaterializeResult(metadata=metadata, check_results=check_results, data_version=version)

    return main_run


def _sweep_asset(preset: Preset, name: str, keys: list[str], description: str, variant_of) -> AssetsDefinition:
    """A partitioned asset: `variant_of(partition_key, preset) -> (RunSpec, model variant dict)`."""

    @asset(
        name=name,
        group_name=GROUP,
        deps=[f"{SWEEP_ROLE}_tokens"],
        kinds={"pytorch"},
        partitions_def=StaticPartitionsDefinition(keys),
        check_specs=[AssetCheckSpec("no_nan_in_metrics", asset=name),
                     AssetCheckSpec("converged", asset=name,
                                    description="Trained to its last step without diverging (a warning if not).")],
        code_version=code_version(__file__, CORE_MODULES, {"run": dataclasses.asdict(preset.run),
                                                 "sweep": dataclasses.asdict(preset.sweep),
                                                 "model": preset.model_for(SWEEP_ROLE).to_dict()}),
        description=description,
    )
    def sweep_asset(context: AssetExecutionContext, config: RunOverrides, workspace: Workspace) -> MaterializeResult:
        preset_now = workspace.get_preset()
        run, variant = variant_of(context.partition_key, preset_now)
        run = config.apply(run)
        result, metrics, metadata, version = run_training(context, workspace, f"{name}/{context.partition_key}",
                                                          SWEEP_ROLE, run, **variant)
        # A diverged sweep point is an expected outcome: report it, but only as a warning.
        severity = AssetCheckSeverity.WARN if result.status == "diverged" else AssetCheckSeverity.ERROR
        return MaterializeResult(metadata={**metadata, "variant": context.partition_key},
                                 check_results=[no_nan_check(metrics, result, name, severity),
                                                converged_check(result, name, AssetCheckSeverity.WARN)],
                                 data_version=version)

    return sweep_asset


def _lr_variant(key: str, preset: Preset) -> tuple[RunSpec, dict]:
    run = dataclasses.replace(preset.run, lr_max=parse_lr_key(key), max_steps=preset.sweep.max_steps)
    return run, {}


def _batch_variant(key: str, preset: Preset) -> tuple[RunSpec, dict]:
    # Same number of tokens as the base batch size, so the curves compare equal budgets.
    batch_size = parse_batch_key(key)
    tokens = preset.sweep.max_steps * preset.run.batch_size
    steps = max(1, tokens // batch_size)
    eval_interval = max(1, preset.run.eval_interval * steps // preset.sweep.max_steps)
    log_interval = max(1, preset.run.log_interval * steps // preset.sweep.max_steps)
    run = dataclasses.replace(preset.run, batch_size=batch_size, max_steps=steps, eval_interval=eval_interval,
                              log_interval=log_interval)
    return run, {}


def _ablation_variant(key: str, preset: Preset) -> tuple[RunSpec, dict]:
    if key not in ABLATIONS:
        raise ValueError(f"unknown ablation {key!r}; expected one of {sorted(ABLATIONS)}")
    return dataclasses.replace(preset.run, max_steps=preset.sweep.max_steps), ABLATIONS[key]


SWEEPS = {
    # asset name -> (partition keys of a preset, variant function, description)
    "lr_sweep": (lambda p: [lr_key(lr) for lr in p.sweep.learning_rates], _lr_variant,
                 "Learning-rate sweep on the stories corpus; diverged runs are recorded with status 'diverged'."),
    "batch_size_sweep": (lambda p: [batch_key(bs) for bs in p.sweep.batch_sizes], _batch_variant,
                         "Batch-size sweep on the stories corpus at a constant token budget."),
    "ablations": (lambda p: list(ABLATIONS), _ablation_variant,
                  "Architecture ablations beside the baseline: no RMSNorm, post-norm, NoPE, SiLU FFN."),
}


def build(preset: Preset) -> list[AssetsDefinition]:
    assets = [_main_run_asset(preset, role) for role in ("stories", "web")]
    for name, (keys_of, variant_of, description) in SWEEPS.items():
        assets.append(_sweep_asset(preset, name, keys_of(preset), description, variant_of))
    return assets
