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

A run's knobs travel under TrainConfig's names: the preset's `RunKnobs`, a partition's variant over
them, the run config (also a `RunKnobs`) over both, and `TrainConfig(**knobs)` resolves the rest.
"""

import math
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd
from dagster import (AssetCheckResult, AssetCheckSeverity, AssetCheckSpec, AssetExecutionContext, AssetKey,
                     AssetsDefinition, DataVersion, MaterializeResult, MetadataValue, StaticPartitionsDefinition,
                     asset)

from cs336_assets import keys
from cs336_assets.definitions.common import knobs_metadata, progress_logger
from cs336_assets.presets import Preset, RunKnobs, Variant, ablation_variants, batch_size_variants, lr_variants
from cs336_assets.resources import DataPaths
from cs336_assets.versioning import code_version, output_data_version
from cs336_core import reporting
from cs336_core.training import (LauncherWatch, RunLock, TrainConfig, TrainResult, resume_or_archive, torch_threads,
                                 train)

GROUP = "training"
# sweep asset -> (its partitions as partition key -> Variant, description)
SWEEPS = {
    keys.LR_SWEEP: (lr_variants, "Learning-rate sweep on the stories corpus; diverged runs are recorded with status "
                                 "'diverged'."),
    keys.BATCH_SIZE_SWEEP: (batch_size_variants, "Batch-size sweep on the stories corpus at a constant token budget."),
    keys.ABLATIONS: (ablation_variants, "Architecture ablations beside the baseline: no RMSNorm, post-norm, NoPE, "
                                        "SiLU FFN."),
}


def train_config(paths: DataPaths, preset: Preset, role: str, out_dir: Path, *layers: RunKnobs,
                 model: Mapping[str, Any] | None = None) -> TrainConfig:
    """The TrainConfig of one run on `role`'s token files: the preset's model with `model`'s changes,
    and the preset's run knobs with each of `layers` set over them in turn."""
    knobs = preset.run.given()
    for layer in layers:
        knobs |= layer.given()
    return TrainConfig(train_path=str(paths.tokens_path(role, "train")),
                       valid_path=str(paths.tokens_path(role, "valid")), out_dir=str(out_dir),
                       model=preset.model_for(role, **(model or {})), **knobs)


