"""`transformer_accounting` and `adamwAccounting` in prose, from the accounting asset's JSON
(`cs336_core.accounting.accounting_tables`): which matmuls dominate and how that moves with model
size and a 16,384-token context, and the memory formulas with GPT-2 XL's numbers in them."""

from __future__ import annotations

from typing import Any, Mapping

# forward_flops' components, grouped the way the handout's (c)-(e) talk about them.
GROUPS = {
    "feed-forward": ("ffn",),
    "attention projections (Q, K, V, output)": ("attention_qkv_proj", "attention_output_proj"),
    "attention scores and weighted values (QK^T, softmax V)": ("attention_scores", "attention_values"),
    "LM head": ("lm_head",),
}


def flop_shares(row: Mapping[str, Any]) -> dict[str, float]:
    """A GPT-2 table row's forward-FLOP percentages, summed per GROUPS entry."""
    return {group: sum(row[f"{part}_%"] for part in parts) for group, parts in GROUPS.items()}


def preset_shares(tables: Mapping[str, Any]) -> dict[str, dict[str, float]]:
    """model -> its forward-FLOP percentages per GROUPS entry, for the preset's own models."""
    found = {}
    for model, flops in tables.get("preset_forward_flops", {}).items():
        found[model] = {group: 100 * sum(flops[part] for part in parts) / flops["total"]
                        for group, parts in GROUPS.items()}
    return found


def _row(tables: Mapping[str, Any], model: str, context: int) -> Mapping[str, Any]:
    return next(r for r in tables["gpt2"] if r["model"] == model and r["context"] == context)


def _shares_text(shares: Mapping[str, float]) -> str:
    return ", ".join(f"{group} {share:.1f}%" for group, share in sorted(shares.items(), key=lambda kv: -kv[1]))


def transformer_accounting_markdown(tables: Mapping[str, Any]) -> str:
    """(a)-(e) of transformer_accounting, each answered with the tables' numbers."""
    from cs336_core.reporting import markdown_table  # pandas: only when rendering

    xl, xl_long = _row(tables, "GPT-2 XL", 1024), _row(tables, "GPT-2 XL", 16_384)
    models = [row["model"] for row in tables["gpt2"] if row["context"] == 1024]
    shares = {model: flop_shares(_row(tables, model, 1024)) for model in models}
    small, largest = models[0], models[-1]
    growing = [g for g in GROUPS if shares[largest][g] > shares[small][g]]
    shrinking = [g for g in GROUPS if shares[largest][g] < shares[small][g]]
    long_shares = flop_shares(xl_long)
    attention = "attention scores and weighted values (QK^T, softmax V)"
    matmuls = tables.get("gpt2_xl_matmuls", [])
    total = sum(row["FLOPs"] for row in matmuls)
    mm_table = markdown_table([{**row, "FLOPs": f"{row['FLOPs'] / 1e12:.3f} T",
                                "share_%": round(100 * row["FLOPs"] / total, 1)} for row in matmuls])
    top = max(shares[largest], key=shares[largest].get)
    return (
        f"(a) GPT-2 XL (vocabulary 50,257, context 1,024, 48 layers, d_model 1,600, 25 heads, d_ff 6,400, "
        f"SwiGLU as in our model) has **{xl['parameters']:,}** trainable parameters: two 50,257 x 1,600 "
        f"embedding matrices (input and LM head, untied) and per layer 4 d² for attention and 3 d d_ff for "
        f"the feed-forward, plus the RMSNorm gains. In float32 that is **{xl['fp32_GB']:.2f} GB** just to "
        f"hold the weights.\n\n"
        f"(b) The matrix multiplies of one forward pass over a 1,024-token sequence (2 m n p FLOPs each):\n\n"
        f"{mm_table}\n\nIn total **{total / 1e12:.2f} TFLOPs** per sequence.\n\n"
        f"(c) At context 1,024 the feed-forward dominates GPT-2 XL: {_shares_text(shares[largest])}. Its three "
        f"d x 4d matrices cost 24 d² FLOPs per token and layer against 8 d² for the four attention "
        f"projections and 4 T d for the scores and weighted values, which at T = 1,024 < 6 d is the smaller "
        f"part. The largest single component is the **{top}**.\n\n"
        f"(d) From {small} to {largest}, the parts that grow with d² take a larger share "
        f"({', '.join(growing) or 'none'}), and the ones linear in d lose share "
        f"({', '.join(shrinking) or 'none'}): the LM head goes from {shares[small]['LM head']:.1f}% to "
        f"{shares[largest]['LM head']:.1f}% because the vocabulary stays 50,257 while d grows, and the "
        f"attention scores go from {shares[small][attention]:.1f}% to {shares[largest][attention]:.1f}% "
        f"because they scale with T d, not d².\n\n"
        f"(e) With a 16,384-token context GPT-2 XL's forward pass costs **{xl_long['forward_TFLOPs']:.1f} TFLOPs** "
        f"per sequence instead of {xl['forward_TFLOPs']:.2f}: {xl_long['forward_TFLOPs'] / xl['forward_TFLOPs']:.1f}x "
        f"for 16x the tokens, because the scores and weighted values grow with T². Their share goes from "
        f"{flop_shares(xl)[attention]:.1f}% to **{long_shares[attention]:.1f}%**, and the feed-forward's falls "
        f"from {flop_shares(xl)['feed-forward']:.1f}% to {long_shares['feed-forward']:.1f}%: at long context "
        f"attention, not the MLP, is the cost."
        + "".join(f"\n\nThis preset's model **{model}** is at the other end: {_shares_text(found)}. "
                  f"With d_model {shape['d_model']} and a vocabulary of {shape['vocab_size']:,}, the LM head's "
                  f"2 d V FLOPs per token outweigh the blocks' d² terms, the regime of GPT-2 small pushed further."
                  if max(found, key=found.get) == "LM head" else
                  f"\n\nThis preset's model **{model}**: {_shares_text(found)}."
                  for model, found in preset_shares(tables).items()
                  for shape in [tables["preset_shapes"][model]]))


