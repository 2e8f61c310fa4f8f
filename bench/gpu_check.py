"""The prepared GPU check: cs336_core's model on one CUDA GPU, in one run of at most ~8 minutes.

    python bench/gpu_check.py --out bench/results/gpu_check          # one CUDA GPU
    python bench/gpu_check.py --dry-run --out /tmp/gpu_check_dry    # CPU, tiny sizes, seconds

Writes <out>/gpu_check.json and <out>/gpu_check.md, rewritten after every section so that a run cut
short still leaves what it measured. Sections:
  correctness  a small model's logits and gradients (one forward + backward) against a float64 CPU
               copy of the same weights: fp32 on the GPU (TF32 off) within a relative tolerance, and
               bf16 autocast within 1.5x of the error of torch's own path (the torch.nn + SDPA
               reference from bench_model.py, same weights, same autocast);
  training     tokens/s, MFU and peak GPU memory of full training steps (forward, loss, backward,
               gradient clipping at 1.0, optimizer step, the loss read back as the training loop
               does) at the handout's TinyStories shape (batch 128 x context 256): the from-scratch
               path eager fp32 with TF32 matmuls, bf16 autocast, bf16 + torch.compile, fused
               attention (SDPA) + bf16 + compile, the torch-native reference (bf16 + compile,
               torch.optim.AdamW); then the leaderboard configuration (wider/deeper, bf16 + compile,
               the model options and Muon when cs336_core has them);
  generation   greedy decoding with and without the KV cache: tokens/s, identical output, peak memory;
  projection   the wall-clock to train 327,680,000 tokens (the handout's TinyStories budget) at each
               measured rate, and whether it fits the handout's 30 to 40 minutes.

MFU = tokens/s x cs336_core.training.throughput.flops_per_token (3 x the forward matmul FLOPs per
token, full T x T attention) / the GPU's dense peak for the variant's precision, from the training
loop's table by device name (H100/H200, A100, ...) or --peak-tflops; the JSON names it, and a
training run's MFU uses the same numbers.
Every section and variant runs inside try/except and under the run's time budget (--budget-s): one
that fails (e.g. compilation) is recorded and the rest still run; one the budget cannot fit is
skipped with a note; one that overruns is stopped by an alarm. Timed steps: a few warm-up steps
(compilation included), then as many steps as fit --timed-seconds.

--dry-run runs the same code on the CPU with tiny sizes (a test runs it so this script cannot rot):
"GPU" there means the CPU itself, compile variants run eagerly unless --dry-run-compile, and the
MFU peak is a measured CPU matmul rate. Its figures are not performance figures.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import gc
import math
import platform
import resource
import signal
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench_model, for the torch-native reference
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_model import matmul_peak_gflops, reference_from_ours, reference_name  # noqa: E402
from cs336_core.accounting import count_parameters  # noqa: E402
from cs336_core.decoding import generate  # noqa: E402
from cs336_core.files import atomic_write_json, atomic_write_text  # noqa: E402
from cs336_core.model import ModelConfig, TransformerLM  # noqa: E402
from cs336_core.optim import AdamW, clip_gradients, cross_entropy  # noqa: E402
from cs336_core.training.throughput import DENSE_PEAK_FLOPS, flops_per_token, table_peak  # noqa: E402

TINYSTORIES_TOKENS = 327_680_000  # the handout's budget: 128 x 256 x 10,000 steps
HANDOUT_MINUTES = (30, 40)  # the handout's expected wall-clock for it on one H100
BF16_ERROR_RATIO_LIMIT = 1.5
FP32_RELATIVE_TOLERANCE = 1e-4  # relative L2 error against float64; fp32 rounding gives ~1e-6
GRAD_CLIP = 1.0

# The options another change adds to ModelConfig for the leaderboard model; each is used when present.
LEADERBOARD_OPTIONS: dict[str, Any] = {"qk_norm": True, "ffn": "relu2", "zero_init_output": True, "logit_softcap": 30.0}


# ----------------------------------------------------------------------------------------------
# Sizes: the one thing --dry-run changes


@dataclass(frozen=True)
class Sizes:
    tinystories: ModelConfig  # the training variants' model
    batch_size: int
    correctness: ModelConfig
    correctness_batch: int
    leaderboard: dict[str, Any]  # ModelConfig keyword arguments before the optional options
    leaderboard_batch: int
    generation_context: int
    prompt_tokens: int
    new_tokens: int
    warmup_steps: int
    min_steps: int
    max_steps: int
    # Lower bounds of what each kind of variant needs (seconds): below it left, a variant is skipped.
    need_eager_s: float
    need_compiled_s: float
    need_leaderboard_s: float
    need_small_s: float  # correctness, generation


HANDOUT_MODEL = ModelConfig(vocab_size=10_000, context_length=256, d_model=512, num_layers=4, num_heads=16,
                            d_ff=1344, rope_theta=10_000.0)
CORRECTNESS_MODEL = ModelConfig(vocab_size=512, context_length=64, d_model=128, num_layers=2, num_heads=4, d_ff=384)

REAL = Sizes(
    tinystories=HANDOUT_MODEL, batch_size=128,
    correctness=CORRECTNESS_MODEL, correctness_batch=4,
    # 64 x 512 = the same 32,768 tokens a step as 128 x 256.
    leaderboard=dict(vocab_size=32_000, context_length=512, d_model=768, num_layers=12, num_heads=12, d_ff=None),
    leaderboard_batch=64,
    generation_context=512, prompt_tokens=16, new_tokens=256,
    warmup_steps=3, min_steps=5, max_steps=200,
    need_eager_s=20.0, need_compiled_s=60.0, need_leaderboard_s=90.0, need_small_s=10.0,
)
DRY = Sizes(
    tinystories=ModelConfig(vocab_size=256, context_length=32, d_model=64, num_layers=2, num_heads=4, d_ff=128),
    batch_size=4,
    correctness=CORRECTNESS_MODEL, correctness_batch=4,  # the real check: small enough for a CPU
    leaderboard=dict(vocab_size=320, context_length=64, d_model=64, num_layers=2, num_heads=2, d_ff=None),
    leaderboard_batch=2,
    generation_context=64, prompt_tokens=8, new_tokens=16,
    warmup_steps=1, min_steps=2, max_steps=2,
    need_eager_s=1.0, need_compiled_s=1.0, need_leaderboard_s=1.0, need_small_s=1.0,
)


# ----------------------------------------------------------------------------------------------
# Peaks, the time budget, memory


def gpu_peaks(device_name: str, peak_tflops: float | None) -> dict[str, Any]:
    """The dense peaks (TFLOP/s) MFU divides by: from --peak-tflops (bf16) if given, else by device name.

    The table is the training loop's (cs336_core.training.throughput.DENSE_PEAK_FLOPS), so this check
    and a training run's MFU agree. With --peak-tflops, TF32 is taken as half the bf16 peak (as on A100
    and H100) and fp32 is unknown. An unknown GPU without it gets None peaks: tokens/s are still
    measured, MFU is not.
    """
    if peak_tflops is not None:
        if not peak_tflops > 0:
            raise ValueError(f"--peak-tflops must be positive, got {peak_tflops}")
        return {"source": f"--peak-tflops {peak_tflops:g} (bf16 dense); TF32 assumed half of it",
                "bf16": peak_tflops, "tf32": peak_tflops / 2, "fp32": None}
    peaks = {ours: table_peak(device_name, core) for ours, core in (("bf16", "bfloat16"), ("tf32", "tf32"),
                                                                     ("fp32", "float32"))}
    if peaks["bf16"] is None:
        return {"source": f"unknown GPU {device_name!r}: pass --peak-tflops for MFU", **peaks}
    matched = next(key for key, _ in DENSE_PEAK_FLOPS if key in device_name.lower())
    return {"source": f"datasheet dense peak for {matched!r} (matched in {device_name!r}; "
                      "cs336_core.training.throughput's table)", **{k: v / 1e12 for k, v in peaks.items()}}


def cpu_peaks() -> dict[str, Any]:
    gflops = matmul_peak_gflops(n=512, repeats=3)
    tflops = gflops / 1000
    return {"source": f"--dry-run: measured CPU fp32 512^2 matmul, {gflops:.1f} GFLOP/s, used for every precision "
                      "(not a real MFU)", "bf16": tflops, "tf32": tflops, "fp32": tflops}


class BudgetExceeded(Exception):
    """Raised by the alarm inside a section that ran past what was left of the run's time budget."""


