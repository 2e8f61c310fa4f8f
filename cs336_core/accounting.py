"""Resource accounting for the handout's written problems (transformer_accounting, adamwAccounting).

Every function takes a `ModelConfig` (the one description of a model's shape; `ModelShape` is the
same class under the name the handout's questions use) and honours its variants: SiLU vs SwiGLU
feed-forward, no RMSNorm, tied embeddings.

Conventions, as in the handout:
  - A matmul of (m x n) by (n x p) costs 2*m*n*p FLOPs; only matmuls are counted in forward FLOPs
    (norms, softmax, RoPE and residual adds are lower order).
  - Attention scores are computed for the full T x T square (what the kernels do, mask or not).
  - Everything is float32 (4 bytes); AdamW keeps two moments per parameter; backward = 2x forward.

`python -m cs336_core.accounting` prints the GPT-2 small/medium/large/XL tables at context 1,024
and 16,384 plus the GPT-2 XL AdamW answers, as Markdown.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
from typing import Any, Mapping

from cs336_core.model import ModelConfig

ModelShape = ModelConfig

BYTES_PER_FLOAT32 = 4
# AdamW per parameter: m (3 flops), v (4), sqrt + eps + divide + scaled subtract (4), decay (2).
ADAMW_FLOPS_PER_PARAMETER = 13
A100_FP32_PEAK_FLOPS = 19.5e12

# The handout's GPT-2 shapes (d_ff = 4 * d_model, vocab 50,257, context 1,024).
GPT2_SHAPES: dict[str, ModelConfig] = {
    name: ModelConfig(vocab_size=50_257, context_length=1_024, d_model=d_model, num_layers=layers,
                      num_heads=heads, d_ff=4 * d_model)
    for name, layers, d_model, heads in (
        ("GPT-2 small", 12, 768, 12),
        ("GPT-2 medium", 24, 1024, 16),
        ("GPT-2 large", 36, 1280, 20),
        ("GPT-2 XL", 48, 1600, 25),
    )
}


def _ffn_matrices(shape: ModelConfig) -> int:
    return 3 if shape.ffn == "swiglu" else 2


def parameter_breakdown(shape: ModelConfig) -> dict[str, int]:
    """Parameters per component, summed over layers; `total` counts a tied matrix once."""
    d, d_ff, layers = shape.d_model, shape.resolved_d_ff, shape.num_layers
    norms = shape.norm != "none"
    parts = {
        "token_embeddings": shape.vocab_size * d,
        "attention": layers * 4 * d * d,
        "ffn": layers * _ffn_matrices(shape) * d * d_ff,
        "rmsnorm": (2 * layers + 1) * d if norms else 0,
        "lm_head": 0 if shape.tie_embeddings else shape.vocab_size * d,
    }
    parts["total"] = sum(parts.values())
    return parts


def count_parameters(shape: ModelConfig) -> int:
    """Exactly sum(p.numel() for p in TransformerLM.from_config(shape).parameters())."""
    return parameter_breakdown(shape)["total"]


def parameter_memory_bytes(shape: ModelConfig, bytes_per_parameter: int = BYTES_PER_FLOAT32) -> int:
    return count_parameters(shape) * bytes_per_parameter


def forward_flops(shape: ModelConfig, seq_len: int | None = None, batch_size: int = 1) -> dict[str, int]:
    """Matmul FLOPs of one forward pass over `batch_size` sequences of `seq_len` (default: context)."""
    t = shape.context_length if seq_len is None else seq_len
    d, d_ff, layers, n = shape.d_model, shape.resolved_d_ff, shape.num_layers, batch_size
    flops = {
        "attention_qkv_proj": layers * 3 * 2 * n * t * d * d,
        "attention_scores": layers * 2 * n * t * t * d,  # Q K^T: h heads of (t x d_k)(d_k x t)
        "attention_values": layers * 2 * n * t * t * d,  # softmax(.) V: h heads of (t x t)(t x d_k)
        "attention_output_proj": layers * 2 * n * t * d * d,
        "ffn": layers * _ffn_matrices(shape) * 2 * n * t * d * d_ff,
        "lm_head": 2 * n * t * d * shape.vocab_size,
    }
    flops["total"] = sum(flops.values())
    return flops


def matmul_breakdown(shape: ModelConfig, seq_len: int | None = None) -> list[dict[str, Any]]:
    """Every matrix multiply of one forward pass over one sequence (transformer_accounting (b)): its
    name, the product's shapes, how many there are (per layer x layers), and their FLOPs, 2*m*n*p
    each. The FLOPs add up to `forward_flops(shape, seq_len)["total"]`."""
    t = shape.context_length if seq_len is None else seq_len
    d, d_ff, layers, h, v = shape.d_model, shape.resolved_d_ff, shape.num_layers, shape.num_heads, shape.vocab_size
    d_k = d // h
    ffn = ([("FFN W1 and W3 (gate, up)", t, d, d_ff, 2), ("FFN W2 (down)", t, d_ff, d, 1)] if shape.ffn == "swiglu"
           else [("FFN W1", t, d, d_ff, 1), ("FFN W2", t, d_ff, d, 1)])
    parts = [("Q, K, V projections", t, d, d, 3), ("Q K^T (per head)", t, d_k, t, h),
             ("softmax(.) V (per head)", t, t, d_k, h), ("output projection", t, d, d, 1), *ffn]
    rows = [{"matmul": name, "shapes": f"({m} x {n}) @ ({n} x {p})", "count": layers * count,
             "FLOPs": layers * count * 2 * m * n * p} for name, m, n, p, count in parts]
    rows.append({"matmul": "LM head", "shapes": f"({t} x {d}) @ ({d} x {v})", "count": 1, "FLOPs": 2 * t * d * v})
    return rows


def activation_elements_per_sequence(shape: ModelConfig, seq_len: int | None = None) -> dict[str, int]:
    """Activations kept for backward, per sequence, following adamwAccounting's component list."""
    t = shape.context_length if seq_len is None else seq_len
    d, d_ff, h, layers = shape.d_model, shape.resolved_d_ff, shape.num_heads, shape.num_layers
    norms = shape.norm != "none"
    # SwiGLU keeps W1 x, silu(W1 x), W3 x and the gated product; the plain SiLU FFN the first two.
    ffn_hidden = 4 if shape.ffn == "swiglu" else 2
    per_layer = {
        "rmsnorm": 2 * t * d if norms else 0,
        "qkv_proj": 3 * t * d,
        "attention_scores": h * t * t,  # Q K^T
        "softmax": h * t * t,
        "attention_values": t * d,  # weighted sum of values
        "output_proj": t * d,
        "ffn": ffn_hidden * t * d_ff + t * d,  # hidden tensors + W2 output
    }
    elements = {name: layers * count for name, count in per_layer.items()}
    elements["final_rmsnorm"] = t * d if norms else 0
    elements["lm_head_logits"] = t * shape.vocab_size
    elements["cross_entropy"] = t * shape.vocab_size  # the softmax over the vocabulary
    elements["total"] = sum(elements.values())
    return elements


