"""Named presets: every knob of the asset graph, as data, in one place.

A preset fixes the corpora, tokenizer sizes, model shape, optimisation, sweep grids and sample
settings. `demo` runs the whole graph on a 2-core CPU in minutes; `cpu` is the handout's
low-resource configuration (40M tokens on TinyStories, target val loss <= 2.00); `h100` is the
handout's full run (327,680,000 tokens, target <= 1.45) with bf16, torch.compile and fused
attention; `leaderboard` is handout section 7.5 (OWT, 1.5 hours of one H100) with its configuration
as the preset's model; `test` is the tiny graph the tests use.

The preset is chosen when the definitions load (env `CS336_PRESET`, default `demo`) because the
sweep partitions come from it, and the asset definitions hold it from then on (the only way an
asset reads it). A training run's knobs are a `RunKnobs`, named as in `TrainConfig`, which is also
the run config of every training asset: run config over sweep partition over preset over
TrainConfig's own defaults, each knob under one name from here to core.

Your own copy of a corpus replaces any preset's source for a role (CS336_STORIES_TRAIN, ...; see
`cs336_assets.definitions.corpora.with_corpus_env`) when the definitions are built.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any, Mapping

from cs336_assets.knobs import ModelKnobs, RunKnobs  # noqa: F401 (re-exported: a preset's run is a RunKnobs)
from cs336_core.corpora import CORPUS_SOURCES  # the handout's URLs (sections 2 and 7)
from cs336_core.model import ModelConfig
from cs336_core.training.throughput import expected_tokens_per_second, steps_in_budget, table_peak

PRESET_ENV = "CS336_PRESET"
DEFAULT_PRESET = "demo"
ENDOFTEXT = "<|endoftext|>"


@dataclass(frozen=True)
class CorpusSpec:
    """Where a corpus role's text comes from.

    source: "generated_stories" (procedural, `target_bytes` of it), "stdlib_prose" (this Python's
    docstrings and pydoc topics, capped at `target_bytes` if > 0), "download" (`train_url` and
    `valid_url`) or "local" (`train_path`, and `valid_path` or a `valid_fraction` split).
    """

    source: str
    target_bytes: int = 0
    seed: int = 0
    valid_fraction: float = 0.05
    train_url: str = ""
    valid_url: str = ""
    train_sha256: str = ""  # of the bytes as served (the .gz for OWT); empty: not checked
    valid_sha256: str = ""
    train_path: str = ""
    valid_path: str = ""
    env: tuple[tuple[str, str], ...] = ()  # (variable, path) of the environment variables that set the paths


@dataclass(frozen=True)
class TokenizerSpec:
    vocab_size: int
    special_tokens: tuple[str, ...] = (ENDOFTEXT,)


@dataclass(frozen=True)
class SweepSpec:
    learning_rates: tuple[float, ...]
    batch_sizes: tuple[int, ...]
    # Sweep runs may be shorter than the main run; the batch-size sweep keeps tokens constant.
    max_steps: int
    # Validation points per sweep run, evenly spaced: enough for a curve, whatever the run's length.
    evals: int = 10


@dataclass(frozen=True)
class SampleSpec:
    # Prompts for each corpus role's main run.
    prompts: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: {
        "stories": ("Once upon a time", "The little dog"), "web": ("The", "In this")})
    max_new_tokens: int = 256
    temperature: float = 0.8
    top_p: float = 0.9
    seed: int = 0


@dataclass(frozen=True)
class Variant:
    """One partition of a sweep: the run knobs it sets over the preset's, and the changes to its model."""

    run: RunKnobs
    model: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"run": self.run.to_dict(), "model": dict(self.model)}


@dataclass(frozen=True)
class LeaderboardSpec:
    """Handout 7.5 at this preset's scale: the baseline against the leaderboard configuration on the
    web corpus, each for `seconds` of wall-clock (TrainConfig.max_wall_seconds), both validated at
    `context_length`. Each variant is layered over the preset like a sweep partition; `hardware`
    says what the budget is meant for (the submission records what the run actually had)."""

    seconds: float
    context_length: int
    hardware: str
    baseline: Variant
    leaderboard: Variant

    def to_dict(self) -> dict:
        return {"seconds": self.seconds, "context_length": self.context_length, "hardware": self.hardware,
                "baseline": self.baseline.to_dict(), "leaderboard": self.leaderboard.to_dict()}


