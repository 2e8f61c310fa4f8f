"""Command line: `python -m cs336_core.corpora stories|prose|download|split|stats|sample ...`.

Each command prints its result as JSON; an error is one line naming the file or argument.
"""

from __future__ import annotations

import json
import math

from cs336_core.corpora.documents import corpus_stats, sample_documents, split_documents
from cs336_core.corpora.downloader import CORPUS_SOURCES, DownloadError, download
from cs336_core.corpora.prose import stdlib_prose
from cs336_core.corpora.stories import generate_stories

DESCRIPTION = "Corpora: two embedded corpora that need no network, the handout's downloads, and document tools."


def _byte_count(text: str) -> float:
    """argparse type: a positive, finite number of bytes such as 50e3 (argparse names the option)."""
    import argparse

    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value >= 1):
        raise argparse.ArgumentTypeError(f"expected a positive number of bytes such as 50e3, got {text!r}")
    return value


def main(argv: list[str] | None = None) -> None:
    """`python -m cs336_core.corpora stories|prose|download|split|stats|sample ...`"""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m cs336_core.corpora", description=DESCRIPTION)
    commands = parser.add_subparsers(dest="command", required=True)
    stories = commands.add_parser("stories", help="generate TinyStories-style stories")
    stories.add_argument("out", help="the text file to write (documents separated by <|endoftext|>)")
    stories.add_argument("--bytes", type=_byte_count, default=10e6, help="target size in bytes (default 10e6)")
    stories.add_argument("--seed", type=int, default=0, help="the same seed writes the same stories (default 0)")
    prose = commands.add_parser("prose", help="extract this Python's stdlib docstrings and pydoc topics")
    prose.add_argument("out", help="the text file to write (documents separated by <|endoftext|>)")
    prose.add_argument("--max-bytes", type=_byte_count, default=None,
                       help="write at most this many bytes (default: all of it)")
    fetch = commands.add_parser("download", help="resumable, verified download (e.g. a CORPUS_SOURCES URL)")
    fetch.add_argument("url", help="a URL, or a name such as tinystories/train or owt/valid")
    fetch.add_argument("out", help="the file to write (a .partial beside it while in flight)")
    fetch.add_argument("--sha256", help="refuse the file unless its SHA-256 is this (hex)")
    split = commands.add_parser("split", help="split a corpus by document into train and valid files")
    split.add_argument("src", help="the corpus (text or .gz, documents separated by <|endoftext|>)")
    split.add_argument("train_out", help="where the training documents go")
    split.add_argument("valid_out", help="where the validation documents go")
    split.add_argument("--valid-fraction", type=float, default=0.05,
                       help="share of the documents drawn for validation (default 0.05)")
    split.add_argument("--seed", type=int, default=0, help="seed of the draw (default 0)")
    stats = commands.add_parser("stats", help="bytes, documents and a preview")
    stats.add_argument("path", help="a corpus (text or .gz)")
    sample = commands.add_parser("sample", help="print n documents drawn uniformly")
    sample.add_argument("path", help="a corpus (text or .gz)")
    sample.add_argument("-n", type=int, default=3, help="how many documents (default 3)")
    sample.add_argument("--seed", type=int, default=0, help="seed of the draw (default 0)")
    args = parser.parse_args(argv)

    try:
        result = _run_command(args)
    except (OSError, ValueError, EOFError, DownloadError) as error:
        # One line naming the file and the problem; a traceback would bury it.
        parser.exit(1, f"{parser.prog} {args.command}: error: {_one_line(error)}\n")
    print(json.dumps(result, indent=2, ensure_ascii=False))


def _one_line(error: BaseException) -> str:
    if isinstance(error, OSError) and error.strerror and error.filename is not None:
        names = " -> ".join(str(name) for name in (error.filename, error.filename2) if name is not None)
        return f"{names}: {error.strerror}"
    return " ".join(str(error).split("\n"))


def _corpus_url(name_or_url: str) -> str:
    """A CORPUS_SOURCES name such as owt/valid, or the URL itself."""
    corpus, _, split_name = name_or_url.partition("/")
    if corpus not in CORPUS_SOURCES:
        return name_or_url
    if split_name not in CORPUS_SOURCES[corpus]:
        raise ValueError(f"unknown corpus {name_or_url!r}: expected one of "
                       + ", ".join(f"{c}/{s}" for c, splits in CORPUS_SOURCES.items() for s in splits))
    return CORPUS_SOURCES[corpus][split_name]


def _run_command(args) -> dict:
    from cs336_core.progress import ConsoleProgress

    progress = ConsoleProgress(unit="B")
    try:
        if args.command == "stories":
            return generate_stories(args.out, target_bytes=int(args.bytes), seed=args.seed, progress=progress)
        if args.command == "prose":
            max_bytes = int(args.max_bytes) if args.max_bytes is not None else None
            return stdlib_prose(args.out, max_bytes=max_bytes, progress=ConsoleProgress(unit="file"))
        if args.command == "download":
            return {"path": str(download(_corpus_url(args.url), args.out, sha256=args.sha256, progress=progress))}
        if args.command == "split":
            return split_documents(args.src, args.train_out, args.valid_out, valid_fraction=args.valid_fraction,
                                   seed=args.seed, progress=progress)
        if args.command == "stats":
            return corpus_stats(args.path)
        return {"documents": sample_documents(args.path, n=args.n, seed=args.seed)}
    finally:
        progress.close()
