import io
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from cs336_core.model import ModelConfig, TransformerLM
from cs336_core.optim import AdamW
from cs336_core.training import (
    METRIC_FIELDS,
    TrainConfig,
    TrainResult,
    config_from_args,
    load_checkpoint,
    read_checkpoint,
    resolve_device,
    save_checkpoint,
    train,
)
from cs336_core.training.checkpoint import _unwrap
from cs336_core.training.distributed import _Process
from cs336_core.training.loop import _Run

TINY_MODEL = dict(vocab_size=64, context_length=16, d_model=32, num_layers=1, num_heads=2, d_ff=64)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def token_files(tmp_path):
    """A learnable stream: short repeating phrases with random fill between them."""
    rng = np.random.default_rng(0)
    phrases = [rng.integers(0, 64, size=rng.integers(3, 9)) for _ in range(12)]
    pieces = []
    for phrase, filler in zip(rng.integers(len(phrases), size=8_000), rng.integers(0, 64, size=8_000)):
        pieces += [phrases[phrase], [filler]]
    tokens = np.concatenate(pieces).astype(np.uint16)
    assert len(tokens) > 40_000
    np.save(tmp_path / "train.npy", tokens[:36_000])
    np.save(tmp_path / "valid.npy", tokens[36_000:])
    return tmp_path / "train.npy", tmp_path / "valid.npy"


def make_config(token_files, out_dir, **overrides) -> TrainConfig:
    train_path, valid_path = token_files
    fields = dict(
        train_path=str(train_path), valid_path=str(valid_path), out_dir=str(out_dir), model=ModelConfig(**TINY_MODEL),
        batch_size=8, max_steps=40, lr_max=1e-2, warmup_steps=4, eval_every=20, eval_batches=2, log_every=5,
        checkpoint_every=20, device="cpu",
    )
    fields.update(overrides)
    return TrainConfig(**fields)


def read_metrics(run_dir) -> list[dict]:
    return [json.loads(line) for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]


def final_params(run_dir) -> dict[str, torch.Tensor]:
    return read_checkpoint(Path(run_dir) / "ckpt" / "final.pt")["model"]


def assert_same_params(a: dict, b: dict):
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), f"{name} differs by up to {(a[name] - b[name]).abs().max().item():.3g}"


# ---------------------------------------------------------------------------------------------
# Config


def test_config_json_round_trip_and_resolved_defaults(tmp_path):
    config = TrainConfig(train_path="t.npy", out_dir=str(tmp_path), model=ModelConfig(**TINY_MODEL),
                         batch_size=4, total_tokens=1000, lr_max=3e-3, betas=[0.9, 0.99])
    assert config.steps == math.ceil(1000 / (4 * 16)) == 16
    assert config.lr_min == pytest.approx(3e-4)
    assert config.cosine_cycle_steps == 16 and config.warmup_steps == 0
    assert config.eval_batch_size == 4 and config.betas == (0.9, 0.99)
    again = TrainConfig.from_json(config.to_json())
    assert again == config
    assert isinstance(again.model, ModelConfig)
    assert json.loads(config.to_json())["model"]["d_model"] == 32
    with pytest.raises(ValueError, match="unknown TrainConfig fields: \\['learning_rate'\\]"):
        TrainConfig.from_dict({**config.to_dict(), "learning_rate": 1})


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(batch_size=0), "batch_size must be an int >= 1, got 0"),
        (dict(max_steps=None), "exactly one of max_steps and total_tokens"),
        (dict(total_tokens=100), "exactly one of max_steps and total_tokens"),
        (dict(max_steps=2.5), "max_steps must be an int"),
        (dict(lr_max=-1.0), "lr_max must be a finite number > 0"),
        (dict(lr_max=float("nan")), "lr_max must be a finite number"),
        (dict(lr_min=1.0), "lr_min=1.0 exceeds lr_max=0.001"),
        (dict(warmup_steps=50, cosine_cycle_steps=10), "cosine_cycle_steps=10 must be >= warmup_steps=50"),
        (dict(betas=(0.9, 1.0)), "betas must each lie in \\[0, 1\\)"),
        (dict(device="tpu"), "device must be one of"),
        (dict(dtype="float16"), "dtype must be one of"),
        (dict(token_dtype="float32"), "token_dtype must be uint16"),
        (dict(compile="yes"), "compile must be true or false"),
        (dict(divergence_factor=0.5), "divergence_factor must be a finite number > 1"),
        (dict(model={"d_model": 30, "num_heads": 4}), "not divisible"),
        (dict(grad_clip=0), "grad_clip must be a finite number > 0"),
    ],
)
def test_config_validation_errors(tmp_path, overrides, message):
    fields = dict(train_path="t.npy", out_dir=str(tmp_path), model=ModelConfig(**TINY_MODEL), max_steps=10)
    fields.update(overrides)
    with pytest.raises(ValueError, match=message):
        TrainConfig(**fields)