def adamw_accounting_markdown(tables: Mapping[str, Any]) -> str:
    """(a) the formulas for parameters, activations, gradients and optimizer state; (b)-(d) GPT-2 XL."""
    xl = tables["gpt2_xl_adamw"]
    per_seq, fixed = xl["memory_bytes_per_sequence"] / 1e9, xl["memory_bytes_fixed"] / 1e9
    days = xl["training_days_400k_steps_batch_1024_mfu_0.5_A100"]
    preset = "\n".join(f"- {row['model']}: {row['parameters']:,} parameters, {row['training_memory_MB']:.1f} MB "
                       f"to train at this preset's batch size, {row['adamw_step_TFLOPs'] * 1e3:.3f} GFLOPs per AdamW step"
                       for row in tables.get("preset_models", []))
    return (
        "(a) With B sequences of T tokens, vocabulary V, L layers, width d, h heads and d_ff = 4d (SwiGLU's "
        "three matrices, as in our model), everything in float32 (4 bytes):\n\n"
        "- parameters: P = 2 V d + L (4 d² + 3 d d_ff + 2 d) + d  (embedding and LM head; Q, K, V, O; W1, W2, "
        "W3; two RMSNorm gains per layer and the final one), so 4 P bytes;\n"
        "- gradients: one per parameter, 4 P bytes;\n"
        "- optimizer state: AdamW's first and second moments, 8 P bytes;\n"
        "- activations kept for the backward pass, 4 B [L (2 T d + 3 T d + 2 h T² + T d + T d + 4 T d_ff + T d) "
        "+ T d + 2 T V] bytes: per layer the two RMSNorm inputs, Q K V, the scores and their softmax "
        "(h T² each), the weighted values, the output projection, the feed-forward's hidden tensors "
        "(W1 x, SiLU, W3 x, their product) and its output; then the final RMSNorm, the logits and the "
        "cross-entropy's softmax.\n\n"
        "Peak memory = 16 P + activations bytes: the first part is fixed, the second grows with B and with "
        "T² through the attention scores.\n\n"
        f"(b) For GPT-2 XL this is **{per_seq:.2f} GB x batch_size + {fixed:.2f} GB**, so 80 GB hold a batch of "
        f"at most **{xl['max_batch_size_80GB']}**.\n\n"
        f"(c) One AdamW step costs the forward pass, a backward pass of twice that, and about 13 FLOPs per "
        f"parameter for the update: {xl['adamw_step_TFLOPs_batch_1']:.2f} TFLOPs per sequence of 1,024 tokens, "
        f"i.e. about 6 x P x tokens plus the attention terms.\n\n"
        f"(d) 400K steps at batch 1,024 at 50% MFU of an A100's 19.5 TFLOP/s float32 take about "
        f"**{days:,.0f} days** ({days / 365:.1f} years) on one GPU: why such models train on thousands of GPUs "
        f"in bfloat16.\n\n"
        + (f"This preset's own models, by the same formulas:\n\n{preset}" if preset else ""))
