"""Materialize the asset graph of one preset into the project's Dagster instance: what is missing or
stale only, stage by stage, then a one-screen summary.

    python -m cs336_assets.demo                 # demo preset, <repo>/data: about 4.5 minutes on 2 CPU cores
    python -m cs336_assets.demo                 # again: seconds, nothing changed so nothing runs
    python -m cs336_assets.demo --force         # redo everything
    python -m cs336_assets.demo --verbose       # also Dagster's DEBUG events (step starts, outputs, ...)
    python -m cs336_assets.demo --preset cpu    # the handout's low-resource run (needs the downloads)
    python -m cs336_assets.demo --prepare-only  # only set up DAGSTER_HOME (used by `make dev`)

Runs go through the real instance in DAGSTER_HOME (<data>/dagster_home), so `dagster dev` afterwards
shows every run, materialization, check result and plot. Each stage is one run of a named job
(`data_prep_job`, `main_runs_job`, one run per partition of `lr_sweep_job`, ..., `results_job`),
executed in-process one step after another, the right choice on a small CPU machine. Before each
stage Dagster's own staleness (code versions, data versions, missing materializations) decides
what in it needs a run; the same verdict the UI shows as "stale".
"""

from __future__ import annotations

import argparse
import json
import textwrap
import logging
import sys
import time
import warnings
from dataclasses import dataclass, field

from dagster import AssetKey, AssetSelection, DagsterInstance, Definitions, define_asset_job, logger
from dagster._core.definitions.data_version import CachingStaleStatusResolver, StaleStatus
from dagster._core.loader import LoadingContextForTest

from cs336_assets import keys
from cs336_assets.definitions import RESOURCE_KEY, build_defs
from cs336_assets.presets import PRESETS, preset_name_from_env
from cs336_assets.resources import default_data_dir, ensure_dagster_home
from cs336_core import reporting

# The stages before the partitioned assets, as (job name, asset groups); the job of the same name in
# the definitions runs it when its selection is the same, else the demo defines it.
DATA_PREP = ("data_prep_job", ("corpora", "tokenizers", "datasets"))
MAIN_RUNS_JOB = "main_runs_job"
RESULTS_JOB = "results_job"  # everything after the training: accounting, curves, samples, report
LOGGER = "demo_console"


@dataclass
class Stage:
    job: str
    keys: list[AssetKey]
    partition: str | None = None

    @property
    def label(self) -> str:
        return f"{self.job} [{self.partition}]" if self.partition else self.job


@dataclass
class Outcome:
    """What a demo run did: per (asset, partition), "materialized", "up to date" or "failed"."""

    assets: dict[tuple[str, str | None], str] = field(default_factory=dict)
    results: list = field(default_factory=list)
    seconds: float = 0.0


def plan_stages(defs: Definitions) -> list[Stage]:
    """The graph's assets in stages that can run in this order: data preparation, the main runs,
    one stage per partition of each partitioned asset (dependency order), then the rest."""
    graph = defs.resolve_asset_graph()
    all_keys = set(graph.get_all_asset_keys())
    order = {key: i for i, key in enumerate(graph.toposorted_asset_keys)}
    prep = {key for key in all_keys if graph.get(key).group_name in DATA_PREP[1] and not graph.get(key).is_partitioned}
    mains = {keys.BY_ROLE[role].main_run for role in keys.ROLES} & all_keys
    partitioned = sorted((key for key in all_keys if graph.get(key).is_partitioned), key=order.get)
    stages = [Stage(DATA_PREP[0], sorted(prep, key=order.get)), Stage(MAIN_RUNS_JOB, sorted(mains, key=order.get))]
    for key in partitioned:
        job = f"{key.to_user_string()}_job"
        stages += [Stage(job, [key], p) for p in graph.get(key).partitions_def.get_partition_keys()]
    rest = all_keys - prep - mains - set(partitioned)
    stages.append(Stage(RESULTS_JOB, sorted(rest, key=order.get)))
    return [stage for stage in stages if stage.keys]


