"""Loss, optimizers, schedule and clipping against float64 / torch references and hand-derived values."""

import math

import pytest
import torch

from cs336_core.model import TransformerLM
from cs336_core.optim import (SGD, AdamW, check_adamw_hyperparameters, clip_gradients, cross_entropy,
                              lr_cosine_schedule)


def reference_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    log_probs = torch.log_softmax(logits.double(), dim=-1)
    return -log_probs.gather(-1, targets.unsqueeze(-1)).mean()


def test_cross_entropy_matches_float64_reference():
    torch.manual_seed(0)
    logits, targets = torch.randn(4, 6, 50), torch.randint(0, 50, (4, 6))
    torch.testing.assert_close(cross_entropy(logits, targets).double(), reference_cross_entropy(logits, targets))
    # flat (batch, vocab) and more batch dims
    torch.testing.assert_close(cross_entropy(logits[0], targets[0]).double(), reference_cross_entropy(logits[0], targets[0]))
    logits5 = torch.randn(2, 3, 4, 10)
    t5 = torch.randint(0, 10, (2, 3, 4))
    torch.testing.assert_close(cross_entropy(logits5, t5).double(), reference_cross_entropy(logits5, t5))


def test_cross_entropy_large_logits_stay_finite():
    torch.manual_seed(0)
    logits = torch.randn(8, 20) * 1e4  # exp would overflow without max subtraction
    targets = torch.randint(0, 20, (8,))
    loss = cross_entropy(logits, targets)
    assert torch.isfinite(loss)
    torch.testing.assert_close(loss.double(), reference_cross_entropy(logits, targets), rtol=1e-6, atol=1e-3)
    # the target being the max logit gives ~0, not nan
    logits = torch.tensor([[1e4, 0.0, -1e4]])
    assert cross_entropy(logits, torch.tensor([0])).item() == pytest.approx(0.0, abs=1e-6)
    assert cross_entropy(logits, torch.tensor([2])).item() == pytest.approx(2e4, rel=1e-6)
    # gradient is softmax - onehot
    logits = torch.randn(3, 5, requires_grad=True)
    targets = torch.tensor([1, 0, 4])
    cross_entropy(logits, targets).backward()
    expected = (torch.softmax(logits.detach(), -1) - torch.nn.functional.one_hot(targets, 5)) / 3
    torch.testing.assert_close(logits.grad, expected)
    with pytest.raises(ValueError, match="batch dims"):
        cross_entropy(torch.randn(3, 5), torch.zeros(4, dtype=torch.long))


def quadratic_loss(params: list[torch.Tensor], step: int) -> torch.Tensor:
    """A deterministic, step-dependent loss so gradients vary like real ones."""
    g = torch.Generator().manual_seed(step)
    return sum(((p - torch.randn(p.shape, generator=g)) ** 2 * (1 + i)).sum() for i, p in enumerate(params))


@pytest.mark.parametrize("foreach", [True, False])
def test_adamw_follows_torch_adamw_for_1000_steps(foreach):
    torch.manual_seed(0)
    init = [torch.randn(5, 3), torch.randn(7), torch.randn(2, 2, 2)]
    ours = [p.clone().requires_grad_() for p in init]
    theirs = [p.clone().requires_grad_() for p in init]
    kwargs = dict(lr=1e-2, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)
    opt_ours, opt_theirs = AdamW(ours, **kwargs, foreach=foreach), torch.optim.AdamW(theirs, **kwargs)
    for step in range(1000):
        for params, opt in ((ours, opt_ours), (theirs, opt_theirs)):
            opt.zero_grad()
            quadratic_loss(params, step).backward()
            opt.step()
    for a, b, start in zip(ours, theirs, init):
        assert not torch.allclose(a, start, atol=0.1)  # the parameters really moved
        torch.testing.assert_close(a.detach(), b.detach(), rtol=0, atol=1e-4)


