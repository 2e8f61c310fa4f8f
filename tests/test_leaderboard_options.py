"""The leaderboard options (handout section 7.5), each against its defining formula: QK-norm, the
ReLU^2 FFN, zero-initialised output projections, logit soft-capping, z-loss and Muon; the baseline
is unchanged while they are off; a model with all of them on trains, in float32 and under bf16
autocast; Muon's optimizer state resumes bit-exactly."""

import copy
import json
import math

import pytest
import torch
import torch.nn.functional as F

from cs336_core.model import (ModelConfig, MultiHeadSelfAttention, ReLUSquaredFeedForward, TransformerBlock,
                              TransformerLM)
from cs336_core.muon import NS_COEFFICIENTS, MuonWithAdamW, muon_param_groups, newton_schulz
from cs336_core.optim import AdamW, build_optimizer, clip_gradients, cross_entropy, lm_loss, set_lr

SMALL = dict(vocab_size=64, context_length=16, d_model=32, num_layers=2, num_heads=4, d_ff=48, rope_theta=10_000.0)
ALL_ON = dict(qk_norm=True, ffn="relu2", d_ff=None, zero_init_output=True, logit_softcap=15.0, tie_embeddings=True)
# ModelConfig.to_dict's keys before the leaderboard options existed: a baseline config still has exactly these.
BASELINE_CONFIG_KEYS = {"vocab_size", "context_length", "d_model", "num_layers", "num_heads", "d_ff", "rope_theta",
                        "norm", "position", "ffn", "tie_embeddings", "fused_attention"}


def build(seed: int = 0, **options) -> TransformerLM:
    torch.manual_seed(seed)
    return TransformerLM(ModelConfig(**{**SMALL, **options}))


def ids(batch: int = 2, length: int = 16, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, SMALL["vocab_size"], (batch, length), generator=torch.Generator().manual_seed(seed))


# ----------------------------------------------------------------------------------------------
# Off by default: the baseline's config, state dict, initialisation and outputs


def test_options_off_leave_the_baseline_bit_identical():
    base = build()
    explicit_off = build(qk_norm=False, zero_init_output=False, logit_softcap=None)
    old_saved = ModelConfig(**SMALL).to_dict()  # what a run stored before the options existed
    assert set(old_saved) == BASELINE_CONFIG_KEYS
    torch.manual_seed(0)
    from_old = TransformerLM(ModelConfig.from_dict(old_saved))
    for model in (explicit_off, from_old):
        assert model.config == base.config
        assert base.state_dict().keys() == model.state_dict().keys()
        assert all(torch.equal(base.state_dict()[k], model.state_dict()[k]) for k in base.state_dict())
        assert torch.equal(model(ids()), base(ids()))
    assert not any("q_norm" in k or "k_norm" in k for k in base.state_dict())


def test_config_round_trips_the_options_and_rejects_bad_values():
    config = ModelConfig(**{**SMALL, **ALL_ON})
    data = config.to_dict()
    assert set(data) == BASELINE_CONFIG_KEYS | {"qk_norm", "zero_init_output", "logit_softcap"}
    assert ModelConfig.from_dict(json.loads(json.dumps(data))) == config
    assert config.resolved_d_ff == 4 * SMALL["d_model"]
    only_cap = ModelConfig(logit_softcap=30.0).to_dict()
    assert only_cap["logit_softcap"] == 30.0 and "qk_norm" not in only_cap
    for bad, field in ((dict(logit_softcap=0.0), "logit_softcap"), (dict(logit_softcap=float("inf")), "logit_softcap"),
                       (dict(qk_norm="yes"), "qk_norm"), (dict(zero_init_output=None), "zero_init_output"),
                       (dict(ffn="relu3"), "ffn")):
        with pytest.raises(ValueError, match=field):
            ModelConfig(**bad)


# ----------------------------------------------------------------------------------------------
# Each option against its formula


