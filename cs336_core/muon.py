"""Muon (Keller Jordan, 2024) for the Transformer blocks' weight matrices, AdamW for the rest, from scratch.

Muon takes the momentum of a weight matrix's gradient and replaces it by the nearest semi-orthogonal
matrix U V^T (G = U S V^T), so every direction of the update moves at the same rate however
ill-conditioned the gradient is. U V^T is approximated by a few Newton-Schulz iterations, matrix
products only (no SVD), which run well in bf16 on an accelerator.

The parameter-group rule (muon_param_groups): a parameter with exactly two dimensions that belongs
to a module inside `model.layers` (the blocks' q/k/v/output projections and FFN matrices) goes to
Muon; everything else (token embeddings, lm_head, tied or not, every RMSNorm gain, QK-norm's
included) goes to AdamW. Embeddings and the head are lookups/readouts whose rows are not one linear
map's directions, and gains are vectors: orthogonalisation means nothing for them.

The lr contract: every group carries `lr_scale`, its peak lr over the schedule's peak (1 for the AdamW
group, muon_lr / lr for Muon's); the training loop calls optim.set_lr(optimizer, scheduled_lr) each
step, which sets group["lr"] = scheduled_lr * group["lr_scale"], so one schedule drives both.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any, Callable

import torch
from torch import Tensor

from cs336_core.configs import check_number
from cs336_core.optim import (adamw_group_step, check_adamw_hyperparameters, check_lr, check_weight_decay,
                              closure_loss)

# The quintic's coefficients from Keller Jordan's Muon: they push every singular value in (0, 1]
# into roughly [0.7, 1.2] within 5 steps, trading exact convergence to 1 for speed.
NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)


def newton_schulz(grad: Tensor, steps: int = 5, eps: float = 1e-7, dtype: torch.dtype | None = None) -> Tensor:
    """Approximately U V^T for grad = U S V^T, of shape (..., rows, cols), in grad's dtype.

    X is first scaled by its Frobenius norm so every singular value is at most 1; each step then maps
    each singular value s to a s + b s^3 + c s^5 (X <- a X + (b A + c A^2) X with A = X X^T). Runs in
    `dtype`, by default bf16 off the CPU (the products are the cost; the iteration tolerates the
    rounding) and float32 on it. A wide layout (rows <= cols) keeps A = X X^T the smaller Gram matrix.
    """
    a, b, c = NS_COEFFICIENTS
    if dtype is None:
        dtype = torch.float32 if grad.device.type == "cpu" else torch.bfloat16
    x = grad.to(dtype)
    tall = x.shape[-2] > x.shape[-1]
    if tall:
        x = x.mT
    x = x / (torch.linalg.matrix_norm(x, keepdim=True) + eps)  # Frobenius norm >= the largest singular value
    for _ in range(steps):
        gram = x @ x.mT
        x = a * x + (b * gram + c * (gram @ gram)) @ x
    return (x.mT if tall else x).to(grad.dtype)


_MUON_DEFAULTS = {"momentum": 0.95, "nesterov": True, "ns_steps": 5, "weight_decay": 0.0}
_ADAMW_DEFAULTS = {"betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.01}


class MuonWithAdamW(torch.optim.Optimizer):
    """One optimizer, two update rules chosen per parameter group by its `use_muon` entry.

    use_muon=True groups (2-D parameters only), per matrix W of shape (rows, cols) with gradient g:
        buf <- momentum buf + (1 - momentum) g                  (state "momentum_buffer")
        u   <- (1 - momentum) g + momentum buf  if nesterov else buf
        W   <- W (1 - lr weight_decay) - lr sqrt(max(1, rows / cols)) newton_schulz(u, ns_steps)
    The sqrt(max(1, rows/cols)) factor is Keller Jordan's: an orthogonal update of a tall matrix has
    per-entry RMS 1/sqrt(rows), of a wide one 1/sqrt(cols); the factor makes both 1/sqrt(cols) =
    1/sqrt(fan-in). Matrices of the same shape are orthogonalised in one batched call.
    use_muon=False groups: exactly cs336_core.optim.AdamW's update (the same function).
    Groups take lr (required), lr_scale (default 1; see optim.set_lr) and their rule's
    hyperparameters, defaulting to momentum 0.95, nesterov, 5 steps, no decay for Muon and
    AdamW's defaults otherwise. state_dict()/load_state_dict() are the base class's.
    """

    def __init__(self, param_groups: list[dict[str, Any]], *, foreach: bool = True):
        self.foreach = foreach
        super().__init__(param_groups, {})

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        if not isinstance(param_group, dict) or "use_muon" not in param_group or "lr" not in param_group:
            raise ValueError("MuonWithAdamW takes parameter groups as dicts with 'params', 'lr' and 'use_muon'")
        use_muon = param_group["use_muon"]
        name = f"MuonWithAdamW group {param_group.get('name', len(self.param_groups))!r}"
        group = {**(_MUON_DEFAULTS if use_muon else _ADAMW_DEFAULTS), "lr_scale": 1.0, **param_group}
        if use_muon:
            check_lr(f"{name} lr", group["lr"])
            check_weight_decay(f"{name} weight_decay", group["weight_decay"])
            if not 0.0 <= group["momentum"] < 1.0:
                raise ValueError(f"{name} momentum must lie in [0, 1), got {group['momentum']!r}")
            if not isinstance(group["ns_steps"], int) or group["ns_steps"] < 1:
                raise ValueError(f"{name} ns_steps must be a positive int, got {group['ns_steps']!r}")
            params = group["params"]
            group["params"] = [params] if isinstance(params, Tensor) else list(params)
            flat = [tuple(p.shape) for p in group["params"] if p.dim() != 2]
            if flat:
                raise ValueError(f"{name}: Muon updates 2-D matrices only, got shapes {flat}")
        else:
            group.update(check_adamw_hyperparameters(lr=group["lr"], betas=group["betas"], eps=group["eps"],
                                                     weight_decay=group["weight_decay"], prefix=name))
            group["betas"] = tuple(group["betas"])
        super().add_param_group(group)

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None):
        loss = closure_loss(closure)
        for group in self.param_groups:
            if group["use_muon"]:
                self._muon_group_step(group)
            else:
                adamw_group_step(self.state, group, self.foreach)
        return loss

    def _muon_group_step(self, group: dict[str, Any]) -> None:
        lr, momentum, decay = group["lr"], group["momentum"], group["weight_decay"]
        params = [p for p in group["params"] if p.grad is not None]
        if not params:
            return
        for p in params:
            if "momentum_buffer" not in self.state[p]:
                self.state[p]["momentum_buffer"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        grads = [p.grad for p in params]
        buffers = [self.state[p]["momentum_buffer"] for p in params]
        torch._foreach_lerp_(buffers, grads, 1 - momentum)  # buf + (1-mu)(g - buf) = mu buf + (1-mu) g
        directions = torch._foreach_lerp(grads, buffers, momentum) if group["nesterov"] else buffers
        by_shape: dict[torch.Size, list[int]] = defaultdict(list)
        for index, p in enumerate(params):
            by_shape[p.shape].append(index)
        for (rows, cols), indices in by_shape.items():
            updates = newton_schulz(torch.stack([directions[i] for i in indices]), group["ns_steps"])
            matrices = [params[i] for i in indices]
            if decay:
                torch._foreach_mul_(matrices, 1 - lr * decay)
            torch._foreach_add_(matrices, list(updates.unbind(0)), alpha=-lr * math.sqrt(max(1.0, rows / cols)))


def muon_param_groups(model: torch.nn.Module, *, lr: float, betas: tuple[float, float] = (0.9, 0.999),
                      eps: float = 1e-8, weight_decay: float = 0.01, muon_lr: float = 0.02,
                      momentum: float = 0.95, nesterov: bool = True, ns_steps: int = 5,
                      muon_weight_decay: float = 0.0) -> list[dict[str, Any]]:
    """MuonWithAdamW's groups for a TransformerLM, by the rule in this module's docstring.

    Returns [{"name": "muon", use_muon=True, lr=muon_lr, lr_scale=muon_lr / lr, ...},
             {"name": "adamw", use_muon=False, lr=lr, lr_scale=1.0, betas, eps, weight_decay}],
    a group left out when it would be empty. `model` is the plain module (not a DDP or compiled
    wrapper; they share its parameters, so the optimizer built here serves them too).
    """
    check_number("muon_param_groups.lr", lr, 0.0, exclusive=True)  # lr_scale divides by it
    check_number("muon_param_groups.muon_lr", muon_lr, 0.0)
    in_blocks = {id(p) for p in model.layers.parameters() if p.dim() == 2}
    matrices = [p for p in model.parameters() if id(p) in in_blocks]
    others = [p for p in model.parameters() if id(p) not in in_blocks]
    groups = [
        {"name": "muon", "params": matrices, "use_muon": True, "lr": muon_lr, "lr_scale": muon_lr / lr,
         "momentum": momentum, "nesterov": nesterov, "ns_steps": ns_steps, "weight_decay": muon_weight_decay},
        {"name": "adamw", "params": others, "use_muon": False, "lr": lr, "lr_scale": 1.0,
         "betas": tuple(betas), "eps": eps, "weight_decay": weight_decay},
    ]
    return [group for group in groups if group["params"]]