def test_adamw_single_step_by_hand_and_state():
    p = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
    opt = AdamW([p], lr=0.1, betas=(0.9, 0.99), eps=1e-8, weight_decay=0.5)
    p.grad = torch.tensor([0.5, 2.0])
    opt.step()
    m, v = 0.1 * p.grad, 0.01 * p.grad**2
    alpha = 0.1 * math.sqrt(1 - 0.99) / (1 - 0.9)
    after_adam = torch.tensor([1.0, -2.0]) - alpha * m / (v.sqrt() + 1e-8)
    torch.testing.assert_close(p.detach(), after_adam * (1 - 0.1 * 0.5))
    state = opt.state[p]
    assert state["t"] == 1
    # state_dict round-trip keeps moments and the step count
    clone = torch.nn.Parameter(p.detach().clone())
    opt2 = AdamW([clone], lr=0.1)
    opt2.load_state_dict(opt.state_dict())
    assert opt2.state[clone]["t"] == 1 and torch.equal(opt2.state[clone]["m"], state["m"])
    for bad in (dict(lr=-1), dict(betas=(1.0, 0.9)), dict(eps=-1), dict(weight_decay=-0.1)):
        with pytest.raises(ValueError):
            AdamW([p], **bad)


def test_sgd_decays_step_size():
    p = torch.nn.Parameter(torch.tensor([10.0]))
    opt = SGD([p], lr=1.0)
    expected = 10.0
    for t in range(5):
        p.grad = torch.tensor([2.0])
        opt.step()
        expected -= 1.0 / math.sqrt(t + 1) * 2.0
    assert p.item() == pytest.approx(expected)


def test_lr_cosine_schedule_values():
    kw = dict(max_learning_rate=1.0, min_learning_rate=0.1, warmup_iters=7, cosine_cycle_iters=21)
    assert lr_cosine_schedule(0, **kw) == 0.0
    assert lr_cosine_schedule(3, **kw) == pytest.approx(3 / 7)
    assert lr_cosine_schedule(7, **kw) == pytest.approx(1.0)
    assert lr_cosine_schedule(14, **kw) == pytest.approx(0.55)  # halfway: (max + min) / 2
    assert lr_cosine_schedule(21, **kw) == pytest.approx(0.1)
    assert lr_cosine_schedule(100, **kw) == pytest.approx(0.1)
    values = [lr_cosine_schedule(it, **kw) for it in range(7, 22)]
    assert all(a >= b for a, b in zip(values, values[1:]))
    assert lr_cosine_schedule(5, 1.0, 0.1, 0, 10) == pytest.approx(0.55)
    with pytest.raises(ValueError, match="cosine_cycle_iters"):
        lr_cosine_schedule(0, 1.0, 0.1, 10, 5)


def test_clip_gradients_global_norm():
    torch.manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(4, 3)), torch.nn.Parameter(torch.randn(5)), torch.nn.Parameter(torch.randn(2))]
    for p in params[:2]:
        p.grad = torch.randn_like(p) * 10
    # params[2] has no grad and must be skipped
    grads = [p.grad.clone() for p in params[:2]]
    norm = math.sqrt(sum(g.pow(2).sum().item() for g in grads))
    returned = clip_gradients(params, max_l2_norm=1.0)
    assert returned == pytest.approx(norm, rel=1e-5)
    new_norm = math.sqrt(sum(p.grad.pow(2).sum().item() for p in params[:2]))
    assert new_norm == pytest.approx(1.0, rel=1e-5)
    for p, g in zip(params[:2], grads):
        torch.testing.assert_close(p.grad, g * (1.0 / (norm + 1e-6)))
    # below the threshold: untouched
    before = [p.grad.clone() for p in params[:2]]
    clip_gradients(params, max_l2_norm=100.0)
    for p, g in zip(params[:2], before):
        assert torch.equal(p.grad, g)
    with pytest.raises(ValueError, match="max_l2_norm"):
        clip_gradients(params, 0.0)


