"""Accounting against real models (parameter counts, FLOPs counted by torch) and hand-derived formulas."""

import dataclasses
import subprocess
import sys

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from cs336_core.accounting import (
    GPT2_SHAPES,
    accounting_tables,
    activation_elements_per_sequence,
    adamw_step_flops,
    count_parameters,
    forward_flops,
    gpt2_accounting_tables,
    gpt2_xl_adamw_answers,
    matmul_breakdown,
    max_batch_size,
    model_rows,
    tables_markdown,
    training_days,
    training_memory,
)
from cs336_core.model import ModelConfig, TransformerLM

SMALL = ModelConfig(vocab_size=97, context_length=24, d_model=32, num_layers=3, num_heads=4, d_ff=80)
VARIANTS = [dict(), dict(norm="none"), dict(norm="post"), dict(ffn="silu", d_ff=None), dict(tie_embeddings=True),
            dict(position="nope")]


@pytest.mark.parametrize("variant", VARIANTS)
def test_parameter_count_matches_a_real_model(variant):
    shape = dataclasses.replace(SMALL, **variant)
    model = TransformerLM.from_config(shape)
    assert count_parameters(shape) == sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("variant", [dict(), dict(ffn="silu", d_ff=None)])
def test_forward_flops_match_torch_flop_counter(variant):
    shape = dataclasses.replace(SMALL, **variant)
    model = TransformerLM.from_config(shape)
    batch, seq = 2, 24
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(torch.zeros(batch, seq, dtype=torch.long))
    assert forward_flops(shape, seq, batch)["total"] == counter.get_total_flops()


def test_forward_flops_hand_derived():
    flops = forward_flops(SMALL)  # T = 24, d = 32, d_ff = 80, V = 97, 3 layers
    assert flops["attention_qkv_proj"] == 3 * 3 * 2 * 24 * 32 * 32
    assert flops["attention_scores"] == 3 * 2 * 24 * 24 * 32
    assert flops["attention_values"] == flops["attention_scores"]
    assert flops["attention_output_proj"] == 3 * 2 * 24 * 32 * 32
    assert flops["ffn"] == 3 * 3 * 2 * 24 * 32 * 80
    assert flops["lm_head"] == 2 * 24 * 32 * 97
    assert flops["total"] == sum(v for k, v in flops.items() if k != "total")
    assert forward_flops(SMALL, batch_size=5)["total"] == 5 * flops["total"]


# GPT-2 XL as the handout describes it, and its numbers derived by hand from the handout's formulas
# (RMSNorm, SwiGLU with d_ff = 4 d, RoPE, untied embeddings; a matmul (m x n)(n x p) is 2mnp FLOPs).
V, T, D, LAYERS, D_FF = 50_257, 1_024, 1_600, 48, 6_400
# embeddings + LM head, per layer 4 d^2 attention + 3 d d_ff SwiGLU + two RMSNorm gains, final norm
XL_PARAMETERS = 2 * V * D + LAYERS * (4 * D * D + 3 * D * D_FF + 2 * D) + D


def xl_forward_flops(t: int) -> dict[str, int]:
    """Per part: Q, K, V projections 3 x 2 t d^2, scores and weighted values 2 t^2 d each, output
    projection 2 t d^2, SwiGLU 3 x 2 t d d_ff, all per layer; LM head 2 t d V."""
    parts = {"attention_qkv_proj": LAYERS * 6 * t * D * D, "attention_scores": LAYERS * 2 * t * t * D,
             "attention_values": LAYERS * 2 * t * t * D, "attention_output_proj": LAYERS * 2 * t * D * D,
             "ffn": LAYERS * 6 * t * D * D_FF, "lm_head": 2 * t * D * V}
    return parts | {"total": sum(parts.values())}


def test_gpt2_xl_numbers():
    xl = GPT2_SHAPES["GPT-2 XL"]
    assert XL_PARAMETERS == 2_127_057_600  # the handout's ~2.1B, to the parameter
    assert count_parameters(xl) == XL_PARAMETERS
    assert xl_forward_flops(T)["total"] == 4_513_336_524_800  # ~4.513 TFLOPs
    assert forward_flops(xl) == xl_forward_flops(T)
    assert forward_flops(dataclasses.replace(xl, context_length=16_384)) == xl_forward_flops(16_384)