class Budget:
    """The run's wall-clock allowance, measured from the start of main()."""

    def __init__(self, seconds: float):
        self.seconds, self.start = seconds, time.perf_counter()

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def left(self) -> float:
        return self.seconds - self.elapsed()

    @contextlib.contextmanager
    def alarm(self, reserve: float = 0.0):
        """Stop the block (BudgetExceeded) once only `reserve` seconds of the budget are left.

        A signal is the one way to bound torch.compile, which has no timeout of its own.
        """
        left = self.left() - reserve
        if left <= 0:
            raise BudgetExceeded(f"no time left of the {self.seconds:.0f} s budget")

        def ring(signum, frame):
            raise BudgetExceeded(f"stopped {self.elapsed():.0f} s into the run, to keep {reserve:.0f} s of the "
                                 f"{self.seconds:.0f} s budget for what follows")

        previous = signal.signal(signal.SIGALRM, ring)
        signal.setitimer(signal.ITIMER_REAL, left)
        try:
            yield
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_memory(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_gib(device: torch.device) -> tuple[float, str]:
    """Peak memory since reset_memory and what it measures (the CPU has no per-section peak)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30, "GPU memory allocated by torch"
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, "process peak RSS so far (CPU)"


def relative_error(values: dict[str, torch.Tensor], truth: dict[str, torch.Tensor]) -> float:
    """||values - truth|| / ||truth|| over all the tensors together, in float64 on the CPU."""
    if values.keys() != truth.keys():
        raise ValueError(f"tensors differ in names: {sorted(values.keys() ^ truth.keys())[:5]}")
    diff = sum(float(((values[k].double().cpu() - truth[k].double().cpu()) ** 2).sum()) for k in truth)
    norm = sum(float((truth[k].double().cpu() ** 2).sum()) for k in truth)
    return math.sqrt(diff / norm) if norm else math.sqrt(diff)


def autocast(device: torch.device, precision: str):
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def set_tf32(enabled: bool) -> None:
    # "high" lets fp32 matmuls use TF32 tensor cores (what TrainConfig.tf32 does); "highest" is true fp32.
    torch.set_float32_matmul_precision("high" if enabled else "highest")
    torch.backends.cudnn.allow_tf32 = enabled


def short_error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ''}"


# ----------------------------------------------------------------------------------------------
# Correctness



def forward_backward(model: torch.nn.Module, ids: torch.Tensor, device: torch.device, precision: str,
                     loss_fn: Callable, names: list[str], name_map: Callable[[str], str] = lambda n: n
                     ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Logits and gradients of one forward + backward; gradients keyed by our parameter `names`.

    `name_map` turns one of our names into `model`'s (the reference names its parameters differently).
    """
    model.zero_grad(set_to_none=True)
    x, y = ids[:, :-1].to(device), ids[:, 1:].to(device)
    with autocast(device, precision):
        logits = model(x)
    loss_fn(logits if logits.dtype == torch.float64 else logits.float(), y).backward()
    params = dict(model.named_parameters())
    grads = {name: params[name_map(name)].grad.detach().cpu() for name in names}
    return {"logits": logits.detach().cpu()}, grads


def torch_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits.flatten(0, 1), targets.flatten())


