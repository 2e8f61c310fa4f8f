"""Training and generation speed of cs336_core's from-scratch model vs a torch.nn reference.

Side by side in one invocation, on the same cores and the same random batches, interleaved so that
noise from other processes hits both equally:
  - ours: TransformerLM (default from-scratch path) + cs336_core.optim.cross_entropy + AdamW
  - reference: the same architecture from torch.nn.Linear / Embedding / RMSNorm,
    F.scaled_dot_product_attention, F.cross_entropy and torch.optim.AdamW (defined here, bench only)
Training tokens/s (forward + backward + optimizer step), medians over repeats, the ratio, and MFU
against a measured fp32 matmul peak; optionally the same under torch.compile; and generation of
256 new tokens with and without the KV cache.

    python bench/bench_model.py                      # handout TinyStories model, batch 8 and 32
    python bench/bench_model.py --compile            # also torch.compile both models
    python bench/bench_model.py --repeats 3 --steps 2 --batch-sizes 8   # quicker
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cs336_core.accounting import forward_flops  # noqa: E402
from cs336_core.decoding import generate  # noqa: E402
from cs336_core.model import ModelConfig, TransformerLM  # noqa: E402
from cs336_core.optim import AdamW, cross_entropy  # noqa: E402

TINYSTORIES = ModelConfig(vocab_size=10_000, context_length=256, d_model=512, num_layers=4, num_heads=16, d_ff=1344,
                          rope_theta=10_000.0)


# ----------------------------------------------------------------------------------------------
# The reference: same shapes and math, built from torch's own modules and kernels.


class RefRoPE(nn.Module):
    def __init__(self, theta: float, d_k: int, max_seq_len: int):
        super().__init__()
        inv_freq = theta ** (-torch.arange(0, d_k, 2, dtype=torch.float32) / d_k)
        angles = torch.outer(torch.arange(max_seq_len, dtype=torch.float32), inv_freq)
        self.register_buffer("freqs", torch.polar(torch.ones_like(angles), angles), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (b, h, t, d), adjacent pairs as complex numbers
        pairs = torch.view_as_complex(x.float().reshape(*x.shape[:-1], -1, 2))
        return torch.view_as_real(pairs * self.freqs[: x.shape[-2]]).flatten(-2).type_as(x)


class RefBlock(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        d, self.h = cfg.d_model, cfg.num_heads
        self.ln1, self.ln2 = nn.RMSNorm(d, eps=1e-5), nn.RMSNorm(d, eps=1e-5)
        self.q, self.k, self.v, self.o = (nn.Linear(d, d, bias=False) for _ in range(4))
        self.w1, self.w3 = nn.Linear(d, cfg.d_ff, bias=False), nn.Linear(d, cfg.d_ff, bias=False)
        self.w2 = nn.Linear(cfg.d_ff, d, bias=False)
        self.rope = RefRoPE(cfg.rope_theta, d // cfg.num_heads, cfg.context_length)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        h = self.ln1(x)
        q, k, v = (proj(h).view(b, t, self.h, -1).transpose(1, 2) for proj in (self.q, self.k, self.v))
        att = F.scaled_dot_product_attention(self.rope(q), self.rope(k), v, is_causal=True)
        x = x + self.o(att.transpose(1, 2).reshape(b, t, d))
        h = self.ln2(x)
        return x + self.w2(F.silu(self.w1(h)) * self.w3(h))


class RefLM(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.emb = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.blocks = nn.ModuleList(RefBlock(cfg) for _ in range(cfg.num_layers))
        self.ln_f = nn.RMSNorm(cfg.d_model, eps=1e-5)
        self.head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        x = self.emb(ids)
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln_f(x))


# Our parameter names -> RefLM's, so both can run the very same weights (bench/gpu_check.py compares
# their logits and gradients). Only the handout's baseline variant has a reference twin.
_OURS_TO_REF = (("token_embeddings.", "emb."), ("layers.", "blocks."), ("attn.q_proj.", "q."), ("attn.k_proj.", "k."),
                ("attn.v_proj.", "v."), ("attn.output_proj.", "o."), ("ffn.w", "w"), ("ln_final.", "ln_f."),
                ("lm_head.", "head."))


def reference_name(name: str) -> str:
    """The RefLM parameter name of a TransformerLM parameter name ('layers.0.attn.q_proj.weight' -> 'blocks.0.q.weight')."""
    for ours, ref in _OURS_TO_REF:
        name = name.replace(ours, ref)
    return name


def reference_from_ours(model: TransformerLM) -> RefLM:
    """A RefLM on `model`'s device and dtype holding a copy of its weights."""
    cfg = model.config
    # zero_init_output only changes the initial weights, which are copied: it needs no twin.
    baseline = (cfg.norm, cfg.position, cfg.ffn, cfg.tie_embeddings, getattr(cfg, "qk_norm", False),
                getattr(cfg, "logit_softcap", None)) == ("pre", "rope", "swiglu", False, False, None)
    if not baseline:
        raise ValueError("RefLM only mirrors the baseline model (pre-norm, RoPE, SwiGLU, untied, no QK-norm, no "
                         f"logit soft-cap); got {cfg}")
    state = {reference_name(name): tensor for name, tensor in model.state_dict().items()}
    parameter = next(model.parameters())
    # Only the parameters change dtype: Module.to(dtype) would cast RoPE's complex buffer to real.
    ref = RefLM(cfg).to(device=parameter.device)
    for p in ref.parameters():
        p.data = p.data.to(parameter.dtype)
    ref.load_state_dict(state)  # strict: a name the mapping missed fails here, not silently
    return ref


