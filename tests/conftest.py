"""Shared fixtures. The asset-graph fixtures materialize the `test` preset once per session."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent


def dagster_env(data_dir: Path, dagster_home: Path, preset: str = "test") -> dict[str, str]:
    """Environment for a dagster subprocess: the test preset, its own data dir and instance."""
    from cs336_assets.resources import ensure_dagster_home

    home = ensure_dagster_home(home=dagster_home, set_env=False)
    env = dict(os.environ)
    env.update({"CS336_PRESET": preset, "CS336_DATA_DIR": str(data_dir), "DAGSTER_HOME": str(home),
                "PYTHONPATH": str(REPO_ROOT) + os.pathsep + env.get("PYTHONPATH", "")})
    return env


@pytest.fixture(scope="session")
def tiny_graph(tmp_path_factory):
    """The whole asset graph of the `test` preset materialized in-process into a temporary data dir.

    Returns (defs, run results, data dir). Later tests reuse the data dir as their upstream.
    """
    from dagster import DagsterInstance

    from cs336_assets.definitions import build_defs
    from cs336_assets.demo import materialize_all

    data_dir = tmp_path_factory.mktemp("cs336_data")
    defs = build_defs("test", data_dir)
    with DagsterInstance.ephemeral() as instance:
        results = materialize_all(defs, instance, log=lambda message: None)
    return defs, results, data_dir


def run_cli(args: list[str], env: dict[str, str], timeout: float = 300, cwd: Path = REPO_ROOT):
    return subprocess.run([sys.executable, "-m", *args], env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=timeout)
