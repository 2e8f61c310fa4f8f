"""The leaderboard's training options wired into train(): Muon with AdamW for the rest, z-loss, and
the model options, learning on a learnable sequence, resuming bit for bit, and leaving old runs'
stored configs resumable."""

import json

import numpy as np
import pytest
import torch

from cs336_core.model import ModelConfig
from cs336_core.optim import cross_entropy
from cs336_core.training import TrainConfig, read_checkpoint, train

LEADERBOARD_MODEL = dict(vocab_size=32, context_length=16, d_model=32, num_layers=2, num_heads=2, d_ff=None,
                         ffn="relu2", qk_norm=True, zero_init_output=True, logit_softcap=15.0)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def token_files(tmp_path):
    # A repeating pattern with a little noise: learnable in a few dozen steps, so "it learned" is checkable.
    rng = np.random.default_rng(0)
    tokens = np.tile(np.arange(32, dtype=np.uint16), 400)
    noise = rng.random(tokens.shape) < 0.05
    tokens[noise] = rng.integers(0, 32, noise.sum())
    np.save(tmp_path / "train.npy", tokens[:12_000])
    np.save(tmp_path / "valid.npy", tokens[12_000:])
    return tmp_path / "train.npy", tmp_path / "valid.npy"


def config(token_files, out_dir, **overrides) -> TrainConfig:
    train_path, valid_path = token_files
    fields = dict(train_path=str(train_path), valid_path=str(valid_path), out_dir=str(out_dir),
                  model=ModelConfig(**LEADERBOARD_MODEL), batch_size=8, max_steps=40, lr_max=3e-3,
                  warmup_steps=4, eval_every=20, eval_batches=2, log_every=5, checkpoint_every=10, device="cpu",
                  optimizer="muon", muon_lr=0.02, z_loss=1e-4)
    fields.update(overrides)
    return TrainConfig(**fields)


def test_muon_and_z_loss_train_the_leaderboard_model(token_files, tmp_path):
    result = train(config(token_files, tmp_path / "run"))
    assert result.status == "completed"
    metrics = [json.loads(line) for line in open(result.metrics_path)]
    # The pattern is predictable: the loss must fall far below an untrained model's ln(32) = 3.47.
    assert metrics[0]["train_loss"] > 3.0 and result.final_val_loss < 1.5
    state = read_checkpoint(result.checkpoint_path)
    groups = state["optimizer"]["param_groups"]
    assert sorted(g["use_muon"] for g in groups) == [False, True]
    assert any("q_norm" in key for key in state["model"])


def test_logged_train_loss_is_the_cross_entropy_not_the_z_loss_objective(token_files, tmp_path):
    """z-loss is added to what is differentiated, not to what is reported: a huge z-loss coefficient
    must change the weights, yet the logged loss of the first step equals the cross-entropy."""
    cfg = config(token_files, tmp_path / "run", max_steps=1, log_every=1, z_loss=10.0, eval_every=0, warmup_steps=0)
    result = train(cfg)
    torch.manual_seed(cfg.seed)
    from cs336_core.model import TransformerLM
    from cs336_core.data import batch_at, load_tokens, sample_starts

    model = TransformerLM(cfg.model)
    rng = np.random.default_rng(cfg.seed)
    tokens = load_tokens(cfg.train_path)
    x, y = batch_at(tokens, sample_starts(len(tokens), cfg.batch_size, 16, rng), 16, torch.device("cpu"))
    expected = cross_entropy(model(x).float(), y).item()
    logged = json.loads(open(result.metrics_path).readline())["train_loss"]
    assert logged == pytest.approx(expected, rel=1e-5)


def test_muon_run_resumes_bit_for_bit(token_files, tmp_path):
    straight = train(config(token_files, tmp_path / "straight"))
    train(config(token_files, tmp_path / "halves", max_steps=40, max_wall_seconds=None),
          should_stop=lambda step=iter(range(10_000)): next(step) >= 20 or None)
    resumed = train(config(token_files, tmp_path / "halves"))
    a, b = read_checkpoint(straight.checkpoint_path), read_checkpoint(resumed.checkpoint_path)
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])


def test_baseline_config_dict_has_no_leaderboard_keys_so_old_runs_still_resume(token_files, tmp_path):
    baseline = config(token_files, tmp_path / "run", model=ModelConfig(vocab_size=32, context_length=16, d_model=32,
                                                                       num_layers=1, num_heads=2, d_ff=64),
                      optimizer="adamw", z_loss=0.0, max_steps=20)
    stored = baseline.to_dict()
    assert not {"optimizer", "muon_lr", "muon_momentum", "muon_weight_decay", "z_loss"} & set(stored)
    assert TrainConfig.from_dict(stored) == baseline
    muon = config(token_files, tmp_path / "run")
    assert muon.to_dict()["optimizer"] == "muon" and TrainConfig.from_dict(muon.to_dict()) == muon


def test_unknown_optimizer_names_the_field(token_files, tmp_path):
    with pytest.raises(ValueError, match="TrainConfig.optimizer"):
        config(token_files, tmp_path / "run", optimizer="lion")
