"""The byte-level BPE tokenizer under its first name: everything lives in `cs336_core.bpe` now
(one module per concept); this module re-exports what it used to offer, and
`python -m cs336_core.tokenization train|encode ...` runs the `cs336-bpe` command as before.

The tunables `CHUNK_BYTES`, `MIN_CHUNK_BYTES` (`cs336_core.bpe.chunks`) and `LONG_WORD_SYMBOLS`
(`cs336_core.bpe.long_words`) are read where they are defined: set them there, not here.
"""

from __future__ import annotations

import sys

from cs336_core.bpe.chunks import CHUNK_BYTES, MIN_CHUNK_BYTES
from cs336_core.bpe.cli import main
from cs336_core.bpe.file_encoding import encode_file
from cs336_core.bpe.gpt2_format import bytes_to_unicode, load_vocab_merges, save_vocab_merges
from cs336_core.bpe.long_words import LONG_WORD_SYMBOLS
from cs336_core.bpe.pretokenize import GPT2_PRETOKENIZE_PATTERN, INVALID_UTF8_POLICIES
from cs336_core.bpe.tokenizer import Tokenizer
from cs336_core.bpe.train import train_bpe
from cs336_core.bpe.vocab import Merges, Vocab, vocab_from_merges

__all__ = [
    "CHUNK_BYTES", "GPT2_PRETOKENIZE_PATTERN", "INVALID_UTF8_POLICIES", "LONG_WORD_SYMBOLS", "MIN_CHUNK_BYTES",
    "Merges", "Tokenizer", "Vocab", "bytes_to_unicode", "encode_file", "load_vocab_merges", "main",
    "save_vocab_merges", "train_bpe", "vocab_from_merges",
]

if __name__ == "__main__":
    sys.exit(main())
