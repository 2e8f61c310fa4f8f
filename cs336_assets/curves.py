"""Loss-curve assets: per sweep/ablation a table file and a PNG (val loss vs steps and wall-clock)."""


from pathlib import Path

from dagster import AssetExecutionContext, AssetsDefinition, MaterializeResult, MetadataValue, asset

from cs336_assets.common import code_version, knobs_metadata, output_data_version
from cs336_assets.presets import ROLES, Preset
from cs336_assets.resources import Workspace
from cs336_assets.training import SWEEPS
from cs336_core import reporting

GROUP = "curves"
def run_dirs_of(workspace: Workspace, name: str, keys: list[str]) -> dict[str, Path]:
    """variant -> run directory, for the variants that have been trained (in partition order)."""
    dirs = {key: workspace.run_dir(f"{name}/{key}") for key in keys}
    return {key: d for key, d in dirs.items() if (d / "metrics.jsonl").exists()}


def write_curves(workspace: Workspace, name: str, runs: dict[str, Path], title: str,
                 target: float | None = None) -> dict:
    """The curve files of `runs` under <data>/curves/ (core's write_loss_curves); returns metadata."""
    if not runs:
        raise FileNotFoundError(f"no trained runs for {name} under {workspace.path('runs')}; "
                                "materialize the runs (every partition you want plotted) first")
    paths, summary = reporting.write_loss_curves(runs, workspace.path("curves"), name, title=title, target=target)
    return {
        "variants": len(runs),
        "summary": MetadataValue.md(reporting.markdown_table(summary)),
        "plot": MetadataValue.md(reporting.png_markdown(paths["png"], alt=title)),
        "table_path": MetadataValue.path(str(paths["csv"])),
        "plot_path": MetadataValue.path(str(paths["png"])),
    }


def _curves_asset(preset: Preset, name: str, run_asset: str, keys: list[str], title: str) -> AssetsDefinition:
    @asset(
        name=f"{name}_curves",
        group_name=GROUP,
        deps=[run_asset] if isinstance(run_asset, str) else run_asset,
        kinds={"pandas"},
        code_version=code_version(__file__, config={"keys": keys, "target": preset.target_val_loss}),
        description=f"{title}: table of step, wall-clock, train and val loss per variant, and a PNG plot.",
    )
    def curves_asset(context: AssetExecutionContext, workspace: Workspace) -> MaterializeResult:
        if name == "main_runs":
            runs = {role: workspace.run_dir(f"{role}_main_run") for role in ROLES}
            runs = {k: d for k, d in runs.items() if (d / "metrics.jsonl").exists()}
        else:
            runs = run_dirs_of(workspace, name, keys)
        missing = sorted(set(keys) - set(runs))
        if missing:
            context.log.warning(f"{name}: no run yet for {missing}; plotting the {len(runs)} that exist")
        target = workspace.get_preset().target_val_loss
        metadata = write_curves(workspace, name, runs, title, target=target)
        knobs = {"variants": list(runs), "target": target}
        outputs = [workspace.path("curves", f"{name}.{ext}") for ext in ("csv", "png", "json", "md")]
        return MaterializeResult(metadata={**knobs_metadata(workspace.get_preset(), **knobs),
                                           "missing_variants": str(missing), **metadata},
                                 data_version=output_data_version(knobs, *outputs))

    return curves_asset


TITLES = {"lr_sweep": "Learning-rate sweep", "batch_size_sweep": "Batch-size sweep", "ablations": "Ablations"}


def build(preset: Preset) -> list[AssetsDefinition]:
    assets = [_curves_asset(preset, name, name, keys_of(preset), TITLES[name])
              for name, (keys_of, _, _) in SWEEPS.items()]
    assets.append(_curves_asset(preset, "main_runs", [f"{role}_main_run" for role in ROLES], list(ROLES),
                                "Main runs"))
    return assets
