"""The Transformer's modules: numerics against straightforward references, the state-dict contract,
variants, the KV cache and the opt-in fused attention path."""

import json
import math

import pytest
import torch
import torch.nn.functional as F

from cs336_core.model import (
    Embedding,
    KVCache,
    Linear,
    ModelConfig,
    MultiHeadSelfAttention,
    RMSNorm,
    RotaryPositionalEmbedding,
    SiLUFeedForward,
    SwiGLU,
    TransformerBlock,
    TransformerLM,
    default_d_ff,
    scaled_dot_product_attention,
    silu,
    softmax,
)

SMALL = dict(vocab_size=64, context_length=16, d_model=32, num_layers=2, num_heads=4, d_ff=48, rope_theta=10_000.0)


def contract_keys(num_layers: int) -> set[str]:
    keys = {"token_embeddings.weight", "ln_final.weight", "lm_head.weight"}
    for i in range(num_layers):
        keys |= {f"layers.{i}.attn.{p}_proj.weight" for p in ("q", "k", "v", "output")}
        keys |= {f"layers.{i}.ln1.weight", f"layers.{i}.ln2.weight"}
        keys |= {f"layers.{i}.ffn.w{j}.weight" for j in (1, 2, 3)}
    return keys


def test_state_dict_contract_strict_load():
    torch.manual_seed(0)
    model = TransformerLM(**SMALL)
    assert set(model.state_dict()) == contract_keys(SMALL["num_layers"])
    d, dff, v = SMALL["d_model"], SMALL["d_ff"], SMALL["vocab_size"]
    shapes = {"token_embeddings.weight": (v, d), "ln_final.weight": (d,), "lm_head.weight": (v, d)}
    for i in range(SMALL["num_layers"]):
        shapes |= {f"layers.{i}.attn.{p}_proj.weight": (d, d) for p in ("q", "k", "v", "output")}
        shapes |= {f"layers.{i}.ln1.weight": (d,), f"layers.{i}.ln2.weight": (d,)}
        shapes |= {f"layers.{i}.ffn.w1.weight": (dff, d), f"layers.{i}.ffn.w2.weight": (d, dff),
                   f"layers.{i}.ffn.w3.weight": (dff, d)}
    generator = torch.Generator().manual_seed(1)
    foreign = {k: torch.randn(s, generator=generator) for k, s in shapes.items()}
    other = TransformerLM(**SMALL)
    other.load_state_dict(foreign, strict=True)
    for k, tensor in other.state_dict().items():
        assert torch.equal(tensor, foreign[k]), k
    with pytest.raises(RuntimeError):
        other.load_state_dict({**foreign, "extra.weight": torch.zeros(1)}, strict=True)


def test_default_d_ff_matches_handout():
    assert default_d_ff(512) == 1344
    assert default_d_ff(768) == 2048
    for d in (100, 1600, 4096):
        assert default_d_ff(d) % 64 == 0 and abs(default_d_ff(d) - 8 * d / 3) <= 32


def test_linear_and_embedding_and_init():
    torch.manual_seed(0)
    lin = Linear(300, 200)
    x = torch.randn(2, 3, 300)
    torch.testing.assert_close(lin(x), torch.einsum("oi,bti->bto", lin.weight, x))
    std = math.sqrt(2 / 500)
    assert lin.weight.abs().max() <= 3 * std + 1e-6
    assert abs(lin.weight.std().item() - std) / std < 0.15  # truncation shrinks std by ~1.3%
    emb = Embedding(1000, 64)
    assert emb.weight.abs().max() <= 3.0 + 1e-6 and 0.9 < emb.weight.std().item() < 1.05
    ids = torch.tensor([[3, 999], [0, 3]])
    assert torch.equal(emb(ids), emb.weight[ids])
    assert torch.equal(RMSNorm(8).weight, torch.ones(8))


