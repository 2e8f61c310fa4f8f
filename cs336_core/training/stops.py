"""When a session stops before its last step: on request (`should_stop`) or at the wall-clock budget.

Both are asked at step boundaries on every rank and decided together (any rank that says stop stops
them all), or the other ranks would wait in a collective forever.

The budget (`TrainConfig.max_wall_seconds`) counts the run's wall-clock seconds summed over every
session that resumed it (training, evaluation and checkpoints; not the setup before the first step).
It is checked after each step, and the final evaluation and checkpoint come after it, so a run ends
at most one step, one evaluation and one checkpoint past its budget. A fresh run always trains at
least one step; a resumed run whose checkpoint has already spent the budget trains none.
"""

from __future__ import annotations

from typing import Callable

from cs336_core.training.config import TrainConfig
from cs336_core.training.distributed import _Process


class Stops:
    def __init__(self, config: TrainConfig, process: _Process, should_stop: Callable[[], bool] | None,
                 wall_seconds: Callable[[], float]):
        self.budget, self.process = config.max_wall_seconds, process
        self.should_stop, self.wall_seconds = should_stop, wall_seconds

    def _any_rank(self, yes: bool) -> bool:
        return self.process.mean(1.0 if yes else 0.0) > 0

    def requested(self) -> bool:
        return self.should_stop is not None and self._any_rank(self.should_stop())

    def over_budget(self) -> bool:
        return self.budget is not None and self._any_rank(self.wall_seconds() >= self.budget)

    def spent_before(self, wall_seconds: float) -> bool:
        """Whether a checkpoint that had run `wall_seconds` already spent the budget (alike on every rank)."""
        return self.budget is not None and wall_seconds >= self.budget

    def budget_message(self, step: int, total_steps: int) -> str:
        return (f"stopped at step {step} of {total_steps} after {self.wall_seconds():.1f} s: the wall-clock "
                f"budget max_wall_seconds={self.budget:g} is spent; train again with a larger max_wall_seconds "
                "to continue from its checkpoint")

    @staticmethod
    def interrupt_message(step: int, total_steps: int) -> str:
        return (f"stopped at step {step} of {total_steps} on request (should_stop); "
                "train again with the same config to resume from its checkpoint")
