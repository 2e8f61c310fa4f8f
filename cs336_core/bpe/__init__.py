"""Byte-level BPE (CS336 assignment 1, section 2): training, encoding, decoding, on-disk format.

One module per concept, each readable on its own:

  pretokenize    GPT-2's pre-tokenization regex, splitting on special tokens, decoding UTF-8
  chunks         reading a corpus in chunks cut where both sides pre-tokenize independently
  parallel       a process pool mapping over chunks in order, a bounded number in flight
  counting       pre-token counts of a file (training's first phase), in parallel
  train          `train_bpe` and the merge loop; `long_words` for pre-tokens over 64 bytes
  vocab          the vocabulary as training builds it: `vocab_from_merges`
  gpt2_format    GPT-2's `vocab.json` + `merges.txt` (so GPT-2's own files load)
  tokenizer      `Tokenizer`: encode, encode_iterable, decode; `accelerator` loads `_fastbpe.c`
  file_encoding  `encode_file`: a text file to a `.npy` of token ids
  cli            the `cs336-bpe` command (`python -m cs336_core.bpe`)

Invalid UTF-8 in a corpus: by default an error naming the byte offset (`invalid_utf8="error"`);
`invalid_utf8="replace"` decodes it to U+FFFD instead (like `bytes.decode(errors="replace")`).
Gzipped input is recognised by its magic bytes and read decompressed.
"""

from cs336_core.bpe.file_encoding import encode_file
from cs336_core.bpe.gpt2_format import bytes_to_unicode, load_vocab_merges, save_vocab_merges
from cs336_core.bpe.pretokenize import GPT2_PRETOKENIZE_PATTERN, INVALID_UTF8_POLICIES
from cs336_core.bpe.tokenizer import Tokenizer
from cs336_core.bpe.train import train_bpe
from cs336_core.bpe.vocab import Merges, Vocab, vocab_from_merges

__all__ = [
    "GPT2_PRETOKENIZE_PATTERN", "INVALID_UTF8_POLICIES", "Merges", "Tokenizer", "Vocab", "bytes_to_unicode",
    "encode_file", "load_vocab_merges", "save_vocab_merges", "train_bpe", "vocab_from_merges",
]