# ----------------------------------------------------------------------------------------------


def matmul_peak_gflops(n: int = 2048, repeats: int = 5) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.matmul(a, b)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        torch.matmul(a, b)
        times.append(time.perf_counter() - start)
    return 2 * n**3 / min(times) / 1e9


def make_trainer(kind: str, cfg: ModelConfig, compile_model: bool):
    torch.manual_seed(0)
    if kind == "ours":
        model = TransformerLM.from_config(cfg)
        optimizer, loss_fn = AdamW(model.parameters(), lr=1e-3, weight_decay=0.1), cross_entropy
    else:
        model = RefLM(cfg)
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.1)

        def loss_fn(logits, targets):
            return F.cross_entropy(logits.flatten(0, 1), targets.flatten())

    forward = torch.compile(model) if compile_model else model

    def step(inputs, targets):
        loss = loss_fn(forward(inputs), targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss

    return step


def bench_training(cfg: ModelConfig, batch_size: int, repeats: int, steps: int, compile_model: bool,
                   peaks: list[float]) -> dict:
    g = torch.Generator().manual_seed(batch_size)
    ids = torch.randint(0, cfg.vocab_size, (steps, batch_size, cfg.context_length + 1), generator=g)
    trainers = {kind: make_trainer(kind, cfg, compile_model) for kind in ("ours", "reference")}
    warmup = {}
    for kind, step in trainers.items():  # warm-up (and compilation) outside the timings
        start = time.perf_counter()
        for _ in range(2):
            step(ids[0, :, :-1], ids[0, :, 1:])
        warmup[kind] = time.perf_counter() - start
    rates: dict[str, list[float]] = {kind: [] for kind in trainers}
    for repeat in range(repeats):
        peaks.append(matmul_peak_gflops(repeats=2))  # the box is shared: keep the best peak seen
        order = list(trainers.items()) if repeat % 2 == 0 else list(trainers.items())[::-1]
        for kind, step in order:  # alternate who goes first, so load drift favours neither
            start = time.perf_counter()
            for i in range(steps):
                step(ids[i, :, :-1], ids[i, :, 1:])
            rates[kind].append(steps * batch_size * cfg.context_length / (time.perf_counter() - start))
    result = {kind: statistics.median(r) for kind, r in rates.items()}
    # The ratio is the median of per-repeat ratios: each pair ran back to back under the same load.
    ratio = statistics.median(a / b for a, b in zip(rates["ours"], rates["reference"]))
    return {"batch_size": batch_size, "compile": compile_model, "ours_tok_s": result["ours"],
            "reference_tok_s": result["reference"], "ratio": ratio,
            "warmup_s": warmup, "all_rates": rates}


def bench_generation(cfg: ModelConfig, new_tokens: int, prompt_len: int = 16) -> dict:
    torch.manual_seed(0)
    model = TransformerLM.from_config(cfg).eval()
    prompt = torch.randint(0, cfg.vocab_size, (prompt_len,)).tolist()
    out = {}
    for use_cache in (True, False):
        start = time.perf_counter()
        tokens = generate(model, prompt, new_tokens, temperature=0.0, use_kv_cache=use_cache)
        out["cached_s" if use_cache else "uncached_s"] = time.perf_counter() - start
        out["tokens_cached" if use_cache else "tokens_uncached"] = tokens
    same = out.pop("tokens_cached") == out.pop("tokens_uncached")
    return {**out, "new_tokens": new_tokens, "speedup": out["uncached_s"] / out["cached_s"], "identical_output": same}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[8, 32])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps", type=int, default=2, help="optimizer steps per timed repeat")
    parser.add_argument("--compile", action="store_true", help="also benchmark torch.compile'd models")
    parser.add_argument("--generate-tokens", type=int, default=256)
    parser.add_argument("--skip-generation", action="store_true")
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    cfg = TINYSTORIES
    peaks = [matmul_peak_gflops()]
    train_flops_per_token = 3 * forward_flops(cfg)["total"] / cfg.context_length
    print(f"torch {torch.__version__}, {args.threads} threads, {train_flops_per_token / 1e6:.1f} MFLOPs "
          f"per training token (6N + attention); MFU uses the best fp32 2048^2 matmul rate seen during the run")
    results = {"threads": args.threads, "training": [], "generation": None}
    modes = [False, True] if args.compile else [False]
    print("| compile | batch | ours tok/s | reference tok/s | ours/ref (median of paired ratios) | MFU ours | MFU ref | peak GFLOP/s |")
    print("|---|---|---|---|---|---|---|---|")
    for compile_model in modes:
        for batch_size in args.batch_sizes:
            try:
                r = bench_training(cfg, batch_size, args.repeats, args.steps, compile_model, peaks)
            except Exception as exc:  # compile can fail on a CPU box without a C++ toolchain
                print(f"| {compile_model} | {batch_size} | failed: {type(exc).__name__}: {str(exc)[:120]} |")
                results["training"].append({"batch_size": batch_size, "compile": compile_model, "error": repr(exc)})
                continue
            peak = max(peaks)
            mfu = {k: r[f"{k}_tok_s"] * train_flops_per_token / (peak * 1e9) for k in ("ours", "reference")}
            r["mfu"] = mfu
            results["training"].append(r)
            print(f"| {compile_model} | {batch_size} | {r['ours_tok_s']:.0f} | {r['reference_tok_s']:.0f} | "
                  f"{r['ratio']:.3f} | {mfu['ours']:.1%} | {mfu['reference']:.1%} | {peak:.1f} |", flush=True)
    if not args.skip_generation:
        # Context 512 so a 16-token prompt leaves room for 256 new tokens (generation never slides).
        gen_cfg = ModelConfig(**{**cfg.to_dict(), "context_length": 512})
        g = bench_generation(gen_cfg, args.generate_tokens)
        results["generation"] = g
        print(f"\ngeneration of {g['new_tokens']} tokens (greedy): KV cache {g['cached_s']:.2f} s, "
              f"no cache {g['uncached_s']:.2f} s, speedup {g['speedup']:.1f}x, identical output: {g['identical_output']}")
    results["peak_gflops"] = max(peaks)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