def reference_attention(attn: MultiHeadSelfAttention, x: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """QK-norm by its definition: RMS-normalise each head's q and k over d_k (times the gains), RoPE, causal SDPA."""
    b, t, _ = x.shape
    q, k, v = ((x @ proj.weight.T).view(b, t, attn.num_heads, attn.d_k).transpose(1, 2)
               for proj in (attn.q_proj, attn.k_proj, attn.v_proj))
    q = q / torch.sqrt(q.pow(2).mean(-1, keepdim=True) + eps) * attn.q_norm.weight
    k = k / torch.sqrt(k.pow(2).mean(-1, keepdim=True) + eps) * attn.k_norm.weight
    positions = torch.arange(t)
    q, k = attn.rope(q, positions), attn.rope(k, positions)
    out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    return out.transpose(1, 2).reshape(b, t, -1) @ attn.output_proj.weight.T


@pytest.mark.parametrize("fused", [False, True])
def test_qk_norm_normalises_each_heads_q_and_k_before_rope(fused):
    torch.manual_seed(0)
    attn = MultiHeadSelfAttention(32, 4, 16, 10_000.0, qk_norm=True, fused_attention=fused)
    with torch.no_grad():  # gains away from 1, so a wrong axis or a missing gain shows
        attn.q_norm.weight.uniform_(0.5, 2.0)
        attn.k_norm.weight.uniform_(0.5, 2.0)
    x = torch.randn(2, 10, 32)
    torch.testing.assert_close(attn(x), reference_attention(attn, x), rtol=1e-5, atol=1e-5)
    model = build(qk_norm=True)
    state = model.state_dict()
    assert state["layers.1.attn.q_norm.weight"].shape == (8,) and state["layers.0.attn.k_norm.weight"].shape == (8,)
    assert set(state) - set(build().state_dict()) == {f"layers.{i}.attn.{n}_norm.weight" for i in (0, 1) for n in "qk"}
    base = build().state_dict()  # the gains start at one and draw no random numbers
    assert all(torch.equal(base[k], state[k]) for k in base)
    # Incremental decoding (k normalised before it enters the cache) matches the full forward.
    model.eval()
    cache = model.new_kv_cache()
    parts = [model(ids()[:, :5], kv_cache=cache), model(ids()[:, 5:], kv_cache=cache)]
    torch.testing.assert_close(torch.cat(parts, dim=1), model(ids()), rtol=1e-4, atol=1e-4)


def test_relu_squared_ffn_is_w2_of_relu_squared():
    torch.manual_seed(0)
    ffn = ReLUSquaredFeedForward(8, 20).double()
    x = torch.randn(3, 5, 8, dtype=torch.float64, requires_grad=True)
    expected = torch.clamp(x @ ffn.w1.weight.T, min=0) ** 2 @ ffn.w2.weight.T
    torch.testing.assert_close(ffn(x), expected)
    assert torch.autograd.gradcheck(ffn, (x,))
    model = build(ffn="relu2", d_ff=None)
    keys = {k for k in model.state_dict() if ".ffn." in k}
    assert keys == {f"layers.{i}.ffn.w{j}.weight" for i in (0, 1) for j in (1, 2)}
    assert model.layers[0].ffn.w1.weight.shape == (4 * 32, 32)


def test_zero_init_output_starts_each_block_as_the_identity_and_draws_the_same_weights():
    model, base = build(zero_init_output=True), build()
    zeroed = {f"layers.{i}.{name}.weight" for i in (0, 1) for name in ("attn.output_proj", "ffn.w2")}
    for key, tensor in model.state_dict().items():
        if key in zeroed:
            assert not tensor.any(), key
        else:
            assert torch.equal(tensor, base.state_dict()[key]), key
    x = torch.randn(2, 7, 32)
    assert torch.equal(model.layers[0](x), x)  # pre-norm: x + 0 + 0
    block = TransformerBlock(ModelConfig(**{**SMALL, "zero_init_output": True, "ffn": "relu2"}))
    assert torch.equal(block(x), x)
    loss = cross_entropy(model(ids()[:, :-1]), ids()[:, 1:])
    loss.backward()  # the zero matrices still get gradients, so they leave zero at the first step
    assert model.layers[0].attn.output_proj.weight.grad.abs().sum() > 0


def test_logit_softcap_is_cap_tanh_of_the_logits_and_bounds_them():
    base, capped = build(), build(logit_softcap=0.5)
    with torch.no_grad():  # large logits, so the cap is what bounds them
        for model in (base, capped):
            model.lm_head.weight.mul_(50)
    raw = base(ids())
    assert raw.abs().max() > 5
    out = capped(ids())
    torch.testing.assert_close(out, 0.5 * torch.tanh(raw / 0.5))
    assert out.abs().max() <= 0.5
    out.sum().backward()
    assert torch.isfinite(capped.lm_head.weight.grad).all() and capped.lm_head.weight.grad.abs().sum() > 0


# ----------------------------------------------------------------------------------------------
# z-loss


def reference_lm_loss(logits, targets, z):
    logits = logits.double()
    lse = torch.logsumexp(logits, dim=-1)
    ce = (lse - logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1)).mean()
    return ce + z * lse.pow(2).mean(), ce