def check_correctness(sizes: Sizes, device: torch.device) -> dict[str, Any]:
    cfg, batch = sizes.correctness, sizes.correctness_batch
    torch.manual_seed(0)
    base = TransformerLM(cfg)  # float32 on the CPU: every copy below starts from these weights
    state, names = base.state_dict(), [name for name, _ in base.named_parameters()]
    ids = torch.randint(0, cfg.vocab_size, (batch, cfg.context_length + 1), generator=torch.Generator().manual_seed(1))

    def ours(dtype: torch.dtype, on: torch.device, fused: bool = False) -> TransformerLM:
        model = TransformerLM(dataclasses.replace(cfg, fused_attention=fused))
        model.load_state_dict(state)
        return model.to(device=on, dtype=dtype)

    def run(model, on, precision, loss_fn=cross_entropy, name_map=lambda n: n):
        return forward_backward(model, ids, on, precision, loss_fn, names, name_map)

    cpu = torch.device("cpu")
    truth_logits, truth_grads = run(ours(torch.float64, cpu), cpu, "fp64")
    where = "GPU" if device.type == "cuda" else "CPU (dry run: the device under test is the CPU itself)"
    rows = []
    set_tf32(False)  # the fp32 check is of true fp32 arithmetic
    try:
        cpu_logits, cpu_grads = run(ours(torch.float32, cpu), cpu, "fp32")
        fp32_paths = (
            ("from-scratch", ours(torch.float32, device), cross_entropy, lambda n: n),
            ("fused attention (SDPA)", ours(torch.float32, device, fused=True), cross_entropy, lambda n: n),
            ("torch-native reference", reference_from_ours(ours(torch.float32, device)), torch_loss, reference_name),
        )
        for label, model, loss_fn, name_map in fp32_paths:
            logits, grads = run(model, device, "fp32", loss_fn, name_map)
            row = {"path": label, "precision": "fp32 (TF32 off)", "device": where,
                   "logits_rel_err": relative_error(logits, truth_logits),
                   "grads_rel_err": relative_error(grads, truth_grads),
                   "vs_cpu_fp32_logits_rel_err": relative_error(logits, cpu_logits),
                   "vs_cpu_fp32_grads_rel_err": relative_error(grads, cpu_grads),
                   "tolerance": FP32_RELATIVE_TOLERANCE}
            row["passed"] = max(row["logits_rel_err"], row["grads_rel_err"]) <= FP32_RELATIVE_TOLERANCE
            rows.append(row)
    finally:
        set_tf32(True)
    torch_logits, torch_grads = run(reference_from_ours(ours(torch.float32, device)), device, "bf16", torch_loss,
                                    reference_name)
    torch_errors = {"logits": relative_error(torch_logits, truth_logits),
                    "grads": relative_error(torch_grads, truth_grads)}
    for label, fused in (("from-scratch", False), ("fused attention (SDPA)", True)):
        logits, grads = run(ours(torch.float32, device, fused), device, "bf16")
        errors = {"logits": relative_error(logits, truth_logits), "grads": relative_error(grads, truth_grads)}
        ratios = {k: errors[k] / torch_errors[k] for k in errors}
        rows.append({"path": label, "precision": "bf16 autocast", "device": where,
                     "logits_rel_err": errors["logits"], "grads_rel_err": errors["grads"],
                     "torch_logits_rel_err": torch_errors["logits"], "torch_grads_rel_err": torch_errors["grads"],
                     "ratio_logits": ratios["logits"], "ratio_grads": ratios["grads"],
                     "limit": BF16_ERROR_RATIO_LIMIT, "passed": max(ratios.values()) <= BF16_ERROR_RATIO_LIMIT})
    return {"model": cfg.to_dict(), "batch_size": batch,
            "truth": "our model in float64 on the CPU, same weights and batch (one forward + backward)",
            "rows": rows, "passed": all(r["passed"] for r in rows)}


# ----------------------------------------------------------------------------------------------
# Training throughput


@dataclass(frozen=True)
class Variant:
    name: str
    kind: str  # "ours", "reference" or "leaderboard"
    precision: str  # "tf32" (fp32 storage, TF32 matmuls) or "bf16" (autocast)
    compile: bool
    fused: bool = False
    note: str = ""