def training_memory(shape: ModelConfig, batch_size: int, seq_len: int | None = None) -> dict[str, int]:
    """Bytes for AdamW training in float32: parameters, activations, gradients, optimizer state."""
    params = count_parameters(shape) * BYTES_PER_FLOAT32
    memory = {
        "parameters": params,
        "activations": batch_size * activation_elements_per_sequence(shape, seq_len)["total"] * BYTES_PER_FLOAT32,
        "gradients": params,
        "optimizer_state": 2 * params,  # first and second moments
    }
    memory["total"] = sum(memory.values())
    return memory


def max_batch_size(shape: ModelConfig, budget_bytes: float = 80e9, seq_len: int | None = None) -> int:
    """Largest batch whose training memory fits the budget (0 if even the fixed part does not)."""
    fixed = training_memory(shape, 0, seq_len)["total"]
    per_sequence = training_memory(shape, 1, seq_len)["total"] - fixed
    return max(0, math.floor((budget_bytes - fixed) / per_sequence))


def adamw_step_flops(shape: ModelConfig, batch_size: int, seq_len: int | None = None) -> dict[str, int]:
    """FLOPs of one training step: forward, backward (2x forward) and the AdamW update."""
    forward = forward_flops(shape, seq_len, batch_size)["total"]
    flops = {"forward": forward, "backward": 2 * forward,
             "optimizer": ADAMW_FLOPS_PER_PARAMETER * count_parameters(shape)}
    flops["total"] = sum(flops.values())
    return flops