def test_cli_flags_override_config_file(tmp_path, token_files):
    base = make_config(token_files, tmp_path / "run")
    (tmp_path / "cfg.json").write_text(base.to_json())
    config = config_from_args([
        "--config", str(tmp_path / "cfg.json"), "--steps", "7", "--d-model", "64", "--lr-max", "0.003",
        "--compile", "--resume", "false", "--out-dir", "123", "--betas", "[0.8, 0.9]",
    ])
    assert config.max_steps == 7 and config.model.d_model == 64 and config.lr_max == 0.003
    assert config.compile is True and config.resume is False
    assert config.out_dir == "123"  # a string field keeps digits as text
    assert config.betas == (0.8, 0.9) and config.batch_size == base.batch_size
    with pytest.raises(SystemExit):
        config_from_args(["--config", str(tmp_path / "cfg.json"), "--batch-size", "-3"])
    with pytest.raises(SystemExit):
        config_from_args(["--config", str(tmp_path / "missing.json")])


def test_bad_inputs_fail_before_training(tmp_path, token_files):
    with pytest.raises(ValueError, match="out of range for vocab_size=32"):
        train(make_config(token_files, tmp_path / "run", model=ModelConfig(**{**TINY_MODEL, "vocab_size": 32})))
    with pytest.raises(FileNotFoundError, match="nothing.npy"):
        train(make_config((tmp_path / "nothing.npy", token_files[1]), tmp_path / "run"))
    np.save(tmp_path / "short.npy", np.arange(10, dtype=np.uint16))
    with pytest.raises(ValueError, match="training set .*short.npy has 10 tokens"):
        train(make_config((tmp_path / "short.npy", token_files[1]), tmp_path / "run"))
    assert not (tmp_path / "run").exists()  # nothing was written for a run that could not start


def test_device_resolution():
    expected = "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    assert resolve_device("cpu") == torch.device("cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda")


# ---------------------------------------------------------------------------------------------
# Training runs


def test_short_run_reduces_val_loss_and_writes_every_file(tmp_path, token_files):
    config = make_config(token_files, tmp_path / "run", max_steps=60, log_every=10)
    records, progress_calls = [], []
    result = train(config, callback=records.append, progress=lambda *args: progress_calls.append(args))

    assert result.status == "completed" and result.steps == 60
    assert result.tokens == 60 * 8 * 16
    assert result.tokens_per_second > 0 and result.wall_seconds > 0
    metrics = read_metrics(config.out_dir)
    assert metrics == records
    assert [m["step"] for m in metrics] == [10, 20, 30, 40, 50, 60]
    for m in metrics:
        assert tuple(m) == METRIC_FIELDS == ("step", "tokens", "wall_seconds", "train_loss", "val_loss", "lr",
                                             "grad_norm", "tokens_per_second", "mfu")
        assert m["mfu"] is None  # a CPU's peak is unknown and peak_flops is not given
        assert m["tokens"] == m["step"] * 8 * 16
        assert (m["val_loss"] is None) == (m["step"] % 20 != 0)
    assert [m["wall_seconds"] for m in metrics] == sorted(m["wall_seconds"] for m in metrics)
    val = [m["val_loss"] for m in metrics if m["val_loss"] is not None]
    assert val[-1] < val[0] < math.log(64) + 0.5
    assert val[-1] < 0.8 * math.log(64)
    assert result.final_val_loss == val[-1] and result.best_val_loss == min(val)
    assert result.final_train_loss == metrics[-1]["train_loss"]
    assert metrics[0]["lr"] > metrics[-1]["lr"] >= config.lr_min  # cosine decay
    assert progress_calls[0] == ("train", 0, 60) and progress_calls[-1] == ("train", 60, 60)

    run = Path(config.out_dir)
    assert TrainConfig.from_json((run / "config.json").read_text()) == config
    assert json.loads((run / "result.json").read_text()) == result.to_dict()
    final = read_checkpoint(run / "ckpt" / "final.pt")
    assert final["iteration"] == 60 and TrainConfig.from_dict(final["config"]) == config
    assert_same_params(final["model"], read_checkpoint(run / "ckpt" / "latest.pt")["model"])
    assert not list(run.rglob("*.partial"))


