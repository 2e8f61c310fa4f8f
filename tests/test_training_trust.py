"""Core training promises that must hold under misuse: one writer per run directory, resume only
what was started with the same config, a clean stop on request, checkpoints that survive their own
corruption and a full disk."""

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from cs336_core.model import ModelConfig
from cs336_core.training import (
    RESUME_MAY_CHANGE,
    CheckpointError,
    LauncherWatch,
    ResumeMismatch,
    RunLock,
    RunLockedError,
    TrainConfig,
    config_from_args,
    read_checkpoint,
    resume_or_archive,
    save_checkpoint,
    torch_threads,
    train,
)

TINY_MODEL = dict(vocab_size=64, context_length=16, d_model=32, num_layers=1, num_heads=2, d_ff=64)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def token_files(tmp_path):
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, 64, size=20_000).astype(np.uint16)
    np.save(tmp_path / "train.npy", tokens[:18_000])
    np.save(tmp_path / "valid.npy", tokens[18_000:])
    return tmp_path / "train.npy", tmp_path / "valid.npy"


def make_config(token_files, out_dir, **overrides) -> TrainConfig:
    train_path, valid_path = token_files
    fields = dict(
        train_path=str(train_path), valid_path=str(valid_path), out_dir=str(out_dir), model=ModelConfig(**TINY_MODEL),
        batch_size=8, max_steps=40, lr_max=1e-2, warmup_steps=4, eval_every=20, eval_batches=2, log_every=5,
        checkpoint_every=10, device="cpu",
    )
    fields.update(overrides)
    return TrainConfig(**fields)


def stop_at(step: int):
    """A should_stop that says yes from `step` on, reading the step from the progress callback."""
    seen = {"step": 0}
    return (lambda phase, now, total: seen.update(step=now)), (lambda: seen["step"] >= step)


def params(path) -> dict[str, torch.Tensor]:
    return read_checkpoint(path)["model"]


def assert_same_params(a: dict, b: dict):
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name


def snapshot(run_dir: Path) -> dict[str, bytes]:
    return {str(p.relative_to(run_dir)): p.read_bytes() for p in sorted(run_dir.rglob("*")) if p.is_file()}


# ---------------------------------------------------------------------------------------------
# One writer per run directory


def wait_for(condition, process: subprocess.Popen, what: str, limit: float = 120):
    """Poll `condition` while `process` lives; the limit only keeps a broken run from hanging the suite."""
    deadline = time.monotonic() + limit
    while not condition():
        assert process.poll() is None, f"the process ended before {what}: {process.stderr.read()[-2000:]}"
        assert time.monotonic() < deadline, f"no {what}"
        time.sleep(0.02)


def test_a_second_writer_fails_at_once_naming_the_directory_and_the_holders_pid(tmp_path, token_files):
    first = make_config(token_files, tmp_path / "run", max_steps=10**6, checkpoint_every=50, eval_every=0)
    (tmp_path / "first.json").write_text(first.to_json())
    holder = subprocess.Popen([sys.executable, "-m", "cs336_core.training", "--config", str(tmp_path / "first.json")],
                              env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True)
    run_dir = tmp_path / "run"
    try:
        wait_for(lambda: (run_dir / "ckpt" / "latest.pt").exists(), holder, "first checkpoint")
        second = make_config(token_files, run_dir, lr_max=3e-3, max_steps=5, resume="never")
        with pytest.raises(RunLockedError) as raised:
            train(second)
        assert str(run_dir) in str(raised.value) and f"pid {holder.pid}" in str(raised.value)
        assert not (tmp_path / "_archive").exists(), "the refused writer moved the running run"
        # The same refusal from a second cs336-train process, as a one-line error and a failing exit code.
        (tmp_path / "second.json").write_text(second.to_json())
        refused = subprocess.run([sys.executable, "-m", "cs336_core.training", "--config", str(tmp_path / "second.json")],
                                 env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True,
                                 timeout=120)
        assert refused.returncode != 0 and refused.stdout == ""
        assert f"pid {holder.pid}" in refused.stderr and str(run_dir) in refused.stderr
        assert "Traceback" not in refused.stderr
        assert json.loads((run_dir / "config.json").read_text())["lr_max"] == first.lr_max
        assert holder.poll() is None, "the first writer was disturbed"
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    # A killed holder's lock dies with it: the directory can be taken over (and the old run is archived).
    result = train(make_config(token_files, run_dir, lr_max=3e-3, max_steps=5, resume="never"))
    assert result.status == "completed" and result.steps == 5
    [archived] = (tmp_path / "_archive").iterdir()
    assert json.loads((archived / "config.json").read_text())["max_steps"] == 10**6