TINYSTORIES_VARIANTS = (
    Variant("from-scratch eager fp32 (TF32 matmuls)", "ours", "tf32", compile=False),
    Variant("from-scratch bf16 autocast", "ours", "bf16", compile=False),
    Variant("from-scratch bf16 + compile", "ours", "bf16", compile=True),
    Variant("fused attention (SDPA) + bf16 + compile", "ours", "bf16", compile=True, fused=True),
    Variant("torch-native reference (torch.nn + SDPA + torch.optim.AdamW) bf16 + compile", "reference", "bf16",
            compile=True, note="bench_model's RefRoPE rotates through complex numbers, which inductor leaves to "
                               "eager kernels"),
)


def find_muon() -> tuple[Callable[[torch.nn.Module], torch.optim.Optimizer] | None, str]:
    """A builder of cs336_core's Muon (blocks' matrices) + AdamW (the rest) for a TransformerLM, and its description.

    Feature-detected (optim.build_optimizer with "muon" in optim.OPTIMIZERS), so this script also runs
    against a cs336_core without the leaderboard options: (None, why) there.
    """
    from cs336_core import optim

    if "muon" not in getattr(optim, "OPTIMIZERS", ()) or not hasattr(optim, "build_optimizer"):
        return None, "not available (cs336_core.optim has no build_optimizer('muon'))"
    # AdamW's part as in the baseline; Muon keeps build_optimizer's defaults (lr 0.02, momentum 0.95).
    return (lambda model: optim.build_optimizer(model, "muon", lr=3e-3, betas=(0.9, 0.95), weight_decay=0.1)), \
        "cs336_core.optim.build_optimizer('muon'): Muon on the blocks' matrices, AdamW on the rest"


def find_z_loss() -> tuple[Callable | None, str]:
    """The training loss with PaLM's z-loss (coefficient 1e-4) if cs336_core.optim has lm_loss."""
    from cs336_core import optim

    if not hasattr(optim, "lm_loss"):
        return None, "not available"
    return (lambda logits, targets: optim.lm_loss(logits, targets, z_loss=1e-4)[0]), 1e-4


def leaderboard_config(sizes: Sizes, fused: bool) -> tuple[ModelConfig, dict[str, Any]]:
    """The leaderboard model with every LEADERBOARD_OPTIONS entry ModelConfig accepts; the rest 'not available'."""
    fields = {f.name for f in dataclasses.fields(ModelConfig)}
    kwargs: dict[str, Any] = {**sizes.leaderboard, "fused_attention": fused}
    features: dict[str, Any] = {}
    for option, value in LEADERBOARD_OPTIONS.items():
        if option not in fields:
            features[option] = "not available"
            continue
        try:  # a field can exist without this value (ffn="relu2" is a new choice of an old field)
            ModelConfig(**{**kwargs, option: value})
        except (ValueError, TypeError) as exc:
            features[option] = f"not available ({short_error(exc)})"
            continue
        kwargs[option] = value
        features[option] = value
    features["z_loss"] = find_z_loss()[1]
    return ModelConfig(**kwargs), features


def make_optimizer(model: torch.nn.Module, kind: str) -> tuple[Any, str]:
    if kind == "reference":
        return torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.95), weight_decay=0.1), \
            "torch.optim.AdamW (default foreach)"
    if kind == "leaderboard":
        build, description = find_muon()
        if build is not None:
            return build(model), description
    return AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.95), weight_decay=0.1), "cs336_core AdamW (foreach)"


def build_model(variant: Variant, cfg: ModelConfig, device: torch.device) -> torch.nn.Module:
    torch.manual_seed(0)
    if variant.kind == "reference":
        from bench_model import RefLM

        return RefLM(cfg).to(device)
    return TransformerLM(dataclasses.replace(cfg, fused_attention=variant.fused) if variant.kind == "ours" else cfg
                         ).to(device)