def test_resume_continues_bit_for_bit_in_process(tmp_path, token_files):
    straight = make_config(token_files, tmp_path / "straight")
    train(straight)

    interrupted = make_config(token_files, tmp_path / "resumed")

    def crash_after_first_checkpoint(phase, step, total):
        if step == 25:  # checkpoint at 20 is on disk, metrics for 25 are written and must be cut
            raise KeyboardInterrupt("simulated crash")

    with pytest.raises(KeyboardInterrupt):
        train(interrupted, progress=crash_after_first_checkpoint)
    assert read_checkpoint(tmp_path / "resumed" / "ckpt" / "latest.pt")["iteration"] == 20
    assert read_metrics(tmp_path / "resumed")[-1]["step"] == 25
    assert not (tmp_path / "resumed" / "result.json").exists()

    result = train(interrupted)
    assert result.status == "completed" and result.steps == 40
    assert_same_params(final_params(tmp_path / "straight"), final_params(tmp_path / "resumed"))
    timing = ("wall_seconds", "tokens_per_second")
    strip = lambda rows: [{k: v for k, v in row.items() if k not in timing} for row in rows]
    assert strip(read_metrics(tmp_path / "resumed")) == strip(read_metrics(tmp_path / "straight"))

    # Resuming a finished run trains nothing and keeps the same parameters.
    again = train(interrupted)
    assert again.steps == 40 and again.final_val_loss == pytest.approx(result.final_val_loss)
    assert_same_params(final_params(tmp_path / "straight"), final_params(tmp_path / "resumed"))
    assert len(read_metrics(tmp_path / "resumed")) == len(read_metrics(tmp_path / "straight"))


@pytest.mark.slow
def test_resume_after_sigkill_of_the_cli_matches_a_straight_run(tmp_path, token_files):
    steps = 200
    shape = dict(max_steps=steps, checkpoint_every=40, eval_every=100, log_every=10)
    killed = make_config(token_files, tmp_path / "killed", **shape)
    config_path = tmp_path / "killed.json"
    config_path.write_text(killed.to_json())
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "cs336_core.training", "--config", str(config_path)]
    latest = tmp_path / "killed" / "ckpt" / "latest.pt"

    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while not latest.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    process.communicate()
    assert process.returncode == -signal.SIGKILL
    killed_at = read_checkpoint(latest)["iteration"]
    assert 0 < killed_at < steps, "the CLI finished before it could be killed"
    assert not (tmp_path / "killed" / "result.json").exists()

    finished = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert finished.returncode == 0, finished.stderr
    printed = json.loads(finished.stdout)
    assert printed["status"] == "completed" and printed["steps"] == steps

    train(make_config(token_files, tmp_path / "straight", **shape))
    assert_same_params(final_params(tmp_path / "straight"), final_params(tmp_path / "killed"))
    steps_logged = [m["step"] for m in read_metrics(tmp_path / "killed")]
    assert steps_logged == list(range(10, steps + 1, 10))  # nothing duplicated, nothing lost


def test_huge_learning_rate_diverges_cleanly(tmp_path, token_files):
    config = make_config(token_files, tmp_path / "run", lr_max=50.0, warmup_steps=0, grad_clip=None,
                         max_steps=200, log_every=50, checkpoint_every=0)
    result = train(config)
    assert result.status == "diverged"
    assert result.steps < 200 and "at step" in result.message
    assert result.final_val_loss is None
    metrics = read_metrics(config.out_dir)
    assert metrics and metrics[-1]["step"] == result.steps  # the diverging step is logged
    last_loss = metrics[-1]["train_loss"]
    assert last_loss is None or last_loss > 3 * math.log(64) * 0.9
    saved = json.loads((tmp_path / "run" / "result.json").read_text())
    assert saved["status"] == "diverged" and saved["steps"] == result.steps
    assert not (tmp_path / "run" / "ckpt" / "final.pt").exists()


