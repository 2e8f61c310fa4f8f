"""The demo runner (cs336_assets.demo): stages with named jobs, only what is missing or stale, --force,
the console output with and without --verbose, and the summary. On private copies of the session graph."""

import time

from dagster import AssetKey, materialize

from cs336_assets import keys
from cs336_assets.definitions import build_defs
from cs336_assets.demo import (LOGGER, RESULTS_JOB, Stage, check_states, main, plan_stages, run_stages, stage_jobs,
                               summary)


def test_stages_cover_the_graph_once_in_dependency_order():
    defs = build_defs("test")
    graph = defs.resolve_asset_graph()
    stages = plan_stages(defs)
    seen: dict[tuple[AssetKey, str | None], int] = {}
    for i, stage in enumerate(stages):
        for key in stage.keys:
            assert (key, stage.partition) not in seen, key
            seen[key, stage.partition] = i
    expected = {(key, p) for key in graph.get_all_asset_keys()
                for p in (graph.get(key).partitions_def.get_partition_keys() if graph.get(key).is_partitioned else [None])}
    assert set(seen) == expected
    position = {}
    for (key, _), i in seen.items():
        position[key] = max(position.get(key, 0), i)  # a partitioned asset is done after its last partition
    first = {key: min(i for (k, _), i in seen.items() if k == key) for key in position}
    for key in position:
        for parent in graph.get(key).parent_keys:
            assert position[parent] <= first[key], (parent, key)
    assert [s.job for s in stages[:2]] == ["data_prep_job", "main_runs_job"] and stages[-1].job == RESULTS_JOB
    assert {s.job for s in stages if s.partition} == {f"{k.to_user_string()}_job" for k, _ in seen if _}


def test_stage_jobs_reuse_the_workspace_jobs_and_log_through_the_demo_console():
    defs = build_defs("test")
    jobs = stage_jobs(defs, plan_stages(defs))
    workspace = {job.name for job in defs.jobs}
    assert set(jobs) - workspace <= {RESULTS_JOB}  # only the last stage may need a job of its own
    assert all(LOGGER in job.loggers for job in jobs.values())


def test_runs_have_stage_job_names(tiny_graph):
    _, results, _ = tiny_graph
    names = {result.dagster_run.job_name for result in results}
    assert "__ephemeral_asset_job__" not in names
    assert {"data_prep_job", "main_runs_job", "lr_sweep_job", RESULTS_JOB} <= names


def test_a_second_run_does_nothing(graph_copy):
    with graph_copy.instance() as instance:
        # Up to date first: others edit this checkout's sources, which may have changed code versions
        # since the session graph was materialized.
        run_stages(graph_copy.defs, instance, log=lambda message: None)
        start = time.perf_counter()
        outcome = run_stages(graph_copy.defs, instance, log=print)
        seconds = time.perf_counter() - start
        assert outcome.results == [] and set(outcome.assets.values()) == {"up to date"}
        assert seconds < 20, seconds
        text = summary(graph_copy.defs, instance, outcome, report=graph_copy.data / "report" / "report.md")
    assert "materialized:   0" in text and "failed:         0" in text
    assert "0 failed" in text and "not run" in text and str(graph_copy.data / "report" / "report.md") in text
    assert "stories_main_run:   val loss" in text and "(target 5.5: met)" in text


def test_only_the_readers_of_a_rebuilt_asset_run_again(graph_copy):
    defs = graph_copy.defs
    with graph_copy.instance() as instance:
        run_stages(defs, instance, log=lambda message: None)  # up to date first (see above)
        rebuilt = materialize(list(defs.assets), instance=instance, resources=defs.resources,
                              selection=["stories_main_run"],
                              run_config={"ops": {"stories_main_run": {"config": {"max_steps": 4}}}})
        assert rebuilt.success
        outcome = run_stages(defs, instance, log=lambda message: None)
    ran = {name for (name, _), state in outcome.assets.items() if state == "materialized"}
    # Its readers, and the report that reads them; the main run's own code and config are unchanged,
    # so it is not redone (its new data is what the readers see).
    assert ran == {"main_runs_curves", "samples", "report"}
    assert [result.dagster_run.job_name for result in outcome.results] == [RESULTS_JOB]


def test_console_shows_step_logs_and_hides_dagster_debug_events_unless_verbose(graph_copy, capsys):
    defs = graph_copy.defs
    job = stage_jobs(defs, [Stage("data_prep_job", [keys.TOKENIZER_EXPERIMENTS])])["data_prep_job"]
    with graph_copy.instance() as instance:
        for verbose in (False, True):
            job.execute_in_process(instance=instance, asset_selection=[keys.TOKENIZER_EXPERIMENTS],
                                   run_config={"loggers": {LOGGER: {"config": {"verbose": verbose}}}})
            out = capsys.readouterr().out
            assert ("STEP_START" in out) == verbose and ("ASSET_MATERIALIZATION" in out) == verbose
            assert "    tokenizer_experiments: stories tokenizer: " in out  # the step's own progress line


def test_check_states_counts_each_partition(graph_copy):
    with graph_copy.instance() as instance:
        states = check_states(graph_copy.defs, instance)
    assert not states["failed"] and not states["not run"]
    assert "lr_sweep [lr=1e+00] converged" in states["passed"] + states["warning"]
    assert "stories_tokenizer vocab_size" in states["passed"]


def test_main_prints_the_summary_and_skips_what_is_up_to_date(graph_copy, capsys, monkeypatch):
    monkeypatch.setenv("DAGSTER_HOME", str(graph_copy.home))
    with graph_copy.instance() as instance:
        run_stages(graph_copy.defs, instance, log=lambda message: None)  # up to date first (see above)
    assert main(["--preset", "test", "--data-dir", str(graph_copy.data)]) == 0
    out = capsys.readouterr().out
    assert "materialized 0 of" in out and "up to date:" in out and "report:" in out
    assert "STEP_START" not in out and "[1/" not in out  # no stage ran
