"""Named presets: every knob of the asset graph, as data, in one place.

A preset fixes the corpora, tokenizer sizes, model shape, optimisation, sweep grids and sample
settings. `demo` runs the whole graph on a 2-core CPU in minutes; `cpu` is the handout's
low-resource configuration (40M tokens on TinyStories, target val loss <= 2.00); `h100` is the
handout's full run (327,680,000 tokens, target <= 1.45); `test` is the tiny graph the tests use.

The preset is chosen when the definitions load (env `CS336_PRESET`, default `demo`) because the
sweep partitions come from it, and the asset definitions hold it from then on (the only way an
asset reads it). A training run's knobs are a `RunKnobs`, named as in `TrainConfig`, which is also
the run config of every training asset: run config over sweep partition over preset over
TrainConfig's own defaults, each knob under one name from here to core.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional

from dagster import Config

from cs336_core.corpora import CORPUS_SOURCES  # the handout's URLs (sections 2 and 7)
from cs336_core.model import ModelConfig

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


@dataclass(frozen=True)
class TokenizerSpec:
    vocab_size: int
    special_tokens: tuple[str, ...] = (ENDOFTEXT,)


class RunKnobs(Config):
    """Knobs of a training run under `TrainConfig`'s own field names; unset (None) falls through to
    the layer below: run config over sweep partition over preset over TrainConfig's default (which
    resolves lr_min to lr_max / 10 and warmup_steps to 5% of the steps)."""

    batch_size: Optional[int] = None
    max_steps: Optional[int] = None
    lr_max: Optional[float] = None
    lr_min: Optional[float] = None
    warmup_steps: Optional[int] = None
    betas: Optional[list[float]] = None
    weight_decay: Optional[float] = None
    grad_clip: Optional[float] = None
    eval_every: Optional[int] = None
    eval_batches: Optional[int] = None
    log_every: Optional[int] = None
    checkpoint_every: Optional[int] = None
    device: Optional[str] = None
    seed: Optional[int] = None
    dtype: Optional[str] = None
    compile: Optional[bool] = None

    def given(self) -> dict[str, Any]:
        """The knobs set in this layer, as TrainConfig keyword arguments."""
        return self.model_dump(exclude_none=True)


@dataclass(frozen=True)
class SweepSpec:
    learning_rates: tuple[float, ...]
    batch_sizes: tuple[int, ...]
    # Sweep runs may be shorter than the main run; the batch-size sweep keeps tokens constant.
    max_steps: int


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
class Preset:
    name: str
    description: str
    corpora: dict[str, CorpusSpec]
    tokenizers: dict[str, TokenizerSpec]
    model: ModelConfig  # vocab_size is replaced by the role's tokenizer size
    run: RunKnobs  # of the main runs; sets at least batch_size, max_steps, lr_max, eval_every and log_every
    sweep: SweepSpec
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
        return {**dataclasses.asdict(self), "run": self.run.given()}


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

PRESETS: dict[str, Preset] = {
    "demo": Preset(
        name="demo",
        description="The whole graph on a 2-core CPU in minutes: embedded corpora, small vocabularies, "
                    "a 2-layer d_model=96 model, a few hundred steps per run.",
        corpora={
            "stories": CorpusSpec("generated_stories", target_bytes=3_000_000, seed=0),
            "web": CorpusSpec("stdlib_prose", target_bytes=3_000_000, seed=0),
        },
        tokenizers={"stories": TokenizerSpec(2_000), "web": TokenizerSpec(4_000)},
        model=ModelConfig(vocab_size=2_000, context_length=64, d_model=96, num_layers=2, num_heads=4, d_ff=256),
        run=RunKnobs(batch_size=16, max_steps=300, lr_max=3e-3, eval_every=50, eval_batches=8, log_every=10,
                     checkpoint_every=100, device="cpu"),
        sweep=SweepSpec(learning_rates=(3e-4, 1e-3, 3e-3, 1e-2, 1e-1, 1.0), batch_sizes=(4, 16, 64), max_steps=150),
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
        target_val_loss=2.0,
    ),
    "h100": Preset(
        name="h100",
        description="The handout's full run on one H100: 128 x 256 x 10,000 = 327,680,000 tokens; "
                    "target val loss <= 1.45 on TinyStories.",
        corpora=_DOWNLOADED,
        tokenizers=_HANDOUT_TOKENIZERS,
        model=_HANDOUT_MODEL,
        run=RunKnobs(batch_size=128, max_steps=10_000, lr_max=3e-3, eval_every=500, eval_batches=50, log_every=50,
                     checkpoint_every=1_000, device="cuda"),
        sweep=SweepSpec(learning_rates=(1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1),
                        batch_sizes=(1, 16, 64, 128, 256), max_steps=10_000),
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


@dataclass(frozen=True)
class Variant:
    """One partition of a sweep: the run knobs it sets over the preset's, and the changes to its model."""

    run: RunKnobs
    model: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"run": self.run.given(), "model": dict(self.model)}


def lr_key(lr: float) -> str:
    """Partition key of a learning rate, e.g. 0.003 -> "lr=3e-03"."""
    return f"lr={lr:.0e}"


def batch_key(batch_size: int) -> str:
    return f"bs={batch_size}"


# Each sweep of the handout as partition key -> Variant, built from the preset: a partition's
# values are looked up here, never parsed back from its key.

def lr_variants(preset: Preset) -> dict[str, Variant]:
    """Learning-rate sweep (handout 7.2): each of the preset's rates for the sweep's steps."""
    return {lr_key(lr): Variant(RunKnobs(lr_max=lr, max_steps=preset.sweep.max_steps))
            for lr in preset.sweep.learning_rates}


def batch_size_variants(preset: Preset) -> dict[str, Variant]:
    """Batch-size sweep: as many tokens as the preset's batch size at the sweep's steps, so the curves
    compare equal budgets, with evaluation and logging as often per token as the main run's."""
    steps_at_base = preset.sweep.max_steps
    tokens = steps_at_base * preset.run.batch_size
    variants = {}
    for batch_size in preset.sweep.batch_sizes:
        steps = max(1, tokens // batch_size)
        variants[batch_key(batch_size)] = Variant(RunKnobs(
            batch_size=batch_size, max_steps=steps,
            eval_every=max(1, preset.run.eval_every * steps // steps_at_base),
            log_every=max(1, preset.run.log_every * steps // steps_at_base)))
    return variants


def ablation_variants(preset: Preset) -> dict[str, Variant]:
    """Architecture ablations (handout 7.3) beside the baseline, for the sweep's steps."""
    return {name: Variant(RunKnobs(max_steps=preset.sweep.max_steps), changes) for name, changes in ABLATIONS.items()}