def test_training_memory_and_max_batch():
    xl = GPT2_SHAPES["GPT-2 XL"]
    memory = training_memory(xl, 3)
    params = 4 * XL_PARAMETERS  # float32
    assert memory["parameters"] == memory["gradients"] == params and memory["optimizer_state"] == 2 * params
    # Per layer: two norm inputs 2Td, Q K V 3Td, scores and softmax 2hT^2, weighted values Td, output
    # projection Td, SwiGLU's four hidden tensors 4T d_ff and its output Td; then the final norm Td,
    # the logits and the cross-entropy softmax TV each.
    per_sequence = LAYERS * (8 * T * D + 2 * 25 * T * T + 4 * T * D_FF) + T * D + 2 * T * V
    assert activation_elements_per_sequence(xl)["total"] == per_sequence == 4_508_583_936
    # 80 GB minus 16 bytes per parameter leaves room for 2 sequences of 4 bytes per activation.
    assert (80e9 - 16 * XL_PARAMETERS) // (4 * per_sequence) == 2
    assert max_batch_size(xl, 80e9) == 2
    assert memory["activations"] == 3 * 4 * activation_elements_per_sequence(xl)["total"]
    assert memory["total"] == sum(v for k, v in memory.items() if k != "total")
    # activations are linear in batch size
    assert training_memory(xl, 6)["activations"] == 2 * memory["activations"]
    b = max_batch_size(xl, 80e9)
    assert b >= 1
    assert training_memory(xl, b)["total"] <= 80e9 < training_memory(xl, b + 1)["total"]
    assert max_batch_size(xl, 1e9) == 0  # even the parameters do not fit
    # Hand-derived activation count for SMALL (per sequence).
    t, d, dff, h, v = 24, 32, 80, 4, 97
    per_layer = 2 * t * d + 3 * t * d + 2 * h * t * t + t * d + t * d + 4 * t * dff + t * d
    assert activation_elements_per_sequence(SMALL)["total"] == 3 * per_layer + t * d + 2 * t * v


def test_step_flops_and_training_days():
    xl = GPT2_SHAPES["GPT-2 XL"]
    forward = 1024 * xl_forward_flops(T)["total"]
    # forward + backward (twice the forward) + 13 FLOPs per parameter for the AdamW update
    assert adamw_step_flops(xl, 1024) == {"forward": forward, "backward": 2 * forward,
                                          "optimizer": 13 * XL_PARAMETERS,
                                          "total": 3 * forward + 13 * XL_PARAMETERS}
    days = training_days(xl, 400_000, 1024, mfu=0.5, peak_flops=19.5e12)
    assert days == pytest.approx(400_000 * (3 * forward + 13 * XL_PARAMETERS) / (0.5 * 19.5e12) / 86_400)
    assert days == pytest.approx(6_583.57, abs=0.01)  # about 18 years on one A100 at 50% MFU
    with pytest.raises(ValueError, match="mfu"):
        training_days(xl, 1, 1, mfu=0)


def test_tables_and_cli():
    rows = gpt2_accounting_tables()
    assert [(r["model"], r["context"]) for r in rows] == [
        (model, context) for context in (1_024, 16_384) for model in GPT2_SHAPES]
    for context in (1_024, 16_384):
        xl = next(r for r in rows if r["model"] == "GPT-2 XL" and r["context"] == context)
        flops = xl_forward_flops(context)
        assert xl["forward_TFLOPs"] == pytest.approx(flops["total"] / 1e12)
        for part in ("attention_qkv_proj", "attention_scores", "attention_values", "attention_output_proj",
                     "ffn", "lm_head"):
            assert xl[f"{part}_%"] == pytest.approx(100 * flops[part] / flops["total"]), (context, part)
    # The handout's point: the FFN dominates at 1,024 (66.9%), attention's T^2 terms at 16,384 (55.2%).
    short = next(r for r in rows if r["model"] == "GPT-2 XL" and r["context"] == 1_024)
    long = next(r for r in rows if r["model"] == "GPT-2 XL" and r["context"] == 16_384)
    assert short["ffn_%"] == pytest.approx(66.91, abs=0.01)
    assert long["attention_scores_%"] + long["attention_values_%"] == pytest.approx(55.15, abs=0.01)
    out = subprocess.run([sys.executable, "-m", "cs336_core.accounting"], capture_output=True, text=True, check=True).stdout
    assert "| GPT-2 XL | 16,384 | 2,127,057,600 |" in out
    assert "largest batch in 80 GB" in out


