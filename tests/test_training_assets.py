"""The training assets keep core's promises through Dagster: checks that fail on bad runs, one
writer per run directory, no orphan after the launcher is killed, data versions that follow the run."""

import contextlib
import dataclasses
import json
import logging
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import torch
from dagster import AssetCheckSeverity, DagsterInstance, materialize

from conftest import REPO_ROOT, dagster_env, run_cli
from cs336_assets import keys
from cs336_assets.definitions import RESOURCE_KEY, build_defs
from cs336_assets.definitions.training import (CHECKS, SWEEPS, converged_check, no_nan_check, target_check,
                                               train_config)
from cs336_assets.presets import PRESETS, ModelKnobs, RunKnobs, get_preset, lr_variants
from cs336_assets.resources import DataPaths
from cs336_assets.versioning import output_data_version
from cs336_core import reporting
from cs336_core.model import ModelConfig
from cs336_core.training import TrainConfig, TrainResult, read_checkpoint, train
from cs336_core.training.metrics import throttled

PRESET = get_preset("test")
UPSTREAM = ["stories_corpus", "stories_tokenizer", "stories_tokens"]


@pytest.fixture(scope="module")
def stories_upstream(tmp_path_factory) -> Path:
    """The stories corpus, tokenizer and token files of the `test` preset (what every training asset reads)."""
    data = tmp_path_factory.mktemp("upstream")
    defs = build_defs("test", data)
    with DagsterInstance.ephemeral() as instance:
        assert materialize(list(defs.assets), instance=instance, resources=defs.resources, selection=UPSTREAM).success
    return data


@pytest.fixture
def data_dir(stories_upstream, tmp_path) -> Path:
    """A private data dir holding only the upstream files, so no test sees another's runs."""
    data = tmp_path / "data"
    shutil.copytree(stories_upstream, data)
    return data


def materialize_one(data: Path, asset: str, partition: str | None = None, **run_config):
    defs = build_defs("test", data)
    config = {"ops": {asset: {"config": run_config}}} if run_config else None
    with DagsterInstance.ephemeral() as instance:
        return materialize(list(defs.assets), instance=instance, resources=defs.resources, selection=[asset],
                           partition_key=partition, run_config=config, raise_on_error=False)


def checks_of(result) -> dict:
    return {e.check_name: e for e in result.get_asset_check_evaluations()}


def data_version_of(result) -> str:
    [event] = result.get_asset_materialization_events()
    return event.materialization.tags["dagster/data_version"]


def errors_of(result) -> str:
    return "\n".join(e.event_specific_data.error.to_string() for e in result.all_events
                     if getattr(e.event_specific_data, "error", None))


# ---------------------------------------------------------------------------------------------
# Knobs: one name from preset to TrainConfig


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_run_of_every_preset_is_a_valid_train_config(name, tmp_path):
    preset, paths = get_preset(name), DataPaths(data_dir=str(tmp_path))
    for role in keys.ROLES:
        config = train_config(paths, preset, role, tmp_path / role)
        assert {knob: getattr(config, knob) for knob in preset.run.given()} == preset.run.given()
        assert config.model == preset.model_for(role)
    for variants_of, _ in SWEEPS.values():
        for variant in variants_of(preset).values():
            config = train_config(paths, preset, keys.SWEEP_ROLE, tmp_path, variant.run, model=variant.model)
            assert config.lr_min == config.lr_max / 10 and config.warmup_steps == config.max_steps // 20


def test_run_config_wins_over_the_partition_which_wins_over_the_preset(tmp_path):
    paths = DataPaths(data_dir=str(tmp_path))
    variant = lr_variants(PRESET)["lr=1e-03"]
    config = train_config(paths, PRESET, "stories", tmp_path, variant.run, RunKnobs(lr_max=0.5, eval_every=3))
    assert (config.lr_max, config.max_steps, config.eval_every) == (0.5, PRESET.sweep.max_steps, 3)
    assert config.batch_size == PRESET.run.batch_size and config.lr_min == 0.05


def test_every_knob_of_a_run_has_the_same_name_in_run_knobs_as_in_train_config():
    """Nothing a preset or a run config may want to set is missing, and nothing is renamed: the knobs
    are TrainConfig's fields but those the asset decides (paths, resume) or that presets give
    otherwise (total_tokens: they give max_steps; token_dtype: a .npy file carries its own)."""
    asset_decides = {"train_path", "valid_path", "out_dir", "token_dtype", "total_tokens", "resume"}
    assert set(RunKnobs.model_fields) == {f.name for f in dataclasses.fields(TrainConfig)} - asset_decides
    assert set(ModelKnobs.model_fields) == {f.name for f in dataclasses.fields(ModelConfig)} - {"vocab_size"}


