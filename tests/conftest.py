"""Shared fixtures. The asset-graph fixtures materialize the `test` preset once per session."""

import contextlib
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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


@dataclass(frozen=True)
class Graph:
    """A materialized asset graph: its definitions, data dir and Dagster instance directory."""

    defs: Any
    data: Path
    home: Path

    @contextlib.contextmanager
    def instance(self):
        """The graph's persistent (SQLite) instance, holding the history of every materialization."""
        from dagster import DagsterInstance

        with DagsterInstance.from_config(str(self.home)) as instance:
            yield instance


@pytest.fixture(scope="session")
def tiny_graph(tmp_path_factory):
    """The whole asset graph of the `test` preset materialized in-process into a temporary data dir.

    Returns (defs, run results, data dir); the runs are recorded in <data dir>/dagster_home. Tests
    that only read reuse the data dir as their upstream; a test that writes uses `graph_copy`.
    """
    from cs336_assets.definitions import build_defs
    from cs336_assets.demo import materialize_all
    from cs336_assets.resources import ensure_dagster_home

    data_dir = tmp_path_factory.mktemp("cs336_data")
    defs = build_defs("test", data_dir)
    graph = Graph(defs, data_dir, ensure_dagster_home(home=data_dir / "dagster_home", set_env=False))
    with graph.instance() as instance:
        results = materialize_all(defs, instance, log=lambda message: None)
    return defs, results, data_dir


@pytest.fixture
def graph_copy(tiny_graph, tmp_path) -> Graph:
    """A private copy of the session graph (data dir and instance history) with definitions on it.

    Tests that rerun or change assets use this, so no test sees another test's writes.
    """
    from cs336_assets.definitions import build_defs

    data_dir = tmp_path / "data"
    shutil.copytree(tiny_graph[2], data_dir)
    return Graph(build_defs("test", data_dir), data_dir, data_dir / "dagster_home")


def run_cli(args: list[str], env: dict[str, str], timeout: float = 300, cwd: Path = REPO_ROOT):
    return subprocess.run([sys.executable, "-m", *args], env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture
def one_torch_thread():
    """Tiny models run fastest on one thread (and the subprocesses the training tests start use one)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
