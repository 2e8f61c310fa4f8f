"""Accounting against real models (parameter counts, FLOPs counted by torch) and hand-derived formulas."""

import dataclasses
import subprocess
import sys

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from cs336_core.accounting import (
    GPT2_SHAPES,
    activation_elements_per_sequence,
    adamw_step_flops,
    count_parameters,
    forward_flops,
    gpt2_accounting_tables,
    max_batch_size,
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


def test_gpt2_xl_numbers():
    xl = GPT2_SHAPES["GPT-2 XL"]
    assert count_parameters(xl) == pytest.approx(2.13e9, rel=0.01)
    # Forward FLOPs of GPT-2 XL at context 1,024: ~4.5 TFLOPs, FFN the largest share.
    flops = forward_flops(xl)
    assert flops["total"] == pytest.approx(4.51e12, rel=0.01)
    assert max(flops, key=lambda k: 0 if k == "total" else flops[k]) == "ffn"
    # At context 16,384 the T^2 attention terms dominate.
    long = forward_flops(dataclasses.replace(xl, context_length=16_384))
    assert long["attention_scores"] + long["attention_values"] > 0.5 * long["total"]


def test_training_memory_and_max_batch():
    xl = GPT2_SHAPES["GPT-2 XL"]
    memory = training_memory(xl, 3)
    params = 4 * count_parameters(xl)
    assert memory["parameters"] == memory["gradients"] == params and memory["optimizer_state"] == 2 * params
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
    step = adamw_step_flops(xl, 1024)
    assert step["backward"] == 2 * step["forward"] == 2 * 1024 * forward_flops(xl)["total"]
    days = training_days(xl, 400_000, 1024, mfu=0.5, peak_flops=19.5e12)
    assert days == pytest.approx(400_000 * step["total"] / (0.5 * 19.5e12) / 86_400)
    assert 5_000 < days < 8_000  # the handout's order of magnitude for GPT-2 XL on one A100
    with pytest.raises(ValueError, match="mfu"):
        training_days(xl, 1, 1, mfu=0)


def test_tables_and_cli():
    rows = gpt2_accounting_tables()
    assert len(rows) == 8 and {r["context"] for r in rows} == {1_024, 16_384}
    for row in rows:
        shares = sum(v for k, v in row.items() if k.endswith("_%"))
        assert shares == pytest.approx(100.0)
    out = subprocess.run([sys.executable, "-m", "cs336_core.accounting"], capture_output=True, text=True, check=True).stdout
    assert "| GPT-2 XL | 16,384 | 2,127,057,600 |" in out
    assert "largest batch in 80 GB" in out