@dataclass(frozen=True)
class Preset:
    name: str
    description: str
    corpora: dict[str, CorpusSpec]
    tokenizers: dict[str, TokenizerSpec]
    model: ModelConfig  # vocab_size is replaced by the role's tokenizer size
    run: RunKnobs  # of the main runs; sets at least batch_size, max_steps, lr_max, eval_every and log_every
    sweep: SweepSpec
    leaderboard: LeaderboardSpec
    samples: SampleSpec = field(default_factory=SampleSpec)
    target_val_loss: float = 2.0  # on the stories role, the handout's bar for this budget
    tokenizer_experiment_docs: int = 10
    pile_bytes: int = 825 * 10**9
    # torch intra-op threads of a training or sampling step (0: torch's default, one per core). Tiny
    # models gain little from a second thread and lose a lot when the cores are shared: measured on
    # the 2-core box under load, 0.6 s/step with 1 thread against 5.9 s/step with 2.
    torch_threads: int = 0

    def model_for(self, role: str, **variant) -> ModelConfig:
        return dataclasses.replace(self.model, vocab_size=self.tokenizers[role].vocab_size, **variant)

    def to_dict(self) -> dict:
        return {**dataclasses.asdict(self), "run": self.run.to_dict(), "leaderboard": self.leaderboard.to_dict()}


# Ablation name -> the ModelConfig fields it changes (handout section 7.3). SiLU gets d_ff=None,
# which ModelConfig resolves to 4*d_model so the parameter count roughly matches SwiGLU's.
ABLATIONS: dict[str, dict] = {
    "baseline": {},
    "no_rmsnorm": {"norm": "none"},
    "post_norm": {"norm": "post"},
    "nope": {"position": "nope"},
    "silu": {"ffn": "silu", "d_ff": None},
}

_HANDOUT_MODEL = ModelConfig(vocab_size=10_000, context_length=256, d_model=512, num_layers=4, num_heads=16,
                             d_ff=1344, rope_theta=10_000.0)
_DOWNLOADED = {
    "stories": CorpusSpec("download", train_url=CORPUS_SOURCES["tinystories"]["train"],
                          valid_url=CORPUS_SOURCES["tinystories"]["valid"]),
    "web": CorpusSpec("download", train_url=CORPUS_SOURCES["owt"]["train"], valid_url=CORPUS_SOURCES["owt"]["valid"]),
}
_HANDOUT_TOKENIZERS = {"stories": TokenizerSpec(10_000), "web": TokenizerSpec(32_000)}

# ---------------------------------------------------------------------------------------------
# The leaderboard (handout 7.5): the lowest OWT validation loss after 1.5 hours of one H100.

LEADERBOARD_SECONDS = 5_400.0
LEADERBOARD_CONTEXT = 512
# The leaderboard's model options, over any model (each in cs336_core.model; d_ff None is 4 x d_model
# for ReLU^2): QK-norm, ReLU^2 FFN, zero-initialised output projections, logit soft-cap 30.
LEADERBOARD_OPTIONS: dict[str, Any] = {"ffn": "relu2", "d_ff": None, "qk_norm": True, "zero_init_output": True,
                                       "logit_softcap": 30.0}
# Its optimizer: Muon on the blocks' matrices (AdamW at lr_max on embeddings, head and gains) and z-loss.
LEADERBOARD_OPTIMIZER: dict[str, Any] = {"optimizer": "muon", "muon_lr": 0.02, "z_loss": 1e-4}
_BASELINE_OPTIMIZER: dict[str, Any] = {"optimizer": "adamw", "z_loss": 0.0}
# GPT-2 small's width and depth at the leaderboard's context: 134M parameters with the 32K vocabulary
# (untied: tying saves 25M parameters but no time, the head's matmul runs either way, and the
# modded-nanoGPT speedruns of this size untie them). Batch 64 x 512 = 32,768 tokens a step, the
# handout's tokens per step and the shape bench/gpu_check.py measures.
_LEADERBOARD_MODEL = ModelConfig(vocab_size=32_000, context_length=LEADERBOARD_CONTEXT, d_model=768, num_layers=12,
                                 num_heads=12, fused_attention=True, **LEADERBOARD_OPTIONS)
_LEADERBOARD_BATCH = 64
# How max_steps is sized: no H100 throughput has been measured yet (docs/benchmarks.md), so each run
# assumes 30% MFU of the H100 SXM's dense bf16 peak (989 TFLOP/s): 415K tokens/s for the leaderboard
# model (714 MFLOP per token), 1.6M for the handout model at context 512, and gives 5% of the budget
# to compilation, evaluations and checkpoints. The run's submission reports `max_steps_for_budget`
# at its measured pace; set that as max_steps (run config) for the next run.
ASSUMED_H100_MFU = 0.30
_H100_BF16_PEAK = table_peak("NVIDIA H100 80GB HBM3", "bfloat16")
_H100_FAST = {"dtype": "bfloat16", "compile": True, "tf32": True, "device": "cuda"}