def training_days(
    shape: ModelConfig, steps: int, batch_size: int, mfu: float = 0.5, peak_flops: float = A100_FP32_PEAK_FLOPS,
    seq_len: int | None = None,
) -> float:
    """Wall-clock days for `steps` AdamW steps on one accelerator running at `mfu` of `peak_flops`."""
    if not 0 < mfu <= 1:
        raise ValueError(f"mfu must be in (0, 1], got {mfu}")
    if peak_flops <= 0:
        raise ValueError(f"peak_flops must be positive, got {peak_flops}")
    seconds = steps * adamw_step_flops(shape, batch_size, seq_len)["total"] / (mfu * peak_flops)
    return seconds / 86_400


# ----------------------------------------------------------------------------------------------
# The handout's tables


def gpt2_accounting_tables(context_lengths: tuple[int, ...] = (1_024, 16_384)) -> list[dict[str, Any]]:
    """One row per (model, context): parameters, fp32 memory, forward FLOPs and each component's share."""
    rows = []
    for context in context_lengths:
        for name, base in GPT2_SHAPES.items():
            shape = dataclasses.replace(base, context_length=context)
            flops = forward_flops(shape)
            row: dict[str, Any] = {
                "model": name,
                "context": context,
                "parameters": count_parameters(shape),
                "fp32_GB": parameter_memory_bytes(shape) / 1e9,
                "forward_TFLOPs": flops["total"] / 1e12,
            }
            row |= {f"{part}_%": 100 * value / flops["total"] for part, value in flops.items() if part != "total"}
            rows.append(row)
    return rows


def gpt2_xl_adamw_answers(budget_bytes: float = 80e9) -> dict[str, Any]:
    """adamwAccounting (a)-(d) for GPT-2 XL: memory as a*batch + b, max batch, step FLOPs, days."""
    xl = GPT2_SHAPES["GPT-2 XL"]
    fixed = training_memory(xl, 0)["total"]
    per_sequence = training_memory(xl, 1)["total"] - fixed
    return {
        "memory_bytes_per_sequence": per_sequence,
        "memory_bytes_fixed": fixed,
        "max_batch_size_80GB": max_batch_size(xl, budget_bytes),
        "adamw_step_TFLOPs_batch_1": adamw_step_flops(xl, 1)["total"] / 1e12,
        "training_days_400k_steps_batch_1024_mfu_0.5_A100": training_days(xl, 400_000, 1_024),
    }


def model_rows(models: Mapping[str, ModelConfig], batch_size: int, steps: int) -> list[dict[str, Any]]:
    """One row per named model: parameters (and those outside the embedding and LM head), forward
    GFLOPs per sequence, AdamW step TFLOPs and training memory at `batch_size`, and the TFLOPs of a
    run of `steps` such steps (a preset's own models, beside GPT-2's)."""
    rows = []
    for name, shape in models.items():
        parts = parameter_breakdown(shape)
        step_flops = adamw_step_flops(shape, batch_size)["total"]
        rows.append({
            "model": name,
            "parameters": count_parameters(shape),
            "non_embedding_parameters": count_parameters(shape) - parts["token_embeddings"] - parts["lm_head"],
            "forward_GFLOPs_per_sequence": forward_flops(shape)["total"] / 1e9,
            "adamw_step_TFLOPs": step_flops / 1e12,
            "training_memory_MB": training_memory(shape, batch_size)["total"] / 1e6,
            "run_TFLOPs": steps * step_flops / 1e12,
        })
    return rows


