"""Optional experiment tracking: TensorBoard event files and an offline W&B run hold the metrics.jsonl
values; a tracker that is not installed is a clear error before training starts."""

import json
import sys
import time
from pathlib import Path

import pytest

from cs336_core.model import ModelConfig
from cs336_core.training import RESUME_MAY_CHANGE, TrackingUnavailable, TrainConfig, train
from cs336_core.training import main as train_main
from test_training import read_metrics
from test_training_trust import TINY_MODEL, make_config, token_files  # noqa: F401  (fixtures)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# Twenty steps, logged every 5, evaluated every 10, checkpointed every 10.
SHORT = dict(max_steps=20, eval_every=10, eval_batches=1)


def crash_at(step: int):
    def progress(phase, done, total):
        if done == step:
            raise KeyboardInterrupt("simulated crash")

    return progress


def test_tensorboard_events_hold_the_metrics_and_a_resume_does_not_double_them(tmp_path, token_files):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    config = make_config(token_files, tmp_path / "run", tracking="tensorboard", **SHORT)
    with pytest.raises(KeyboardInterrupt):  # dies at step 15, after logging it; the checkpoint is at 10
        train(config, progress=crash_at(15))
    train(config)
    metrics = read_metrics(config.out_dir)
    assert [m["step"] for m in metrics] == [5, 10, 15, 20]

    events = EventAccumulator(str(tmp_path / "run" / "tensorboard"))
    events.Reload()
    for name in ("train_loss", "lr", "tokens_per_second"):
        scalars = events.Scalars(name)
        assert [s.step for s in scalars] == [5, 10, 15, 20], name  # step 15 of the dead session purged
        assert [s.value for s in scalars] == pytest.approx([m[name] for m in metrics], rel=1e-6), name
    assert [(s.step, s.value) for s in events.Scalars("val_loss")] == pytest.approx(
        [(m["step"], m["val_loss"]) for m in metrics if m["val_loss"] is not None], rel=1e-6)
    assert "mfu" not in events.Tags()["scalars"]  # null on CPU: not logged


@pytest.fixture
def offline_wandb(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    for name, value in (("WANDB_MODE", "offline"), ("WANDB_SILENT", "true"), ("WANDB_CONSOLE", "off")):
        monkeypatch.setenv(name, value)
    for name in ("WANDB_DIR", "WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR"):
        monkeypatch.setenv(name, str(tmp_path / "wandb-home"))


def test_an_offline_wandb_run_holds_the_metrics_and_a_resume_continues_it(tmp_path, token_files, offline_wandb):
    config = make_config(token_files, tmp_path / "run", tracking="wandb", tracking_project="cs336-test", **SHORT)
    with pytest.raises(KeyboardInterrupt):
        train(config, progress=crash_at(15))
    run_id = (tmp_path / "run" / "wandb_run_id").read_text()
    # W&B names an offline session's directory by the wall-clock second it started in: a second session
    # of the same run within that second would write into the first's file (seen as a flaky failure).
    started = time.time()
    time.sleep(max(0.0, 1.05 - (started - int(started))))
    train(config)
    assert (tmp_path / "run" / "wandb_run_id").read_text() == run_id  # the same W&B run, continued

    sessions = sorted((tmp_path / "run" / "wandb").glob(f"offline-run-*-{run_id}/run-{run_id}.wandb"))
    assert sessions, list((tmp_path / "run").rglob("*"))
    logged = b"".join(path.read_bytes() for path in sessions)
    # W&B's record file keeps each logged value as JSON text: every train_loss must be there.
    for m in read_metrics(config.out_dir):
        assert b"train_loss" in logged and json.dumps(m["train_loss"]).encode() in logged, m["step"]

    # A fresh start in the same directory is another W&B run (one W&B run cannot go back in steps).
    train(make_config(token_files, tmp_path / "run", tracking="wandb", max_steps=5, resume="never"))
    assert (tmp_path / "run" / "wandb_run_id").read_text() != run_id


@pytest.mark.parametrize("tracking, module, package", [("wandb", "wandb", "wandb"),
                                                       ("tensorboard", "torch.utils.tensorboard", "tensorboard")])
def test_a_tracker_that_is_not_installed_fails_before_the_run_starts(tmp_path, token_files, monkeypatch, tracking,
                                                                     module, package):
    monkeypatch.setitem(sys.modules, module, None)  # what an environment without the package imports
    with pytest.raises(TrackingUnavailable, match=f"tracking='{tracking}' needs the {package} package.*"
                                                  f"pip install {package}, or set tracking to null"):
        train(make_config(token_files, tmp_path / "run", tracking=tracking))
    assert not (tmp_path / "run").exists()  # nothing was locked, read or written


def test_cs336_train_says_which_package_to_install_in_one_line(tmp_path, token_files, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "wandb", None)
    train_path, _ = token_files
    code = train_main(["--train", str(train_path), "--out-dir", str(tmp_path / "run"), "--steps", "2",
                       "--vocab-size", "64", "--tracking", "wandb", "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("cs336-train: error: TrainConfig.tracking='wandb' needs the wandb package")
    assert len(err.strip().splitlines()) == 1


def test_tracking_is_checked_and_may_change_on_resume(tmp_path):
    with pytest.raises(ValueError, match='TrainConfig.tracking must be "tensorboard", "wandb" or null'):
        TrainConfig(train_path="t.npy", out_dir=str(tmp_path), model=ModelConfig(**TINY_MODEL), max_steps=5,
                    tracking="mlflow")
    with pytest.raises(ValueError, match="TrainConfig.tracking_project must be a non-empty string"):
        TrainConfig(train_path="t.npy", out_dir=str(tmp_path), model=ModelConfig(**TINY_MODEL), max_steps=5,
                    tracking_project="")
    assert {"tracking", "tracking_project"} <= set(RESUME_MAY_CHANGE)
