"""The `cs336-bpe` command: `cs336-bpe train|encode ...` (also `python -m cs336_core.bpe`, and
`python -m cs336_core.tokenization` as before)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from cs336_core.bpe.file_encoding import encode_file
from cs336_core.bpe.gpt2_format import save_vocab_merges
from cs336_core.bpe.pretokenize import INVALID_UTF8_POLICIES
from cs336_core.bpe.tokenizer import Tokenizer
from cs336_core.bpe.train import train_bpe
from cs336_core.bpe.vocab import Vocab
from cs336_core.progress import ConsoleProgress

INVALID_UTF8_HELP = ("what to do with bytes that are not UTF-8: 'error' stops, naming the byte offset; "
                     "'replace' decodes them as U+FFFD (default: error)")
WORKERS_HELP = "worker processes (default: one per CPU core)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cs336-bpe", description="Train a byte-level BPE tokenizer or encode a file with one.")
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="train vocab.json + merges.txt on a text file")
    train.add_argument("--input", required=True, help="UTF-8 text file (gzip allowed)")
    train.add_argument("--vocab-size", type=int, required=True,
                       help="tokens in the vocabulary: the 256 bytes, the special tokens and one per merge")
    train.add_argument("--special-token", action="append", default=[], help="repeatable; e.g. '<|endoftext|>'")
    train.add_argument("--out-dir", required=True, help="writes vocab.json and merges.txt here")
    train.add_argument("--workers", type=int, default=None, help=WORKERS_HELP)
    train.add_argument("--invalid-utf8", choices=INVALID_UTF8_POLICIES, default="error", help=INVALID_UTF8_HELP)

    encode = commands.add_parser("encode", help="encode a text file to a .npy of token ids")
    encode.add_argument("--vocab", required=True, help="vocab.json (GPT-2's encoder.json also loads)")
    encode.add_argument("--merges", required=True, help="merges.txt (GPT-2's vocab.bpe also loads)")
    encode.add_argument("--special-token", action="append", default=[],
                        help="repeatable; e.g. '<|endoftext|>' (never split, one id each)")
    encode.add_argument("--input", required=True, help="UTF-8 text file to encode (gzip allowed)")
    encode.add_argument("--output", required=True, help=".npy destination")
    encode.add_argument("--workers", type=int, default=None, help=WORKERS_HELP)
    encode.add_argument("--invalid-utf8", choices=INVALID_UTF8_POLICIES, default="error", help=INVALID_UTF8_HELP)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    progress = _PhaseBars()
    try:
        if args.command == "train":
            start = time.perf_counter()
            vocab, merges = train_bpe(args.input, args.vocab_size, args.special_token, num_workers=args.workers,
                                      progress=progress, invalid_utf8=args.invalid_utf8)
            progress.close()
            out_dir = Path(args.out_dir)
            save_vocab_merges(vocab, merges, out_dir / "vocab.json", out_dir / "merges.txt")
            print(f"trained {len(vocab)} tokens ({len(merges)} merges) in {time.perf_counter() - start:.1f}s; "
                  f"longest learned token {longest_learned_token(vocab, args.special_token)}; "
                  f"wrote {out_dir / 'vocab.json'} and {out_dir / 'merges.txt'}")
        else:
            tokenizer = Tokenizer.from_files(args.vocab, args.merges, args.special_token)
            stats = encode_file(tokenizer, args.input, args.output, num_workers=args.workers, progress=progress,
                                invalid_utf8=args.invalid_utf8)
            progress.close()
            ratio = stats["bytes"] / max(stats["tokens"], 1)
            print(f"{stats['tokens']:,} tokens ({stats['dtype']}) from {stats['bytes']:,} bytes "
                  f"({ratio:.2f} bytes/token) in {stats['seconds']:.1f}s -> {stats['path']}")
    except (ValueError, FileNotFoundError) as err:
        progress.close()
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


def longest_learned_token(vocab: Vocab, special_tokens: list[str]) -> str:
    """The longest token that is not a special token, readable: escaped, with its length and id.

    >>> longest_learned_token({0: b"<|endoftext|>", 1: b"a", 2: b" the\\n"}, ["<|endoftext|>"])
    '"␣the\\\\n" (5 bytes, id 2)'
    """
    from cs336_core.reporting import longest_tokens

    specials = {token.encode("utf-8") for token in special_tokens}
    [longest] = longest_tokens({i: t for i, t in vocab.items() if t not in specials}, 1)
    return f'"{longest["token"]}" ({longest["bytes"]} bytes, id {longest["id"]})'


class _PhaseBars:
    """A progress bar per phase in the phase's own unit: bytes (shown as kB/s, MB/s) while the
    input is read, merges while they are made."""

    def __init__(self):
        self._bar: ConsoleProgress | None = None

    def __call__(self, phase: str, done: int, total: int) -> None:
        unit = "merges" if phase == "merge" else "B"
        if self._bar is None or self._bar.unit != unit:
            self.close()
            self._bar = ConsoleProgress(unit=unit)
        self._bar(phase, done, total)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
