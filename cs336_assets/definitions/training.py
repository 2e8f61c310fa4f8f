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
warning, so the UI shows the diverged point at a glance. A run stopped by its wall-clock budget
(status "budget", see TrainConfig.max_wall_seconds) is a finished run: the leaderboard's runs end so.

While a run trains, each evaluation (and a training-loss line at most every OBSERVE_SECONDS) is an
AssetObservation of the asset (and partition) with step, losses and tokens/s, so the asset's Plots
view draws the curve so far; the materialization's metadata leads with the results, then the knobs.

A run's knobs travel under TrainConfig's names: the preset's `RunKnobs`, a partition's variant over
them, the run config (also a `RunKnobs`) over both, and `TrainConfig(**knobs)` resolves the rest.
"""

import math
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import pandas as pd
from dagster import (AssetCheckResult, AssetCheckSeverity, AssetCheckSpec, AssetExecutionContext, AssetKey,
                     AssetObservation, AssetsDefinition, DataVersion, MaterializeResult, MetadataValue,
                     StaticPartitionsDefinition, asset)

from cs336_assets import keys
from cs336_assets.definitions.common import knobs_metadata, progress_logger
from cs336_assets.presets import Preset, RunKnobs, Variant, ablation_variants, batch_size_variants, lr_variants
from cs336_assets.resources import DataPaths
from cs336_assets.versioning import code_version, output_data_version
from cs336_core.progress import round_floats
from cs336_core.training import (LauncherWatch, RunLock, TrainConfig, TrainResult, resume_or_archive, torch_threads,
                                 train)
from cs336_core.training.metrics import read_metrics, throttled

GROUP = "training"
# sweep asset -> (its partitions as partition key -> Variant, description)
SWEEPS = {
    keys.LR_SWEEP: (lr_variants, "Learning-rate sweep on the stories corpus; diverged runs are recorded with status "
                                 "'diverged'."),
    keys.BATCH_SIZE_SWEEP: (batch_size_variants, "Batch-size sweep on the stories corpus at a constant token budget."),
    keys.ABLATIONS: (ablation_variants, "Architecture ablations beside the baseline: no RMSNorm, post-norm, NoPE, "
                                        "SiLU FFN."),
}
# A run ends finished with one of these; "diverged" is a result too, but not a converged one.
FINISHED = ("completed", "budget")
CHECKS = {
    "no_nan_in_metrics": "Every logged training loss is finite, and so is the final validation loss of a run that "
                         "finished (completed, or stopped by its wall-clock budget).",
    "converged": "The run trained to its last step, or to its wall-clock budget (status 'budget'), without "
                 "diverging.",
    "val_loss_at_target": "Final validation loss at or below the preset's target.",
}
# At most one training-loss observation per this many seconds between evaluations (each evaluation is one).
OBSERVE_SECONDS = 10.0
# A run's own callback after training: (context, paths, partition, config, result) -> more metadata.
Finish = Callable[[AssetExecutionContext, DataPaths, "str | None", TrainConfig, TrainResult], dict]


def train_config(paths: DataPaths, preset: Preset, role: str, out_dir: Path, *layers: RunKnobs,
                 model: Mapping[str, Any] | None = None) -> TrainConfig:
    """The TrainConfig of one run on `role`'s token files: the preset's model with `model`'s changes,
    and the preset's run knobs with each of `layers` set over them in turn (a layer's `model`
    changes over `model`'s)."""
    knobs, changes = preset.run.given(), {**preset.run.model_changes(), **(model or {})}
    for layer in layers:
        knobs |= layer.given()
        changes |= layer.model_changes()
    return TrainConfig(train_path=str(paths.tokens_path(role, "train")),
                       valid_path=str(paths.tokens_path(role, "valid")), out_dir=str(out_dir),
                       model=preset.model_for(role, **changes), **knobs)


def _check(name: str, asset_key: AssetKey | str, passed: bool, severity: AssetCheckSeverity, metadata: dict,
           partition: str | None, summary: str) -> AssetCheckResult:
    """A check result whose description (and metadata) name the partition it judged, if any."""
    where = {"partition": partition} if partition else {}
    return AssetCheckResult(asset_key=asset_key, check_name=name, passed=passed, severity=severity,
                            metadata={**where, **metadata},
                            description=f"{partition}: {summary}" if partition else summary)