def test_raw_bin_tokens_without_validation_set(tmp_path, token_files):
    np.load(token_files[0]).astype(np.uint16).tofile(tmp_path / "train.bin")
    config = make_config(token_files, tmp_path / "run", train_path=str(tmp_path / "train.bin"), valid_path=None,
                         max_steps=10)
    result = train(config)
    assert result.status == "completed" and result.steps == 10
    assert result.final_val_loss is None and result.best_val_loss is None
    assert all(m["val_loss"] is None for m in read_metrics(config.out_dir))
    assert result.final_train_loss < math.log(64) + 0.5


def test_bfloat16_autocast_run_on_cpu(tmp_path, token_files):
    config = make_config(token_files, tmp_path / "run", dtype="bfloat16", max_steps=10, eval_every=10)
    run = _Run(config, torch.device("cpu"), _Process(), None, None)
    # The loss bound below also holds in float32; the output dtype of a projection shows autocast ran.
    seen = []
    run.model.lm_head.register_forward_hook(lambda module, args, output: seen.append(output.dtype))
    result = run.run()
    assert result.status == "completed"
    assert seen and set(seen) == {torch.bfloat16}
    assert run.model.lm_head.weight.dtype == torch.float32  # autocast, not a bfloat16 model
    assert math.isfinite(result.final_val_loss) and result.final_val_loss < math.log(64) + 1


def test_fresh_start_replaces_an_earlier_run(tmp_path, token_files):
    train(make_config(token_files, tmp_path / "run", max_steps=20))
    result = train(make_config(token_files, tmp_path / "run", max_steps=10, resume=False, eval_every=5))
    assert result.steps == 10
    assert [m["step"] for m in read_metrics(tmp_path / "run")] == [5, 10]
    assert read_checkpoint(tmp_path / "run" / "ckpt" / "latest.pt")["iteration"] == 10
    [archived] = (tmp_path / "_archive").iterdir()  # the earlier run is moved aside, not deleted
    assert read_checkpoint(archived / "ckpt" / "final.pt")["iteration"] == 20


def test_resume_refuses_a_different_model(tmp_path, token_files):
    train(make_config(token_files, tmp_path / "run", max_steps=5))
    other = make_config(token_files, tmp_path / "run", max_steps=10, model=ModelConfig(**{**TINY_MODEL, "d_model": 64}))
    with pytest.raises(ValueError, match="model.d_model: 32 stored, 64 now"):
        train(other)


def test_compile_option_wraps_the_model_and_checkpoints_stay_plain(tmp_path, token_files):
    config = make_config(token_files, tmp_path / "run", compile=True)
    run = _Run(config, torch.device("cpu"), _Process(), None, None)
    assert run.train_model is not run.model
    assert _unwrap(run.train_model) is run.model
    buffer = io.BytesIO()
    save_checkpoint(run.train_model, run.optimizer, 0, buffer)
    buffer.seek(0)
    assert set(torch.load(buffer)["model"]) == set(run.model.state_dict())  # no "_orig_mod." prefix


@pytest.mark.slow  # torch.compile (inductor) needs 65-80 s to build even this tiny model on a 2-core CPU
def test_compiled_run_matches_eager(tmp_path, token_files):
    shape = dict(max_steps=3, warmup_steps=1, eval_every=3, log_every=1, checkpoint_every=0)
    eager = train(make_config(token_files, tmp_path / "eager", **shape))
    compiled = train(make_config(token_files, tmp_path / "compiled", compile=True, **shape))
    assert compiled.final_val_loss == pytest.approx(eager.final_val_loss, rel=1e-4)
    # Every step trained the same: the compiled forward and backward are the eager ones.
    for eager_row, compiled_row in zip(read_metrics(tmp_path / "eager"), read_metrics(tmp_path / "compiled")):
        assert compiled_row["train_loss"] == pytest.approx(eager_row["train_loss"], rel=1e-4)


# ---------------------------------------------------------------------------------------------
# Checkpoints


def tiny_model_and_optimizer(seed: int):
    torch.manual_seed(seed)
    model = TransformerLM.from_config(ModelConfig(**TINY_MODEL))
    optimizer = AdamW(model.parameters(), lr=1e-2)
    tokens = torch.randint(0, 64, (4, 16))
    model(tokens).sum().backward()
    optimizer.step()
    return model, optimizer