def _whole(model: ModelConfig) -> dict[str, Any]:
    """Every ModelConfig field but vocab_size: a variant that sets them all is the same model over any preset."""
    return {name: value for name, value in dataclasses.asdict(model).items() if name != "vocab_size"}


def _budget_run(seconds: float, tokens_per_second: float, batch_size: int, context_length: int,
                overhead: float, evals: int = 16, **knobs) -> RunKnobs:
    """Run knobs that fill `seconds`: max_steps is the steps the budget holds at `tokens_per_second`
    (so the cosine ends near the budget), with `evals` validation points along the way."""
    steps = steps_in_budget(seconds, tokens_per_second, batch_size * context_length, overhead)
    return RunKnobs(batch_size=batch_size, max_steps=steps, eval_every=max(1, steps // evals),
                    max_wall_seconds=seconds, **knobs)


def _h100_leaderboard(vocab_size: int) -> LeaderboardSpec:
    """The full-scale runs, identical over any preset: both models and optimizers are given whole."""
    baseline = dataclasses.replace(_HANDOUT_MODEL, context_length=LEADERBOARD_CONTEXT, fused_attention=True)

    def run(model: ModelConfig, **knobs) -> RunKnobs:
        rate = expected_tokens_per_second(dataclasses.replace(model, vocab_size=vocab_size), _H100_BF16_PEAK,
                                          ASSUMED_H100_MFU)
        return _budget_run(LEADERBOARD_SECONDS, rate, _LEADERBOARD_BATCH, LEADERBOARD_CONTEXT, overhead=0.05,
                           lr_max=3e-3, eval_batches=100, log_every=100, checkpoint_every=5_000, **_H100_FAST, **knobs)

    return LeaderboardSpec(
        seconds=LEADERBOARD_SECONDS, context_length=LEADERBOARD_CONTEXT, hardware="1 x H100 SXM 80 GB",
        baseline=Variant(run(baseline, **_BASELINE_OPTIMIZER), _whole(baseline)),
        leaderboard=Variant(run(_LEADERBOARD_MODEL, **LEADERBOARD_OPTIMIZER), _whole(_LEADERBOARD_MODEL)))


_FULL_SCALE = _h100_leaderboard(_HANDOUT_TOKENIZERS["web"].vocab_size)


# The demo's and the cpu preset's CPU-scale comparisons, sized by throughput measured on the 2-core box
# with the preset's torch threads. The leaderboard variant runs at ~0.65x the baseline's tokens/s
# there: on a tiny model with a 4K vocabulary, soft-capping and z-loss (passes over the logits) and
# QK-norm cost relatively more than on the GPU-sized model, so the demo's equal wall-clock is a real trade.
_DEMO_MODEL = ModelConfig(vocab_size=2_000, context_length=64, d_model=96, num_layers=2, num_heads=4, d_ff=256)
_DEMO_LEADERBOARD = LeaderboardSpec(
    seconds=60.0, context_length=64, hardware="the demo's CPU (1 torch thread)",
    # 17,700 and 11,500 tokens/s measured (web vocabulary 4,000, batch 16 x 64); 10% for evaluations.
    baseline=Variant(_budget_run(60.0, 17_000, 16, 64, overhead=0.1, **_BASELINE_OPTIMIZER)),
    leaderboard=Variant(_budget_run(60.0, 11_000, 16, 64, overhead=0.1, **LEADERBOARD_OPTIMIZER),
                        LEADERBOARD_OPTIONS))
_CPU_LEADERBOARD = LeaderboardSpec(
    seconds=1_800.0, context_length=256, hardware="a 2-core CPU",
    # ~600 tokens/s for the handout model on the 2-core box (docs/benchmarks.md: 396 under load, 746 at
    # best); 4 evaluation batches, not 20, so the 12 evaluations stay near 15% of the budget.
    baseline=Variant(_budget_run(1_800.0, 600, 32, 256, overhead=0.15, eval_batches=4, **_BASELINE_OPTIMIZER)),
    leaderboard=Variant(_budget_run(1_800.0, 480, 32, 256, overhead=0.15, eval_batches=4, **LEADERBOARD_OPTIMIZER),
                        LEADERBOARD_OPTIONS))
# A few seconds each, stopped by the budget on any machine (max_steps far beyond it).
_TEST_BUDGET = dict(max_steps=100_000, warmup_steps=10, eval_every=25, log_every=5, checkpoint_every=0,
                    max_wall_seconds=2.0)
_TEST_LEADERBOARD = LeaderboardSpec(
    seconds=2.0, context_length=32, hardware="any CPU",
    baseline=Variant(RunKnobs(**_TEST_BUDGET, **_BASELINE_OPTIMIZER)),
    leaderboard=Variant(RunKnobs(**_TEST_BUDGET, **LEADERBOARD_OPTIMIZER), LEADERBOARD_OPTIONS))

PRESETS: dict[str, Preset] = {
    "demo": Preset(
        name="demo",
        description="The whole graph on a 2-core CPU in minutes: embedded corpora, small vocabularies, "
                    "a 2-layer d_model=96 model, a few hundred steps per run; the leaderboard comparison "
                    "at 60 s each.",
        corpora={
            "stories": CorpusSpec("generated_stories", target_bytes=3_000_000, seed=0),
            "web": CorpusSpec("stdlib_prose", target_bytes=3_000_000, seed=0),
        },
        tokenizers={"stories": TokenizerSpec(2_000), "web": TokenizerSpec(4_000)},
        model=_DEMO_MODEL,
        run=RunKnobs(batch_size=16, max_steps=300, lr_max=3e-3, eval_every=30, eval_batches=8, log_every=10,
                     checkpoint_every=100, device="cpu"),
        sweep=SweepSpec(learning_rates=(3e-4, 1e-3, 3e-3, 1e-2, 1e-1, 1.0), batch_sizes=(4, 16, 64), max_steps=150),
        leaderboard=_DEMO_LEADERBOARD,
        samples=SampleSpec(max_new_tokens=96),
        # The handout's CPU bar; the generated stories are easier than TinyStories (1.75 measured).
        target_val_loss=2.0,
        torch_threads=1,
    ),
    "cpu": Preset(
        name="cpu",
        description="The handout's low-resource run: TinyStories and the OWT sample, the handout's 17M-parameter "
                    "model, 32 x 256 x 4883 = 40M tokens; target val loss <= 2.00 on TinyStories.",
        corpora=_DOWNLOADED,
        tokenizers=_HANDOUT_TOKENIZERS,
        model=_HANDOUT_MODEL,
        run=RunKnobs(batch_size=32, max_steps=4_883, lr_max=3e-3, eval_every=250, eval_batches=20, log_every=25,
                     checkpoint_every=500, device="cpu"),
        sweep=SweepSpec(learning_rates=(3e-4, 1e-3, 3e-3, 1e-2, 3e-2), batch_sizes=(8, 32, 64), max_steps=4_883),
        leaderboard=_CPU_LEADERBOARD,
        target_val_loss=2.0,
    ),
    "h100": Preset(
        name="h100",
        description="The handout's full run on one H100: 128 x 256 x 10,000 = 327,680,000 tokens in bf16 with "
                    "torch.compile and fused attention; target val loss <= 1.45 on TinyStories.",
        corpora=_DOWNLOADED,
        tokenizers=_HANDOUT_TOKENIZERS,
        # The fused (SDPA) attention on CUDA; `model: {fused_attention: false}` in a run's config
        # trains the from-scratch attention instead.
        model=dataclasses.replace(_HANDOUT_MODEL, fused_attention=True),
        run=RunKnobs(batch_size=128, max_steps=10_000, lr_max=3e-3, eval_every=500, eval_batches=50, log_every=50,
                     checkpoint_every=1_000, **_H100_FAST),
        sweep=SweepSpec(learning_rates=(1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1),
                        batch_sizes=(1, 16, 64, 128, 256), max_steps=10_000),
        leaderboard=_FULL_SCALE,
        target_val_loss=1.45,
    ),
    "leaderboard": Preset(
        name="leaderboard",
        description="Handout 7.5 on one H100: the leaderboard configuration (d_model 768, 12 layers, context 512, "
                    "QK-norm, ReLU^2, zero-init output, soft-cap 30, Muon + z-loss, bf16 + compile + fused "
                    "attention) for 1.5 hours on OWT with the 32K tokenizer; the `leaderboard` asset writes the "
                    "submission.",
        corpora=_DOWNLOADED,
        tokenizers=_HANDOUT_TOKENIZERS,
        model=_LEADERBOARD_MODEL,
        # The main runs are the leaderboard run itself (web_main_run is the `leaderboard` partition's run).
        run=_FULL_SCALE.leaderboard.run,
        # Short sweeps of the leaderboard model (about 7 minutes each at the assumed throughput).
        sweep=SweepSpec(learning_rates=(1e-3, 3e-3, 1e-2), batch_sizes=(32, 64, 128), max_steps=5_000),
        leaderboard=_FULL_SCALE,
        target_val_loss=1.45,
    ),
    "test": Preset(
        name="test",
        description="Tiny settings for the test suite: ~200 KB corpora, vocab 300/400, ~20 steps.",
        corpora={
            "stories": CorpusSpec("generated_stories", target_bytes=200_000, seed=0, valid_fraction=0.1),
            "web": CorpusSpec("stdlib_prose", target_bytes=200_000, seed=0, valid_fraction=0.1),
        },
        tokenizers={"stories": TokenizerSpec(300), "web": TokenizerSpec(400)},
        model=ModelConfig(vocab_size=300, context_length=32, d_model=32, num_layers=1, num_heads=2, d_ff=64),
        run=RunKnobs(batch_size=8, max_steps=20, lr_max=3e-3, eval_every=10, eval_batches=2, log_every=5,
                     checkpoint_every=10, device="cpu"),
        sweep=SweepSpec(learning_rates=(1e-3, 1.0), batch_sizes=(4, 8), max_steps=10),
        leaderboard=_TEST_LEADERBOARD,
        samples=SampleSpec(max_new_tokens=16),
        # Below an untrained model's 5.77 (measured with lr_max=1e-12), so only a run that learns
        # meets it; the 20 steps reach 5.28.
        target_val_loss=5.5,
        torch_threads=1,
    ),
}


def preset_name_from_env() -> str:
    return os.environ.get(PRESET_ENV, DEFAULT_PRESET)


def get_preset(name: str) -> Preset:
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)} (e.g. {PRESET_ENV}=demo)") from None