def train_variant(variant: Variant, cfg: ModelConfig, batch_size: int, sizes: Sizes, device: torch.device,
                  peaks: dict[str, Any], budget: Budget, timed_seconds: float, compile_ok: bool,
                  reserve_s: float) -> dict[str, Any]:
    """Warm-up (and compilation), a probe step, then as many timed steps as fit `timed_seconds`.

    The timed steps also stop short of the last `reserve_s` of the budget, where the alarm would ring.
    """
    reset_memory(device)
    torch._dynamo.reset()  # each compiled variant starts from a clean cache (no recompile limit hit)
    set_tf32(True)
    model = build_model(variant, cfg, device)
    optimizer, optimizer_name = make_optimizer(model, variant.kind)
    params = list(model.parameters())
    forward = torch.compile(model) if variant.compile and compile_ok else model
    loss_fn = torch_loss if variant.kind == "reference" else cross_entropy
    if variant.kind == "leaderboard":
        loss_fn = find_z_loss()[0] or cross_entropy
    clip = (lambda: torch.nn.utils.clip_grad_norm_(params, GRAD_CLIP)) if variant.kind == "reference" else \
        (lambda: clip_gradients(params, GRAD_CLIP))
    g = torch.Generator(device=device).manual_seed(0)
    batches = torch.randint(0, cfg.vocab_size, (4, batch_size, cfg.context_length + 1), device=device, generator=g)

    def step(i: int) -> float:
        ids = batches[i % len(batches)]
        with autocast(device, variant.precision):
            logits = forward(ids[:, :-1])
        loss = loss_fn(logits.float(), ids[:, 1:])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        clip()
        optimizer.step()
        return loss.item()  # the training loop reads every step's loss (log, divergence check)

    start = time.perf_counter()
    first_loss = [step(i) for i in range(sizes.warmup_steps)][0]
    sync(device)
    warmup_s = time.perf_counter() - start
    start = time.perf_counter()
    step(sizes.warmup_steps)
    sync(device)
    probe_s = time.perf_counter() - start
    fit = min(timed_seconds, budget.left() - reserve_s - 2 * probe_s)
    steps = max(sizes.min_steps, min(sizes.max_steps, int(fit / max(probe_s, 1e-9))))
    start = time.perf_counter()
    for i in range(steps):
        last_loss = step(i)
    sync(device)
    seconds = time.perf_counter() - start
    tokens_per_step = batch_size * cfg.context_length
    tokens_per_s = steps * tokens_per_step / seconds
    token_flops = flops_per_token(cfg)
    peak = peaks.get(variant.precision)
    memory, memory_kind = peak_memory_gib(device)
    del forward, model, optimizer, params, batches
    torch._dynamo.reset()
    return {
        "tokens_per_s": tokens_per_s, "step_ms": 1000 * seconds / steps, "timed_steps": steps,
        "mfu": tokens_per_s * token_flops / (peak * 1e12) if peak else None,
        "peak_tflops_used": peak, "train_flops_per_token": token_flops,
        "peak_memory_gib": memory, "memory_measure": memory_kind,
        "warmup_s": warmup_s, "warmup_steps": sizes.warmup_steps,
        "loss_first": first_loss, "loss_last": last_loss,
        "losses_finite": math.isfinite(first_loss) and math.isfinite(last_loss),
        "optimizer": optimizer_name, "parameters": count_parameters(cfg),
    }


# ----------------------------------------------------------------------------------------------
# Generation


def check_generation(sizes: Sizes, device: torch.device) -> dict[str, Any]:
    """Greedy decoding, batch 1, fp32 with TF32: with and without the KV cache, on the handout's model.

    The context is sizes.generation_context so that prompt + new tokens fit (generate stops at the
    window instead of sliding it).
    """
    set_tf32(True)
    cfg = dataclasses.replace(sizes.tinystories, context_length=sizes.generation_context)
    torch.manual_seed(0)
    model = TransformerLM(cfg).to(device).eval()
    prompt = torch.randint(0, cfg.vocab_size, (sizes.prompt_tokens,), generator=torch.Generator().manual_seed(2)).tolist()
    for use_cache in (True, False):  # warm-up: CUDA context, cuBLAS handles, allocator
        generate(model, prompt, 4, temperature=0.0, use_kv_cache=use_cache)
    result: dict[str, Any] = {"model": cfg.to_dict(), "prompt_tokens": len(prompt), "new_tokens": sizes.new_tokens,
                              "precision": "fp32 (TF32 matmuls)", "batch_size": 1}
    outputs = {}
    for use_cache, key in ((True, "kv_cache"), (False, "no_cache")):
        reset_memory(device)
        start = time.perf_counter()
        outputs[key] = generate(model, prompt, sizes.new_tokens, temperature=0.0, use_kv_cache=use_cache)
        sync(device)
        seconds = time.perf_counter() - start
        memory, memory_kind = peak_memory_gib(device)
        result[key] = {"seconds": seconds, "tokens_per_s": len(outputs[key]) / seconds, "peak_memory_gib": memory,
                       "memory_measure": memory_kind}
    result["speedup"] = result["no_cache"]["seconds"] / result["kv_cache"]["seconds"]
    result["identical_output"] = outputs["kv_cache"] == outputs["no_cache"]
    return result


# ----------------------------------------------------------------------------------------------
# Projection


def projection(training: list[dict[str, Any]]) -> dict[str, Any]:
    """Minutes to train TINYSTORIES_TOKENS at each measured rate; the headline is the fastest handout-model row."""
    rows = []
    for row in training:
        if row.get("status") != "ok":
            continue
        minutes = TINYSTORIES_TOKENS / row["tokens_per_s"] / 60
        rows.append({"variant": row["variant"], "handout_model": row["kind"] != "leaderboard",
                     "tokens_per_s": row["tokens_per_s"], "minutes": minutes,
                     "fits_30_min": minutes <= HANDOUT_MINUTES[0], "fits_40_min": minutes <= HANDOUT_MINUTES[1]})
    ours = [r for r in rows if r["handout_model"] and not r["variant"].startswith("torch-native")]
    best = min(ours, key=lambda r: r["minutes"]) if ours else None
    return {"tokens": TINYSTORIES_TOKENS, "handout_minutes": list(HANDOUT_MINUTES), "rows": rows,
            "best_from_scratch": best,
            "note": "training steps only (forward, backward, clipping, optimizer, loss read back); evaluation, "
                    "checkpoints and batch sampling from the token file are not included"}


# ----------------------------------------------------------------------------------------------
# Running the sections under the budget, and the report


