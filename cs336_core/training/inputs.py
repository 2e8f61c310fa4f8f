"""What a run reads before it trains: its token files, checked against the model, and its seeds."""

from __future__ import annotations

import random

import numpy as np
import torch

from cs336_core.data import check_long_enough, check_token_ids, load_tokens, validation_batches
from cs336_core.training.config import TrainConfig


def load_data(config: TrainConfig, device: torch.device, with_validation: bool) -> tuple[np.ndarray, list]:
    """The training tokens and the fixed validation batches, both checked against the model's vocabulary."""

    def open_tokens(path: str) -> np.ndarray:
        return load_tokens(path, dtype=None if path.endswith(".npy") else config.token_dtype)

    context_length, vocab_size = config.model.context_length, config.model.vocab_size
    train_tokens = open_tokens(config.train_path)
    check_long_enough(train_tokens, context_length, name=f"training set {config.train_path}")
    check_token_ids(train_tokens, vocab_size, name=f"training set {config.train_path}")
    if config.valid_path is None or not with_validation:
        return train_tokens, []
    val_tokens = open_tokens(config.valid_path)
    check_token_ids(val_tokens, vocab_size, name=f"validation set {config.valid_path}")
    return train_tokens, validation_batches(val_tokens, config.eval_batch_size, context_length,
                                            config.eval_batches, config.eval_seed, device)


def seed_everything(seed: int) -> np.random.Generator:
    """Seed torch, numpy and python; return the generator of batch start offsets."""
    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)
    return np.random.default_rng(seed)