def test_run_lock_is_reentrant_in_its_thread_and_refused_to_other_threads(tmp_path, token_files):
    config = make_config(token_files, tmp_path / "run", max_steps=5)
    refused = []

    def other_thread():
        try:
            with RunLock(tmp_path / "run"):
                refused.append(False)
        except RunLockedError as error:
            refused.append(str(error))

    with RunLock(tmp_path / "run"):
        result = train(config)  # the holder itself trains: no deadlock, no refusal
        thread = threading.Thread(target=other_thread)
        thread.start()
        thread.join()
    assert result.status == "completed"
    assert refused and refused[0] and "another thread of this process" in refused[0]
    with RunLock(tmp_path / "run"):  # released when the outermost holder left
        pass


# ---------------------------------------------------------------------------------------------
# Resume only what was started with the same config


@pytest.mark.parametrize("change", [
    dict(lr_max=3e-3), dict(batch_size=4), dict(seed=1), dict(max_steps=80), dict(dtype="bfloat16"),
    dict(weight_decay=0.0), dict(eval_batches=3), dict(model={**TINY_MODEL, "num_layers": 2}),
])
def test_resume_refuses_a_run_started_with_another_config(tmp_path, token_files, change):
    train(make_config(token_files, tmp_path / "run"))
    before = snapshot(tmp_path / "run")
    with pytest.raises(ResumeMismatch) as raised:
        train(make_config(token_files, tmp_path / "run", **change))
    field = next(iter(change))
    listed = [d.split(":")[0] for d in raised.value.differences]
    assert (field if field != "model" else "model.num_layers") in listed
    assert str(tmp_path / "run" / "ckpt" / "latest.pt") in str(raised.value) and "resume='never'" in str(raised.value)
    assert snapshot(tmp_path / "run") == before, "a refused resume changed the run directory"


def test_resume_refuses_other_data_under_the_same_path(tmp_path, token_files):
    train(make_config(token_files, tmp_path / "run"))
    np.save(token_files[0], np.load(token_files[0])[:10_000])  # the token file rebuilt in place
    with pytest.raises(ResumeMismatch, match=r"size of train_path .*train\.npy: \d+ bytes stored, \d+ now"):
        train(make_config(token_files, tmp_path / "run"))


def test_start_over_archives_the_earlier_run(tmp_path, token_files):
    first = train(make_config(token_files, tmp_path / "run", max_steps=20))
    result = train(make_config(token_files, tmp_path / "run", max_steps=10, lr_max=3e-3, seed=2, resume="never"))
    assert result.status == "completed" and result.steps == 10  # trained afresh, not on top of step 20
    assert read_checkpoint(tmp_path / "run" / "ckpt" / "final.pt")["iteration"] == 10
    [archived] = (tmp_path / "_archive").iterdir()
    assert archived.name.startswith("run-")
    assert json.loads((archived / "result.json").read_text()) == first.to_dict()


def test_cadence_may_change_on_resume_and_the_result_is_unchanged(tmp_path, token_files):
    assert {"log_every", "eval_every", "checkpoint_every"} <= set(RESUME_MAY_CHANGE)
    train(make_config(token_files, tmp_path / "straight"))
    progress, should_stop = stop_at(17)
    stopped = train(make_config(token_files, tmp_path / "run"), progress=progress, should_stop=should_stop)
    assert stopped.status == "interrupted" and stopped.steps == 17
    recadenced = make_config(token_files, tmp_path / "run", log_every=2, eval_every=8, checkpoint_every=3)
    result = train(recadenced)
    assert result.status == "completed" and result.steps == 40
    assert_same_params(params(tmp_path / "straight" / "ckpt" / "final.pt"), params(tmp_path / "run" / "ckpt" / "final.pt"))
    assert TrainConfig.from_json((tmp_path / "run" / "config.json").read_text()) == recadenced


def test_a_run_without_checkpoint_is_compared_by_its_config_json(tmp_path, token_files):
    # A run that never checkpointed (checkpoint_every=0, killed or diverged early) still owns its files.
    train(make_config(token_files, tmp_path / "run", max_steps=5, checkpoint_every=0,
                      lr_max=50.0, warmup_steps=0, grad_clip=None))
    assert not (tmp_path / "run" / "ckpt" / "latest.pt").exists()
    before = snapshot(tmp_path / "run")
    with pytest.raises(ResumeMismatch, match=r"config\.json.*lr_max: 50\.0 stored, 0\.01 now"):
        train(make_config(token_files, tmp_path / "run", max_steps=5, checkpoint_every=0))
    assert snapshot(tmp_path / "run") == before