@pytest.mark.parametrize("block_elements", [None, 3 * 7])  # None: one block; 3*7: three rows per block
def test_z_loss_adds_coef_times_mean_squared_logsumexp(monkeypatch, block_elements):
    import cs336_core.optim as optim_module

    if block_elements:
        monkeypatch.setattr(optim_module, "_BLOCK_ELEMENTS", block_elements)
    torch.manual_seed(0)
    logits = (torch.randn(2, 5, 7, dtype=torch.float64) * 3 + 2).requires_grad_()
    targets = torch.randint(0, 7, (2, 5))
    loss, ce = lm_loss(logits, targets, z_loss=0.3)
    expected_loss, expected_ce = reference_lm_loss(logits, targets, 0.3)
    torch.testing.assert_close(loss, expected_loss)
    torch.testing.assert_close(ce, expected_ce)
    # Gradients of any mix of the two outputs match the formula's autograd gradients.
    (grad,) = torch.autograd.grad(loss * 1.5 + ce * 0.25, logits)
    (expected_grad,) = torch.autograd.grad(expected_loss * 1.5 + expected_ce * 0.25, logits)
    torch.testing.assert_close(grad, expected_grad)
    assert torch.autograd.gradcheck(lambda t: lm_loss(t, targets, 0.3), (logits,))


def test_z_loss_off_is_exactly_cross_entropy_and_bf16_logits_are_upcast():
    torch.manual_seed(0)
    logits, targets = torch.randn(4, 9, 11), torch.randint(0, 11, (4, 9))
    loss, ce = lm_loss(logits, targets)
    assert loss is ce and torch.equal(ce, cross_entropy(logits, targets))
    loss, ce = lm_loss(logits.bfloat16(), targets, z_loss=1e-2)
    assert loss.dtype == torch.float32
    torch.testing.assert_close(loss.double(), reference_lm_loss(logits.bfloat16(), targets, 1e-2)[0])
    for bad in (-1e-4, float("nan"), True):
        with pytest.raises(ValueError, match="z_loss"):
            lm_loss(logits, targets, z_loss=bad)


# ----------------------------------------------------------------------------------------------
# Muon


@pytest.mark.parametrize("shape", [(64, 16), (16, 64), (3, 48, 24)])
def test_newton_schulz_orthogonalises_singular_values_near_one(shape):
    torch.manual_seed(0)
    grad = torch.randn(shape) * 7.0
    out = newton_schulz(grad)
    assert out.shape == grad.shape and out.dtype == grad.dtype
    singular = torch.linalg.svdvals(out)
    assert singular.min() > 0.5 and singular.max() < 1.5, singular
    # By definition each singular value s of grad / |grad|_F goes through the quintic 5 times, and the
    # singular vectors stay: out ~ U p(S) V^T.
    u, s, vh = torch.linalg.svd(grad.double(), full_matrices=False)
    x = s / torch.linalg.matrix_norm(grad.double(), keepdim=True).squeeze(-1)
    a, b, c = NS_COEFFICIENTS
    for _ in range(5):
        x = a * x + b * x**3 + c * x**5
    torch.testing.assert_close(out.double(), u @ torch.diag_embed(x) @ vh, rtol=1e-4, atol=1e-4)
    # and it points where the exact orthogonal factor U V^T does
    cosine = F.cosine_similarity(out.double().flatten(), (u @ vh).flatten(), dim=0)
    assert cosine > 0.95
    # bf16, the accelerators' default, keeps the singular values in the same band
    low = newton_schulz(grad, dtype=torch.bfloat16)
    assert low.dtype == grad.dtype
    singular = torch.linalg.svdvals(low)
    assert singular.min() > 0.5 and singular.max() < 1.5, singular


