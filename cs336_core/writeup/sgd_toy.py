"""`learning_rate_tuning` (handout section 4.2): the handout's SGD toy, run at several learning rates.

The toy minimises mean(w^2) over a 10x10 matrix started at 5 * randn with the handout's SGD, whose
step is lr / sqrt(t + 1) * grad. The gradient is w / 50, so one step multiplies w by
1 - lr / (50 sqrt(t + 1)): at lr 1e1 a factor 0.8 that creeps towards 1 (slow decay), at 1e2 a
first factor of -1 (no progress) and then near 0 (fast convergence), at 1e3 a factor of -19 (the
loss grows 361-fold in one step: divergence).
"""

from __future__ import annotations

import math
from typing import Iterable

HANDOUT_LEARNING_RATES = (1e1, 1e2, 1e3)
HANDOUT_STEPS = 10


def sgd_toy_losses(lr: float, steps: int = HANDOUT_STEPS, seed: int = 0) -> list[float]:
    """The loss before each of `steps` steps of the handout's SGD at `lr` (seeded: the handout's
    snippet is not, so its numbers differ, its behaviour does not)."""
    import torch

    from cs336_core.optim import SGD

    generator = torch.Generator().manual_seed(seed)
    weights = torch.nn.Parameter(5 * torch.randn((10, 10), generator=generator))
    optimizer = SGD([weights], lr=lr)
    losses = []
    for _ in range(steps):
        optimizer.zero_grad()
        loss = (weights**2).mean()
        losses.append(loss.item())
        loss.backward()
        optimizer.step()
    return losses


def verdict(losses: list[float]) -> str:
    """"diverges" (the loss grew), "converges fast" (below a millionth of the start) or "decays slowly"."""
    first, last = losses[0], losses[-1]
    if not math.isfinite(last) or last > first:
        return "diverges"
    if last < first * 1e-6:
        return "converges fast"
    return "decays slowly"


def learning_rate_tuning(lrs: Iterable[float] = HANDOUT_LEARNING_RATES, steps: int = HANDOUT_STEPS,
                         seed: int = 0) -> list[dict]:
    """One row per learning rate: the losses of the toy's `steps` steps and their verdict."""
    rows = []
    for lr in lrs:
        losses = sgd_toy_losses(lr, steps, seed)
        rows.append({"lr": lr, "losses": losses, "verdict": verdict(losses)})
    return rows


def learning_rate_tuning_markdown(rows: list[dict]) -> str:
    from cs336_core.reporting import markdown_table  # pandas: only when rendering

    steps = len(rows[0]["losses"]) if rows else 0
    table = markdown_table(["step", *(f"lr {row['lr']:g}" for row in rows)],
                           [[t, *(f"{row['losses'][t]:.3g}" for row in rows)] for t in range(steps)])
    said = "; ".join(f"at lr {row['lr']:g} it {row['verdict']} ({row['losses'][0]:.3g} -> {row['losses'][-1]:.3g})"
                     for row in rows)
    return (f"The handout's SGD toy (minimise mean(w²) of a 10x10 `5 * randn` matrix; step "
            f"`lr / sqrt(t + 1) * grad`), {steps} steps per learning rate, computed when this report was "
            f"built (no corpus involved):\n\n{table}\n\nThe loss before each step: {said}. The gradient is "
            f"w / 50, so a step multiplies w by 1 - lr / (50 sqrt(t + 1)): 0.8 at lr 10 (steady, slow decay), "
            f"-1 then about -0.4, -0.15, ... at lr 100 (the first step only flips the sign, then the loss "
            f"collapses), and -19 at lr 1000, which multiplies the loss by 361 on the first step: the rate is "
            f"past the point where a step overshoots by more than the distance to the minimum, and SGD diverges.")
