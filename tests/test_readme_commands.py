"""Every command in the README's ```bash blocks runs, as written, in a fresh directory; one that fails
is a test failure.

Each block is one test (its commands in order, in a private working directory). What the test
changes, and why, is all in this file, in three tables:

- SIZES: a few sizes made smaller (`--steps 300` -> `--steps 10`): the commands stay the same
  commands, only cheaper. Each entry must still match the README, so a README edit cannot silently
  escape them.
- the environment: `CS336_PRESET=test`, `CS336_DATA_DIR` and `DAGSTER_HOME` in the test's directory
  (a command's own `VAR=value` prefix still wins), absolute paths redirected under it, `make`
  told that the install is done (the interpreter running the tests has the project) and
  `make dev` given a free port. `dagster`, `python` and the console scripts are this interpreter's.
- SKIPS: the commands not run here, each with its reason (a GPU, the network, or this test suite
  itself).
"""

from __future__ import annotations

import importlib.util
import json
import re
import shlex
import subprocess
import sys
import sysconfig
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from conftest import REPO_ROOT
from test_make_dev import free_port, installed_make_args, make_env, serve_then_stop

README = REPO_ROOT / "README.md"

SIZES = {
    "--bytes 2e6": "--bytes 2e5",
    "--max-bytes 2e6": "--max-bytes 2e5",
    "--steps 300": "--steps 10",
}
# The `cpu` preset's rehearsal at the smallest shapes its script takes, into the test's directory.
REHEARSAL_ARGS = "REHEARSAL_ARGS=--slice-mb 0.2 --valid-mb 0.05 --steps 2 --eval-batches 1 --batch-size 2"


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


# (what the command starts with, after its VAR=value prefix; reason) for the commands not run.
SKIPS = [
    ("make test", lambda: "it is this test suite: running it here would run this test again"),
    ("make demo TORCH_INDEX=", lambda: "installs torch from PyPI's or PyTorch's index (the network) where none is "
                                       "installed; its Makefile logic runs in test_make_dev.py with a stand-in "
                                       "interpreter"),
    ("make gpu-check", lambda: None if _cuda() else "needs a CUDA GPU (the --dry-run line runs here)"),
]


def _skip_reason(argv: list[str], env: dict[str, str]) -> str | None:
    text = " ".join(argv)
    if text.startswith("make gpu-check") and "--dry-run" in text:
        return None
    if "--tracking wandb" in text and importlib.util.find_spec("wandb") is None:
        return "wandb is not installed (an optional tracker, not a dependency); tests/test_tracking.py covers it"
    for prefix, reason in SKIPS:
        if text.startswith(prefix):
            return reason()
    return None


@dataclass
class Command:
    line: str
    env: dict[str, str] = field(default_factory=dict)  # the command's own VAR=value prefix
    argv: list[str] = field(default_factory=list)


def readme_blocks() -> list[list[Command]]:
    """The README's ```bash blocks, one Command per line (comments dropped)."""
    blocks = re.findall(r"^[ \t]*```bash\n(.*?)^[ \t]*```", README.read_text(encoding="utf-8"), re.M | re.S)
    parsed = []
    for block in blocks:
        commands = []
        for line in block.splitlines():
            words = shlex.split(line, comments=True)
            if not words:
                continue
            assert not {"|", "&&", ";", ">", "<"} & set(words), f"one command per line, please: {line}"
            env = {}
            while "=" in words[0] and not words[0].startswith("-"):
                key, _, value = words.pop(0).partition("=")
                env[key] = value
            commands.append(Command(line.split(" #")[0].strip(), env, words))
        parsed.append(commands)
    return parsed


def readme_yaml() -> str:
    blocks = re.findall(r"^```yaml\n(.*?)^```", README.read_text(encoding="utf-8"), re.M | re.S)
    assert len(blocks) == 1, "the README has one run config (the -c run.yaml example)"
    return blocks[0]


BLOCKS = readme_blocks()


def test_the_readme_still_has_what_this_test_substitutes():
    text = README.read_text(encoding="utf-8")
    for original in SIZES:
        assert original in text, f"SIZES has {original!r}, which the README no longer says: update SIZES"
    assert any("-c run.yaml" in command.line for block in BLOCKS for command in block)
    # The two fresh-machine commands come first.
    assert [command.line.split()[:2] for command in BLOCKS[0]] == [["make", "demo"], ["make", "test"]]