def no_nan_check(metrics: pd.DataFrame, result: TrainResult, asset_key: AssetKey | str,
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


def converged_check(result: TrainResult, asset_key: AssetKey | str,
                    severity: AssetCheckSeverity = AssetCheckSeverity.ERROR) -> AssetCheckResult:
    """The run trained to its last step without diverging (a sweep reports a diverged point as a warning)."""
    return AssetCheckResult(asset_key=asset_key, check_name="converged", passed=result.status == "completed",
                            severity=severity,
                            metadata={"status": result.status, "steps": result.steps, "message": result.message or "",
                                      "final_val_loss": _finite_or_none(result.final_val_loss)})


def target_check(result: TrainResult, preset: Preset, asset_key: AssetKey | str) -> AssetCheckResult:
    """The final validation loss is at or below the preset's target."""
    final = result.final_val_loss
    return AssetCheckResult(
        asset_key=asset_key, check_name="val_loss_at_target",
        passed=final is not None and math.isfinite(final) and final <= preset.target_val_loss,
        metadata={"final_val_loss": _finite_or_none(final), "target": preset.target_val_loss, "preset": preset.name})


def run_training(context: AssetExecutionContext, preset: Preset, run_name: str,
                 config: TrainConfig) -> tuple[TrainResult, pd.DataFrame, dict, DataVersion]:
    """Train one run (resuming if interrupted); return (result, metrics, metadata, data version)."""
    run_dir = Path(config.out_dir)
    launcher = LauncherWatch()
    with RunLock(run_dir):  # from the resume-or-archive decision to the last write
        resume_step = resume_or_archive(config, log=context.log.warning)
        if resume_step:
            context.log.info(f"resuming {run_name} from its checkpoint at step {resume_step}")
        context.log.info(f"training {run_name}: {config.steps} steps of {config.tokens_per_step} tokens "
                         f"on {config.device}")
        with torch_threads(preset.torch_threads):
            result = train(config, progress=progress_logger(context), should_stop=launcher)
    if result.status == "interrupted":
        raise RuntimeError(f"{run_name}: the process that launched this step (pid {launcher.parent}) has exited; "
                           f"{result.message}")
    context.log.info(f"{run_name}: {result.status} after {result.steps} steps, val loss {result.final_val_loss}")
    metrics = reporting.read_metrics(result.metrics_path)
    run_knobs = {name: value for name, value in config.to_dict().items() if name != "model"}
    metadata = {
        **knobs_metadata(preset, run=run_knobs, model=config.model.to_dict(), torch_threads=preset.torch_threads),
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


def _versioned_knobs(preset: Preset, role: str, **more) -> dict:
    """What a training asset's code version hashes besides its code: the knobs it trains with."""
    return {"run": preset.run.given(), "torch_threads": preset.torch_threads,
            "model": preset.model_for(role).to_dict(), **more}


def main_run_asset(preset: Preset, role: str) -> AssetsDefinition:
    key = keys.BY_ROLE[role].main_run
    checks = [AssetCheckSpec("no_nan_in_metrics", asset=key),
              AssetCheckSpec("converged", asset=key, description="The run trained to its last step without diverging.")]
    if role == keys.SWEEP_ROLE:
        checks.append(AssetCheckSpec("val_loss_at_target", asset=key,
                                     description="Final validation loss at or below the preset's target."))

    @asset(
        key=key,
        group_name=GROUP,
        deps=[keys.BY_ROLE[role].tokens],
        kinds={"pytorch"},
        check_specs=checks,
        code_version=code_version(__file__, config=_versioned_knobs(preset, role)),
        description=f"The main training run on the {role} corpus (checkpoint + metrics).",
    )
    def main_run(context: AssetExecutionContext, config: RunKnobs, paths: DataPaths) -> MaterializeResult:
        run = train_config(paths, preset, role, paths.run_dir(key), config)
        result, metrics, metadata, version = run_training(context, preset, key.to_user_string(), run)
        check_results = [no_nan_check(metrics, result, key), converged_check(result, key)]
        if role == keys.SWEEP_ROLE:
            check_results.append(target_check(result, preset, key))
            metadata["target_val_loss"] = preset.target_val_loss
        return MaterializeResult(metadata=metadata, check_results=check_results, data_version=version)

    return main_run


def sweep_asset(preset: Preset, key: AssetKey, variants: dict[str, Variant], description: str) -> AssetsDefinition:
    """A partitioned training asset: one run per partition key, with that key's `variants` entry."""
    role = keys.SWEEP_ROLE

    @asset(
        key=key,
        group_name=GROUP,
        deps=[keys.BY_ROLE[role].tokens],
        kinds={"pytorch"},
        partitions_def=StaticPartitionsDefinition(list(variants)),
        check_specs=[AssetCheckSpec("no_nan_in_metrics", asset=key),
                     AssetCheckSpec("converged", asset=key,
                                    description="Trained to its last step without diverging (a warning if not).")],
        code_version=code_version(__file__, config=_versioned_knobs(
            preset, role, variants={partition: variant.to_dict() for partition, variant in variants.items()})),
        description=description,
    )
    def sweep(context: AssetExecutionContext, config: RunKnobs, paths: DataPaths) -> MaterializeResult:
        partition = context.partition_key
        variant = variants[partition]
        run = train_config(paths, preset, role, paths.run_dir(key, partition), variant.run, config, model=variant.model)
        result, metrics, metadata, version = run_training(context, preset, f"{key.to_user_string()}/{partition}", run)
        # A diverged sweep point is an expected outcome: report it, but only as a warning.
        severity = AssetCheckSeverity.WARN if result.status == "diverged" else AssetCheckSeverity.ERROR
        return MaterializeResult(metadata={**metadata, "variant": partition},
                                 check_results=[no_nan_check(metrics, result, key, severity),
                                                converged_check(result, key, AssetCheckSeverity.WARN)],
                                 data_version=version)

    return sweep


def sweep_assets(preset: Preset) -> list[AssetsDefinition]:
    return [sweep_asset(preset, key, variants_of(preset), description)
            for key, (variants_of, description) in SWEEPS.items()]