def test_muon_step_by_formula_with_aspect_ratio_scale_and_momentum():
    torch.manual_seed(0)
    tall, wide = torch.nn.Parameter(torch.randn(12, 4)), torch.nn.Parameter(torch.randn(4, 12))
    start = [tall.detach().clone(), wide.detach().clone()]
    opt = MuonWithAdamW([{"params": [tall, wide], "use_muon": True, "lr": 0.1, "momentum": 0.9, "weight_decay": 0.5}])
    grads = [[torch.randn(12, 4), torch.randn(4, 12)] for _ in range(2)]
    buffers = [torch.zeros(12, 4), torch.zeros(4, 12)]
    expected = [s.clone() for s in start]
    for step_grads in grads:
        for p, g in zip((tall, wide), step_grads):
            p.grad = g.clone()
        opt.step()
        for i, g in enumerate(step_grads):
            buffers[i] = 0.9 * buffers[i] + 0.1 * g
            nesterov = 0.1 * g + 0.9 * buffers[i]
            rows, cols = g.shape
            expected[i] = expected[i] * (1 - 0.1 * 0.5) - 0.1 * math.sqrt(max(1, rows / cols)) * newton_schulz(nesterov)
    torch.testing.assert_close(tall.detach(), expected[0])
    torch.testing.assert_close(wide.detach(), expected[1])
    torch.testing.assert_close(opt.state[tall]["momentum_buffer"], buffers[0])
    # A single step's update, divided by lr and the scale, is orthogonalised: singular values near 1.
    p = torch.nn.Parameter(torch.zeros(40, 10))
    p.grad = torch.randn(40, 10)
    MuonWithAdamW([{"params": [p], "use_muon": True, "lr": 1.0}]).step()
    singular = torch.linalg.svdvals(p.detach() / -2.0)  # sqrt(40 / 10) = 2
    assert singular.min() > 0.5 and singular.max() < 1.5
    with pytest.raises(ValueError, match="2-D"):
        MuonWithAdamW([{"params": [torch.nn.Parameter(torch.zeros(3))], "use_muon": True, "lr": 0.1}])
    with pytest.raises(ValueError, match="use_muon"):
        MuonWithAdamW([{"params": [p], "lr": 0.1}])
    with pytest.raises(ValueError, match="momentum"):
        MuonWithAdamW([{"params": [p], "use_muon": True, "lr": 0.1, "momentum": 1.0}])


def test_param_groups_rule_muon_for_block_matrices_adamw_for_the_rest():
    for options in ({}, ALL_ON, dict(qk_norm=True)):
        model = build(**options)
        groups = muon_param_groups(model, lr=1e-3, muon_lr=0.02)
        names = {id(p): n for n, p in model.named_parameters()}
        by_group = {g["name"]: {names[id(p)] for p in g["params"]} for g in groups}
        assert by_group["muon"] == {n for n, p in model.named_parameters() if n.startswith("layers.") and p.dim() == 2}
        assert all(".attn." in n or ".ffn." in n for n in by_group["muon"])
        assert by_group["adamw"] == set(names.values()) - by_group["muon"]
        assert "token_embeddings.weight" in by_group["adamw"]
        assert ("lm_head.weight" in by_group["adamw"]) == (not options.get("tie_embeddings"))
        assert {g["name"]: g["lr_scale"] for g in groups} == {"muon": pytest.approx(20.0), "adamw": 1.0}