def no_nan_check(metrics: pd.DataFrame, result: TrainResult, asset_key: AssetKey | str,
                 severity: AssetCheckSeverity = AssetCheckSeverity.ERROR,
                 partition: str | None = None) -> AssetCheckResult:
    """Every logged training loss is finite, and a finished run's final validation loss is too.

    (Core records a non-finite loss as null, read back as NaN; val_loss is also NaN on steps
    without an evaluation, so only the training loss is checked step by step. A diverged run has
    no final validation loss; the `converged` check reports the divergence.)
    """
    bad = metrics.loc[~np.isfinite(metrics["train_loss"]), "step"].tolist()
    final = result.final_val_loss
    final_finite = final is not None and math.isfinite(final)
    passed = len(metrics) > 0 and not bad and (final_finite or result.status not in FINISHED)
    return _check("no_nan_in_metrics", asset_key, passed, severity,
                  {"logged_steps": len(metrics), "non_finite_steps": str(bad[:20]),
                   "final_val_loss": _finite_or_none(final), "final_val_loss_finite": final_finite,
                   "status": result.status}, partition,
                  f"{len(bad)} non-finite training losses in {len(metrics)} logged steps; final val loss "
                  f"{_finite_or_none(final)}")


def converged_check(result: TrainResult, asset_key: AssetKey | str,
                    severity: AssetCheckSeverity = AssetCheckSeverity.ERROR,
                    partition: str | None = None) -> AssetCheckResult:
    """The run trained to its last step or to its wall-clock budget without diverging (a sweep
    reports a diverged point as a warning)."""
    return _check("converged", asset_key, result.status in FINISHED, severity,
                  {"status": result.status, "steps": result.steps, "message": result.message or "",
                   "final_val_loss": _finite_or_none(result.final_val_loss)}, partition,
                  f"status {result.status} after {result.steps} steps")


def target_check(result: TrainResult, preset: Preset, asset_key: AssetKey | str) -> AssetCheckResult:
    """The final validation loss is at or below the preset's target."""
    final = _finite_or_none(result.final_val_loss)
    return _check("val_loss_at_target", asset_key, final is not None and final <= preset.target_val_loss,
                  AssetCheckSeverity.ERROR,
                  {"final_val_loss": final, "target": preset.target_val_loss, "preset": preset.name}, None,
                  f"final val loss {final} against the {preset.name} preset's target {preset.target_val_loss}")


def observation(record: dict[str, Any]) -> dict[str, Any]:
    """The numbers of one metrics line an AssetObservation carries (rounded; unknown ones left out)."""
    values = {"step": record["step"], "tokens": record["tokens"], "train_loss": record["train_loss"],
              "val_loss": record["val_loss"], "tokens_per_second": record["tokens_per_second"],
              "wall_seconds": record["wall_seconds"], "lr": record["lr"], "mfu": record.get("mfu")}
    return {name: round_floats(value, 5) for name, value in values.items() if value is not None}


def run_training(context: AssetExecutionContext, preset: Preset, run_name: str, config: TrainConfig,
                 extra: Mapping[str, Any] | None = None) -> tuple[TrainResult, pd.DataFrame, dict, DataVersion]:
    """Train one run (resuming if interrupted); return (result, metrics, metadata, data version).

    The metadata leads with the results, then `extra`, then the preset's knobs.
    """
    run_dir = Path(config.out_dir)
    launcher = LauncherWatch()
    partition = context.partition_key if context.has_partition_key else None

    def observe(record: dict[str, Any]) -> None:
        context.log_event(AssetObservation(asset_key=context.asset_key, partition=partition,
                                           metadata=observation(record)))

    with RunLock(run_dir):  # from the resume-or-archive decision to the last write
        resume_step = resume_or_archive(config, log=context.log.warning)
        if resume_step:
            context.log.info(f"resuming {run_name} from its checkpoint at step {resume_step}")
        context.log.info(f"training {run_name}: {config.steps} steps of {config.tokens_per_step} tokens "
                         f"on {config.device}" + (f", at most {config.max_wall_seconds:g} s" if config.max_wall_seconds
                                                  else ""))
        with torch_threads(preset.torch_threads):
            result = train(config, callback=throttled(observe, OBSERVE_SECONDS), progress=progress_logger(context),
                           should_stop=launcher)
    if result.status == "interrupted":
        raise RuntimeError(f"{run_name}: the process that launched this step (pid {launcher.parent}) has exited; "
                           f"{result.message}")
    context.log.info(f"{run_name}: {result.status} after {result.steps} steps, val loss "
                     f"{_finite_or_none(result.final_val_loss)}")
    metrics = read_metrics(result.metrics_path)
    run_knobs = {name: value for name, value in config.to_dict().items() if name != "model"}
    metadata = {
        "final_val_loss": _finite_or_none(result.final_val_loss),
        "best_val_loss": _finite_or_none(result.best_val_loss),
        "tokens_per_second": round(result.tokens_per_second, 1),
        "status": result.status,
        "steps": result.steps,
        "max_steps": config.steps,
        "tokens": result.tokens,
        "wall_clock_seconds": round(result.wall_seconds, 1),
        **({"mfu": round(result.mfu, 4)} if result.mfu is not None else {}),
        "final_train_loss": _finite_or_none(result.final_train_loss),
        "message": result.message or "",
        "resumed_from_step": resume_step,
        "run_dir": MetadataValue.path(str(run_dir)),
        **(extra or {}),
        **knobs_metadata(preset, run=round_floats(run_knobs, 6), model=round_floats(config.model.to_dict(), 6),
                         torch_threads=preset.torch_threads),
    }
    return result, metrics, metadata, output_data_version(config.to_dict(), run_dir)