def guarded(budget: Budget, need_s: float, reserve_s: float, what: str, fn: Callable[[], Any]
            ) -> tuple[str, Any, str]:
    """(status, value, note): run `fn` if `need_s` fits before the last `reserve_s` of the budget.

    status is "ok", "skipped" (did not fit), "stopped" (overran: the alarm) or "failed" (raised).
    """
    left = budget.left() - reserve_s
    if left < need_s:
        return "skipped", None, (f"skipped: {max(left, 0):.0f} s of the {budget.seconds:.0f} s budget left for it, "
                                 f"{what} needs at least {need_s:.0f} s")
    try:
        with budget.alarm(reserve_s):
            return "ok", fn(), ""
    except BudgetExceeded as exc:
        return "stopped", None, str(exc)
    except Exception as exc:  # noqa: BLE001 - one variant's failure (compile, OOM) must not end the run
        traceback.print_exc()
        return "failed", None, short_error(exc)
    finally:
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def fmt(value: Any, spec: str = ",.0f", missing: str = "-") -> str:
    return missing if value is None else format(value, spec)


def render_markdown(report: dict[str, Any]) -> str:
    meta = report["meta"]
    peaks = meta["peaks_tflops"]
    lines = ["# GPU check", ""]
    if meta["dry_run"]:
        lines += ["**Dry run on the CPU with tiny sizes: these are not performance figures.** It exercises the "
                  "code only; \"GPU\" below is the CPU itself" + (", compile variants ran eagerly"
                                                                   if not meta["compiled_in_dry_run"] else "") + ".", ""]
    lines += [f"Device: {meta['device']} · torch {meta['torch']} · CUDA {meta['cuda'] or '-'} · commit "
              f"{meta['commit'] or '-'} · {meta['started']}",
              f"Budget {meta['budget_s']:.0f} s; took {fmt(meta.get('elapsed_s'), '.0f')} s. "
              f"Command: `{meta['command']}`",
              f"MFU peaks (dense TFLOP/s): bf16 {fmt(peaks['bf16'], '.4g')}, TF32 {fmt(peaks['tf32'], '.4g')}, "
              f"fp32 {fmt(peaks['fp32'], '.4g')}; {peaks['source']}. MFU = tokens/s x 3 x forward matmul FLOPs per "
              "token (cs336_core.training.throughput.flops_per_token; full T x T attention) / the peak of the "
              "variant's precision.", ""]

    c = report["correctness"]
    lines += ["## Correctness", ""]
    if c.get("rows"):
        lines += [f"One forward + backward, batch {c['batch_size']} x context {c['model']['context_length']}, "
                  f"d_model {c['model']['d_model']}, {c['model']['num_layers']} layers; truth: {c['truth']}. "
                  "Relative L2 errors over all logits / all gradients.", "",
                  "| path | precision | device | logits rel. err | grads rel. err | limit | passed |",
                  "|---|---|---|---:|---:|---|---|"]
        for r in c["rows"]:
            if "ratio_logits" in r:
                limit = (f"<= {r['limit']}x torch's bf16 error ({r['torch_logits_rel_err']:.2e} / "
                         f"{r['torch_grads_rel_err']:.2e}): {r['ratio_logits']:.2f}x / {r['ratio_grads']:.2f}x")
            else:
                limit = f"<= {r['tolerance']:g} (vs CPU fp32: {r['vs_cpu_fp32_logits_rel_err']:.1e} / " \
                        f"{r['vs_cpu_fp32_grads_rel_err']:.1e})"
            lines.append(f"| {r['path']} | {r['precision']} | {r['device'].split(' (')[0]} | "
                         f"{r['logits_rel_err']:.2e} | {r['grads_rel_err']:.2e} | {limit} | "
                         f"{'yes' if r['passed'] else '**NO**'} |")
        lines += ["", f"Correctness passed: **{'yes' if c['passed'] else 'NO'}**", ""]
    else:
        lines += [f"{c.get('status')}: {c.get('note')}", ""]

    lines += ["## Training throughput", "",
              "Full training steps on random tokens: forward, loss, backward, gradient clipping at 1.0, optimizer "
              "step, loss read back each step. Warm-up includes compilation.", "",
              "| variant | batch x context | params | tokens/s | MFU | step ms | peak memory GiB | warm-up s | "
              "timed steps | status |", "|---|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in report["training"]:
        shape = f"{r['batch_size']} x {r['context_length']}"
        if r["status"] == "ok":
            lines.append(f"| {r['variant']} | {shape} | {r['parameters'] / 1e6:.1f}M | {fmt(r['tokens_per_s'])} | "
                         f"{fmt(r['mfu'], '.1%')} ({r['precision']}) | {r['step_ms']:.1f} | "
                         f"{r['peak_memory_gib']:.2f} | {r['warmup_s']:.1f} | {r['timed_steps']} | ok"
                         f"{'; ' + r['note'] if r.get('note') else ''} |")
        else:
            lines.append(f"| {r['variant']} | {shape} | | | | | | | | {r['status']}: {r['note']} |")
    board = next((r for r in report["training"] if r["kind"] == "leaderboard"), None)
    if board:
        lines += ["", f"Leaderboard configuration: {board['model_summary']}; options: "
                  + ", ".join(f"{k}={v}" for k, v in board["features"].items())
                  + f"; optimizer: {board.get('optimizer', board.get('optimizer_planned', '-'))}."]
    lines.append("")

    g = report["generation"]
    lines += ["## Generation (greedy, batch 1)", ""]
    if g.get("kv_cache"):
        lines += [f"{g['prompt_tokens']}-token prompt, {g['new_tokens']} new tokens, context "
                  f"{g['model']['context_length']}, {g['precision']}. Outputs identical: "
                  f"{'yes' if g['identical_output'] else '**NO**'}; KV-cache speedup {g['speedup']:.1f}x.", "",
                  "| | seconds | tokens/s | peak memory GiB |", "|---|---:|---:|---:|"]
        for key, label in (("kv_cache", "KV cache"), ("no_cache", "no cache")):
            lines.append(f"| {label} | {g[key]['seconds']:.2f} | {g[key]['tokens_per_s']:,.0f} | "
                         f"{g[key]['peak_memory_gib']:.2f} |")
    else:
        lines.append(f"{g.get('status')}: {g.get('note')}")
    lines.append("")

    p = report["projection"]
    lines += [f"## Projection: {p['tokens']:,} tokens (the handout's TinyStories budget; the handout expects "
              f"{p['handout_minutes'][0]} to {p['handout_minutes'][1]} minutes)", "", p["note"] + ".", "",
              "| variant | tokens/s | minutes | <= 30 min | <= 40 min |", "|---|---:|---:|---|---|"]
    for r in p["rows"]:
        lines.append(f"| {r['variant']}{'' if r['handout_model'] else ' (not the handout model)'} | "
                     f"{fmt(r['tokens_per_s'])} | {r['minutes']:,.1f} | {'yes' if r['fits_30_min'] else 'no'} | "
                     f"{'yes' if r['fits_40_min'] else 'no'} |")
    best = p["best_from_scratch"]
    lines += ["", f"Fastest from-scratch variant: {best['variant']}, {best['minutes']:,.1f} minutes: "
                  f"{'fits' if best['fits_40_min'] else 'does **not** fit'} the handout's 40 minutes"
                  f"{' (and 30)' if best['fits_30_min'] else ''}." if best else "No from-scratch variant measured."]
    if report["notes"]:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in report["notes"]]
    return "\n".join(lines) + "\n"