def test_adamw_groups_of_muon_with_adamw_are_exactly_adamw():
    torch.manual_seed(0)
    init = [torch.randn(5, 3), torch.randn(7)]
    ours = [torch.nn.Parameter(p.clone()) for p in init]
    plain = [torch.nn.Parameter(p.clone()) for p in init]
    hyper = dict(lr=1e-2, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)
    opt = MuonWithAdamW([{"params": ours, "use_muon": False, **hyper}])
    reference = AdamW(plain, **hyper)
    for step in range(5):
        g = torch.Generator().manual_seed(step)
        grads = [torch.randn(p.shape, generator=g) for p in init]
        for params, optimizer in ((ours, opt), (plain, reference)):
            for p, grad in zip(params, grads):
                p.grad = grad.clone()
            optimizer.step()
    assert all(torch.equal(a, b) for a, b in zip(ours, plain))


def test_build_optimizer_and_set_lr_contract():
    model = build()
    adamw = build_optimizer(model, "adamw", lr=3e-3, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)
    assert type(adamw) is AdamW and adamw.defaults["lr"] == 3e-3
    set_lr(adamw, 1.5e-3)
    assert [g["lr"] for g in adamw.param_groups] == [1.5e-3]  # exactly the schedule's value
    muon = build_optimizer(model, "muon", lr=3e-3, muon_lr=0.03, momentum=0.9)
    assert isinstance(muon, MuonWithAdamW)
    set_lr(muon, 1.5e-3)
    lrs = {g["name"]: g["lr"] for g in muon.param_groups}
    assert lrs == {"muon": pytest.approx(0.015), "adamw": 1.5e-3}
    with pytest.raises(ValueError, match="optimizer must be one of"):
        build_optimizer(model, "lion", lr=1e-3)
    with pytest.raises(TypeError, match="Muon options"):
        build_optimizer(model, "adamw", lr=1e-3, muon_lr=0.02)
    with pytest.raises(ValueError, match="lr"):
        build_optimizer(model, "muon", lr=0.0)


def train_steps(model, optimizer, steps: int, start: int = 0, z_loss: float = 1e-3, autocast: bool = False):
    """A few steps of the training loop's shape (schedule via set_lr, z-loss, clipping); the ce per step."""
    losses = []
    for step in range(start, start + steps):
        set_lr(optimizer, 3e-3 * min(1.0, (step + 1) / 3))
        batch = ids(4, 17, seed=100 + step % 2)  # two fixed batches: the loss must fall
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            logits = model(batch[:, :-1])
        loss, ce = lm_loss(logits.float(), batch[:, 1:], z_loss=z_loss)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        clip_gradients(model.parameters(), 1.0)
        optimizer.step()
        losses.append(ce.item())
    return losses


def test_muon_checkpoint_resume_is_bit_exact():
    model = build(**ALL_ON)
    optimizer = build_optimizer(model, "muon", lr=3e-3, weight_decay=0.1, muon_lr=0.02, muon_weight_decay=0.01)
    train_steps(model, optimizer, 3)
    saved_model, saved_optimizer = copy.deepcopy(model.state_dict()), copy.deepcopy(optimizer.state_dict())
    straight = train_steps(model, optimizer, 3, start=3)
    resumed_model = build(seed=7, **ALL_ON)  # other initial weights: everything must come from the checkpoint
    resumed_optimizer = build_optimizer(resumed_model, "muon", lr=3e-3, weight_decay=0.1)
    resumed_model.load_state_dict(saved_model)
    resumed_optimizer.load_state_dict(saved_optimizer)
    assert {g["name"]: g["lr_scale"] for g in resumed_optimizer.param_groups} == {
        g["name"]: g["lr_scale"] for g in optimizer.param_groups}
    assert train_steps(resumed_model, resumed_optimizer, 3, start=3) == straight
    for key, tensor in model.state_dict().items():
        assert torch.equal(tensor, resumed_model.state_dict()[key]), key


@pytest.mark.parametrize("autocast", [False, True])
def test_all_options_on_train_with_muon_and_z_loss(autocast):
    model = build(**ALL_ON)
    optimizer = build_optimizer(model, "muon", lr=3e-3, weight_decay=0.0, muon_lr=0.02)
    losses = train_steps(model, optimizer, 20, autocast=autocast)
    assert all(math.isfinite(x) for x in losses)
    assert losses[0] > math.log(SMALL["vocab_size"]) - 0.5  # near chance at the start
    assert max(losses[-2:]) < losses[0] - 0.5, losses
