"""`dagster asset materialize` in a subprocess: one partition with run config; kill and resume."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from dagster import AssetKey, DagsterInstance

from conftest import REPO_ROOT, dagster_env, run_cli


@pytest.mark.slow
def test_materialize_one_partition_with_run_config(graph_copy, tmp_path):
    data = graph_copy.data
    home = tmp_path / "dagster_home"
    env = dagster_env(data, home)
    config = tmp_path / "config.yaml"
    config.write_text("ops:\n  lr_sweep:\n    config:\n      max_steps: 3\n      eval_every: 3\n")
    proc = run_cli(["dagster", "asset", "materialize", "-m", "cs336_assets", "--select", "lr_sweep",
                    "--partition", "lr=1e-03", "-c", str(config)], env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((data / "runs" / "lr_sweep" / "lr=1e-03" / "result.json").read_text())
    assert result["steps"] == 3 and result["status"] == "completed"
    # The run is recorded in the instance the subprocess used (DAGSTER_HOME), with its partition.
    os.environ["DAGSTER_HOME"] = str(home)
    try:
        with DagsterInstance.get() as instance:
            event = instance.get_latest_materialization_event(AssetKey("lr_sweep"))
    finally:
        os.environ.pop("DAGSTER_HOME")
    assert event.dagster_event.partition == "lr=1e-03"
    assert event.asset_materialization.metadata["steps"].value == 3
    assert event.asset_materialization.metadata["preset"].value == "test"


def test_unknown_partition_is_rejected(tiny_graph, tmp_path):
    _, _, data = tiny_graph
    proc = run_cli(["dagster", "asset", "materialize", "-m", "cs336_assets", "--select", "lr_sweep",
                    "--partition", "lr=5e-05"], dagster_env(data, tmp_path / "home"))
    assert proc.returncode != 0
    assert "lr=5e-05" in proc.stderr


@pytest.mark.slow
def test_killed_training_run_resumes_from_its_checkpoint(graph_copy, tmp_path):
    """SIGKILL a training asset mid-run; materializing it again continues from ckpt/latest.pt."""
    data = graph_copy.data
    env = dagster_env(data, tmp_path / "dagster_home")
    config = tmp_path / "config.yaml"
    config.write_text("ops:\n  stories_main_run:\n    config:\n      max_steps: 400\n"
                      "      checkpoint_every: 10\n      eval_every: 400\n")
    run_dir = data / "runs" / "stories_main_run"
    args = [sys.executable, "-m", "dagster", "asset", "materialize", "-m", "cs336_assets",
            "--select", "stories_main_run", "-c", str(config)]
    def checkpointed_by_this_run() -> bool:
        try:  # the previous run's directory is archived first; wait for this run's own checkpoint
            return ((run_dir / "ckpt" / "latest.pt").exists() and not (run_dir / "result.json").exists()
                    and json.loads((run_dir / "config.json").read_text())["max_steps"] == 400)
        except (FileNotFoundError, json.JSONDecodeError):
            return False

    first = subprocess.Popen(args, env=env, cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        while not checkpointed_by_this_run():
            assert first.poll() is None, "the run ended before it could be killed"
            assert time.monotonic() < deadline, "no checkpoint appeared"
            time.sleep(0.02)
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
    assert not (run_dir / "result.json").exists(), "killed before finishing"

    second = run_cli(["dagster", "asset", "materialize", "-m", "cs336_assets", "--select", "stories_main_run",
                      "-c", str(config)], env)
    assert second.returncode == 0, second.stderr[-3000:]
    resumed = [line for line in second.stderr.splitlines() if "from its checkpoint at step" in line]
    assert resumed, second.stderr[-3000:]
    resume_step = int(resumed[0].rsplit("step", 1)[1].strip())
    assert 0 < resume_step < 400
    result = json.loads((run_dir / "result.json").read_text())
    assert result["status"] == "completed" and result["steps"] == 400
    steps = [json.loads(line)["step"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(set(steps)) and steps[-1] == 400
