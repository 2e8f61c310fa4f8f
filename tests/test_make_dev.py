"""The Makefile's setup and `make dev`: no reinstall on every start, TORCH_INDEX only when set, the .env
it writes, and a real `make dev PORT=...` that serves and then stops on SIGTERM and on Ctrl-C.

The helpers here (make_env, installed_make_args, free_port, serve_then_stop) also run the README's
`make dev` lines in test_readme_commands.py.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

from conftest import REPO_ROOT

# Variables an enclosing `make test` exports; a make started here must not inherit its overrides
# (MAKEFLAGS carries command-line variables) nor its DAGSTER_HOME.
_INHERITED = ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES", "DAGSTER_HOME")


def make_env(**extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key not in _INHERITED}
    env.update(extra)
    return env


def installed_make_args(tmp_path: Path) -> list[str]:
    """Make variables for an install already done (the interpreter running these tests has the
    project), with a private .env and project instance: make runs no pip and writes nothing into the
    checkout. The stamp has no prerequisites, so a file another engineer saves meanwhile cannot
    trigger a reinstall in the middle of a test."""
    stamp = tmp_path / "setup.stamp"
    stamp.touch()
    return [f"PYTHON={sys.executable}", f"SETUP_STAMP={stamp}", "INSTALL_INPUTS=",
            f"DOTENV={tmp_path / 'dotenv'}", f"PROJECT_DAGSTER_HOME={tmp_path / 'project_home'}"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def processes_with_marker(marker: str) -> dict[int, str]:
    """pid -> command line of every process whose environment holds `marker`: all that a command
    started with it spawned, even those reparented after their parent exited."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if marker.encode() in (entry / "environ").read_bytes():
                found[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # gone meanwhile, or not ours to read
            continue
    return found


def _kill_all(marker: str) -> None:
    for pid in processes_with_marker(marker):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _answers(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def serve_then_stop(command: list[str], env: dict[str, str], port: int, log: Path, how: str = "SIGTERM",
                    start_timeout: float = 150, stop_timeout: float = 30) -> dict:
    """Run `command` (a `make dev`), wait until the webserver answers on 127.0.0.1:`port`, stop it the
    way a person would (`SIGTERM` to make, or `Ctrl-C`: SIGINT to the whole foreground process
    group), and wait until every process it started has exited. Returns what was seen; kills what
    is left either way, so a failing test leaves nothing running."""
    marker = f"CS336_TEST_MARKER_{uuid.uuid4().hex}"
    env = {**env, marker: "1"}
    with open(log, "w") as out:
        proc = subprocess.Popen(command, env=env, cwd=REPO_ROOT, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        deadline = time.monotonic() + start_timeout
        while not _answers(port):
            assert proc.poll() is None, f"{command} exited with {proc.returncode}:\n{log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"nothing answered on port {port}:\n{log.read_text()[-3000:]}"
            time.sleep(0.5)
        running = processes_with_marker(marker)
        start = time.monotonic()
        if how == "SIGTERM":
            proc.send_signal(signal.SIGTERM)
        else:
            os.killpg(proc.pid, signal.SIGINT)
        try:
            returncode = proc.wait(timeout=stop_timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"make dev did not exit within {stop_timeout} s of {how}:\n{log.read_text()[-3000:]}")
        exited_after = time.monotonic() - start
        # The code server winds down on its own a moment after dagster dev asks it to.
        while processes_with_marker(marker) and time.monotonic() - start < stop_timeout:
            time.sleep(0.2)
        return {"running": running, "left": processes_with_marker(marker), "returncode": returncode,
                "exited_after": exited_after, "log": log.read_text()}
    finally:
        _kill_all(marker)


@pytest.mark.slow
@pytest.mark.parametrize("how", ["SIGTERM", "Ctrl-C"])
def test_make_dev_serves_on_its_port_and_stops_cleanly(tmp_path, how):
    port = free_port()
    env = make_env(CS336_PRESET="test", CS336_DATA_DIR=str(tmp_path / "data"), DAGSTER_HOME=str(tmp_path / "home"))
    seen = serve_then_stop(["make", "--no-print-directory", "dev", f"PORT={port}", *installed_make_args(tmp_path)],
                           env, port, tmp_path / "make_dev.log", how)

    dagster = [cmd for cmd in seen["running"].values() if " -m dagster dev " in cmd]
    # make's shell gave way to `$(PYTHON) -m dagster dev` (exec), on PORT, with the interpreter we named.
    assert len(dagster) == 1 and dagster[0].startswith(f"{sys.executable} -m dagster dev ") \
        and f"-p {port}" in dagster[0], seen["running"]
    assert any("dagster_webserver" in cmd for cmd in seen["running"].values()), seen["running"]
    assert not any(" pip " in cmd for cmd in seen["running"].values())
    assert "Shutting down Dagster services" in seen["log"] and "Dagster services shut down" in seen["log"], seen["log"]
    assert "did not terminate cleanly" not in seen["log"], seen["log"]
    assert seen["exited_after"] < 30
    assert not seen["left"], f"still running after {how}: {seen['left']}"
    # make ends by the signal it received (it re-raises it after its child is done).
    assert seen["returncode"] == (-signal.SIGTERM if how == "SIGTERM" else -signal.SIGINT), seen["returncode"]
    # The instance make dev prepared is the exported DAGSTER_HOME, not the checkout's data/.
    assert (tmp_path / "home" / "dagster.yaml").is_file()


def dry_run(*args: str) -> str:
    done = subprocess.run(["make", "-n", "--no-print-directory", *args], env=make_env(), cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_make_dev_installs_only_when_the_packaging_changed(tmp_path):
    stamp = tmp_path / "setup.stamp"
    stamp.touch()
    args = ["dev", "PORT=4321", "PYTHON=venv/bin/python", f"SETUP_STAMP={stamp}",
            f"DOTENV={tmp_path / 'dotenv'}", f"PROJECT_DAGSTER_HOME={tmp_path / 'home'}"]
    # A stamp newer than pyproject.toml, setup.py and the C source (an hour ahead, so that a file
    # saved meanwhile cannot change the answer): a start installs nothing.
    os.utime(stamp, (time.time() + 3600,) * 2)
    fresh = dry_run(*args)
    assert "pip install" not in fresh, fresh
    assert "exec venv/bin/python -m dagster dev -w workspace.yaml -h 127.0.0.1 -p 4321" in fresh, fresh
    # A stamp older than them: the next start installs again, into PYTHON.
    os.utime(stamp, (0, 0))
    stale = dry_run(*args)
    assert "venv/bin/python -m pip install -q -e ." in stale, stale


# A stand-in interpreter: logs each call; `import torch` succeeds when STUB_TORCH=1. It lets the
# setup recipe run for real (its shell logic, the stamp, .env) without pip or a network.
STUB_PYTHON = """#!/bin/sh
printf '%s\\n' "$*" >> "$STUB_LOG"
case "$*" in
  *"import torch"*) [ "$STUB_TORCH" = 1 ];;
  *hashlib*) echo stub;;
esac
"""


@pytest.fixture
def stub(tmp_path):
    python = tmp_path / "python"
    python.write_text(STUB_PYTHON)
    python.chmod(0o755)
    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    inputs = tmp_path / "pyproject.toml"
    inputs.write_text("")
    log = tmp_path / "calls.log"

    def setup(torch_installed: bool, *args: str) -> tuple[list[str], str]:
        log.write_text("")
        done = subprocess.run(
            ["make", "--no-print-directory", "setup", f"PYTHON={python}", f"STAMP_DIR={tmp_path / 'stamps'}",
             f"INSTALL_INPUTS={inputs}", f"DOTENV={tmp_path / 'dotenv'}", f"PROJECT_DAGSTER_HOME={home}", *args],
            env=make_env(STUB_LOG=str(log), STUB_TORCH="1" if torch_installed else "0"), cwd=REPO_ROOT,
            capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stdout + done.stderr
        pip = [line for line in log.read_text().splitlines() if line.startswith("-m pip")]
        return pip, done.stdout

    return setup, tmp_path, inputs


def test_setup_keeps_an_installed_torch_and_does_not_reinstall_until_the_inputs_change(stub):
    setup, tmp_path, inputs = stub
    pip, out = setup(True, "TORCH_INDEX=/srv/wheels/cpu")
    assert pip == ["-m pip install -q -e ."], pip  # the torch there is kept, TORCH_INDEX or not
    assert "keeping the installed torch" in out
    assert setup(True)[0] == []  # a second run: nothing installed
    os.utime(inputs, (time.time() + 3600,) * 2)  # the packaging changed
    assert setup(True)[0] == ["-m pip install -q -e ."]


def test_setup_installs_torch_from_torch_index_only_when_it_is_set(stub, tmp_path):
    setup, _, _ = stub
    pip, out = setup(False, "TORCH_INDEX=/srv/wheels/cpu")
    assert pip == ["-m pip install --index-url /srv/wheels/cpu torch==2.13.0", "-m pip install -q -e ."], pip

    (tmp_path / "stamps").rename(tmp_path / "old_stamps")  # another fresh machine, TORCH_INDEX unset
    pip, out = setup(False)
    assert pip == ["-m pip install torch==2.13.0", "-m pip install -q -e ."], pip
    # The message says what plain PyPI brings and how to get the CPU build.
    assert "CUDA build" in out and "TORCH_INDEX=https://download.pytorch.org/whl/cpu" in out, out


def test_setup_writes_dotenv_naming_the_project_instance_and_keeps_other_lines(stub):
    setup, tmp_path, _ = stub
    dotenv = tmp_path / "dotenv"
    dotenv.write_text("MY_SETTING=1\nDAGSTER_HOME=/an/old/checkout/data/dagster_home\n")
    setup(True)
    home = tmp_path / "home"
    # An exported DAGSTER_HOME still wins: python-dotenv (what Dagster reads .env with) expands it.
    assert dotenv.read_text().splitlines() == ["MY_SETTING=1", f'DAGSTER_HOME="${{DAGSTER_HOME:-{home}}}"']
    from dotenv import dotenv_values

    saved = os.environ.pop("DAGSTER_HOME", None)
    try:
        assert dotenv_values(dotenv)["DAGSTER_HOME"] == str(home)
        os.environ["DAGSTER_HOME"] = "/exported/home"
        assert dotenv_values(dotenv)["DAGSTER_HOME"] == "/exported/home"
    finally:
        os.environ.pop("DAGSTER_HOME", None)
        if saved is not None:
            os.environ["DAGSTER_HOME"] = saved