def test_h100_preset_trains_in_bf16_compiled_with_fused_attention_and_the_from_scratch_one_stays_selectable(tmp_path):
    paths, h100 = DataPaths(data_dir=str(tmp_path)), get_preset("h100")
    for variants_of, _ in [(lambda preset: {"main": None}, None), *SWEEPS.values()]:
        for variant in variants_of(h100).values():
            layers = (variant.run,) if variant else ()
            config = train_config(paths, h100, "stories", tmp_path, *layers, model=variant.model if variant else None)
            assert (config.device, config.dtype, config.compile, config.tf32) == ("cuda", "bfloat16", True, True)
            assert config.model.fused_attention
    from_scratch = train_config(paths, h100, "stories", tmp_path, RunKnobs(model=ModelKnobs(fused_attention=False)))
    assert not from_scratch.model.fused_attention and from_scratch.dtype == "bfloat16"
    assert from_scratch.model == dataclasses.replace(h100.model_for("stories"), fused_attention=False)
    # Elsewhere the from-scratch attention in float32 stays the default.
    for name in ("demo", "cpu", "test"):
        config = train_config(paths, get_preset(name), "stories", tmp_path)
        assert not config.model.fused_attention and config.dtype == "float32" and not config.compile


def test_speed_and_optimizer_knobs_reach_train_config_from_run_config(tmp_path):
    paths = DataPaths(data_dir=str(tmp_path))
    knobs = dict(tf32=False, max_wall_seconds=90.0, peak_flops=1e12, tracking="tensorboard", optimizer="muon",
                 muon_lr=0.01, muon_momentum=0.9, muon_weight_decay=0.01, z_loss=1e-4, dtype="bfloat16", compile=True)
    config = train_config(paths, PRESET, "stories", tmp_path, RunKnobs(**knobs, model=ModelKnobs(qk_norm=True)))
    assert {name: getattr(config, name) for name in knobs} == knobs
    assert config.model.qk_norm and config.model.d_model == PRESET.model.d_model


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_sweep_run_evaluates_at_least_ten_times(name):
    preset = get_preset(name)
    for variants_of, _ in SWEEPS.values():
        for key, variant in variants_of(preset).items():
            steps, every = variant.run.max_steps, variant.run.eval_every
            assert steps // every >= 10, (name, key, steps, every)


def test_throttled_passes_every_evaluation_and_other_lines_once_per_interval():
    seen, now = [], [0.0]
    observe = throttled(seen.append, interval=10.0, clock=lambda: now[0])
    for step, t, val_loss in ((1, 0.0, None), (2, 1.0, None), (3, 2.0, 5.0), (4, 3.0, None), (5, 12.5, None),
                              (6, 13.0, None), (7, 13.5, 4.0)):
        now[0] = t
        observe({"step": step, "val_loss": val_loss})
    assert [record["step"] for record in seen] == [1, 3, 5, 7]
    now[0] = 14.0
    observe({"step": 8, "val_loss": None, "stopped": "budget"})  # a budget stop's last line always comes
    assert seen[-1]["step"] == 8


# ---------------------------------------------------------------------------------------------
# Checks that fail on bad runs


def write_metrics(path: Path, train_losses: list) -> Path:
    lines = [json.dumps({"step": 5 * (i + 1), "train_loss": loss, "val_loss": None}) for i, loss in enumerate(train_losses)]
    path.write_text("\n".join(lines) + "\n")
    return path


def a_result(status: str, final_val_loss: float | None) -> TrainResult:
    return TrainResult(status, 10, 2560, 1.0, 100.0, 5.0, final_val_loss, final_val_loss, None, "m", "o",
                       message="loss became nan at step 10" if status == "diverged" else "")


