"""What a user of a real-scale run sees: the wall-clock budget, MFU, and progress lines with the loss."""

import io
import json
import re
from pathlib import Path

import pytest
import torch

from cs336_core.accounting import forward_flops
from cs336_core.model import ModelConfig
from cs336_core.progress import (ConsoleProgress, PhaseTimer, ThrottledLog, format_info, report, round_floats,
                                 rounded, takes_info)
from cs336_core.training import RESUME_MAY_CHANGE, TrainConfig, read_checkpoint, resume_or_archive, train
from cs336_core.training import main as train_main
from cs336_core.training import throughput
from cs336_core.training.loop import _Run
from cs336_core.training.throughput import RunMFU, flops_per_token, peak_flops, precision, table_peak
from test_training import read_metrics
from test_training_trust import TINY_MODEL, make_config, token_files  # noqa: F401  (fixtures)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# A float printed with more digits than a person reads: what user-facing output must never show.
LONG_FLOAT = re.compile(r"\d\.\d{7,}")


def read_result(run_dir) -> dict:
    return json.loads((Path(run_dir) / "result.json").read_text())


@pytest.fixture
def step_clock(monkeypatch):
    """A run's wall clock that reads one second per step trained, so budget stops land on known steps."""
    monkeypatch.setattr(_Run, "wall_seconds", lambda self: float(self.step))


# ---------------------------------------------------------------------------------------------
# Wall-clock budget


def test_budget_stop_evaluates_checkpoints_and_a_larger_budget_resumes_to_the_straight_result(
        tmp_path, token_files, step_clock):
    run = tmp_path / "run"
    stopped = train(make_config(token_files, run, max_wall_seconds=7))
    assert stopped.status == "budget" and stopped.steps == 7
    assert "max_wall_seconds=7" in stopped.message and "larger max_wall_seconds" in stopped.message
    last = read_metrics(run)[-1]
    assert last["step"] == 7 and last["val_loss"] is not None and last["stopped"] == "budget"
    assert stopped.final_val_loss == last["val_loss"]
    assert read_checkpoint(run / "ckpt" / "latest.pt")["iteration"] == 7
    assert not (run / "ckpt" / "final.pt").exists()
    assert read_result(run) == stopped.to_dict() and read_result(run)["status"] == "budget"
    assert stopped.checkpoint_path == str(run / "ckpt" / "latest.pt")

    # The same budget again: already spent, so nothing trains and nothing is logged twice.
    again = train(make_config(token_files, run, max_wall_seconds=7))
    assert again.status == "budget" and again.steps == 7
    assert again.final_val_loss == pytest.approx(stopped.final_val_loss)
    assert [m["step"] for m in read_metrics(run)] == [5, 7]

    # A larger budget continues from the checkpoint; no budget at all finishes the run.
    assert "max_wall_seconds" in RESUME_MAY_CHANGE
    more = train(make_config(token_files, run, max_wall_seconds=15))
    assert more.status == "budget" and more.steps == 15
    assert [m["step"] for m in read_metrics(run)] == [5, 7, 10, 15]
    done = train(make_config(token_files, run))
    assert done.status == "completed" and done.steps == 40

    # The budget stops only evaluated and checkpointed: the parameters are those of a straight run.
    train(make_config(token_files, tmp_path / "straight"))
    straight = read_checkpoint(tmp_path / "straight" / "ckpt" / "final.pt")["model"]
    resumed = read_checkpoint(run / "ckpt" / "final.pt")["model"]
    for name in straight:
        assert torch.equal(straight[name], resumed[name]), name


def test_a_finished_run_stays_completed_under_a_spent_budget(tmp_path, token_files, step_clock):
    run = tmp_path / "run"
    assert train(make_config(token_files, run, max_steps=10)).status == "completed"
    again = train(make_config(token_files, run, max_steps=10, max_wall_seconds=3))
    assert again.status == "completed" and again.steps == 10


def test_a_rerun_resumes_a_budget_stop_instead_of_archiving_it(tmp_path, token_files, step_clock):
    run = tmp_path / "run"
    train(make_config(token_files, run, max_wall_seconds=7))
    heard = []
    assert resume_or_archive(make_config(token_files, run, max_wall_seconds=20), log=heard.append) == 7
    assert not heard and not (tmp_path / "_archive").exists()
    finished = tmp_path / "finished"
    train(make_config(token_files, finished, max_steps=10))
    resume_or_archive(make_config(token_files, finished, max_steps=10), log=heard.append)
    assert "had finished" in heard[0] and (tmp_path / "_archive").exists()  # a completed run is archived


def test_a_real_clock_budget_stops_a_long_run(tmp_path, token_files):
    config = make_config(token_files, tmp_path / "run", max_steps=100_000, max_wall_seconds=0.5, log_every=50,
                         eval_every=0, checkpoint_every=0)
    result = train(config)
    assert result.status == "budget" and 1 <= result.steps < 100_000
    assert result.wall_seconds >= 0.5
    assert read_metrics(config.out_dir)[-1]["stopped"] == "budget"
    assert read_checkpoint(Path(config.out_dir) / "ckpt" / "latest.pt")["iteration"] == result.steps