def stage_jobs(defs: Definitions, stages: list[Stage]) -> dict[str, object]:
    """job name -> JobDefinition for each stage: the definitions' own job where it selects the same
    assets (so a run links to a job of the workspace), else one defined here; each with the
    demo's console logger."""
    graph = defs.resolve_asset_graph()
    own = {job.name: job for job in (defs.jobs or [])}
    wanted: dict[str, set[AssetKey]] = {}
    for stage in stages:
        wanted.setdefault(stage.job, set()).update(stage.keys)
    names, extra = {}, []
    for name, selected in wanted.items():
        job = own.get(name)
        if job is not None and hasattr(job, "selection") and job.selection.resolve(graph) == selected:
            names[name] = name
        else:  # not in the workspace, or a job of that name selecting other assets: ours, by another name
            names[name] = name if job is None else f"demo_{name}"
            extra.append(define_asset_job(names[name], selection=AssetSelection.assets(*selected),
                                          description="Defined by cs336_assets.demo for its stage of the graph."))
    merged = Definitions.merge(defs, Definitions(jobs=extra)) if extra else defs
    return {name: merged.resolve_job_def(names[name]).with_logger_defs({LOGGER: demo_console}) for name in wanted}


def stale(resolver: CachingStaleStatusResolver, stage: Stage) -> list[AssetKey]:
    """The assets of `stage` that are missing or stale (for its partition)."""
    return [key for key in stage.keys if resolver.get_status(key, stage.partition) != StaleStatus.FRESH]