def test_overfits_one_batch():
    torch.manual_seed(0)
    model = TransformerLM(vocab_size=50, context_length=16, d_model=32, num_layers=1, num_heads=4, d_ff=64,
                          rope_theta=10_000.0)
    ids = torch.randint(0, 50, (4, 17))
    inputs, targets = ids[:, :-1], ids[:, 1:]
    opt = AdamW(model.parameters(), lr=1e-2, weight_decay=0.0)
    first = None
    for _ in range(60):
        loss = cross_entropy(model(inputs), targets)
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        clip_gradients(model.parameters(), 1.0)
        opt.step()
    assert first > 3.0
    assert loss.item() < 0.02, loss.item()


def test_cross_entropy_gradient_matches_numerical():
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 7, dtype=torch.float64, requires_grad=True)
    targets = torch.randint(0, 7, (2, 3))
    assert torch.autograd.gradcheck(lambda t: cross_entropy(t, targets), (logits,))


def test_blocked_cross_entropy_matches_reference(monkeypatch):
    import cs336_core.optim as optim_module

    monkeypatch.setattr(optim_module, "_BLOCK_ELEMENTS", 3 * 7)  # 3 rows per block over 10 rows
    torch.manual_seed(0)
    logits = torch.randn(10, 7, dtype=torch.float64, requires_grad=True)
    targets = torch.randint(0, 7, (10,))
    loss = cross_entropy(logits, targets)
    torch.testing.assert_close(loss, reference_cross_entropy(logits, targets))
    (grad,) = torch.autograd.grad(loss * 2.5, logits)
    expected = (torch.softmax(logits.detach(), -1) - torch.nn.functional.one_hot(targets, 7)) * 2.5 / 10
    torch.testing.assert_close(grad, expected)


def test_hyperparameter_checks_name_the_argument_and_keep_torchs_rules():
    p = torch.nn.Parameter(torch.zeros(2))
    for bad, message in ((dict(lr=-1), r"AdamW\.lr must be a number >= 0\.0, got -1"),
                         (dict(betas=(1.0, 0.9)), r"AdamW\.betas must each lie in \[0, 1\), got \(1\.0, 0\.9\)"),
                         (dict(eps=-1), r"AdamW\.eps must be a number >= 0\.0"),
                         (dict(weight_decay=-0.1), r"AdamW\.weight_decay must be a number >= 0\.0")):
        with pytest.raises(ValueError, match=message):
            AdamW([p], **bad)
    with pytest.raises(ValueError, match=r"SGD\.lr must be a number >= 0\.0, got -0\.5"):
        SGD([p], lr=-0.5)
    # The optimizers' own rules are torch's: lr = 0 and eps = 0 pass, and values are kept as given.
    opt = AdamW([p], lr=0, betas=[0.5, 0.0], eps=0.0, weight_decay=0)
    assert opt.defaults == {"lr": 0, "betas": (0.5, 0.0), "eps": 0.0, "weight_decay": 0}


def test_strict_hyperparameter_checks_are_trainconfigs_rules():
    checked = check_adamw_hyperparameters(lr=1, betas=[0.9, 0.95], eps=1e-8, weight_decay=0, prefix="Run", strict=True)
    assert checked == {"lr": 1.0, "betas": (0.9, 0.95), "eps": 1e-8, "weight_decay": 0.0}
    assert all(type(checked[name]) is float for name in ("lr", "eps", "weight_decay"))
    good = dict(lr=1e-3, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)
    for bad, message in ((dict(lr=0.0), r"Run\.lr must be a finite number > 0\.0, got 0\.0"),
                         (dict(lr=float("inf")), r"Run\.lr must be a finite number > 0\.0, got inf"),
                         (dict(eps=0), r"Run\.eps must be a finite number > 0\.0, got 0"),
                         (dict(weight_decay=True), r"Run\.weight_decay must be a finite number >= 0\.0, got True"),
                         (dict(betas=(0.9,)), r"Run\.betas must be a pair of floats, got \(0\.9,\)"),
                         (dict(betas=(0.9, float("nan"))), r"Run\.betas must each lie in \[0, 1\)")):
        with pytest.raises(ValueError, match=message):
            check_adamw_hyperparameters(**{**good, **bad}, prefix="Run", strict=True)