@pytest.mark.parametrize("value", [0, -1.0, float("inf"), "1h", True])
def test_max_wall_seconds_must_be_a_positive_number(tmp_path, value):
    with pytest.raises(ValueError, match="TrainConfig.max_wall_seconds must be a finite number > 0"):
        TrainConfig(train_path="t.npy", out_dir=str(tmp_path), model=ModelConfig(**TINY_MODEL), max_steps=5,
                    max_wall_seconds=value)


# ---------------------------------------------------------------------------------------------
# MFU


def test_flops_per_token_counts_matmuls_forward_and_backward():
    config = ModelConfig(**TINY_MODEL)
    d, d_ff, layers, vocab, context = 32, 64, 1, 64, 16
    matmul_parameters = layers * (4 * d * d + 3 * d * d_ff) + d * vocab  # SwiGLU: 3 FFN matrices; lm_head
    attention = layers * 2 * 2 * context * d  # Q K^T and softmax(.) V, per token at full context
    assert flops_per_token(config) == pytest.approx(3 * (2 * matmul_parameters + attention))
    assert flops_per_token(config) == pytest.approx(3 * forward_flops(config)["total"] / context)


def test_mfu_against_a_given_peak(tmp_path, token_files):
    peak = 1e9
    result = train(make_config(token_files, tmp_path / "run", max_steps=10, peak_flops=peak))
    per_token = 3 * forward_flops(ModelConfig(**TINY_MODEL))["total"] / 16
    for m in read_metrics(tmp_path / "run"):
        assert m["mfu"] == pytest.approx(m["tokens_per_second"] * per_token / peak)
    assert result.mfu == pytest.approx(result.tokens_per_second * per_token / peak)
    assert result.peak_flops == peak and "TrainConfig.peak_flops" in result.peak_flops_source
    assert read_result(tmp_path / "run")["peak_flops_source"] == result.peak_flops_source


def test_mfu_is_null_where_the_peak_is_unknown(tmp_path, token_files):
    result = train(make_config(token_files, tmp_path / "run", max_steps=5))
    assert all(m["mfu"] is None for m in read_metrics(tmp_path / "run"))
    assert result.mfu is None and result.peak_flops is None
    assert "unknown on cpu" in result.peak_flops_source and "peak_flops" in result.peak_flops_source


@pytest.mark.parametrize("name, kind, expected", [
    ("NVIDIA H100 80GB HBM3", "bfloat16", 989e12),
    ("NVIDIA H100 80GB HBM3", "tf32", 494e12),
    ("NVIDIA H100 80GB HBM3", "float32", 67e12),
    ("NVIDIA H100 PCIe", "bfloat16", 756e12),
    ("NVIDIA H200", "bfloat16", 989e12),
    ("NVIDIA A100-SXM4-80GB", "bfloat16", 312e12),
    ("NVIDIA A100-PCIE-40GB", "tf32", 156e12),
    ("NVIDIA A100-SXM4-40GB", "float32", 19.5e12),
    ("NVIDIA A10", "bfloat16", 125e12),
    ("NVIDIA L4", "bfloat16", 121e12),
    ("NVIDIA L40S", "bfloat16", 362e12),
    ("NVIDIA GeForce RTX 4090", "bfloat16", 165.2e12),
    ("Tesla V100-SXM2-16GB", "bfloat16", None),
])
def test_table_of_dense_peaks(name, kind, expected):
    assert table_peak(name, kind) == expected


def test_the_peak_follows_the_gpu_name_and_the_precision(monkeypatch):
    monkeypatch.setattr(throughput.torch.cuda, "get_device_name", lambda device=None: "NVIDIA H100 80GB HBM3")
    cuda = torch.device("cuda")
    assert precision("float32", tf32=True) == "tf32" and precision("float32", tf32=False) == "float32"
    value, source = peak_flops(cuda, "bfloat16", tf32=True, given=None)
    assert value == 989e12 and "NVIDIA H100 80GB HBM3" in source and "bfloat16" in source and "datasheet" in source
    assert peak_flops(cuda, "float32", tf32=False, given=None)[0] == 67e12
    assert peak_flops(cuda, "float32", tf32=True, given=2e14)[0] == 2e14  # a measured peak wins
    monkeypatch.setattr(throughput.torch.cuda, "get_device_name", lambda device=None: "Some Future GPU")
    value, source = peak_flops(cuda, "bfloat16", tf32=True, given=None)
    assert value is None and "Some Future GPU" in source and "peak_flops" in source