@logger(config_schema={"verbose": bool})
def demo_console(init_context) -> logging.Logger:
    """Step logs (progress, warnings) as indented lines; Dagster's own events only when verbose,
    or when they are errors (a step failure and its message)."""
    verbose = init_context.logger_config["verbose"]
    log = logging.Logger("cs336.demo", level=logging.DEBUG)

    class Handler(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            meta = getattr(record, "dagster_meta", {})
            event = meta.get("dagster_event")
            if not verbose and (record.levelno < logging.INFO or (event is not None and record.levelno < logging.ERROR)):
                return
            where = meta.get("step_key") or "run"
            level = "" if record.levelno < logging.WARNING else f"{record.levelname}: "
            kind = f"{event.event_type_value} " if event is not None and verbose else ""
            print(f"    {where}: {level}{kind}{meta.get('orig_message', record.getMessage())}", flush=True)

    log.addHandler(Handler())
    return log


def materialize_all(defs: Definitions, instance: DagsterInstance, log=print, raise_on_error: bool = True,
                    force: bool = False, verbose: bool = False) -> list:
    """Materialize what is missing or stale (everything with `force`) in `plan_stages` order; returns
    the run results (`run_stages` has the per-asset outcome)."""
    return run_stages(defs, instance, log, raise_on_error, force, verbose).results


def run_stages(defs: Definitions, instance: DagsterInstance, log=print, raise_on_error: bool = True,
               force: bool = False, verbose: bool = False) -> Outcome:
    stages = plan_stages(defs)
    jobs = stage_jobs(defs, stages)
    graph = defs.resolve_asset_graph()
    outcome = Outcome()
    start = time.perf_counter()
    run_config = {"loggers": {LOGGER: {"config": {"verbose": verbose}}}}
    for i, stage in enumerate(stages, 1):
        # A fresh resolver per stage: it caches what it read, and the stages before changed it.
        resolver = CachingStaleStatusResolver(instance, graph, LoadingContextForTest(instance))
        todo = list(stage.keys) if force else stale(resolver, stage)
        for key in stage.keys:
            outcome.assets[key.to_user_string(), stage.partition] = "up to date"
        if not todo:
            continue
        names = ", ".join(key.to_user_string() for key in todo)
        log(f"[{i}/{len(stages)}] {stage.label}: {names} (elapsed {time.perf_counter() - start:.0f} s)")
        result = jobs[stage.job].execute_in_process(
            instance=instance, partition_key=stage.partition, asset_selection=todo, run_config=run_config,
            raise_on_error=raise_on_error, tags={"cs336/stage": stage.label})
        outcome.results.append(result)
        done = {event.asset_key for event in result.get_asset_materialization_events()}
        for key in todo:
            outcome.assets[key.to_user_string(), stage.partition] = "materialized" if key in done else "failed"
        if not result.success:
            log(f"    {stage.label} failed; the stages after it run on what exists")
    outcome.seconds = time.perf_counter() - start
    ran = sum(state == "materialized" for state in outcome.assets.values())
    log(f"materialized {ran} of {len(outcome.assets)} assets and partitions in {len(outcome.results)} runs, "
        f"{outcome.seconds:.0f} s")
    return outcome


def check_states(defs: Definitions, instance: DagsterInstance) -> dict[str, list[str]]:
    """"passed", "warning" (failed at WARN severity), "failed", "not run" -> the checks in that state,
    each check of a partitioned asset once per partition, by its latest evaluation in the instance."""
    graph = defs.resolve_asset_graph()
    states: dict[str, list[str]] = {"passed": [], "warning": [], "failed": [], "not run": []}
    run_partitions: dict[str, str | None] = {}

    def run_partition(run_id: str) -> str | None:
        if run_id not in run_partitions:
            run = instance.get_run_by_id(run_id)
            run_partitions[run_id] = run.tags.get("dagster/partition") if run else None
        return run_partitions[run_id]

    for check_key in sorted(graph.asset_check_keys, key=lambda k: (k.asset_key.to_user_string(), k.name)):
        partitions = graph.get(check_key.asset_key).partitions_def
        history = instance.event_log_storage.get_asset_check_execution_history(check_key, limit=200)
        latest = {}
        for record in history:  # newest first
            # A check of a partitioned asset, run in that partition's run, is recorded without the
            # partition; the run's partition tag has it.
            partition = record.partition or (run_partition(record.run_id) if partitions else None)
            latest.setdefault(partition, record)
        for partition in partitions.get_partition_keys() if partitions else [None]:
            name = f"{check_key.asset_key.to_user_string()}{f' [{partition}]' if partition else ''} {check_key.name}"
            record = latest.get(partition)
            evaluation = record.event.asset_check_evaluation if record and record.event else None
            if evaluation is None:
                states["not run"].append(name)
            elif evaluation.passed:
                states["passed"].append(name)
            else:
                states["warning" if evaluation.severity.value == "WARN" else "failed"].append(name)
    return states


def _latest_metadata(instance: DagsterInstance, key: AssetKey) -> dict:
    event = instance.get_latest_materialization_event(key)
    if event is None or event.asset_materialization is None:
        return {}
    return {name: value.value for name, value in event.asset_materialization.metadata.items()}


def _fmt(value) -> str:
    return f"{value:.3f}" if isinstance(value, float) else "n/a" if value is None else str(value)


def summary(defs: Definitions, instance: DagsterInstance, outcome: Outcome, report) -> str:
    """One screen: every asset materialized, up to date or failed (partitions counted), the checks,
    the main losses against their targets, and the report's path."""
    by_state: dict[str, dict[str, list[str | None]]] = {}
    for (name, partition), state in outcome.assets.items():
        by_state.setdefault(state, {}).setdefault(name, []).append(partition)
    lines = [f"\nSummary ({outcome.seconds:.0f} s)"]
    for state in ("materialized", "up to date", "failed"):
        assets = by_state.get(state, {})
        shown = [name if partitions == [None] else f"{name} [{len(partitions)} partition{'s' * (len(partitions) > 1)}]"
                 for name, partitions in assets.items()]
        lines.append(textwrap.fill(", ".join(shown) or "-", width=110, initial_indent=f"  {state + ':':<14}{len(shown):>3}  ",
                                   subsequent_indent=" " * 21))
    checks = check_states(defs, instance)
    lines.append("  checks:       " + ", ".join(f"{len(found)} {state}" for state, found in checks.items()))
    for state in ("failed", "warning", "not run"):
        lines += [f"                {state}: {name}" for name in checks[state][:6]]
        if len(checks[state]) > 6:
            lines.append(f"                ... and {len(checks[state]) - 6} more {state}")
    headline = _latest_metadata(instance, keys.REPORT)
    for role in keys.ROLES:
        run = _latest_metadata(instance, keys.BY_ROLE[role].main_run)
        target = run.get("target_val_loss")
        verdict = ("" if target is None or run.get("final_val_loss") is None else
                   f" (target {target}: {'met' if run['final_val_loss'] <= target else 'MISSED'})")
        lines.append(f"  {keys.BY_ROLE[role].main_run.to_user_string() + ':':<20}val loss "
                     f"{_fmt(run.get('final_val_loss'))}{verdict}")
    curves_dir = defs.resources[RESOURCE_KEY].path("curves")
    for sweep in (*keys.SWEEPS, *([keys.LEADERBOARD] if keys.LEADERBOARD in keys.CURVES else [])):
        path = curves_dir / f"{sweep.to_user_string()}.json"
        runs = json.loads(path.read_text(encoding="utf-8"))["runs"] if path.exists() else []
        if sweep == keys.LEADERBOARD:  # budget runs: each one's loss at the end of its wall-clock
            found = ", ".join(f"{run['variant']} {_fmt(run.get('final_val_loss'))}" for run in runs) or "n/a"
        else:
            best = reporting.curves_headline(runs) if runs else {}
            found = (f"best {best['best_variant']} {_fmt(best.get('best_final_val_loss'))}; diverged: "
                     f"{best['diverged']}" if best else "n/a")
        lines.append(f"  {sweep.to_user_string() + ':':<20}{found}")
    if headline:
        lines.append(f"  report says:       best lr {_fmt(headline.get('best_lr'))}, surprises: "
                     f"{headline.get('surprises', 'n/a')}, leaderboard: {headline.get('leaderboard', 'n/a')}")
    lines.append(f"  report:            {report}{'' if report.exists() else ' (not written)'}")
    lines.append("  browse:            make dev, then http://127.0.0.1:3000")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default=preset_name_from_env(), choices=sorted(PRESETS),
                        help=f"the preset to materialize, one of {', '.join(sorted(PRESETS))} (default: env "
                             f"CS336_PRESET or demo)")
    parser.add_argument("--data-dir", default=str(default_data_dir()),
                        help="where artifacts and the Dagster instance live (default: env CS336_DATA_DIR or <repo>/data)")
    parser.add_argument("--force", action="store_true", help="materialize everything, up to date or not")
    parser.add_argument("--verbose", action="store_true", help="also print Dagster's DEBUG events and warnings")
    parser.add_argument("--prepare-only", action="store_true", help="only create DAGSTER_HOME and exit")
    args = parser.parse_args(argv)

    home = ensure_dagster_home(args.data_dir)
    print(f"DAGSTER_HOME={home}")
    if args.prepare_only:
        return 0
    if not args.verbose:  # Dagster's API notices (preview, beta, superseded) are for developers
        warnings.filterwarnings("ignore", module=r"dagster(\.|$)")
        warnings.filterwarnings("ignore", category=UserWarning, message=r".*(dagster|Definitions|asset).*")
    defs = build_defs(args.preset, args.data_dir)
    print(f"materializing what is missing or stale{' (forced: everything)' if args.force else ''} with preset "
          f"{args.preset!r} into {args.data_dir}")
    with DagsterInstance.get() as instance:
        outcome = run_stages(defs, instance, raise_on_error=False, force=args.force, verbose=args.verbose)
        print(summary(defs, instance, outcome, report=defs.resources[RESOURCE_KEY].path("report", "report.md")))
    return 0 if "failed" not in outcome.assets.values() else 1


if __name__ == "__main__":
    sys.exit(main())
