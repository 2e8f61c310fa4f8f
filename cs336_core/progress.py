"""Progress reporting shared by the CLI (a terminal bar) and Dagster (log lines with ETA).

Long-running functions in cs336_core accept `progress: ProgressFn | None` and call it as
`progress(phase, done, total)`; `total` may be 0 when unknown. They never print on their own.
"""

from __future__ import annotations

import sys
import time
from typing import Callable

ProgressFn = Callable[[str, int, int], None]


class ConsoleProgress:
    """A tqdm bar per phase, for command-line entry points."""

    def __init__(self, unit: str = "it", file=sys.stderr):
        self.unit = unit
        self.file = file
        self._bar = None
        self._phase: str | None = None

    def __call__(self, phase: str, done: int, total: int) -> None:
        from tqdm import tqdm

        if phase != self._phase:
            self.close()
            self._phase = phase
            self._bar = tqdm(total=total or None, desc=phase, unit=self.unit, file=self.file, dynamic_ncols=True)
        bar = self._bar
        if total and bar.total != total:
            bar.total = total
        bar.update(done - bar.n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


class ThrottledLog:
    """Calls `log(message)` with percent and ETA at most every `interval` seconds per phase.

    Used by Dagster assets (with `context.log.info`) so runs show progress while they run.
    """

    def __init__(self, log: Callable[[str], None], interval: float = 5.0):
        self.log = log
        self.interval = interval
        self._phase: str | None = None
        self._start = 0.0
        # None, not 0.0: monotonic() starts near 0 at boot, so "0.0 = long ago" would silently
        # throttle away the first report on a machine up for less than `interval` seconds.
        self._last: float | None = None

    def __call__(self, phase: str, done: int, total: int) -> None:
        now = time.monotonic()
        if phase != self._phase:
            self._phase, self._start, self._last = phase, now, None
        finished = bool(total) and done >= total
        if not finished and self._last is not None and now - self._last < self.interval:
            return
        self._last = now
        elapsed = now - self._start
        if total:
            frac = done / total
            eta = f"{elapsed * (1 - frac) / frac:.0f}s" if frac > 0 else "unknown"
            self.log(f"{phase}: {done:,}/{total:,} ({100 * frac:.1f}%), elapsed {elapsed:.0f}s, ETA {eta}")
        else:
            self.log(f"{phase}: {done:,} done, elapsed {elapsed:.0f}s")


class PhaseTimer:
    """A ProgressFn that times each phase and passes every call on to `then`.

    A phase runs from the last report of the phase before it (or from the timer's creation) to its
    own last report, so the phases of one call add up to its duration: this is how the tokenizer
    asset answers the handout's "which part of BPE training takes the most time".
    """

    def __init__(self, then: ProgressFn | None = None):
        self.then = then
        self.seconds: dict[str, float] = {}
        self._phase: str | None = None
        self._last = self._phase_start = time.perf_counter()

    def __call__(self, phase: str, done: int, total: int) -> None:
        now = time.perf_counter()
        if phase != self._phase:
            self._phase, self._phase_start = phase, self._last
        self.seconds[phase] = now - self._phase_start
        self._last = now
        if self.then is not None:
            self.then(phase, done, total)