def test_mfu_of_several_ranks_is_against_all_their_peaks(tmp_path):
    config = TrainConfig(train_path="t.npy", out_dir=str(tmp_path), model=ModelConfig(**TINY_MODEL), max_steps=5,
                         peak_flops=1e12)
    one, two = RunMFU(config, torch.device("cpu"), 1), RunMFU(config, torch.device("cpu"), 2)
    assert two(1000.0) == pytest.approx(one(1000.0) / 2) == pytest.approx(1000 * flops_per_token(config.model) / 2e12)


# ---------------------------------------------------------------------------------------------
# Progress lines


def test_rounding_for_people():
    assert rounded(3.412345678) == "3.412" and rounded(12345.678) == "12,346" and rounded(7) == "7"
    assert format_info({"loss": 3.41234567, "val": None, "mfu": "41.2%"}) == "loss 3.412, mfu 41.2%"
    assert round_floats({"a": [0.123456789, 2], "b": "x", "c": 1234.5678}) == {"a": [0.1235, 2], "b": "x",
                                                                                "c": 1235.0}


def test_report_passes_info_only_to_reporters_that_take_it():
    three, four, kwargs = [], [], []
    report(lambda phase, done, total: three.append((phase, done, total)), "p", 1, 2, {"loss": 1.0})
    report(lambda *args: three.append(args), "p", 1, 2, {"loss": 1.0})
    report(lambda phase, done, total, info=None: four.append(info), "p", 1, 2, {"loss": 1.0})
    report(lambda phase, done, total, **extra: kwargs.append(extra), "p", 1, 2, {"loss": 1.0})
    assert three == [("p", 1, 2), ("p", 1, 2)] and four == [{"loss": 1.0}] and kwargs == [{"info": {"loss": 1.0}}]
    assert takes_info(ThrottledLog(print)) and takes_info(ConsoleProgress()) and takes_info(PhaseTimer())
    heard = []
    PhaseTimer(then=lambda phase, done, total, info=None: heard.append(info))("p", 1, 2, info={"loss": 2.0})
    PhaseTimer(then=lambda phase, done, total: heard.append("plain"))("p", 1, 2, info={"loss": 2.0})
    assert heard == [{"loss": 2.0}, "plain"]


def test_throttled_log_lines_of_a_run_show_rounded_loss_and_val_loss(tmp_path, token_files):
    lines = []
    train(make_config(token_files, tmp_path / "run", max_steps=20, eval_every=10), progress=ThrottledLog(lines.append,
                                                                                                       interval=0))
    metrics = read_metrics(tmp_path / "run")
    assert lines[0].startswith("train: 0/20") and "loss" not in lines[0]  # nothing measured yet
    assert f"loss {metrics[-1]['train_loss']:.4g}, val {metrics[-1]['val_loss']:.4g}, tok/s " in lines[-1]
    assert lines[-1].startswith("train: 20/20 (100.0%)")
    assert not any(LONG_FLOAT.search(line) for line in lines)
    # Before the first evaluation there is a training loss but no val loss yet.
    assert "loss" in lines[5] and "val" not in lines[5]


def test_console_bar_and_printed_result_of_cs336_train_are_rounded(tmp_path, token_files, capsys, monkeypatch):
    bar = io.StringIO()
    monkeypatch.setattr("cs336_core.training.cli.ConsoleProgress", lambda unit: ConsoleProgress(unit, file=bar))
    train_path, valid_path = token_files
    assert train_main(["--train", str(train_path), "--valid", str(valid_path), "--out-dir", str(tmp_path / "run"),
                       "--steps", "10", "--log-every", "5", "--eval-every", "5", "--eval-batches", "1",
                       "--batch-size", "4", "--device", "cpu", "--peak-flops", "1e9", "--vocab-size", "64",
                       "--context-length", "16", "--d-model", "32", "--num-layers", "1", "--num-heads", "2",
                       "--d-ff", "64"]) == 0
    printed = capsys.readouterr().out
    result = json.loads(printed)
    assert result["status"] == "completed" and not LONG_FLOAT.search(printed)
    assert read_result(tmp_path / "run")["final_val_loss"] != result["final_val_loss"]  # the file keeps all digits
    assert result["final_val_loss"] == pytest.approx(read_result(tmp_path / "run")["final_val_loss"], rel=1e-3)
    shown = bar.getvalue()
    assert re.search(r"loss \d+\.\d{1,3}, val \d+\.\d{1,3}, tok/s [\d,]+, mfu \d+\.\d%", shown), shown
    assert not LONG_FLOAT.search(shown)


def test_byte_progress_is_shown_in_bytes_per_second():
    shown = io.StringIO()
    progress = ConsoleProgress(unit="B", file=shown)
    progress("download", 0, 10_000_000)
    progress("download", 5_000_000, 10_000_000)
    progress.close()
    assert "B/s" in shown.getvalue() and "it/s" not in shown.getvalue()
    assert "5.00M/10.0M" in shown.getvalue()  # scaled, not 5000000/10000000