@pytest.mark.parametrize("via", ["path", "file object"])
def test_checkpoint_round_trip(tmp_path, via):
    model, optimizer = tiny_model_and_optimizer(seed=1)
    target = tmp_path / "ckpt.pt" if via == "path" else io.BytesIO()
    save_checkpoint(model, optimizer, 123, target, note="hello")
    if via == "file object":
        target.seek(0)
    fresh_model, fresh_optimizer = tiny_model_and_optimizer(seed=2)
    assert not torch.equal(fresh_model.lm_head.weight, model.lm_head.weight)
    assert load_checkpoint(target, fresh_model, fresh_optimizer) == 123
    assert_same_params(fresh_model.state_dict(), model.state_dict())
    saved_state, loaded_state = optimizer.state_dict()["state"], fresh_optimizer.state_dict()["state"]
    assert saved_state.keys() == loaded_state.keys()
    for key in saved_state:
        for name, value in saved_state[key].items():
            assert torch.equal(torch.as_tensor(value), torch.as_tensor(loaded_state[key][name]))
    if via == "file object":
        target.seek(0)
    assert read_checkpoint(target)["note"] == "hello"


def test_failed_save_keeps_the_previous_checkpoint(tmp_path):
    model, optimizer = tiny_model_and_optimizer(seed=1)
    path = tmp_path / "ckpt" / "latest.pt"
    save_checkpoint(model, optimizer, 10, path)
    before = path.read_bytes()
    with pytest.raises(Exception):
        save_checkpoint(model, optimizer, 20, path, unpicklable=lambda: None)
    assert path.read_bytes() == before
    assert read_checkpoint(path)["iteration"] == 10
    assert sorted(p.name for p in path.parent.iterdir()) == ["latest.pt"]


def test_missing_checkpoint_is_a_clear_error(tmp_path):
    model, optimizer = tiny_model_and_optimizer(seed=1)
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        load_checkpoint(tmp_path / "nope.pt", model, optimizer)


def test_train_result_json_has_no_nan():
    result = TrainResult("diverged", 3, 10, 1.0, 5.0, float("nan"), None, None, None, "m", "o")
    assert json.loads(json.dumps(result.to_dict()))["final_train_loss"] is None


# ---------------------------------------------------------------------------------------------
# Data parallel


@pytest.mark.slow
def test_two_process_ddp_on_gloo_matches_one_process(tmp_path, token_files):
    shape = dict(max_steps=6, batch_size=8, eval_every=3, log_every=3, checkpoint_every=3)
    ddp_config = make_config(token_files, tmp_path / "ddp", **shape)
    config_path = tmp_path / "ddp.json"
    config_path.write_text(ddp_config.to_json())
    launched = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         "-m", "cs336_core.training", "--config", str(config_path)],
        env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=180,
    )
    assert launched.returncode == 0, launched.stderr[-3000:]
    printed = json.loads(launched.stdout[launched.stdout.index("{"):])  # only rank 0 prints
    assert printed["status"] == "completed" and printed["steps"] == 6

    single = train(make_config(token_files, tmp_path / "single", **shape))
    ddp_params, single_params = final_params(tmp_path / "ddp"), final_params(tmp_path / "single")
    assert ddp_params.keys() == single_params.keys()
    for name in single_params:
        torch.testing.assert_close(ddp_params[name], single_params[name], rtol=0, atol=1e-5, msg=name)
    # Rank 0 alone wrote the metrics: one line per log step, same losses as the single process.
    ddp_metrics, single_metrics = read_metrics(tmp_path / "ddp"), read_metrics(tmp_path / "single")
    assert [m["step"] for m in ddp_metrics] == [3, 6]
    for ddp_row, single_row in zip(ddp_metrics, single_metrics):
        assert ddp_row["train_loss"] == pytest.approx(single_row["train_loss"], abs=1e-5)
        assert ddp_row["val_loss"] == pytest.approx(single_row["val_loss"], abs=1e-5)
    stored = json.loads((tmp_path / "ddp" / "result.json").read_text())  # printed rounded, stored whole
    assert stored["final_val_loss"] == pytest.approx(single.final_val_loss, abs=1e-5)
    assert printed["final_val_loss"] == pytest.approx(single.final_val_loss, rel=1e-3)


def test_ranks_split_the_global_batch_without_overlap(tmp_path, token_files):
    starts = np.arange(8) * 10
    parts = [_Process(rank=rank, world_size=4).local_part(starts) for rank in range(4)]
    assert [len(part) for part in parts] == [2, 2, 2, 2]
    assert np.array_equal(np.concatenate(parts), starts)
    with pytest.raises(ValueError, match="batch_size=8 is not divisible by world size 3"):
        _Run(make_config(token_files, tmp_path / "run"), torch.device("cpu"), _Process(0, 3), None, None)