def test_rmsnorm_matches_float64_and_keeps_dtype():
    torch.manual_seed(0)
    norm = RMSNorm(16, eps=1e-5)
    with torch.no_grad():
        norm.weight.copy_(torch.randn(16))
    x = torch.randn(3, 5, 16) * 50
    ref = x.double() / torch.sqrt(x.double().pow(2).mean(-1, keepdim=True) + 1e-5) * norm.weight.double()
    torch.testing.assert_close(norm(x).double(), ref, rtol=1e-5, atol=1e-5)
    # bf16 input: squared values near 300^2 are fine in float32; result comes back as bf16.
    xb = (torch.randn(4, 16) * 300).to(torch.bfloat16)
    out = norm(xb)
    assert out.dtype == torch.bfloat16
    ref_b = xb.double() / torch.sqrt(xb.double().pow(2).mean(-1, keepdim=True) + 1e-5) * norm.weight.double()
    torch.testing.assert_close(out.double(), ref_b, rtol=2e-2, atol=2e-2)


def test_silu_softmax():
    x = torch.randn(4, 7, dtype=torch.float64)
    torch.testing.assert_close(silu(x), F.silu(x))
    torch.testing.assert_close(softmax(x, dim=-1), torch.softmax(x, dim=-1))
    torch.testing.assert_close(softmax(x, dim=0), torch.softmax(x, dim=0))
    big = torch.tensor([[1e4, 1e4 - 1.0, -1e4]])
    out = softmax(big, dim=-1)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, torch.softmax(big, dim=-1))


def test_ffn_modules():
    torch.manual_seed(0)
    swiglu = SwiGLU(8, 24)
    x = torch.randn(2, 3, 8)
    w1, w2, w3 = swiglu.w1.weight, swiglu.w2.weight, swiglu.w3.weight
    torch.testing.assert_close(swiglu(x), (F.silu(x @ w1.T) * (x @ w3.T)) @ w2.T)
    plain = SiLUFeedForward(8, 32)
    assert plain.w1.weight.shape == (32, 8) and plain.w2.weight.shape == (8, 32)
    torch.testing.assert_close(plain(x), F.silu(x @ plain.w1.weight.T) @ plain.w2.weight.T)


def rope_reference(x: torch.Tensor, positions: torch.Tensor, theta: float) -> torch.Tensor:
    """Multiply each pair by an explicit 2x2 rotation matrix, one position at a time."""
    d = x.shape[-1]
    out = torch.empty_like(x)
    for idx in torch.cartesian_prod(*[torch.arange(n) for n in x.shape[:-1]]).reshape(-1, x.dim() - 1):
        idx = tuple(idx.tolist())
        pos = positions[idx[-positions.dim():]]  # positions align with x's trailing batch dims
        for k in range(d // 2):
            angle = pos.item() / theta ** (2 * k / d)
            rot = torch.tensor([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]], dtype=x.dtype)
            out[idx + (slice(2 * k, 2 * k + 2),)] = rot @ x[idx + (slice(2 * k, 2 * k + 2),)]
    return out


def test_rope_matches_rotation_matrices():
    torch.manual_seed(0)
    rope = RotaryPositionalEmbedding(10_000.0, 8, max_seq_len=32)
    x = torch.randn(2, 5, 8)
    positions = torch.tensor([[0, 1, 2, 3, 4], [7, 3, 31, 0, 9]])
    torch.testing.assert_close(rope(x, positions), rope_reference(x, positions, 10_000.0), rtol=1e-5, atol=1e-5)
    # positions shared by all batch entries, more batch dims than positions
    x4 = torch.randn(2, 3, 4, 8)
    shared = torch.tensor([5, 6, 7, 8])
    torch.testing.assert_close(rope(x4, shared), rope_reference(x4, shared, 10_000.0), rtol=1e-5, atol=1e-5)
    assert not rope.state_dict()  # cos/sin are non-persistent
    with pytest.raises(ValueError, match="even"):
        RotaryPositionalEmbedding(10_000.0, 7, 8)


