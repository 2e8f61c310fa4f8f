"""Train a BPE tokenizer and profile it, as train_bpe_tinystories asks (handout section 2.5): seconds
in total and per phase, peak memory (worker processes included) and the longest tokens."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from cs336_core import bpe, reporting
from cs336_core.files import PathLike
from cs336_core.progress import PhaseTimer, ProgressFn

LONGEST_SHOWN = 10


def train_tokenizer(train_path: PathLike, vocab_size: int, special_tokens: list[str], vocab_path: PathLike,
                    merges_path: PathLike, *, longest: int = LONGEST_SHOWN, progress: ProgressFn | None = None) -> dict:
    """Train byte-level BPE on `train_path`, save it (GPT-2's format) and return its stats (JSON-ready):
    vocab_size, merges, training_seconds, phase_seconds, peak_memory_mb (above the memory in use
    before training, workers included), train_bytes and the `longest` longest non-special tokens."""
    start = time.perf_counter()
    phases = PhaseTimer(then=progress)
    with PeakMemory() as memory:
        vocab, merges = bpe.train_bpe(train_path, vocab_size, special_tokens, progress=phases)
    seconds = time.perf_counter() - start
    bpe.save_vocab_merges(vocab, merges, vocab_path, merges_path)
    specials = {token.encode("utf-8") for token in special_tokens}
    return {"vocab_size": len(vocab), "merges": len(merges), "training_seconds": round(seconds, 2),
            "phase_seconds": {phase: round(t, 2) for phase, t in phases.seconds.items()},
            "peak_memory_mb": round(memory.peak_extra_bytes / 1e6, 1),
            "train_bytes": Path(train_path).stat().st_size,
            "longest_tokens": reporting.longest_tokens({i: t for i, t in vocab.items() if t not in specials}, longest)}


class PeakMemory:
    """Peak resident memory of this process plus its children while the block runs (sampled).

    Tokenizer training fans out to worker processes, so the process's own ru_maxrss would miss
    them; a sampling thread sees the whole tree. `peak_extra_bytes` is the peak above the
    memory in use when the block started (what the work itself needed).
    """

    def __init__(self, interval: float = 0.1):
        self.interval = interval
        self.baseline_bytes = 0
        self.peak_bytes = 0
        self._stop = None
        self._thread = None

    @property
    def peak_extra_bytes(self) -> int:
        return max(0, self.peak_bytes - self.baseline_bytes)

    @staticmethod
    def _tree_rss() -> int:
        """This process's resident memory plus each child's unique memory (a forked worker shares
        the parent's pages copy-on-write; counting its full RSS would count them twice)."""
        import psutil

        me = psutil.Process()
        total = me.memory_info().rss
        for child in me.children(recursive=True):
            try:
                total += child.memory_full_info().uss
            except psutil.Error:
                pass  # a worker that just exited
        return total

    def _sample(self) -> None:
        while True:
            self.peak_bytes = max(self.peak_bytes, self._tree_rss())
            if self._stop.wait(self.interval):
                return

    def __enter__(self) -> "PeakMemory":
        self.baseline_bytes = self.peak_bytes = self._tree_rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