def test_no_nan_check_fails_on_non_finite_losses_and_says_only_true_things(tmp_path):
    nan_metrics = reporting.read_metrics(write_metrics(tmp_path / "nan.jsonl", [5.5, None]))  # null: a NaN loss
    fine_metrics = reporting.read_metrics(write_metrics(tmp_path / "fine.jsonl", [5.5, 5.3]))

    nan_check = no_nan_check(nan_metrics, a_result("completed", 5.2), "a")
    assert not nan_check.passed and nan_check.metadata["non_finite_steps"].value == "[10]"

    no_final = no_nan_check(fine_metrics, a_result("completed", float("nan")), "a")
    assert not no_final.passed and no_final.metadata["final_val_loss_finite"].value is False

    diverged = no_nan_check(nan_metrics, a_result("diverged", None), "a", AssetCheckSeverity.WARN)
    assert not diverged.passed and diverged.severity == AssetCheckSeverity.WARN
    assert diverged.metadata["final_val_loss_finite"].value is False  # the value is None: not finite
    assert diverged.metadata["status"].value == "diverged"

    healthy = no_nan_check(fine_metrics, a_result("completed", 5.2), "a")
    assert healthy.passed and healthy.metadata["final_val_loss_finite"].value is True
    assert not no_nan_check(fine_metrics.iloc[:0], a_result("completed", 5.2), "a").passed  # nothing logged


def test_converged_and_target_checks_fail_on_a_diverged_or_untrained_run():
    diverged = converged_check(a_result("diverged", None), "a", AssetCheckSeverity.WARN)
    assert not diverged.passed and diverged.severity == AssetCheckSeverity.WARN
    assert diverged.metadata["message"].value == "loss became nan at step 10"
    assert converged_check(a_result("completed", 5.2), "a").passed

    untrained = math.log(PRESET.tokenizers["stories"].vocab_size)  # the loss of a uniform prediction
    assert PRESET.target_val_loss < untrained - 0.1, "the test preset's target must need learning"
    assert not target_check(a_result("completed", untrained), PRESET, "a").passed
    assert not target_check(a_result("diverged", None), PRESET, "a").passed
    assert not target_check(a_result("completed", float("nan")), PRESET, "a").passed
    assert target_check(a_result("completed", PRESET.target_val_loss), PRESET, "a").passed


def test_a_run_stopped_by_its_budget_is_converged_and_still_needs_a_finite_final_loss(tmp_path):
    budget = converged_check(a_result("budget", 5.2), "a", partition="leaderboard")
    assert budget.passed and budget.metadata["status"].value == "budget"
    assert budget.metadata["partition"].value == "leaderboard" and budget.description.startswith("leaderboard: ")
    fine_metrics = reporting.read_metrics(write_metrics(tmp_path / "fine.jsonl", [5.5, 5.3]))
    assert not no_nan_check(fine_metrics, a_result("budget", float("nan")), "a").passed
    assert no_nan_check(fine_metrics, a_result("budget", 5.2), "a").passed


def test_a_run_that_does_not_learn_misses_the_target(data_dir):
    trained = materialize_one(data_dir, "stories_main_run")
    assert trained.success
    assert all(check.passed for check in checks_of(trained).values()), checks_of(trained)
    frozen = materialize_one(data_dir, "stories_main_run", lr_max=1e-12)
    assert frozen.success
    checks = checks_of(frozen)
    assert checks["converged"].passed and checks["no_nan_in_metrics"].passed
    assert not checks["val_loss_at_target"].passed
    assert checks["val_loss_at_target"].metadata["final_val_loss"].value > PRESET.target_val_loss


def test_a_diverged_sweep_point_materializes_with_failing_warn_checks(data_dir):
    # lr 1000 blows the tiny model up to a NaN loss within a few steps.
    result = materialize_one(data_dir, "lr_sweep", "lr=1e+00", lr_max=1000.0)
    assert result.success, errors_of(result)
    run_dir = data_dir / "runs" / "lr_sweep" / "lr=1e+00"
    assert json.loads((run_dir / "result.json").read_text())["status"] == "diverged"
    checks = checks_of(result)
    assert set(checks) == {"no_nan_in_metrics", "converged"}
    for check in checks.values():
        assert not check.passed and check.severity == AssetCheckSeverity.WARN, check
    assert checks["no_nan_in_metrics"].metadata["final_val_loss_finite"].value is False
    assert checks["converged"].metadata["status"].value == "diverged"
    config = TrainConfig.from_json((run_dir / "config.json").read_text())
    assert data_version_of(result) == output_data_version(config.to_dict(), run_dir).value


def floats_in(value):
    if isinstance(value, float):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from floats_in(item)
    elif isinstance(value, list):
        for item in value:
            yield from floats_in(item)


