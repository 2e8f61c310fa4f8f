"""The Definitions: every asset, check, job and the executor, built for one preset."""

from __future__ import annotations

import os
from pathlib import Path

from dagster import AssetSelection, Definitions, define_asset_job, multiprocess_executor

from cs336_assets import accounting, corpora, curves, datasets, experiments, report, samples, tokenizers, training
from cs336_assets.presets import get_preset
from cs336_assets.resources import Workspace, default_data_dir

MAX_CONCURRENT_ENV = "CS336_MAX_CONCURRENT"
# Modules in graph order; each has build(preset) -> assets, and optionally build_checks(preset).
ASSET_MODULES = (corpora, tokenizers, datasets, experiments, accounting, training, curves, samples, report)


def build_assets(preset_name: str) -> tuple[list, list]:
    preset = get_preset(preset_name)
    assets, checks = [], []
    for module in ASSET_MODULES:
        assets.extend(module.build(preset))
        if hasattr(module, "build_checks"):
            checks.extend(module.build_checks(preset))
    return assets, checks


def build_defs(preset_name: str, data_dir: str | os.PathLike | None = None) -> Definitions:
    """Definitions for `preset_name` writing under `data_dir` (default: env CS336_DATA_DIR or <repo>/data)."""
    assets, checks = build_assets(preset_name)
    workspace = Workspace.for_definitions(preset_name, str(Path(data_dir or default_data_dir()).resolve()))
    # One step at a time by default: every step process re-imports torch (~3 s) and a training step
    # wants all cores. Raise CS336_MAX_CONCURRENT on a bigger machine to run sweep points side by side.
    executor = multiprocess_executor.configured(
        {"max_concurrent": int(os.environ.get(MAX_CONCURRENT_ENV, "1"))}, name="multiprocess")
    data_prep = AssetSelection.groups(corpora.GROUP, tokenizers.GROUP, datasets.GROUP)
    jobs = [
        define_asset_job("data_prep_job", selection=data_prep,
                         description="Corpora, tokenizers, encoded datasets and tokenizer experiments."),
        define_asset_job("main_runs_job", selection=AssetSelection.assets(*[f"{r}_main_run" for r in ("stories", "web")])),
        *[define_asset_job(f"{name}_job", selection=AssetSelection.assets(name),
                           description=f"One partition of {name} per run (launch a backfill for all).")
          for name in training.SWEEPS],
    ]
    return Definitions(assets=assets, asset_checks=checks, resources={"workspace": workspace},
                       executor=executor, jobs=jobs)
