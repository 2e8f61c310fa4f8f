"""The command lines: `dagster asset materialize` in a subprocess (one partition with run config; kill
and resume; the project's instance through .env), and the --help of every console script and
`python -m` command (every argument explained, every enumeration listing its values)."""

import json
import os
import re
import signal
import subprocess
import sys
import time
import tomllib
from typing import get_args

import pytest
from dagster import AssetKey, DagsterInstance, DagsterRunStatus
from dagster._core.instance import InstanceRef

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


# ---------------------------------------------------------------------------------------------
# The project's instance is the default of a plain `dagster` command, through the .env make writes


def materialize_from(cwd, env, select="stories_corpus"):
    return subprocess.run([sys.executable, "-m", "dagster", "asset", "materialize", "-m", "cs336_assets",
                           "--select", select], env=env, cwd=cwd, capture_output=True, text=True, timeout=300)


def runs_in(home) -> list:
    with DagsterInstance.from_ref(InstanceRef.from_dir(str(home))) as instance:
        return [(run.status, sorted(key.to_user_string() for key in run.asset_selection or ()))
                for run in instance.get_runs()]


@pytest.mark.slow
def test_a_plain_cli_materialization_lands_in_the_checkouts_instance(tmp_path):
    """`make dotenv` in a stand-in checkout (the Makefile run with that directory as its own, so the
    developer's .env and data/ stay untouched), then `dagster asset materialize` from there, as a
    person types it: no DAGSTER_HOME in the environment."""
    from test_make_dev import make_env

    checkout = tmp_path / "checkout"
    checkout.mkdir()
    made = subprocess.run(["make", "--no-print-directory", "-C", str(checkout), "-f", str(REPO_ROOT / "Makefile"),
                           "dotenv", f"PYTHON={sys.executable}"], env=make_env(), capture_output=True, text=True,
                          timeout=120)
    assert made.returncode == 0, made.stdout + made.stderr
    home = checkout / "data" / "dagster_home"
    assert (home / "dagster.yaml").is_file()

    env = make_env(CS336_PRESET="test", CS336_DATA_DIR=str(checkout / "data"))
    assert "DAGSTER_HOME" not in env
    done = materialize_from(checkout, env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert runs_in(home) == [(DagsterRunStatus.SUCCESS, ["stories_corpus"])]

    # An exported DAGSTER_HOME still wins over .env (the tests' own instances rely on it).
    other = tmp_path / "exported_home"
    other.mkdir()
    (other / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    done = materialize_from(checkout, {**env, "DAGSTER_HOME": str(other)})
    assert done.returncode == 0, done.stderr[-3000:]
    assert runs_in(other) == [(DagsterRunStatus.SUCCESS, ["stories_corpus"])]
    assert len(runs_in(home)) == 1


def test_a_relative_dagster_home_is_refused(tmp_path):
    """Why make writes .env per checkout: Dagster takes only an absolute DAGSTER_HOME, and .env has
    no way to name the directory it sits in."""
    from test_make_dev import make_env

    (tmp_path / "data" / "dagster_home").mkdir(parents=True)
    (tmp_path / ".env").write_text("DAGSTER_HOME=data/dagster_home\n")
    done = materialize_from(tmp_path, make_env(CS336_PRESET="test", CS336_DATA_DIR=str(tmp_path / "data")))
    assert done.returncode != 0
    assert '"data/dagster_home" must be an absolute path' in done.stderr, done.stderr[-3000:]


# ---------------------------------------------------------------------------------------------
# --help: every argument of every command has help text; enumerations list their values


def help_entries(text: str) -> dict[str, str]:
    """invocation -> help text of each argument in argparse's --help (positionals, options, argument
    groups), and of each subcommand of a subcommand list."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line in ("positional arguments:", "options:"))
    entries: dict[str, str] = {}
    current = None
    for line in lines[start:]:
        indent = len(line) - len(line.lstrip(" "))
        if not line.strip() or indent == 0:  # a blank line or a section title
            current = None
            continue
        if indent in (2, 4):  # an argument (2), or a subcommand under a {a,b} list (4)
            invocation, _, help_text = line.strip().partition("  ")
            if invocation.startswith("{"):
                current = None  # the list itself; its subcommands follow
                continue
            current = invocation
            entries[current] = help_text.strip()
        elif current is not None:  # help text wrapped onto the following lines
            entries[current] = (entries[current] + " " + line.strip()).strip()
    return entries


def subcommands(text: str) -> list[str]:
    usage = text.split("\n\n")[0]
    found = re.search(r"\{([a-z0-9_,-]+)\} \.\.\.", usage)  # `{a,b} ...`; an option's choices have no "..."
    return found.group(1).split(",") if found else []


def _enumerations() -> dict[tuple[str, str], tuple]:
    from cs336_assets.presets import PRESETS
    from cs336_core.model import FeedForwardKind, NormPlacement, PositionScheme
    from cs336_core.optim import OPTIMIZERS
    from cs336_core.tokenization import INVALID_UTF8_POLICIES
    from cs336_core.training.config import DEVICES, DTYPES, TOKEN_DTYPES, TRACKERS

    return {
        ("cs336-train", "--token-dtype"): TOKEN_DTYPES, ("cs336-train", "--dtype"): DTYPES,
        ("cs336-train", "--device"): DEVICES, ("cs336-train", "--resume"): ("true", "false", "auto", "never"),
        ("cs336-train", "--tracking"): tuple(t for t in TRACKERS if t), ("cs336-train", "--optimizer"): OPTIMIZERS,
        ("cs336-train", "--norm"): get_args(NormPlacement), ("cs336-train", "--position"): get_args(PositionScheme),
        ("cs336-train", "--ffn"): get_args(FeedForwardKind),
        ("cs336-generate", "--device"): ("auto", "cpu", "cuda", "mps"),
        ("cs336-bpe train", "--invalid-utf8"): INVALID_UTF8_POLICIES,
        ("cs336-bpe encode", "--invalid-utf8"): INVALID_UTF8_POLICIES,
        ("python -m cs336_assets.demo", "--preset"): tuple(PRESETS),
    }


# Each command under the name a person types, and the module `python -m` runs it from.
COMMANDS = {
    "cs336-train": "cs336_core.training",
    "cs336-generate": "cs336_core.generate_cli",
    "cs336-accounting": "cs336_core.accounting",
    "cs336-bpe": "cs336_core.tokenization",
    "python -m cs336_core.corpora": "cs336_core.corpora",
    "python -m cs336_assets.demo": "cs336_assets.demo",
}
def test_help_entries_finds_an_argument_without_help():
    import argparse

    parser = argparse.ArgumentParser(prog="tool")
    commands = parser.add_subparsers(dest="command")
    run = commands.add_parser("run", help="run it")
    run.add_argument("--long-option-name-past-the-help-column", help="wrapped onto the next line")
    run.add_argument("--bare")
    run.add_argument("--mode", choices=["fast", "slow"], help="how")
    assert subcommands(parser.format_help()) == ["run"] and subcommands(run.format_help()) == []
    entries = help_entries(run.format_help())
    assert entries["--long-option-name-past-the-help-column LONG_OPTION_NAME_PAST_THE_HELP_COLUMN"] == \
        "wrapped onto the next line"
    assert entries["--bare BARE"] == "" and entries["--mode {fast,slow}"] == "how"
    assert help_entries(parser.format_help())["run"] == "run it"


def test_every_console_script_is_checked_here():
    scripts = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    for name, target in scripts.items():
        assert name in COMMANDS, f"{name} ({target}) has no --help check in COMMANDS"
        # `python -m` of the module runs the same function the console script calls.
        module, _, function = target.partition(":")
        assert COMMANDS[name] in (module, module.rpartition(".")[0]) and function == "main", (name, target)


@pytest.mark.parametrize("command", list(COMMANDS))
def test_every_argument_has_help_and_enumerations_list_their_values(command):
    env = {**os.environ, "COLUMNS": "100"}

    def help_of(*subcommand: str) -> str:
        done = subprocess.run([sys.executable, "-m", COMMANDS[command], *subcommand, "--help"], env=env,
                              capture_output=True, text=True, timeout=120, cwd=REPO_ROOT)
        assert done.returncode == 0, done.stderr
        return done.stdout

    top = help_of()
    pages = {command: top} | {f"{command} {sub}": help_of(sub) for sub in subcommands(top)}
    missing = []
    for page, text in pages.items():
        entries = help_entries(text)
        assert entries, f"no arguments found in the help of {page}:\n{text}"
        missing += [f"{page}: {invocation}" for invocation, help_text in entries.items() if not help_text]
        for (where, option), values in _enumerations().items():
            if where != page:
                continue
            entry = next((f"{inv} {text}" for inv, text in entries.items() if inv.startswith(option + " ")
                          or inv == option or inv.startswith(option + ",")), None)
            assert entry is not None, f"{page} has no {option}"
            unlisted = [value for value in values if not re.search(rf"(?<![\w-]){re.escape(value)}(?![\w-])", entry)]
            assert not unlisted, f"{page} {option}: its help does not list {unlisted}: {entry!r}"
    assert not missing, "arguments without help text:\n" + "\n".join(missing)
