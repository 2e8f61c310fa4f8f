"""The knobs of a training run as Dagster run config, under the core's own names.

`RunKnobs` carries `TrainConfig`'s field names and `ModelKnobs` `ModelConfig`'s, so a preset's run,
a sweep partition's variant and an asset's run config are the same class, layered, and building
the core's config from them is a pass-through (see `cs336_assets.definitions.training.train_config`).
"""

from __future__ import annotations

from typing import Any, Optional

from dagster import Config


class ModelKnobs(Config):
    """Changes to a run's model under `ModelConfig`'s own field names (its vocab_size comes from the
    role's tokenizer). Unset (None) keeps the model below, so d_ff and logit_softcap can be set here
    but not switched back to None; e.g. `model: {fused_attention: false}` trains with the
    from-scratch attention on a preset that fuses it."""

    context_length: Optional[int] = None
    d_model: Optional[int] = None
    num_layers: Optional[int] = None
    num_heads: Optional[int] = None
    d_ff: Optional[int] = None
    rope_theta: Optional[float] = None
    norm: Optional[str] = None
    position: Optional[str] = None
    ffn: Optional[str] = None
    tie_embeddings: Optional[bool] = None
    fused_attention: Optional[bool] = None
    qk_norm: Optional[bool] = None
    zero_init_output: Optional[bool] = None
    logit_softcap: Optional[float] = None


class RunKnobs(Config):
    """Knobs of a training run under `TrainConfig`'s own field names; unset (None) falls through to
    the layer below: run config over sweep partition over preset over TrainConfig's default (which
    resolves lr_min to lr_max / 10 and warmup_steps to 5% of the steps). `model` changes the
    layer's model (`ModelKnobs`, as TrainConfig.model). Knobs whose None means "off" in TrainConfig
    (grad_clip, divergence_factor, max_wall_seconds, peak_flops, tracking) can be set here but not
    switched off. Not here: the paths and token_dtype (the asset's), total_tokens (the presets give
    max_steps) and resume (the asset resumes or archives)."""

    batch_size: Optional[int] = None
    max_steps: Optional[int] = None
    lr_max: Optional[float] = None
    lr_min: Optional[float] = None
    warmup_steps: Optional[int] = None
    cosine_cycle_steps: Optional[int] = None
    betas: Optional[list[float]] = None
    eps: Optional[float] = None
    weight_decay: Optional[float] = None
    grad_clip: Optional[float] = None
    eval_every: Optional[int] = None
    eval_batches: Optional[int] = None
    eval_batch_size: Optional[int] = None
    eval_seed: Optional[int] = None
    log_every: Optional[int] = None
    checkpoint_every: Optional[int] = None
    device: Optional[str] = None
    seed: Optional[int] = None
    divergence_factor: Optional[float] = None
    # Speed: bf16 autocast, torch.compile, TF32 matmuls on CUDA, and a wall-clock budget in seconds
    # (status "budget" when spent, after a final evaluation and checkpoint).
    dtype: Optional[str] = None
    compile: Optional[bool] = None
    tf32: Optional[bool] = None
    max_wall_seconds: Optional[float] = None
    peak_flops: Optional[float] = None  # FLOP/s of one device for the MFU, where torch's name is not in core's table
    tracking: Optional[str] = None  # "tensorboard" or "wandb"
    tracking_project: Optional[str] = None
    # The leaderboard's optimizer options (handout 7.5): "muon" for the blocks' matrices, and z-loss.
    optimizer: Optional[str] = None
    muon_lr: Optional[float] = None
    muon_momentum: Optional[float] = None
    muon_weight_decay: Optional[float] = None
    z_loss: Optional[float] = None
    model: Optional[ModelKnobs] = None

    def given(self) -> dict[str, Any]:
        """The knobs set in this layer, as TrainConfig keyword arguments (the model's changes apart)."""
        return self.model_dump(exclude_none=True, exclude={"model"})

    def model_changes(self) -> dict[str, Any]:
        """The ModelConfig fields this layer sets."""
        return self.model.model_dump(exclude_none=True) if self.model is not None else {}

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True)