def accounting_tables(models: Mapping[str, ModelConfig], batch_size: int, steps: int) -> dict[str, Any]:
    """Everything the accounting asset writes (JSON-ready): the GPT-2 tables, the GPT-2 XL AdamW
    answers, GPT-2 XL's matmuls (`matmul_breakdown`), `model_rows(models, batch_size, steps)` and
    the `forward_flops` components and the shape of each of `models` (one sequence at its context)."""
    return {"gpt2": gpt2_accounting_tables(), "gpt2_xl_adamw": gpt2_xl_adamw_answers(),
            "gpt2_xl_matmuls": matmul_breakdown(GPT2_SHAPES["GPT-2 XL"]),
            "preset_models": model_rows(models, batch_size, steps),
            "preset_forward_flops": {name: forward_flops(shape) for name, shape in models.items()},
            "preset_shapes": {name: shape.to_dict() for name, shape in models.items()}}


def tables_markdown(tables: Mapping[str, Any], models_heading: str) -> str:
    """`accounting_tables` as Markdown: one table per GPT-2 context length, the XL answers, then the
    models under `models_heading`."""
    from cs336_core.reporting import markdown_table  # the one Markdown renderer (pandas: not at import)

    gpt2 = tables["gpt2"]
    sections = [f"### GPT-2 forward pass, context {ctx:,} (one sequence, matmul FLOPs)\n\n"
                + markdown_table([row for row in gpt2 if row["context"] == ctx])
                for ctx in sorted({row["context"] for row in gpt2})]
    sections.append("### GPT-2 XL training with AdamW (float32)\n\n"
                    + markdown_table([{"quantity": k, "value": v} for k, v in tables["gpt2_xl_adamw"].items()]))
    sections.append(f"### {models_heading}\n\n" + markdown_table(tables["preset_models"]))
    return "\n\n".join(sections) + "\n"


def main(argv: list[str] | None = None) -> None:
    from cs336_core.reporting import markdown_table  # the one Markdown renderer; pandas only for the CLI

    parser = argparse.ArgumentParser(description="Print the handout's GPT-2 accounting tables.")
    parser.add_argument("--json", action="store_true", help="print JSON instead of Markdown")
    args = parser.parse_args(argv)
    rows = gpt2_accounting_tables()
    xl = gpt2_xl_adamw_answers()
    if args.json:
        print(json.dumps({"tables": rows, "gpt2_xl_adamw": xl}, indent=2))
        return
    for context in sorted({row["context"] for row in rows}):
        print(f"## GPT-2 forward pass, context {context:,} (one sequence, matmul FLOPs)\n")
        print(markdown_table([row for row in rows if row["context"] == context]))
        print()
    print("## GPT-2 XL training with AdamW (float32)\n")
    gb_per_seq, gb_fixed = xl["memory_bytes_per_sequence"] / 1e9, xl["memory_bytes_fixed"] / 1e9
    print(f"- memory = {gb_per_seq:.2f} GB * batch_size + {gb_fixed:.2f} GB")
    print(f"- largest batch in 80 GB: {xl['max_batch_size_80GB']}")
    print(f"- FLOPs per AdamW step (batch 1): {xl['adamw_step_TFLOPs_batch_1']:.2f} TFLOPs (x batch size)")
    print(f"- 400K steps, batch 1024, 50% MFU of an A100's 19.5 TFLOP/s: "
          f"{xl['training_days_400k_steps_batch_1024_mfu_0.5_A100']:,.0f} days")


if __name__ == "__main__":
    main()