def test_cli_resume_modes(tmp_path):
    base = ["--train", "t.npy", "--out-dir", str(tmp_path), "--steps", "5", "--vocab-size", "64"]
    assert config_from_args(base + ["--resume", "never"]).resume is False
    assert config_from_args(base + ["--resume", "auto"]).resume is True
    assert config_from_args(base + ["--resume"]).resume is True
    with pytest.raises(SystemExit):
        config_from_args(base + ["--resume", "sometimes"])


def test_a_rerun_resumes_an_unfinished_run_and_archives_a_finished_or_changed_one(tmp_path, token_files):
    run, heard = tmp_path / "run", []
    assert resume_or_archive(make_config(token_files, run), log=heard.append) == 0 and not heard  # nothing there
    progress, should_stop = stop_at(13)
    train(make_config(token_files, run), progress=progress, should_stop=should_stop)
    assert resume_or_archive(make_config(token_files, run), log=heard.append) == 13 and not heard
    assert resume_or_archive(make_config(token_files, run, lr_max=3e-3), log=heard.append) == 0
    assert not run.exists() and "lr_max: 0.01 stored, 0.003 now" in heard[-1]
    train(make_config(token_files, run, max_steps=5))
    assert resume_or_archive(make_config(token_files, run, max_steps=5), log=heard.append) == 0
    assert not run.exists() and heard[-1].endswith("because it had finished")
    assert len(list((tmp_path / "_archive").iterdir())) == 2


def test_launcher_watch_stops_once_the_parent_process_is_gone(monkeypatch):
    watch = LauncherWatch()
    assert watch.parent == os.getppid() and not watch()
    monkeypatch.setattr(os, "getppid", lambda: watch.parent + 1)  # re-parented: the launcher died
    assert watch()


def test_torch_threads_sets_the_count_for_a_block_and_zero_leaves_it():
    before = torch.get_num_threads()
    with torch_threads(2):
        assert torch.get_num_threads() == 2
    assert torch.get_num_threads() == before
    with torch_threads(0):
        assert torch.get_num_threads() == before


# ---------------------------------------------------------------------------------------------
# Stop on request


def test_should_stop_checkpoints_and_resume_matches_a_straight_run(tmp_path, token_files):
    train(make_config(token_files, tmp_path / "straight"))
    progress, should_stop = stop_at(13)
    stopped = train(make_config(token_files, tmp_path / "run"), progress=progress, should_stop=should_stop)
    assert stopped.status == "interrupted" and stopped.steps == 13 and "step 13" in stopped.message
    assert stopped.final_val_loss is None
    assert stopped.checkpoint_path == str(tmp_path / "run" / "ckpt" / "latest.pt")
    assert read_checkpoint(stopped.checkpoint_path)["iteration"] == 13
    assert not (tmp_path / "run" / "ckpt" / "final.pt").exists()
    assert not (tmp_path / "run" / "result.json").exists(), "an interrupted run must not look finished"

    resumed = train(make_config(token_files, tmp_path / "run"))
    assert resumed.status == "completed" and resumed.steps == 40
    assert_same_params(params(tmp_path / "straight" / "ckpt" / "final.pt"), params(tmp_path / "run" / "ckpt" / "final.pt"))


# ---------------------------------------------------------------------------------------------
# Checkpoints that survive their own corruption