class Runner:
    """Runs README commands in `work` as a person would, with the substitutions the module docstring lists."""

    def __init__(self, work: Path):
        self.work = work
        self.work.mkdir(parents=True, exist_ok=True)
        self.env = make_env(CS336_PRESET="test", CS336_DATA_DIR=str(work / "data"),
                            DAGSTER_HOME=str(work / "dagster_home"), COLUMNS="120")
        # The instance any make target prepares (the README's dagster commands come after `make demo`).
        from cs336_assets.resources import ensure_dagster_home

        ensure_dagster_home(home=work / "dagster_home", set_env=False)

    def _redirect(self, word: str) -> str:
        """An absolute path outside the test's directory (also as VAR=/path) goes under it."""
        key, eq, value = word.rpartition("=") if "=" in word and not word.startswith("/") else ("", "", word)
        if value.startswith("/") and not value.startswith(str(self.work)):
            value = str(self.work / "abs" / value.lstrip("/"))
        return f"{key}{eq}{value}"

    def prepare(self, command: Command) -> tuple[list[str], dict[str, str], str | None]:
        """(argv, env, skip reason) of a README command."""
        line = command.line
        for original, smaller in SIZES.items():
            line = line.replace(original, smaller)
        words = shlex.split(line)
        env = dict(self.env)
        while "=" in words[0] and not words[0].startswith("-"):
            key, _, value = self._redirect(words.pop(0)).partition("=")
            env[key] = value
        reason = _skip_reason(words, env)
        words = [self._redirect(word) for word in words]
        program = words[0]
        if program == "python":
            words[0] = sys.executable
        elif program == "dagster":
            words[:1] = [sys.executable, "-m", "dagster"]
        elif program.startswith("cs336-"):
            script = Path(sysconfig.get_path("scripts")) / program
            assert script.exists(), f"{program} is not installed beside {sys.executable}"
            words[0] = str(script)
        elif program == "make":
            words = [word if not word.startswith("PYTHON=") else f"PYTHON={sys.executable}" for word in words]
            state = self.work / f"make_{len(list(self.work.glob('make_*')))}"
            state.mkdir()
            words += installed_make_args(state)
            if words[1] == "bench-rehearsal":
                words += [REHEARSAL_ARGS, f"REHEARSAL_OUT={self.work / 'rehearsal'}"]
        return words, env, reason

    def run(self, command: Command, timeout: float = 600) -> subprocess.CompletedProcess:
        argv, env, _ = self.prepare(command)
        # make runs from the checkout, where the Makefile is (what it writes is redirected, see
        # prepare); every other command from the test's directory, which holds run.yaml.
        cwd = REPO_ROOT if command.argv[0] == "make" else self.work
        done = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)
        assert done.returncode == 0, (f"README command failed: {command.line}\n(run as {argv})\n"
                                      f"{done.stdout[-2000:]}\n{done.stderr[-4000:]}")
        return done

    def serve(self, command: Command, tmp_path: Path) -> None:
        """`make dev ...`: it must serve on its port, then stop cleanly on SIGTERM."""
        argv, env, _ = self.prepare(command)
        port = free_port()
        argv = [word for word in argv if not word.startswith("PORT=")] + [f"PORT={port}"]
        seen = serve_then_stop(argv, env, port, tmp_path / f"make_dev_{port}.log")
        assert not seen["left"], f"{command.line}: still running after SIGTERM: {seen['left']}"


def _is_server(command: Command) -> bool:
    return command.argv[:2] == ["make", "dev"]


def _slow(block: list[Command]) -> bool:
    """Blocks that start a server, train, or materialize take more than ~20 s."""
    return any(c.argv[0] in ("make", "dagster", "cs336-train") for c in block)


