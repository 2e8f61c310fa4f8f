"""cs336_core: Stanford CS336 assignment 1 written from scratch (no Dagster in here).

Modules and packages, one per concept:
  bpe/          byte-level BPE: train_bpe, Tokenizer, encode_file, GPT-2's file format, the cs336-bpe CLI
  tokenization  bpe's former name: re-exports it; `python -m cs336_core.tokenization` runs cs336-bpe
  model         Linear ... TransformerLM, ModelConfig (the typed, serialisable model shape)
  kernels       hand-written autograd kernels behind model (speed only; model reads without them)
  optim         cross_entropy (+ z-loss), AdamW, SGD, lr_cosine_schedule, clip_gradients, build_optimizer
  muon          the Muon optimizer (Newton-Schulz orthogonalised updates) with AdamW for the rest
  data          memory-mapped token files, get_batch, fixed validation batches
  training/     TrainConfig, train(), checkpoints, the run lock and resume rule, DDP, the CLI
  decoding      generate() with temperature, top-p, and the KV cache
  accounting    parameter, FLOP and memory arithmetic of the handout's written problems
  corpora/      embedded corpora (generated stories, stdlib prose), the verified downloader, documents
  reporting     loss-curve tables and plots, Markdown rendering for the report
  configs       the one loader and number check that every config dataclass shares
  files, progress  atomic writes, gzip-aware reading and progress callbacks shared by all of the above

Names are imported lazily so `import cs336_core` stays cheap (tokenizer worker processes need
no torch) while `from cs336_core import X` works for every public name.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "bpe": [
        "train_bpe", "Tokenizer", "encode_file", "save_vocab_merges", "load_vocab_merges",
        "GPT2_PRETOKENIZE_PATTERN", "vocab_from_merges",
    ],
    "model": [
        "Linear", "Embedding", "RMSNorm", "SwiGLU", "SiLUFeedForward", "silu", "softmax",
        "RotaryPositionalEmbedding", "scaled_dot_product_attention", "MultiHeadSelfAttention",
        "TransformerBlock", "TransformerLM", "ModelConfig", "default_d_ff", "ReLUSquaredFeedForward",
    ],
    "optim": ["cross_entropy", "lm_loss", "AdamW", "SGD", "lr_cosine_schedule", "clip_gradients", "build_optimizer",
              "set_lr"],
    "muon": ["MuonWithAdamW", "muon_param_groups", "newton_schulz"],
    "data": ["get_batch", "load_tokens", "validation_batches"],
    "training": ["TrainConfig", "TrainResult", "train", "save_checkpoint", "load_checkpoint", "read_checkpoint",
                 "RunLock", "RunLockedError", "ResumeMismatch", "CheckpointError"],
    "decoding": ["generate", "KVCache"],
    "accounting": ["ModelShape", "count_parameters", "forward_flops", "training_memory", "adamw_step_flops",
                   "max_batch_size", "training_days", "parameter_memory_bytes", "gpt2_accounting_tables"],
    "corpora": [
        "generate_stories", "stdlib_prose", "download", "DownloadError", "CORPUS_SOURCES", "ENDOFTEXT",
        "iter_documents", "split_documents", "sample_documents", "corpus_stats", "check_plausible_text",
        "materialize_corpus",
    ],
    "reporting": [
        "read_metrics", "loss_curve_table", "plot_loss_curves", "png_markdown", "render_token",
        "longest_tokens", "markdown_table", "render_report",
    ],
    "files": ["atomic_path", "atomic_copy", "atomic_write_bytes", "atomic_write_text", "atomic_write_json",
              "remove_stale_partials", "open_binary"],
    "progress": ["ProgressFn", "ConsoleProgress", "ThrottledLog", "PhaseTimer"],
}
_NAME_TO_MODULE = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = sorted(_NAME_TO_MODULE)


def __getattr__(name: str):
    module = _NAME_TO_MODULE.get(name)
    if module is None:
        raise AttributeError(f"module 'cs336_core' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__():
    return __all__
