"""The Definitions of the asset graph, built for one preset, and one module per asset group beside them.

Each corpus role gets the same chain (`role_definitions`): corpus -> tokenizer -> tokens -> main run,
with the tokenizer and token checks. What reads several roles comes once (`shared_definitions`):
the tokenizer experiments, the accounting tables, the sweeps and ablations (on the stories
corpus), their loss curves, the leaderboard runs (web corpus) and their curves, the samples and the
report. Assets depend on each other through the keys in `cs336_assets.keys`, and every asset reads
the preset from the factory that built it. The preset is taken with the corpus environment
variables applied (`corpora.with_corpus_env`), so every run of these definitions reads them.

(This package would be Dagster's `defs/` folder; it is called `definitions` because `cs336_assets.defs`
is the Definitions object itself.)
"""

from __future__ import annotations

import os
from pathlib import Path

from dagster import AssetSelection, Definitions, define_asset_job, multiprocess_executor

from cs336_assets import keys
from cs336_assets.definitions import (accounting, corpora, curves, datasets, experiments, leaderboard, report, samples,
                                      tokenizers, training)
from cs336_assets.presets import Preset, get_preset
from cs336_assets.resources import DataPaths, default_data_dir

MAX_CONCURRENT_ENV = "CS336_MAX_CONCURRENT"
RESOURCE_KEY = "paths"


def role_definitions(preset: Preset, role: str) -> Definitions:
    """One corpus role's chain: corpus -> tokenizer -> tokens -> main run, and their checks."""
    return Definitions(
        assets=[corpora.corpus_asset(preset, role), tokenizers.tokenizer_asset(preset, role),
                datasets.tokens_asset(preset, role), training.main_run_asset(preset, role)],
        asset_checks=[*tokenizers.tokenizer_checks(preset, role), datasets.tokens_check(preset, role)])


def shared_definitions(preset: Preset) -> Definitions:
    """The assets that read several roles or several runs."""
    sweeps = training.sweep_assets(preset)
    return Definitions(assets=[
        experiments.tokenizer_experiments_asset(preset), accounting.accounting_asset(preset), *sweeps,
        *curves.curves_assets(preset, sweeps), *leaderboard.leaderboard_assets(preset), samples.samples_asset(preset),
        report.report_asset(preset)])


def jobs() -> list:
    data_prep = AssetSelection.groups(corpora.GROUP, tokenizers.GROUP, datasets.GROUP)
    main_runs = AssetSelection.assets(*(keys.BY_ROLE[role].main_run for role in keys.ROLES))
    return [
        define_asset_job("data_prep_job", selection=data_prep,
                         description="Corpora, tokenizers, encoded datasets and tokenizer experiments."),
        define_asset_job("main_runs_job", selection=main_runs),
        *[define_asset_job(f"{name}_job", selection=AssetSelection.assets(sweep),
                           description=f"One partition of {name} per run (launch a backfill for all).")
          for sweep in keys.SWEEPS for name in [sweep.to_user_string()]],
        define_asset_job("leaderboard_job", selection=AssetSelection.assets(keys.LEADERBOARD),
                         description="One leaderboard run per run: partition baseline or leaderboard (handout 7.5)."),
    ]


def build_defs(preset: str | Preset, data_dir: str | os.PathLike | None = None) -> Definitions:
    """Definitions for a preset (by name, or a Preset, e.g. a test's variant of one) writing under
    `data_dir` (default: env CS336_DATA_DIR or <repo>/data), its corpora replaced by the corpus
    environment variables set (CS336_STORIES_TRAIN, ...; a file that cannot be read fails here)."""
    preset = corpora.with_corpus_env(get_preset(preset) if isinstance(preset, str) else preset)
    paths = DataPaths(data_dir=str(Path(data_dir or default_data_dir()).resolve()))
    # One step at a time by default: every step process re-imports torch (~3 s) and a training step
    # wants all cores. Raise CS336_MAX_CONCURRENT on a bigger machine to run sweep points side by side.
    executor = multiprocess_executor.configured(
        {"max_concurrent": int(os.environ.get(MAX_CONCURRENT_ENV, "1"))}, name="multiprocess")
    return Definitions.merge(
        *(role_definitions(preset, role) for role in keys.ROLES), shared_definitions(preset),
        Definitions(resources={RESOURCE_KEY: paths}, executor=executor, jobs=jobs()))
