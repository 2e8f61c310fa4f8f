"""cs336_core.training.checkpoint.load_model: the model a run checkpoint holds, ready to generate."""

import pytest
import torch

from cs336_core.model import ModelConfig, TransformerLM
from cs336_core.training import CheckpointError, save_checkpoint
from cs336_core.training.checkpoint import load_model

CONFIG = ModelConfig(vocab_size=50, context_length=16, d_model=16, num_layers=1, num_heads=2, d_ff=32, norm="post")


def test_load_model_rebuilds_the_checkpointed_model(tmp_path):
    torch.manual_seed(0)
    model = TransformerLM.from_config(CONFIG)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    save_checkpoint(model, optimizer, 3, tmp_path / "final.pt", config={"model": CONFIG.to_dict()})
    loaded = load_model(tmp_path / "final.pt")
    assert not loaded.training
    assert loaded.config == model.config
    ids = torch.randint(0, 50, (2, 16))
    with torch.no_grad():
        assert torch.equal(loaded(ids), model.eval()(ids))


def test_a_checkpoint_without_a_model_config_is_a_clear_error(tmp_path):
    model = TransformerLM.from_config(CONFIG)
    save_checkpoint(model, torch.optim.SGD(model.parameters(), lr=0.1), 0, tmp_path / "bare.pt")
    with pytest.raises(CheckpointError, match="holds no model config"):
        load_model(tmp_path / "bare.pt")