def test_model_rows_of_a_preset_s_models():
    tied = dataclasses.replace(SMALL, tie_embeddings=True)
    rows = model_rows({"small": SMALL, "tied": tied}, batch_size=8, steps=100)
    assert [row["model"] for row in rows] == ["small", "tied"]
    small, tied_row = rows
    # Outside the embedding and the LM head: attention 4 d^2, SwiGLU 3 d d_ff and 2 norms per layer,
    # and the final norm.
    inner = 3 * (4 * 32 * 32 + 3 * 32 * 80 + 2 * 32) + 32
    assert small["parameters"] == inner + 2 * 97 * 32 and small["non_embedding_parameters"] == inner
    assert tied_row["parameters"] == inner + 97 * 32 and tied_row["non_embedding_parameters"] == inner
    assert small["forward_GFLOPs_per_sequence"] == forward_flops(SMALL)["total"] / 1e9
    assert small["adamw_step_TFLOPs"] == adamw_step_flops(SMALL, 8)["total"] / 1e12
    assert small["run_TFLOPs"] == pytest.approx(100 * small["adamw_step_TFLOPs"])
    assert small["training_memory_MB"] == training_memory(SMALL, 8)["total"] / 1e6


def test_accounting_tables_and_their_markdown():
    tables = accounting_tables({"small": SMALL}, batch_size=8, steps=100)
    assert tables == {"gpt2": gpt2_accounting_tables(), "gpt2_xl_adamw": gpt2_xl_adamw_answers(),
                      "gpt2_xl_matmuls": matmul_breakdown(GPT2_SHAPES["GPT-2 XL"]),
                      "preset_models": model_rows({"small": SMALL}, 8, 100),
                      "preset_forward_flops": {"small": forward_flops(SMALL)},
                      "preset_shapes": {"small": SMALL.to_dict()}}
    markdown = tables_markdown(tables, "Our models (batch 8)")
    headings = [line for line in markdown.splitlines() if line.startswith("### ")]
    assert headings == ["### GPT-2 forward pass, context 1,024 (one sequence, matmul FLOPs)",
                        "### GPT-2 forward pass, context 16,384 (one sequence, matmul FLOPs)",
                        "### GPT-2 XL training with AdamW (float32)", "### Our models (batch 8)"]
    assert "| GPT-2 XL | 16,384 | 2,127,057,600 |" in markdown
    assert f"| max_batch_size_80GB | {tables['gpt2_xl_adamw']['max_batch_size_80GB']:,} |" in markdown
    assert markdown.rstrip().endswith("|") and "| small |" in markdown


@pytest.mark.parametrize("variant", VARIANTS)
def test_matmul_breakdown_adds_up_to_the_forward_flops(variant):
    shape = dataclasses.replace(SMALL, **variant)
    rows = matmul_breakdown(shape, seq_len=16)
    assert sum(row["FLOPs"] for row in rows) == forward_flops(shape, 16)["total"]
    scores = next(row for row in rows if row["matmul"].startswith("Q K^T"))
    assert scores["shapes"] == "(16 x 8) @ (8 x 16)" and scores["count"] == 3 * 4  # d_k = 32 / 4, 4 heads x 3 layers
    assert scores["FLOPs"] == 12 * 2 * 16 * 8 * 16


def test_gpt2_xl_matmuls_by_hand():
    rows = {row["matmul"]: row for row in matmul_breakdown(GPT2_SHAPES["GPT-2 XL"])}
    assert rows["FFN W1 and W3 (gate, up)"]["FLOPs"] == 48 * 2 * 2 * 1024 * 1600 * 6400
    assert rows["LM head"]["FLOPs"] == 2 * 1024 * 1600 * 50_257
    assert sum(row["FLOPs"] for row in rows.values()) == pytest.approx(4.513e12, rel=1e-3)
