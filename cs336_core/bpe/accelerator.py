"""The optional C accelerators, built by setup.py where a C compiler exists:

  * `_fastbpe` (cs336_core/bpe/_fastbpe.c) for `Tokenizer.encode`;
  * `_fasttrain` (cs336_core/bpe/_fasttrain.c) for `train_bpe`: pre-token counting in threads and
    the merge loop.

Both pre-tokenize with `_bpe_scan.h`, whose Unicode classes were generated from the `regex`
module (`unicode_classes`). The pure-Python code stays the reference they must equal;
CS336_PURE_PYTHON=1 forces it.
"""

from __future__ import annotations

import os
import warnings


def _pure_python_forced() -> bool:
    return os.environ.get("CS336_PURE_PYTHON", "") not in ("", "0")


def _tables_agree(module) -> bool:
    """Whether the C pre-tokenizer's Unicode classes equal the installed `regex` module's.

    Checked over every code point only when `regex` is not the version the tables came from
    (about 0.2 s); on a difference the accelerators are left off, with a warning, rather than
    split text unlike the reference.
    """
    import regex

    if regex.__version__ == module.UNICODE_CLASSES_REGEX_VERSION:
        return True
    from cs336_core.bpe.unicode_classes import mismatches

    differ = mismatches(module.unicode_classes())
    if differ:
        warnings.warn(f"the C tokenizer's Unicode tables (regex {module.UNICODE_CLASSES_REGEX_VERSION}) differ from the "
                      f"installed regex {regex.__version__} at {len(differ)} code points (first U+{differ[0]:04X}); "
                      "using the pure-Python tokenizer. Regenerate them: python -m cs336_core.bpe.unicode_classes, "
                      "then pip install -e .", RuntimeWarning, stacklevel=2)
    return not differ


def load_accelerators():
    """(`_fastbpe`, `_fasttrain`), each None when not built, when CS336_PURE_PYTHON is set (not to
    0), or when the tables disagree with `regex`."""
    if _pure_python_forced():
        return None, None
    try:
        from cs336_core.bpe import _fastbpe, _fasttrain
    except ImportError:
        return None, None
    if not _tables_agree(_fasttrain):
        return None, None
    return _fastbpe, _fasttrain


FASTBPE, FASTTRAIN = load_accelerators()