def _check(command: Command, done: subprocess.CompletedProcess, runner: Runner) -> None:
    """What each kind of command must have produced, beyond exiting 0."""
    work, argv = runner.work, command.argv
    option = {argv[i]: argv[i + 1] for i in range(len(argv) - 1) if argv[i].startswith("--")}
    if argv[0] == "cs336-train":
        out = work / option["--out-dir"]
        assert json.loads((out / "result.json").read_text())["status"] == "completed"
        config = json.loads((out / "config.json").read_text())
        if "--optimizer" in option:  # the leaderboard options reached the run's config
            assert config["optimizer"] == option["--optimizer"] and config["z_loss"] == float(option["--z-loss"])
            assert config["model"]["qk_norm"] and config["model"]["zero_init_output"]
            assert config["model"]["ffn"] == option["--ffn"]
            assert config["model"]["logit_softcap"] == float(option["--logit-softcap"])
        if option.get("--tracking") == "tensorboard":
            assert list((out / "tensorboard").rglob("events.out.tfevents.*"))
        if "--max-wall-seconds" in option:
            assert config["max_wall_seconds"] == float(option["--max-wall-seconds"])
    elif argv[0] == "cs336-generate":
        assert done.stdout.strip(), "no text generated"
    elif argv[0] == "cs336-bpe":
        target = option.get("--output") or Path(option["--out-dir"]) / "merges.txt"
        assert (work / target).stat().st_size > 0
    elif argv[:3] == ["python", "-m", "cs336_core.corpora"]:
        assert json.loads(done.stdout)
    elif argv[0] == "cs336-accounting":
        assert "GPT-2 XL" in done.stdout
    elif argv[0] == "dagster":
        from dagster import DagsterInstance, DagsterRunStatus
        from dagster._core.instance import InstanceRef

        with DagsterInstance.from_ref(InstanceRef.from_dir(runner.env["DAGSTER_HOME"])) as instance:
            latest = instance.get_runs(limit=1)[0]
        assert latest.status == DagsterRunStatus.SUCCESS
        if "-c" in argv:  # the run config was applied: the sweep point ran the steps it names
            partition = option["--partition"]
            steps = int(re.search(r"max_steps: (\d+)", readme_yaml()).group(1))
            result = work / "data" / "runs" / option["--select"] / partition / "result.json"
            assert json.loads(result.read_text())["steps"] == steps
    elif argv[:2] == ["make", "demo"]:
        assert (work / "data" / "report" / "report.md").is_file()
    elif argv[:2] == ["make", "gpu-check"]:
        out = runner._redirect(next(w for w in argv if w.startswith("GPU_CHECK_OUT="))).partition("=")[2]
        assert json.loads((Path(out) / "gpu_check.json").read_text())
    elif argv[:2] == ["make", "bench-rehearsal"]:
        assert json.loads((work / "rehearsal" / "cpu_rehearsal.json").read_text())


def run_block(block: list[Command], runner: Runner, tmp_path: Path) -> list[str]:
    """Runs a block's commands in order; returns the skip reasons of those not run."""
    skipped = []
    for command in block:
        _, _, reason = runner.prepare(command)
        if reason:
            skipped.append(f"{command.line}: {reason}")
            continue
        if command.line.endswith("-c run.yaml") or " -c run.yaml " in command.line:
            (runner.work / "run.yaml").write_text(readme_yaml())
        if _is_server(command):
            runner.serve(command, tmp_path)
            continue
        done = runner.run(command)
        _check(command, done, runner)
    return skipped


@pytest.fixture(scope="module")
def cli_walkthrough(tmp_path_factory):
    """The block that goes from a corpus to generated text: later blocks train from its run."""
    index = next(i for i, block in enumerate(BLOCKS) if any(c.argv[0] == "cs336-generate" for c in block))
    runner = Runner(tmp_path_factory.mktemp("readme_cli"))
    skipped = run_block(BLOCKS[index], runner, runner.work)
    return index, runner, skipped


def _needs_walkthrough(block: list[Command]) -> bool:
    return any("data/cli/run/" in c.line for c in block) and not any(c.argv[0] == "cs336-generate" for c in block)


@pytest.mark.parametrize("index", [
    pytest.param(i, id=block[0].line[:60], marks=[pytest.mark.slow] if _slow(block) else [])
    for i, block in enumerate(BLOCKS)])
def test_readme_block(index, tmp_path, request):
    block = BLOCKS[index]
    if _needs_walkthrough(block) or any(c.argv[0] == "cs336-generate" for c in block):
        walkthrough_index, runner, skipped = request.getfixturevalue("cli_walkthrough")
        if walkthrough_index != index:
            skipped = run_block(block, runner, tmp_path)
    else:
        skipped = run_block(block, Runner(tmp_path / "work"), tmp_path)
    ran = len(block) - len(skipped)
    if skipped:
        # Every command of the block was either run or is skipped for a stated reason.
        if not ran:
            pytest.skip("; ".join(skipped))
        print("not run:", *skipped, sep="\n  ")


def test_every_sh_block_needs_the_network_or_the_users_own_files():
    """```sh blocks are the README's examples that cannot run here as written: downloads (the network)
    and runs on the user's own TinyStories/OpenWebText copies or the leaderboard's H100 run (tested on
    small local files in test_own_corpora.py and test_leaderboard_assets.py). Anything else belongs in
    a ```bash block, which the tests above run."""
    blocks = re.findall(r"^[ \t]*```sh\n(.*?)^[ \t]*```", README.read_text(encoding="utf-8"), re.M | re.S)
    assert blocks, "the README's own-data section has its examples in ```sh blocks"
    for block in blocks:
        for line in block.splitlines():
            words = shlex.split(line, comments=True)
            if not words:
                continue
            text = " ".join(words)
            needs_outside = (words[0] == "wget" or "CS336_STORIES_" in text or "CS336_WEB_" in text
                             or "CS336_PRESET=leaderboard" in text or "CS336_PRESET=cpu" in text)
            assert needs_outside, f"{line!r} needs neither the network nor the user's files: put it in a bash block"