# ---------------------------------------------------------------------------------------------
# Each sweep of the handout as partition key -> Variant, built from the preset: a partition's
# values are looked up here, never parsed back from its key.


def lr_key(lr: float) -> str:
    """Partition key of a learning rate, e.g. 0.003 -> "lr=3e-03"."""
    return f"lr={lr:.0e}"


def batch_key(batch_size: int) -> str:
    return f"bs={batch_size}"


def _every(steps: int, evals: int) -> int:
    return max(1, steps // evals)


def lr_variants(preset: Preset) -> dict[str, Variant]:
    """Learning-rate sweep (handout 7.2): each of the preset's rates for the sweep's steps."""
    steps = preset.sweep.max_steps
    return {lr_key(lr): Variant(RunKnobs(lr_max=lr, max_steps=steps, eval_every=_every(steps, preset.sweep.evals)))
            for lr in preset.sweep.learning_rates}


def batch_size_variants(preset: Preset) -> dict[str, Variant]:
    """Batch-size sweep: as many tokens as the preset's batch size at the sweep's steps, so the curves
    compare equal budgets, with as many evaluations per run as the other sweeps and logging as often
    per token as the main run's."""
    steps_at_base = preset.sweep.max_steps
    tokens = steps_at_base * preset.run.batch_size
    variants = {}
    for batch_size in preset.sweep.batch_sizes:
        steps = max(1, tokens // batch_size)
        variants[batch_key(batch_size)] = Variant(RunKnobs(
            batch_size=batch_size, max_steps=steps, eval_every=_every(steps, preset.sweep.evals),
            log_every=max(1, preset.run.log_every * steps // steps_at_base)))
    return variants


def ablation_variants(preset: Preset) -> dict[str, Variant]:
    """Architecture ablations (handout 7.3) beside the baseline, for the sweep's steps."""
    steps = preset.sweep.max_steps
    return {name: Variant(RunKnobs(max_steps=steps, eval_every=_every(steps, preset.sweep.evals)), changes)
            for name, changes in ABLATIONS.items()}


def leaderboard_variants(preset: Preset) -> dict[str, Variant]:
    """Handout 7.5: "baseline" and "leaderboard", each for the spec's seconds at its context length."""
    spec = preset.leaderboard
    budget = {"max_wall_seconds": spec.seconds}
    return {name: Variant(RunKnobs(**{**variant.run.to_dict(), **budget}),
                          {**variant.model, "context_length": spec.context_length})
            for name, variant in (("baseline", spec.baseline), ("leaderboard", spec.leaderboard))}
