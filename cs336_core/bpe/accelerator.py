"""The optional C accelerator of `Tokenizer.encode`: `cs336_core/bpe/_fastbpe.c`, built by setup.py
as `cs336_core.bpe._fastbpe` when a C compiler exists.

It splits pure-ASCII stretches into pre-tokens and looks them up in the tokenizer's cache in C,
calling back into the tokenizer's BPE and regex path for new pre-tokens and non-ASCII text; the
pure-Python code stays the reference. CS336_PURE_PYTHON=1 forces the pure path.
"""

from __future__ import annotations

import os


def load_accelerator():
    """The `_fastbpe` extension module, or None: not built, or CS336_PURE_PYTHON set (not to 0)."""
    if os.environ.get("CS336_PURE_PYTHON", "") not in ("", "0"):
        return None
    try:
        from cs336_core.bpe import _fastbpe
    except ImportError:
        return None
    return _fastbpe


FASTBPE = load_accelerator()