def test_a_sweep_run_shows_its_curve_while_it_trains_and_leads_its_metadata_with_the_results(data_dir):
    defs = build_defs("test", data_dir)
    with DagsterInstance.ephemeral() as instance:
        result = materialize(list(defs.assets), instance=instance, resources=defs.resources, selection=["lr_sweep"],
                             partition_key="lr=1e-03")
        logged = [entry.dagster_event for entry in instance.all_logs(result.run_id)
                  if entry.dagster_event and entry.dagster_event.event_type_value == "ASSET_OBSERVATION"]
    assert result.success
    observations = [event.event_specific_data.asset_observation for event in logged]
    assert all(o.asset_key == keys.LR_SWEEP and o.partition == "lr=1e-03" for o in observations)
    steps = [o.metadata["step"].value for o in observations]
    assert steps == sorted(set(steps)) and steps[-1] == PRESET.sweep.max_steps
    # Every evaluation (one per step here: 10 steps, 10 evaluations) is a point of the curve.
    val_losses = [o.metadata["val_loss"].value for o in observations if "val_loss" in o.metadata]
    assert len(val_losses) >= 10 and all(math.isfinite(v) for v in val_losses)
    assert {"train_loss", "tokens_per_second", "tokens"} <= set(observations[-1].metadata)

    [event] = result.get_asset_materialization_events()
    metadata = event.materialization.metadata
    assert list(metadata)[:5] == ["final_val_loss", "best_val_loss", "tokens_per_second", "status", "steps"]
    assert list(metadata)[-2:] == ["preset", "knobs"]
    values = [v.value for v in metadata.values()]
    for number in floats_in(values):  # no 0.00030000000000000003 (lr_min = lr_max / 10) nor 3.8329901695251465
        assert float(f"{number:.8g}") == number, number
    assert metadata["knobs"].value["run"]["lr_min"] == 1e-4

    checks = checks_of(result)
    assert {name: check.description.split(": ")[0] for name, check in checks.items()} == {
        "no_nan_in_metrics": "lr=1e-03", "converged": "lr=1e-03"}
    assert all(check.metadata["partition"].value == "lr=1e-03" for check in checks.values())
    specs = [spec for assets_def in defs.assets for spec in assets_def.check_specs]
    assert specs and all(spec.description for spec in specs if spec.name in CHECKS), \
        [spec.key for spec in specs if not spec.description]


def test_data_version_follows_the_run(data_dir):
    run_dir = data_dir / "runs" / "stories_main_run"
    versions = []
    for steps in (4, 6):
        result = materialize_one(data_dir, "stories_main_run", max_steps=steps)
        assert result.success
        config = TrainConfig.from_json((run_dir / "config.json").read_text())
        assert config.max_steps == steps
        versions.append(data_version_of(result))
        assert versions[-1] == output_data_version(config.to_dict(), run_dir).value
    assert versions[0] != versions[1]


# ---------------------------------------------------------------------------------------------
# One writer per run directory


