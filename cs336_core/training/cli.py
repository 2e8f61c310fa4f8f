"""The `cs336-train` command: `python -m cs336_core.training --config cfg.json [--field value ...]`.

Every TrainConfig and ModelConfig field has a flag (`--resume never` starts over); the TrainResult
is printed as JSON with its numbers rounded to 4 significant digits (OUT_DIR/result.json keeps them
whole). The progress bar shows the loss, last val loss, tokens/s and MFU. Under torchrun only rank 0
prints.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from pathlib import Path
from typing import Any, Callable, get_args

from cs336_core.model import FeedForwardKind, ModelConfig, NormPlacement, PositionScheme
from cs336_core.optim import OPTIMIZERS
from cs336_core.progress import ConsoleProgress, round_floats
from cs336_core.training.checkpoint import CheckpointError
from cs336_core.training.config import DEVICES, DTYPES, RESUME_MODES, TOKEN_DTYPES, TRACKERS, TrainConfig
from cs336_core.training.lock import RunLockedError
from cs336_core.training.loop import train
from cs336_core.training.run_dir import ResumeMismatch
from cs336_core.training.tracking import TrackingUnavailable


def _flag_parser(annotation: str) -> Callable[[str], Any]:
    """Flags take JSON values (numbers, true/false, null, lists); string fields take the text as is."""
    if annotation.startswith("str"):
        return str

    def parse(text: str) -> Any:
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            return text

    return parse


# One line per flag: what the field does, in the words a person choosing a value needs. The flags
# are generated from the dataclasses, so a field without a line here fails tests/test_cli.py.
FIELD_HELP: dict[str, str] = {
    # TrainConfig
    "train_path": "training tokens: a .npy file, or a raw .bin of --token-dtype",
    "out_dir": "run directory: config.json, metrics.jsonl, ckpt/, result.json",
    "valid_path": "validation tokens (.npy or .bin); without them, no validation loss",
    "token_dtype": "dtype of raw .bin token files (a .npy file carries its own)",
    "batch_size": "sequences per optimizer step (per process under torchrun)",
    "max_steps": "optimizer steps; give this or --total-tokens",
    "total_tokens": "training tokens; steps = ceil(tokens / (batch_size * context_length))",
    "lr_max": "peak learning rate, reached after warmup (AdamW's groups under Muon)",
    "lr_min": "learning rate at the end of the cosine",
    "warmup_steps": "linear warmup steps",
    "cosine_cycle_steps": "step where the cosine reaches lr_min",
    "betas": "AdamW's (beta1, beta2) as a JSON list, e.g. [0.9,0.95]",
    "eps": "AdamW's epsilon",
    "weight_decay": "AdamW's decoupled weight decay",
    "grad_clip": "clip the global gradient L2 norm to this (null: no clipping)",
    "eval_every": "evaluate every N steps (0: only at the end)",
    "eval_batches": "validation batches per evaluation",
    "eval_batch_size": "sequences per validation batch",
    "eval_seed": "seed of the validation windows, the same for every run of a sweep",
    "log_every": "write a metrics.jsonl line every N steps",
    "checkpoint_every": "write ckpt/latest.pt every N steps (0: only the final checkpoint)",
    "seed": "seed of the initialization and the training batches",
    "device": "where to train; auto = cuda if available, else mps, else cpu",
    "dtype": "bfloat16 = forward passes under bfloat16 autocast; the weights stay float32",
    "compile": "torch.compile the model",
    "tf32": "let float32 matmuls use TF32 tensor cores on CUDA",
    "divergence_factor": "stop as 'diverged' when the loss exceeds this factor times its best (null: off; "
                         "a non-finite loss always stops)",
    "resume": "continue OUT_DIR/ckpt/latest.pt if its config matches (auto = true); never = false: archive "
              "the earlier run and start over",
    "max_wall_seconds": "wall-clock budget of the whole run, summed over resumes: then evaluate, checkpoint "
                        "and stop with status 'budget'",
    "peak_flops": "the device's peak FLOP/s that MFU (in metrics.jsonl) is measured against; MFU is null "
                  "where neither this nor the built-in table of GPU peaks knows it (e.g. on CPU)",
    "tracking": "also log every metrics line to TensorBoard (OUT_DIR/tensorboard) or W&B (install "
                "the package yourself)",
    "tracking_project": "the W&B project of --tracking wandb",
    "optimizer": "muon: Muon for the blocks' matrices, AdamW for the rest (leaderboard option)",
    "muon_lr": "Muon's peak learning rate (with --optimizer muon; the schedule scales it like lr_max)",
    "muon_momentum": "Muon's momentum",
    "muon_weight_decay": "Muon's decoupled weight decay",
    "z_loss": "weight of the z-loss, mean(logsumexp(logits)^2), added to the loss (0: off)",
    # ModelConfig
    "vocab_size": "vocabulary size: the tokenizer's, special tokens included",
    "context_length": "tokens per training sequence, and the longest context",
    "d_model": "width of the residual stream",
    "num_layers": "Transformer blocks",
    "num_heads": "attention heads (d_model must divide by it)",
    "d_ff": "feed-forward inner width (null: the --ffn variant's default, 8/3 d_model for swiglu, else 4 d_model)",
    "rope_theta": "RoPE's base",
    "norm": "RMSNorm placement: pre-norm blocks (baseline), post-norm, or no RMSNorm at all",
    "position": "positional scheme: rope, or nope (none: causal masking only)",
    "ffn": "feed-forward: swiglu (baseline), silu (no gate), relu2 (ReLU squared, leaderboard option)",
    "tie_embeddings": "the output head shares the token embedding's weight",
    "fused_attention": "torch's fused scaled_dot_product_attention instead of the hand-written one",
    "qk_norm": "RMSNorm on each head's queries and keys (leaderboard option)",
    "zero_init_output": "each block's output projections start at zero (leaderboard option)",
    "logit_softcap": "logits = cap * tanh(logits / cap) (leaderboard option)",
}

# The values an enumerated field takes; argparse lists them in --help and refuses others.
FIELD_CHOICES: dict[str, tuple] = {
    "token_dtype": TOKEN_DTYPES,
    "dtype": DTYPES,
    "tracking": tuple(name for name in TRACKERS if name is not None),
    "optimizer": OPTIMIZERS,
    "norm": get_args(NormPlacement),
    "position": get_args(PositionScheme),
    "ffn": get_args(FeedForwardKind),
}
# Fields that also take a value outside a fixed list: the list goes in their help instead.
FIELD_CHOICES_IN_HELP: dict[str, str] = {
    "device": "{" + ",".join(DEVICES) + "} or cuda:N",
    "resume": "{true,false," + ",".join(RESUME_MODES) + "}",
}


# What a default of None means, where it is not "off".
DEFAULT_IN_WORDS: dict[str, str] = {
    "lr_min": "lr_max / 10",
    "warmup_steps": "5%% of the steps",
    "cosine_cycle_steps": "all steps",
    "eval_batch_size": "--batch-size",
    "tracking_project": "cs336",
    "max_steps": "none",
    "total_tokens": "none",
    "peak_flops": "the table's",
}


def _flag_help(f: dataclasses.Field) -> str:
    if f.default is dataclasses.MISSING:
        default = "required"
    elif f.name in DEFAULT_IN_WORDS:
        default = f"default {DEFAULT_IN_WORDS[f.name]}"
    else:
        default = "default off" if f.default is None else f"default {f.default}"
    if f.name in FIELD_CHOICES_IN_HELP:
        default = f"{FIELD_CHOICES_IN_HELP[f.name]}; {default}"
    return f"{FIELD_HELP.get(f.name, '')} ({default})"


def _add_field_flag(parser, f: dataclasses.Field, dest: str, aliases: list[str] = ()) -> None:
    """`--field-name VALUE` for a dataclass field; a bool flag alone means true (`--compile`)."""
    is_bool = str(f.type) == "bool"
    choices = FIELD_CHOICES.get(f.name)
    metavar = "BOOL" if is_bool else None if choices else f.name.upper()
    parser.add_argument("--" + f.name.replace("_", "-"), *aliases, dest=dest, type=_flag_parser(str(f.type)),
                        default=argparse.SUPPRESS, nargs="?" if is_bool else None,
                        const=True if is_bool else None, metavar=metavar, choices=choices, help=_flag_help(f))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cs336-train",
        description="Train a Transformer LM on memory-mapped token files. Resumes OUT_DIR/ckpt/latest.pt if the run "
                    "there was started with the same config (--resume never archives it and starts over).",
    )
    parser.add_argument("--config", help="a TrainConfig JSON file; the flags below override its values")
    aliases = {"train_path": ["--train"], "valid_path": ["--valid"], "max_steps": ["--steps"]}
    for f in dataclasses.fields(TrainConfig):
        if f.name != "model":
            _add_field_flag(parser, f, f.name, aliases.get(f.name, []))
    model_flags = parser.add_argument_group("model (ModelConfig fields)")
    for f in dataclasses.fields(ModelConfig):
        _add_field_flag(model_flags, f, "model." + f.name)
    return parser


def config_from_args(argv: list[str] | None = None) -> TrainConfig:
    parser = build_parser()
    args = vars(parser.parse_args(argv))
    data: dict[str, Any] = {}
    config_path = args.pop("config", None)
    if config_path:
        if not Path(config_path).is_file():
            parser.error(f"config file not found: {config_path}")
        try:
            data = json.loads(Path(config_path).read_text(encoding="utf-8"))
        except json.JSONDecodeError as error:
            parser.error(f"config file {config_path} is not valid JSON: {error}")
    data["model"] = dict(data.get("model", {}))
    for key, value in args.items():
        if key.startswith("model."):
            data["model"][key.removeprefix("model.")] = value
        else:
            data[key] = value
    try:
        return TrainConfig.from_dict(data)
    except (ValueError, TypeError) as error:
        parser.error(str(error))


def main(argv: list[str] | None = None) -> int:
    config = config_from_args(argv)
    is_main = int(os.environ.get("RANK", "0")) == 0
    progress = ConsoleProgress(unit="step") if is_main else None
    try:
        result = train(config, progress=progress)
    except (RunLockedError, ResumeMismatch, CheckpointError, TrackingUnavailable) as error:
        # A refusal that says what to do, not a bug: one line instead of a traceback.
        print(f"cs336-train: error: {error}", file=sys.stderr)
        return 2
    finally:
        if progress is not None:
            progress.close()
    if is_main:
        print(json.dumps(round_floats(result.to_dict()), indent=2))
    return 0