def damage(path: Path, how: str) -> None:
    data = path.read_bytes()
    path.write_bytes({"truncated": data[: len(data) // 2], "garbage": os.urandom(4096), "empty": b""}[how])


def interrupted_run_with_two_checkpoints(token_files, out_dir) -> None:
    """Checkpoints at 10 and 20, stopped at 25: previous.pt holds step 20, latest.pt step 25."""
    progress, should_stop = stop_at(25)
    train(make_config(token_files, out_dir), progress=progress, should_stop=should_stop)
    assert read_checkpoint(out_dir / "ckpt" / "latest.pt")["iteration"] == 25
    assert read_checkpoint(out_dir / "ckpt" / "previous.pt")["iteration"] == 20


@pytest.mark.parametrize("how", ["truncated", "garbage", "empty"])
def test_damaged_latest_checkpoint_falls_back_to_the_previous_one(tmp_path, token_files, how):
    train(make_config(token_files, tmp_path / "straight"))
    run = tmp_path / "run"
    interrupted_run_with_two_checkpoints(token_files, run)
    damage(run / "ckpt" / "latest.pt", how)
    with pytest.warns(RuntimeWarning, match=rf"{run / 'ckpt' / 'latest.pt'} is not a readable checkpoint.*"
                                            rf"previous checkpoint .*previous\.pt \(step 20\)"):
        result = train(make_config(token_files, run))
    assert result.status == "completed" and result.steps == 40
    assert_same_params(params(tmp_path / "straight" / "ckpt" / "final.pt"), params(run / "ckpt" / "final.pt"))
    assert len(list((run / "ckpt").glob("latest.pt.corrupt-*"))) == 1, "the damaged file is kept aside"
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(5, 41, 5))


def test_no_readable_checkpoint_left_is_an_error_that_names_the_files_and_the_way_out(tmp_path, token_files):
    run = tmp_path / "run"
    interrupted_run_with_two_checkpoints(token_files, run)
    damage(run / "ckpt" / "latest.pt", "garbage")
    damage(run / "ckpt" / "previous.pt", "truncated")
    before = snapshot(run)
    with pytest.raises(CheckpointError) as raised:
        train(make_config(token_files, run))
    message = str(raised.value)
    assert str(run / "ckpt" / "latest.pt") in message and str(run / "ckpt" / "previous.pt") in message
    assert "resume='never'" in message
    assert "weights_only" not in message, "torch's advice to unpickle untrusted bytes must not be passed on"
    assert snapshot(run) == before


def test_a_checkpoint_without_run_state_is_named_not_a_key_error(tmp_path, token_files):
    run = tmp_path / "run"
    train(make_config(token_files, run, max_steps=5))
    state = read_checkpoint(run / "ckpt" / "latest.pt")
    handout_style = {k: state[k] for k in ("model", "optimizer", "iteration")}
    torch.save(handout_style, run / "ckpt" / "latest.pt")
    (run / "ckpt" / "previous.pt").unlink(missing_ok=True)
    with pytest.raises(CheckpointError, match=rf"{run / 'ckpt' / 'latest.pt'} lacks \['config', 'rng', 'counters'\]"):
        train(make_config(token_files, run, max_steps=5))


@contextlib.contextmanager
def small_tmpfs(directory: Path, size: str):
    directory.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(directory)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs to fill up (needs root): {mounted.stderr.strip()}")
    try:
        yield directory
    finally:
        subprocess.run(["umount", str(directory)], check=True)


def test_full_disk_during_a_checkpoint_says_enospc_and_keeps_the_previous_one(tmp_path, token_files):
    # One checkpoint of the tiny model (~190 KB) fits in 300 KB, a second one beside it does not.
    with small_tmpfs(tmp_path / "disk", "300k") as disk:
        run = disk / "run"
        with pytest.raises(OSError) as raised:
            train(make_config(token_files, run, max_steps=40, checkpoint_every=10))
        latest = run / "ckpt" / "latest.pt"
        assert "ENOSPC" in str(raised.value) and str(latest) in str(raised.value)
        assert raised.value.filename == str(latest)
        assert read_checkpoint(latest)["iteration"] == 10, "the checkpoint on disk was damaged"
        assert not list(run.rglob("*.partial")), "the failed write left its temporary file behind"


def test_save_checkpoint_to_a_full_disk_names_the_path(tmp_path):
    from cs336_core.model import TransformerLM
    from cs336_core.optim import AdamW

    model = TransformerLM.from_config(ModelConfig(**TINY_MODEL))
    optimizer = AdamW(model.parameters())
    with small_tmpfs(tmp_path / "disk", "300k") as disk:
        save_checkpoint(model, optimizer, 1, disk / "a.pt")
        before = (disk / "a.pt").read_bytes()
        with pytest.raises(OSError, match=rf"ENOSPC.*{disk / 'b.pt'}"):
            save_checkpoint(model, optimizer, 2, disk / "b.pt", padding=torch.zeros(100_000))
        assert (disk / "a.pt").read_bytes() == before and not (disk / "b.pt").exists()
        assert sorted(p.name for p in disk.iterdir()) == ["a.pt"]


@pytest.mark.parametrize("how", ["truncated", "garbage", "empty"])
def test_read_checkpoint_names_a_damaged_file(tmp_path, token_files, how):
    train(make_config(token_files, tmp_path / "run", max_steps=5))
    path = tmp_path / "run" / "ckpt" / "final.pt"
    damage(path, how)
    with pytest.raises(CheckpointError, match=rf"{path} is not a readable checkpoint") as raised:
        read_checkpoint(path)
    assert "weights_only" not in str(raised.value)