def test_a_launch_fails_while_another_process_trains_the_partition(data_dir, tmp_path):
    defs = build_defs("test", data_dir)
    paths = defs.resources[RESOURCE_KEY]
    run_dir = paths.run_dir(keys.LR_SWEEP, "lr=1e-03")
    long_run = RunKnobs(max_steps=10**6, checkpoint_every=50, eval_every=0)
    (tmp_path / "holder.json").write_text(train_config(paths, PRESET, "stories", run_dir, long_run).to_json())
    holder = subprocess.Popen([sys.executable, "-m", "cs336_core.training", "--config", str(tmp_path / "holder.json")],
                              env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120  # only keeps a broken holder from hanging the suite
        while not (run_dir / "ckpt" / "latest.pt").exists():
            assert holder.poll() is None and time.monotonic() < deadline, "the holder never checkpointed"
            time.sleep(0.02)
        result = materialize_one(data_dir, "lr_sweep", "lr=1e-03")
        assert holder.poll() is None, "the holder was disturbed"
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert not result.success
    errors = errors_of(result)
    assert "RunLockedError" in errors and str(run_dir) in errors and f"pid {holder.pid}" in errors
    assert json.loads((run_dir / "config.json").read_text())["max_steps"] == 10**6, "the holder's run was replaced"
    assert not (run_dir.parent / "_archive").exists(), "the refused launch archived the holder's directory"
    assert not (run_dir / "result.json").exists()


def test_a_damaged_checkpoint_is_reported_and_the_run_resumes_from_the_previous_one(data_dir):
    defs = build_defs("test", data_dir)
    paths = defs.resources[RESOURCE_KEY]
    run_dir = paths.run_dir(keys.BY_ROLE["stories"].main_run)
    # An unfinished run of exactly the asset's config: checkpoint at 10, stopped (and checkpointed) at 15.
    seen = {"step": 0}
    stopped = train(train_config(paths, PRESET, "stories", run_dir),
                    progress=lambda phase, step, total: seen.update(step=step),
                    should_stop=lambda: seen["step"] >= 15)
    assert stopped.status == "interrupted" and stopped.steps == 15
    (run_dir / "ckpt" / "latest.pt").write_bytes(b"")
    with DagsterInstance.ephemeral() as instance:
        result = materialize(list(defs.assets), instance=instance, resources=defs.resources,
                             selection=["stories_main_run"], raise_on_error=False)
        warnings_logged = [entry.user_message for entry in instance.all_logs(result.run_id)
                           if entry.level == logging.WARNING]
    assert result.success, errors_of(result)
    assert any(str(run_dir / "ckpt" / "latest.pt") in message and "previous checkpoint" in message
               for message in warnings_logged), warnings_logged
    [event] = result.get_asset_materialization_events()
    assert event.materialization.metadata["resumed_from_step"].value == 10
    assert json.loads((run_dir / "result.json").read_text())["steps"] == PRESET.run.max_steps


# ---------------------------------------------------------------------------------------------
# A killed launch leaves no orphan, and the rerun resumes


@pytest.mark.slow
def test_kill_9_of_the_launcher_stops_training_and_the_rerun_resumes_to_the_same_model(data_dir, tmp_path):
    steps = 3000
    env = dagster_env(data_dir, tmp_path / "dagster_home")
    config = tmp_path / "config.yaml"
    config.write_text(f"ops:\n  stories_main_run:\n    config:\n      max_steps: {steps}\n"
                      f"      checkpoint_every: 100\n      eval_every: {steps}\n")
    command = ["dagster", "asset", "materialize", "-m", "cs336_assets", "--select", "stories_main_run", "-c", str(config)]
    run_dir = data_dir / "runs" / "stories_main_run"
    latest = run_dir / "ckpt" / "latest.pt"

    launcher = subprocess.Popen([sys.executable, "-m", *command], env=env, cwd=REPO_ROOT, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 180  # only keeps a broken launch from hanging the suite
        while not latest.exists():
            assert launcher.poll() is None and time.monotonic() < deadline, "no checkpoint appeared"
            time.sleep(0.02)
        workers = psutil.Process(launcher.pid).children(recursive=True)
        assert workers, "the asset did not run in a step process"
        os.kill(launcher.pid, signal.SIGKILL)  # the launcher alone, as `kill -9 <pid>` does
        launcher.wait()
        _, alive = psutil.wait_procs(workers, timeout=120)
        assert not alive, f"still running after the launcher died: {[p.cmdline() for p in alive]}"
    finally:
        with contextlib.suppress(ProcessLookupError):  # nothing left of the launch is what the test expects
            os.killpg(launcher.pid, signal.SIGKILL)
    stopped_at = read_checkpoint(latest)["iteration"]
    assert 0 < stopped_at < steps, "the step trained on after its launcher died"
    assert not (run_dir / "result.json").exists() and not (run_dir / "ckpt" / "final.pt").exists()

    rerun = run_cli(command, env)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert f"resuming stories_main_run from its checkpoint at step {stopped_at}" in rerun.stderr
    result = json.loads((run_dir / "result.json").read_text())
    assert result["status"] == "completed" and result["steps"] == steps
    assert not list((data_dir / "runs").glob("_archive/stories_main_run-*")), "the interrupted run was archived"

    straight = TrainConfig.from_json((run_dir / "config.json").read_text())
    straight.out_dir = str(tmp_path / "straight")
    before = torch.get_num_threads()
    torch.set_num_threads(PRESET.torch_threads)  # as the asset trains
    try:
        train(straight)
    finally:
        torch.set_num_threads(before)
    resumed_params = read_checkpoint(run_dir / "ckpt" / "final.pt")["model"]
    straight_params = read_checkpoint(tmp_path / "straight" / "ckpt" / "final.pt")["model"]
    for name, value in straight_params.items():
        assert torch.equal(resumed_params[name], value), name