def _finite_or_none(value: float | None) -> float | None:
    return round(value, 4) if value is not None and math.isfinite(value) else None


def _versioned_knobs(preset: Preset, role: str, **more) -> dict:
    """What a training asset's code version hashes besides its code: the knobs it trains with."""
    return {"run": preset.run.to_dict(), "torch_threads": preset.torch_threads,
            "model": preset.model_for(role).to_dict(), **more}


def main_run_asset(preset: Preset, role: str) -> AssetsDefinition:
    key = keys.BY_ROLE[role].main_run
    checks = [AssetCheckSpec(name, asset=key, description=CHECKS[name]) for name in ("no_nan_in_metrics", "converged")]
    if role == keys.SWEEP_ROLE:
        checks.append(AssetCheckSpec("val_loss_at_target", asset=key, description=CHECKS["val_loss_at_target"]))

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
        target = {"target_val_loss": preset.target_val_loss} if role == keys.SWEEP_ROLE else {}
        result, metrics, metadata, version = run_training(context, preset, key.to_user_string(), run, target)
        check_results = [no_nan_check(metrics, result, key), converged_check(result, key)]
        if role == keys.SWEEP_ROLE:
            check_results.append(target_check(result, preset, key))
        return MaterializeResult(metadata=metadata, check_results=check_results, data_version=version)

    return main_run


def sweep_asset(preset: Preset, key: AssetKey, variants: dict[str, Variant], description: str, *,
                role: str = keys.SWEEP_ROLE, diverged: AssetCheckSeverity = AssetCheckSeverity.WARN,
                finish: Finish | None = None, code_file: str = __file__) -> AssetsDefinition:
    """A partitioned training asset: one run per partition key on `role`, with that key's `variants`
    entry. A diverged run fails its checks with severity `diverged`; `finish`, if given, adds to
    the metadata after training (its module, `code_file`, is what the code version hashes)."""
    converged = CHECKS["converged"] + (" A diverged point is a warning." if diverged == AssetCheckSeverity.WARN else "")

    @asset(
        key=key,
        group_name=GROUP,
        deps=[keys.BY_ROLE[role].tokens],
        kinds={"pytorch"},
        partitions_def=StaticPartitionsDefinition(list(variants)),
        # Not partitioned (Dagster's partitioned checks are a preview feature, warning at every load): each
        # result names its partition in its description and metadata instead.
        check_specs=[AssetCheckSpec("no_nan_in_metrics", asset=key, description=CHECKS["no_nan_in_metrics"]),
                     AssetCheckSpec("converged", asset=key, description=converged)],
        code_version=code_version(code_file, config=_versioned_knobs(
            preset, role, variants={partition: variant.to_dict() for partition, variant in variants.items()})),
        description=description,
    )
    def sweep(context: AssetExecutionContext, config: RunKnobs, paths: DataPaths) -> MaterializeResult:
        partition = context.partition_key
        variant = variants[partition]
        run = train_config(paths, preset, role, paths.run_dir(key, partition), variant.run, config, model=variant.model)
        name = f"{key.to_user_string()}/{partition}"
        result, metrics, metadata, version = run_training(context, preset, name, run, {"variant": partition})
        if finish is not None:  # its entries go with the results, before the knobs
            knobs = {name: metadata.pop(name) for name in ("preset", "knobs")}
            metadata = {**metadata, **finish(context, paths, partition, run, result), **knobs}
        severity = diverged if result.status == "diverged" else AssetCheckSeverity.ERROR
        return MaterializeResult(metadata=metadata,
                                 check_results=[no_nan_check(metrics, result, key, severity, partition),
                                                converged_check(result, key, diverged, partition)],
                                 data_version=version)

    return sweep


def sweep_assets(preset: Preset) -> list[AssetsDefinition]:
    return [sweep_asset(preset, key, variants_of(preset), description)
            for key, (variants_of, description) in SWEEPS.items()]
