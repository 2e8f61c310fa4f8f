"""Loss-curve assets: per sweep (and for the main runs side by side) a CSV table, a PNG plot of the
smoothed training loss with the validation points against steps (tokens for the batch-size sweep, whose
runs take steps of different sizes) and wall-clock, and a JSON summary the report reads, under
<data>/curves/."""

from dagster import AssetExecutionContext, AssetKey, AssetsDefinition, MaterializeResult, MetadataValue, asset

from cs336_assets import keys
from cs336_assets.definitions.common import knobs_metadata
from cs336_assets.presets import Preset
from cs336_assets.resources import DataPaths
from cs336_assets.versioning import code_version, output_data_version
from cs336_core import reporting

GROUP = "curves"
TITLES = {keys.LR_SWEEP: "Learning-rate sweep", keys.BATCH_SIZE_SWEEP: "Batch-size sweep", keys.ABLATIONS: "Ablations"}
MAIN_RUNS = "main_runs"  # the file name of the main runs' curves
# The x axis of a sweep's first panel: runs of different batch sizes compare at equal tokens, not steps.
X_AXIS = {keys.BATCH_SIZE_SWEEP: "tokens"}


_PRESET_TARGET = object()  # the preset's target val loss, unless a curve says otherwise


def curves_asset(preset: Preset, key: AssetKey, name: str, title: str,
                 runs: dict[str, tuple[AssetKey, str | None]], x: str = "step",
                 target: float | None | object = _PRESET_TARGET) -> AssetsDefinition:
    """The curves `name` of `runs`: variant -> (training asset, partition), in plot order, with a
    dashed line at `target` (the preset's target val loss by default; None draws none)."""
    target = preset.target_val_loss if target is _PRESET_TARGET else target

    @asset(
        key=key,
        group_name=GROUP,
        deps=list(dict.fromkeys(asset for asset, _ in runs.values())),
        kinds={"pandas"},
        code_version=code_version(__file__, config={"variants": list(runs), "target": target, "x": x}),
        description=f"{title}: table of step, tokens, wall-clock, train and val loss per variant, and a PNG plot "
                    f"(smoothed train loss with the validation points, against {x}s and wall-clock).",
    )
    def curves(context: AssetExecutionContext, paths: DataPaths) -> MaterializeResult:
        run_dirs = {variant: paths.run_dir(*where) for variant, where in runs.items()}
        trained = {variant: run_dir for variant, run_dir in run_dirs.items() if (run_dir / "metrics.jsonl").exists()}
        missing = sorted(set(runs) - set(trained))
        if missing:
            context.log.warning(f"{name}: no run yet for {missing}; plotting the {len(trained)} that exist")
        if not trained:
            raise FileNotFoundError(f"no trained runs for {name} under {paths.path('runs')}; "
                                    "materialize the runs (every partition you want plotted) first")
        files, summary = reporting.write_loss_curves(trained, paths.path("curves"), name, title=title,
                                                     target=target, x=x)
        knobs = {"variants": list(trained), "target": target, "x": x}
        return MaterializeResult(
            # Key results first: what a reader looks for before the knobs.
            metadata={**reporting.curves_headline(summary), "missing_variants": str(missing),
                      "plot": MetadataValue.md(reporting.png_markdown(files["png"], alt=title)),
                      "summary": MetadataValue.md(reporting.markdown_table(summary)),
                      "table_path": MetadataValue.path(str(files["csv"])),
                      "plot_path": MetadataValue.path(str(files["png"])),
                      **knobs_metadata(preset, **knobs)},
            data_version=output_data_version(knobs, *files.values()))

    return curves


def curves_assets(preset: Preset, sweeps: list[AssetsDefinition]) -> list[AssetsDefinition]:
    """The curves of each of `sweeps` (one variant per partition), then of the main runs side by side."""
    assets = [curves_asset(preset, keys.CURVES[sweep.key], sweep.key.to_user_string(), TITLES[sweep.key],
                            {key: (sweep.key, key) for key in sweep.partitions_def.get_partition_keys()},
                            x=X_AXIS.get(sweep.key, "step"))
              for sweep in sweeps]
    assets.append(curves_asset(preset, keys.MAIN_RUNS_CURVES, MAIN_RUNS, "Main runs",
                                {role: (keys.BY_ROLE[role].main_run, None) for role in keys.ROLES}))
    return assets
