"""The `report` asset: the write-up, every written problem of the handout answered with this run's
numbers under the problem's own name (`cs336_core.writeup.build_report`), from the files the
upstream assets wrote under <data>/."""

from dagster import AssetExecutionContext, AssetsDefinition, MaterializeResult, MetadataValue, asset

from cs336_assets import keys
from cs336_assets.definitions.common import knobs_metadata
from cs336_assets.definitions.curves import MAIN_RUNS
from cs336_assets.presets import Preset
from cs336_assets.resources import DataPaths
from cs336_assets.versioning import code_version, output_data_version
from cs336_core.files import atomic_write_text
from cs336_core.writeup import ReportSources, build_report

GROUP = "report"


def _has_leaderboard() -> bool:
    """Whether this checkout's graph has the leaderboard runs: their curves are then among keys.CURVES."""
    return keys.LEADERBOARD in keys.CURVES


def report_sources(paths: DataPaths, preset: Preset) -> ReportSources:
    """Where each file the report reads lives (DataPaths' layout; the curves' file names are their
    training assets' names, or MAIN_RUNS)."""
    roles = keys.ROLES
    curves = [key.to_user_string() for key in (*keys.SWEEPS, *([keys.LEADERBOARD] if _has_leaderboard() else []))]
    return ReportSources(
        preset=preset.to_dict(),
        corpora={role: paths.corpus_dir(role) for role in roles},
        tokenizers={role: paths.tokenizer_dir(role) for role in roles},
        valid_tokens={role: paths.tokens_path(role, "valid") for role in roles},
        curves={name: paths.path("curves", f"{name}.json") for name in (*curves, MAIN_RUNS)},
        experiments=paths.path("experiments", "tokenizer_experiments.json"),
        accounting=paths.path("accounting", "accounting.json"),
        samples=paths.path("samples", "samples.json"),
        submission=paths.path("leaderboard", "submission.json") if _has_leaderboard() else None)


def report_asset(preset: Preset) -> AssetsDefinition:
    @asset(
        key=keys.REPORT,
        group_name=GROUP,
        # Every asset whose files the report reads, not only the curves built from some of them:
        # Dagster looks one edge up for staleness, so a main run rebuilt differently must be a
        # direct dependency for the report to go stale with it.
        deps=[keys.TOKENIZER_EXPERIMENTS, keys.ACCOUNTING_TABLES, keys.SAMPLES, keys.MAIN_RUNS_CURVES,
              *keys.CURVES.values(), *keys.SWEEPS, *([keys.LEADERBOARD] if _has_leaderboard() else []),
              *(key for role in keys.ROLES for key in keys.BY_ROLE[role])],
        kinds={"markdown"},
        code_version=code_version(__file__, config=preset.to_dict()),
        description="The write-up: each written problem of the handout (unicode1 ... leaderboard) answered in prose "
                    "with this run's numbers, curves and samples, each section naming its preset and data.",
    )
    def report(context: AssetExecutionContext, paths: DataPaths) -> MaterializeResult:
        out = paths.path("report", "report.md")
        built = build_report(report_sources(paths, preset), out)
        atomic_write_text(out, built.markdown)
        headline = {k: ("n/a" if v is None else v) for k, v in built.headline.items()}
        knobs = preset.to_dict()
        return MaterializeResult(
            # Key results first, then the report itself, then the knobs.
            metadata={**headline, "report": MetadataValue.md(built.inline_markdown),
                      "path": MetadataValue.path(str(out)), **knobs_metadata(preset, all_knobs=knobs)},
            data_version=output_data_version(knobs, out))

    return report