def write_report(out: Path, report: dict[str, Any]) -> None:
    atomic_write_json(out / "gpu_check.json", report)
    atomic_write_text(out / "gpu_check.md", render_markdown(report))


def git_commit() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=Path(__file__).resolve().parents[1],
                              capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="directory for gpu_check.json and gpu_check.md")
    parser.add_argument("--dry-run", action="store_true", help="CPU, tiny sizes, seconds: exercises the code only")
    parser.add_argument("--dry-run-compile", action="store_true",
                        help="with --dry-run, really torch.compile the compile variants (needs a C++ compiler; slow)")
    parser.add_argument("--peak-tflops", type=float,
                        help="the GPU's dense bf16 peak in TFLOP/s, for a GPU not in the built-in table")
    parser.add_argument("--budget-s", type=float,
                        help="wall-clock budget of the whole run in seconds (default 450, leaving the rest of 8 "
                             "minutes to importing torch and exiting; 120 with --dry-run)")
    parser.add_argument("--timed-seconds", type=float, default=10.0,
                        help="about how long each training variant's timed steps run (default 10)")
    parser.add_argument("--threads", type=int,
                        help="torch CPU threads (default: torch's choice; 1 with --dry-run, whose tiny sizes gain "
                             "nothing from more and on a busy machine stall in OpenMP's spin-waits)")
    args = parser.parse_args(argv)
    if args.budget_s is None:
        args.budget_s = 120.0 if args.dry_run else 450.0
    if args.threads is None:
        args.threads = 1 if args.dry_run else 0
    if args.threads < 0:
        parser.error(f"--threads must be >= 0 (0: torch's choice), got {args.threads}")
    if not args.budget_s >= 0:
        parser.error(f"--budget-s must be >= 0, got {args.budget_s}")
    if not args.timed_seconds > 0:
        parser.error(f"--timed-seconds must be positive, got {args.timed_seconds}")
    if args.dry_run_compile and not args.dry_run:
        parser.error("--dry-run-compile only applies with --dry-run")
    if not args.dry_run and not torch.cuda.is_available():
        parser.error(f"no CUDA GPU is visible to torch {torch.__version__} (built with CUDA "
                     f"{torch.version.cuda or 'none'}); run on a CUDA machine, or pass --dry-run to exercise the "
                     "script on the CPU")
    if args.out.exists() and not args.out.is_dir():
        parser.error(f"--out {args.out} exists and is not a directory")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    budget = Budget(args.budget_s)
    if args.threads:
        torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    sizes = DRY if args.dry_run else REAL
    device = torch.device("cpu" if args.dry_run else "cuda")
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"
    compile_ok = not args.dry_run or args.dry_run_compile
    peaks = cpu_peaks() if args.dry_run else gpu_peaks(device_name, args.peak_tflops)
    muon, muon_description = find_muon()
    report: dict[str, Any] = {
        "meta": {"dry_run": args.dry_run, "compiled_in_dry_run": args.dry_run and args.dry_run_compile,
                 "device": device_name, "torch": torch.__version__, "cuda": torch.version.cuda,
                 "python": platform.python_version(), "commit": git_commit(),
                 "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "budget_s": args.budget_s,
                 "command": " ".join(["python", "bench/gpu_check.py", *(argv if argv is not None else sys.argv[1:])]),
                 "peaks_tflops": peaks, "muon": muon_description},
        "correctness": {"status": "not run"}, "training": [], "generation": {"status": "not run"},
        "projection": projection([]), "notes": [],
    }
    if args.dry_run:
        report["notes"].append("dry run: the same code on the CPU with tiny sizes; not performance figures. "
                               "Correctness compares the CPU against float64 on the CPU.")
        if not compile_ok:
            report["notes"].append("dry run: the compile variants ran eagerly (torch.compile replaced by the "
                                   "eager model) to stay within seconds; --dry-run-compile compiles them")
    write_report(args.out, report)

    def section(key: str, need_s: float, reserve_s: float, fn: Callable[[], dict]) -> None:
        status, value, note = guarded(budget, need_s, reserve_s, key, fn)
        report[key] = value if status == "ok" else {"status": status, "note": note}
        if status != "ok":
            report["notes"].append(f"{key}: {status}: {note}")
        write_report(args.out, report)

    # The later sections' minimum needs, kept back from each earlier one so an overrun cannot starve them.
    write_s = 5.0
    section("correctness", sizes.need_small_s, write_s, lambda: check_correctness(sizes, device))
    print(f"[{budget.elapsed():.0f} s] correctness: {report['correctness'].get('passed', report['correctness'])}",
          flush=True)

    def run_variant(variant: Variant, cfg: ModelConfig, batch: int, reserve_s: float, extra: dict) -> None:
        need = sizes.need_leaderboard_s if variant.kind == "leaderboard" else (
            sizes.need_compiled_s if variant.compile and compile_ok else sizes.need_eager_s)
        status, value, note = guarded(budget, need, reserve_s, variant.name,
                                      lambda: train_variant(variant, cfg, batch, sizes, device, peaks, budget,
                                                            args.timed_seconds, compile_ok, reserve_s))
        notes = [n for n in (note, variant.note) if n]
        if variant.compile and not compile_ok:
            notes.append("compile replaced by eager (dry run)")
        row = {"variant": variant.name, "kind": variant.kind, "precision": variant.precision,
               "compile": variant.compile and compile_ok, "batch_size": batch, "context_length": cfg.context_length,
               "model": cfg.to_dict(), "status": status, "note": "; ".join(notes), **extra, **(value or {})}
        if status == "ok" and not value["losses_finite"]:
            row["note"] = "; ".join([*notes, "non-finite loss"])
        report["training"].append(row)
        write_report(args.out, report)
        print(f"[{budget.elapsed():.0f} s] {variant.name}: {status} "
              f"{fmt(row.get('tokens_per_s'))} tok/s MFU {fmt(row.get('mfu'), '.1%')} {row['note']}", flush=True)

    later_s = write_s + sizes.need_small_s  # generation still to come
    for variant in TINYSTORIES_VARIANTS:
        run_variant(variant, sizes.tinystories, sizes.batch_size, later_s, {})

    section("generation", sizes.need_small_s, write_s, lambda: check_generation(sizes, device))
    print(f"[{budget.elapsed():.0f} s] generation: {report['generation'].get('speedup', report['generation'])}",
          flush=True)

    # The leaderboard uses whichever attention measured faster above under bf16 + compile.
    rates = {r["variant"]: r.get("tokens_per_s") or 0 for r in report["training"]}
    fused = rates.get(TINYSTORIES_VARIANTS[3].name, 0) > rates.get(TINYSTORIES_VARIANTS[2].name, 0)
    try:
        board_cfg, features = leaderboard_config(sizes, fused)
    except Exception as exc:  # noqa: BLE001 - a broken option must not lose the report
        report["training"].append({"variant": "leaderboard configuration", "kind": "leaderboard", "status": "failed",
                                   "note": short_error(exc), "batch_size": sizes.leaderboard_batch,
                                   "context_length": sizes.leaderboard["context_length"], "features": {}})
    else:
        variant = Variant(f"leaderboard: d_model {board_cfg.d_model}, {board_cfg.num_layers} layers, vocab "
                          f"{board_cfg.vocab_size}, bf16 + compile", "leaderboard", "bf16", compile=True, fused=fused)
        summary = (f"vocab {board_cfg.vocab_size}, context {board_cfg.context_length}, d_model {board_cfg.d_model}, "
                   f"{board_cfg.num_layers} layers, {board_cfg.num_heads} heads, d_ff {board_cfg.resolved_d_ff}, "
                   f"{'fused (SDPA)' if fused else 'from-scratch'} attention (the faster one above)")
        run_variant(variant, board_cfg, sizes.leaderboard_batch, write_s,
                    {"features": features, "model_summary": summary,
                     "optimizer_planned": muon_description if muon else f"cs336_core AdamW (Muon {muon_description})"})

    report["projection"] = projection(report["training"])
    report["meta"]["elapsed_s"] = budget.elapsed()
    write_report(args.out, report)
    print(render_markdown(report))
    return 1 if report["correctness"].get("passed") is False else 0


if __name__ == "__main__":
    sys.exit(main())