def test_sdpa_against_naive_reference_and_mask():
    torch.manual_seed(0)
    q, k, v = torch.randn(2, 3, 5, 4), torch.randn(2, 3, 7, 4), torch.randn(2, 3, 7, 6)
    mask = torch.rand(5, 7) > 0.3
    mask[:, 0] = True
    out = scaled_dot_product_attention(q, k, v, mask)
    scores = torch.einsum("bhqd,bhkd->bhqk", q.double(), k.double()) / 2.0
    scores[..., ~mask] = -math.inf
    ref = torch.einsum("bhqk,bhkd->bhqd", torch.softmax(scores, -1), v.double())
    torch.testing.assert_close(out.double(), ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(scaled_dot_product_attention(q, k, v), F.scaled_dot_product_attention(q, k, v))


def test_mhsa_is_causal_and_uses_heads_as_rows():
    torch.manual_seed(0)
    d, h = 16, 4
    attn = MultiHeadSelfAttention(d, h, max_seq_len=8, theta=10_000.0)
    x = torch.randn(2, 6, d)
    out = attn(x)
    # A change to the last token must not affect earlier outputs.
    x2 = x.clone()
    x2[:, -1] += 1.0
    torch.testing.assert_close(attn(x2)[:, :-1], out[:, :-1])
    # Reference: per-head loop, head i's q rows are q_proj.weight[i*d_k:(i+1)*d_k].
    rope = RotaryPositionalEmbedding(10_000.0, d // h, 8)
    pos = torch.arange(6)
    heads = []
    for i in range(h):
        rows = slice(i * 4, (i + 1) * 4)
        qi = rope(x @ attn.q_proj.weight[rows].T, pos)
        ki = rope(x @ attn.k_proj.weight[rows].T, pos)
        vi = x @ attn.v_proj.weight[rows].T
        heads.append(F.scaled_dot_product_attention(qi, ki, vi, is_causal=True))
    torch.testing.assert_close(out, torch.cat(heads, -1) @ attn.output_proj.weight.T, rtol=1e-5, atol=1e-5)
    # no batch dim, and two batch dims
    torch.testing.assert_close(attn(x[1]), out[1], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(attn(x.unsqueeze(0))[0], out, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("variant", [dict(), dict(position="nope"), dict(norm="post")])
def test_fused_attention_matches_from_scratch(variant):
    torch.manual_seed(0)
    model = TransformerLM(**SMALL, **variant)
    fused = TransformerLM(**SMALL, **variant, fused_attention=True)
    fused.load_state_dict(model.state_dict())
    ids = torch.randint(0, SMALL["vocab_size"], (3, 16))
    logits = model(ids)
    torch.testing.assert_close(fused(ids), logits, rtol=1e-4, atol=1e-4)
    # gradients agree too
    logits.sum().backward()
    fused(ids).sum().backward()
    for (name, p), q in zip(model.named_parameters(), fused.parameters()):
        torch.testing.assert_close(q.grad, p.grad, rtol=1e-3, atol=1e-4, msg=name)


@pytest.mark.parametrize("fused", [False, True])
def test_kv_cache_matches_full_forward(fused):
    torch.manual_seed(0)
    model = TransformerLM(**SMALL, fused_attention=fused).eval()
    ids = torch.randint(0, SMALL["vocab_size"], (2, 12))
    full = model(ids)
    cache = model.new_kv_cache()
    assert isinstance(cache, KVCache)
    chunks = [model(ids[:, :5], kv_cache=cache)]  # a prompt, then one token at a time
    for t in range(5, 12):
        chunks.append(model(ids[:, t : t + 1], kv_cache=cache))
    assert cache.length == 12
    torch.testing.assert_close(torch.cat(chunks, dim=1), full, rtol=1e-4, atol=1e-4)
    # Chunked (several new tokens on top of a cache) needs the offset causal mask.
    cache = model.new_kv_cache()
    parts = [model(ids[:, :4], kv_cache=cache), model(ids[:, 4:9], kv_cache=cache), model(ids[:, 9:], kv_cache=cache)]
    torch.testing.assert_close(torch.cat(parts, dim=1), full, rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="context_length"):
        model(torch.zeros(2, 5, dtype=torch.long), kv_cache=cache)


def test_variants_shapes_keys_and_behaviour():
    torch.manual_seed(0)
    ids = torch.randint(0, SMALL["vocab_size"], (2, 10))
    base = set(TransformerLM(**SMALL).state_dict())
    post = TransformerLM(**SMALL, norm="post")
    assert set(post.state_dict()) == base
    none = TransformerLM(**SMALL, norm="none")
    assert set(none.state_dict()) == {k for k in base if "ln" not in k}
    silu_model = TransformerLM(**{**SMALL, "d_ff": None}, ffn="silu")
    assert silu_model.layers[0].ffn.w1.weight.shape == (4 * SMALL["d_model"], SMALL["d_model"])
    assert {k for k in silu_model.state_dict() if "w3" in k} == set()
    tied = TransformerLM(**SMALL, tie_embeddings=True)
    assert tied.lm_head.weight is tied.token_embeddings.weight
    assert sum(p.numel() for p in tied.parameters()) == sum(p.numel() for p in TransformerLM(**SMALL).parameters()) - 64 * 32
    nope = TransformerLM(**SMALL, position="nope")
    assert nope.layers[0].attn.rope is None
    for model in (post, none, silu_model, tied, nope):
        out = model(ids)
        assert out.shape == (2, 10, SMALL["vocab_size"]) and torch.isfinite(out).all()
    # Post-norm: a block's output is RMS-normalised (unit gains at init).
    block = TransformerBlock(32, 4, 48, 16, 10_000.0, norm="post")
    y = block(torch.randn(2, 5, 32) * 10)
    torch.testing.assert_close(y.pow(2).mean(-1), torch.ones(2, 5), rtol=1e-3, atol=1e-3)
    with pytest.raises(ValueError, match="norm"):
        TransformerLM(**SMALL, norm="layer")


def test_model_config_round_trip_and_errors():
    cfg = ModelConfig(vocab_size=64, context_length=16, d_model=32, num_layers=2, num_heads=4, d_ff=None,
                      norm="post", ffn="silu", tie_embeddings=True)
    again = ModelConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg and again.resolved_d_ff == 128
    model = TransformerLM.from_config(cfg)
    assert model.config == cfg
    assert model.layers[0].ffn.w1.weight.shape == (128, 32)
    assert ModelConfig().resolved_d_ff == 1344 and ModelConfig(d_ff=None).resolved_d_ff == 1344
    with pytest.raises(ValueError, match="num_heads"):
        ModelConfig(d_model=30, num_heads=4)
    with pytest.raises(ValueError, match="position"):
        ModelConfig(position="alibi")
    with pytest.raises(ValueError, match="unknown"):
        ModelConfig.from_dict({"d_model": 32, "bogus": 1})
    with pytest.raises(ValueError, match="vocab_size"):
        ModelConfig(vocab_size=0)


def test_config_and_handout_signatures_build_the_same_modules():
    cfg = ModelConfig(**SMALL)
    builds = [lambda: TransformerLM(cfg), lambda: TransformerLM(config=cfg), lambda: TransformerLM(**SMALL),
              lambda: TransformerLM(64, 16, 32, 2, 4, 48, 10_000.0, None, torch.float32)]
    states = []
    for build in builds:
        torch.manual_seed(0)
        states.append(build().state_dict())
    for state in states[1:]:
        assert state.keys() == states[0].keys() and all(torch.equal(state[k], states[0][k]) for k in state)
    model = TransformerLM(cfg)
    assert model.config == cfg and model.config is not cfg
    block_cfg = ModelConfig(d_model=32, num_heads=4, d_ff=48, context_length=16, position="nope", norm="post")
    torch.manual_seed(0)
    by_config = TransformerBlock(block_cfg)
    torch.manual_seed(0)
    by_handout = TransformerBlock(d_model=32, num_heads=4, d_ff=48, max_seq_len=16, theta=None, norm="post")
    assert by_config.attn.rope is None and by_handout.attn.rope is None
    x = torch.randn(2, 5, 32)
    assert torch.equal(by_config(x), by_handout(x))
    with pytest.raises(TypeError):
        TransformerLM(cfg, bogus=1)
    with pytest.raises(TypeError, match="rope_theta"):
        TransformerLM(64, 16, 32, 2, 4, 48)
    with pytest.raises(ValueError, match="norm"):
        TransformerBlock(32, 4, 48, 16, 10_000.0, norm="layer")


def test_names_that_moved_out_of_model_still_import_from_it():
    from cs336_core import decoding, kernels
    from cs336_core.model import _Attention, _attention, _LayerCache, _RMSNorm

    assert _attention is kernels.attention and _Attention is kernels._Attention and _RMSNorm is kernels._RMSNorm
    assert _LayerCache is decoding.LayerCache and KVCache is decoding.KVCache
    assert softmax is kernels.softmax and scaled_dot_product_attention is kernels.scaled_dot_product_attention


def test_forward_rejects_too_long_input():
    model = TransformerLM(**SMALL)
    with pytest.raises(ValueError, match="context_length=16"):
        model(torch.zeros(1, 17, dtype=torch.long))


def test_hand_written_backward_passes_match_numerical_gradients():
    torch.manual_seed(0)
    x = torch.randn(3, 6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(silu, (x,))
    assert torch.autograd.gradcheck(lambda t: softmax(t, dim=-1), (x,))
    assert torch.autograd.gradcheck(lambda t: softmax(t, dim=0), (x,))
    q, k, v = (torch.randn(2, 5, 4, dtype=torch.float64, requires_grad=True) for _ in range(3))
    causal = torch.ones(5, 5, dtype=torch.bool).tril()
    assert torch.autograd.gradcheck(lambda a, b, c: scaled_dot_product_attention(a, b, c, causal), (q, k, v))
    rope = RotaryPositionalEmbedding(10_000.0, 4, 16).double()
    positions = torch.tensor([3, 1, 4, 1, 5])
    assert torch.autograd.gradcheck(lambda t: rope(t, positions), (q,))
    swiglu = SwiGLU(4, 6).double()
    assert torch.autograd.gradcheck(swiglu, (q,))
    norm = RMSNorm(4).double()
    with torch.no_grad():
        norm.weight.copy_(torch.randn(4))
    assert torch.autograd.gradcheck(lambda t, w: torch.func.functional_call(norm, {"weight": w}, (t,)),
                                    (q, norm.weight.detach().clone().requires_grad_()))


def test_attention_with_batch_masks_matches_torch_incl_gradients():
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 3, 5, 4, dtype=torch.float64, requires_grad=True) for _ in range(3))
    mask = torch.rand(2, 1, 5, 5) > 0.4
    mask[..., 0] = True
    for m in (torch.ones(5, 5, dtype=torch.bool).tril(), mask, None):
        expected = F.scaled_dot_product_attention(q, k, v, attn_mask=m)
        out = scaled_dot_product_attention(q, k, v, m)
        torch.testing.assert_close(out, expected)
        grads = torch.autograd.grad(expected.sum(), (q, k, v))
        for ours, ref in zip(torch.autograd.grad(out.sum(), (q, k, v)), grads):
            torch.testing.assert_close(ours, ref)


@pytest.mark.parametrize("tile", [(1, 8), (3, 40), (4, 1 << 20), (64, 1 << 20), (256, 1 << 26)])
@pytest.mark.parametrize("q_len, k_len", [(7, 7), (5, 9), (1, 6)])
def test_tiled_causal_attention_matches_torch_incl_gradients(monkeypatch, tile, q_len, k_len):
    """Every tiling (one query per block, partial last blocks, many row groups, one tile, the
    accelerators' tiles) computes the same causal attention, also after a cached prefix (q_len < k_len)."""
    from cs336_core import kernels

    monkeypatch.setattr(kernels, "_CPU_TILE", tile)
    torch.manual_seed(0)
    rows, d = 6, 4  # rows = batch * heads
    q = torch.randn(rows, q_len, d, dtype=torch.float64, requires_grad=True)
    k, v = (torch.randn(rows, k_len, d, dtype=torch.float64, requires_grad=True) for _ in range(2))
    out = kernels.attention(q, k, v, causal=True)
    # query i sits at position k_len - q_len + i and sees keys up to there
    allowed = torch.ones(q_len, k_len, dtype=torch.bool).tril(k_len - q_len)
    expected = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)
    torch.testing.assert_close(out, expected)
    grad_out = torch.randn_like(out)
    ours = torch.autograd.grad(out, (q, k, v), grad_out)
    for mine, ref in zip(ours, torch.autograd.grad(expected, (q, k, v), grad_out)):
        torch.testing.assert_close(mine, ref)
    assert torch.autograd.gradcheck(lambda a, b, c: kernels.attention(a, b, c, causal=True), (q, k, v))


def test_attention_in_bfloat16_is_as_accurate_as_torchs_own():
    """bf16 keeps 8 bits of mantissa, so q k^T itself is off by about 1%; the softmax statistics
    must not add to that: our error against float32 stays within 1.5x of torch's bf16 kernel's."""
    from cs336_core.kernels import attention as _attention

    torch.manual_seed(0)
    exact = [torch.randn(8, 64, 16, requires_grad=True) for _ in range(3)]
    low = [t.detach().bfloat16().requires_grad_() for t in exact]
    torch_low = [t.detach().bfloat16().requires_grad_() for t in exact]
    out_exact, out_low = _attention(*exact, causal=True), _attention(*low, causal=True)
    out_torch = F.scaled_dot_product_attention(*torch_low, is_causal=True)
    assert out_low.dtype == torch.bfloat16

    def error(approx, exact_value):
        return ((approx.float() - exact_value).norm() / exact_value.norm()).item()

    assert error(out_low, out_exact) <= 1.5 * error(out_torch, out_exact) + 1e-4
    grad_out = torch.randn_like(out_exact)
    grads_exact = torch.autograd.grad(out_exact, exact, grad_out)
    grads_low = torch.autograd.grad(out_low, low, grad_out.bfloat16())
    grads_torch = torch.autograd.grad(out_torch, torch_low, grad_out.bfloat16())
    for ours, theirs, reference in zip(grads_low, grads_torch, grads_exact):
        assert ours.dtype == torch.bfloat16
        assert error(ours, reference) <= 1.5 * error(theirs, reference) + 1e-4


@pytest.mark.slow
def test_torch_compile_matches_eager():
    torch.manual_seed(0)
    model = TransformerLM(**{**SMALL, "num_layers": 1})
    ids = torch.randint(0, SMALL["vocab_size"], (2, 16))
    eager = model(ids)
    eager.sum().backward()
    eager_grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    compiled = torch.compile(model)(ids)
    compiled.sum().backward()
    torch.testing.assert_close(compiled, eager, rtol=1e-4, atol=1e-4)
    for p, g in zip(model.parameters(), eager_grads):
        torch.testing.assert_close(p.grad, g, rtol=1e-3, atol=1e-4)


def test_config_from_dict_names_unknown_and_missing_fields():
    import dataclasses

    from cs336_core.configs import dataclass_from_dict

    assert ModelConfig.from_dict({}) == ModelConfig()
    with pytest.raises(ValueError, match=r"unknown ModelConfig fields: \['bogus', 'extra'\]"):
        ModelConfig.from_dict({"d_model": 32, "extra": 2, "bogus": 1})

    @dataclasses.dataclass
    class Run:
        path: str
        size: int
        note: str = ""

    assert dataclass_from_dict(Run, {"path": "p", "size": 1}) == Run("p", 1)
    with pytest.raises(ValueError, match=r"Run needs \['path', 'size'\]"):
        dataclass_from_dict(Run, {"note": "x"})
