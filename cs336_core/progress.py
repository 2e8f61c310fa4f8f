"""Progress reporting shared by the CLI (a terminal bar) and Dagster (log lines with ETA).

Long-running functions in cs336_core accept `progress: ProgressFn | None` and call it as
`progress(phase, done, total)`; `total` may be 0 when unknown. They never print on their own.

A reporter may also accept a keyword `info`: a small dict of what the work knows besides its
count (training passes {"loss": 3.41, "val": 3.50, "tok/s": 12345.6, "mfu": "41.2%"}). Callers
pass it through `report(progress, phase, done, total, info)`, which leaves it out for reporters
written for three arguments, so every existing ProgressFn keeps working. ConsoleProgress and
ThrottledLog show it with `format_info`: numbers rounded, never 16 digits.
"""

from __future__ import annotations

import inspect
import sys
import time
from typing import Any, Callable, Mapping

ProgressFn = Callable[[str, int, int], None]
Info = Mapping[str, Any]

# tqdm units counted in bytes: shown as kB/s, MB/s (unit_scale) rather than thousands of it/s.
BYTE_UNITS = ("B", "byte", "bytes")


def rounded(value: Any) -> str:
    """A number as a person reads it: 4 significant digits, thousands separated; other values as str."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.4g}"


def round_floats(value: Any, digits: int = 4) -> Any:
    """`value` with every float in it (through dicts and lists) cut to `digits` significant digits,
    for printing a record to a person; files keep full precision."""
    if isinstance(value, float):
        return float(f"{value:.{digits}g}")
    if isinstance(value, dict):
        return {key: round_floats(item, digits) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [round_floats(item, digits) for item in value]
    return value


def format_info(info: Info | None) -> str:
    """'loss 3.412, val 3.501' from {"loss": 3.41234..., "val": 3.50098...}; None values are left out."""
    return ", ".join(f"{key} {rounded(value)}" for key, value in (info or {}).items() if value is not None)


def takes_info(progress: Callable) -> bool:
    """Whether `progress` accepts the keyword `info` (a parameter of that name, or **kwargs)."""
    try:
        parameters = inspect.signature(progress).parameters.values()
    except (TypeError, ValueError):  # a builtin without a signature: call it the plain way
        return False
    return any(p.name == "info" or p.kind is p.VAR_KEYWORD for p in parameters)


def report(progress: ProgressFn | None, phase: str, done: int, total: int, info: Info | None = None) -> None:
    """`progress(phase, done, total, info=info)`, or without `info` for a three-argument reporter."""
    if progress is None:
        return
    if info and takes_info(progress):
        progress(phase, done, total, info=info)
    else:
        progress(phase, done, total)


class ConsoleProgress:
    """A tqdm bar per phase, for command-line entry points."""

    def __init__(self, unit: str = "it", file=sys.stderr):
        self.unit = unit
        self.file = file
        self._bar = None
        self._phase: str | None = None

    def __call__(self, phase: str, done: int, total: int, info: Info | None = None) -> None:
        from tqdm import tqdm

        if phase != self._phase:
            self.close()
            self._phase = phase
            in_bytes = self.unit in BYTE_UNITS
            self._bar = tqdm(total=total or None, desc=phase, unit="B" if in_bytes else self.unit,
                             unit_scale=in_bytes, file=self.file, dynamic_ncols=True)
        bar = self._bar
        if total and bar.total != total:
            bar.total = total
        if info:
            bar.set_postfix_str(format_info(info), refresh=False)  # drawn by the update below
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
        self._info: Info | None = None

    def __call__(self, phase: str, done: int, total: int, info: Info | None = None) -> None:
        now = time.monotonic()
        if phase != self._phase:
            self._phase, self._start, self._last, self._info = phase, now, None, None
        if info:
            self._info = info  # kept through throttled calls: the next line shows the newest
        finished = bool(total) and done >= total
        if not finished and self._last is not None and now - self._last < self.interval:
            return
        self._last = now
        elapsed = now - self._start
        if total:
            frac = done / total
            eta = f"{elapsed * (1 - frac) / frac:.0f}s" if frac > 0 else "unknown"
            line = f"{phase}: {done:,}/{total:,} ({100 * frac:.1f}%), elapsed {elapsed:.0f}s, ETA {eta}"
        else:
            line = f"{phase}: {done:,} done, elapsed {elapsed:.0f}s"
        details = format_info(self._info)
        self.log(f"{line}, {details}" if details else line)


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

    def __call__(self, phase: str, done: int, total: int, info: Info | None = None) -> None:
        now = time.perf_counter()
        if phase != self._phase:
            self._phase, self._phase_start = phase, self._last
        self.seconds[phase] = now - self._phase_start
        self._last = now
        report(self.then, phase, done, total, info)
