"""One corpus on disk: `materialize_corpus` turns a corpus spec into `train.txt` and `valid.txt`.

The spec names where the text comes from: the story generator, this Python's stdlib prose, two
URLs (downloaded once into a per-URL cache) or local files (split by document unless a validation
file is given). Every source is checked to be plausible text before anything is put in place, so
a bad download or file never replaces a good corpus.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path
from typing import Callable

from cs336_core.corpora.documents import ENDOFTEXT, check_plausible_text, corpus_stats, split_documents
from cs336_core.corpora.downloader import CORPUS_SOURCES, download
from cs336_core.corpora.prose import stdlib_prose
from cs336_core.corpora.stories import generate_stories
from cs336_core.files import (READ_CHUNK, PathLike, atomic_copy, atomic_path, atomic_write_json, is_gzip, open_binary,
                               remove_stale_partials)
from cs336_core.progress import ProgressFn

SOURCES = ("generated_stories", "stdlib_prose", "download", "local")
# The handout's corpora separate every document with <|endoftext|>; a file of theirs without one
# is not the corpus, whatever else it is. Other URLs and local files need not use it.
_HANDOUT_URLS = {url for urls in CORPUS_SOURCES.values() for url in urls.values()}


def download_cache_path(downloads_dir: PathLike, url: str) -> Path:
    """Where the download of `url` is kept: a folder per URL (so a rerun neither fetches again nor
    mixes up sources), the file named as served without .gz (`download` decompresses it).

    >>> download_cache_path("data/downloads", "https://example.org/owt_valid.txt.gz").as_posix()
    'data/downloads/d5a809effb983fab/owt_valid.txt'
    """
    url_hash = hashlib.sha256(url.encode()).hexdigest()[:16]
    return Path(downloads_dir, url_hash, url.rsplit("/", 1)[-1].removesuffix(".gz"))


def _check_text(path: PathLike, what: str, separator: str | None = None) -> None:
    """Stop here, before anything downstream tokenizes it, if `path` is not plausibly a corpus (an
    HTML error page, an empty or binary file): otherwise it shows up later as a 13-token dataset."""
    try:
        check_plausible_text(path, separator=separator)
    except ValueError as error:
        raise ValueError(f"{what} is not a usable text corpus: {error}") from error


def _copy_as_text(src: PathLike, dest: Path) -> None:
    """`src` at `dest` as plain text: a gzip (OWT's files are .txt.gz) is decompressed, because what
    reads train.txt and valid.txt downstream takes them for text."""
    if not is_gzip(src):
        atomic_copy(src, dest)
        return
    with open_binary(src) as compressed, atomic_path(dest) as tmp, open(tmp, "wb") as out:
        shutil.copyfileobj(compressed, out, READ_CHUNK)


def materialize_corpus(out_dir: PathLike, *, source: str, downloads_dir: PathLike | None = None,
                       target_bytes: int = 0, seed: int = 0, valid_fraction: float = 0.05,
                       train_url: str = "", valid_url: str = "", train_sha256: str = "", valid_sha256: str = "",
                       train_path: str = "", valid_path: str = "", progress: ProgressFn | None = None,
                       log: Callable[[str], None] | None = None) -> dict:
    """Write `out_dir`/{train,valid}.txt and stats.json from a corpus spec; returns per-split stats.

    `source` is "generated_stories" (`target_bytes` of stories from `seed`), "stdlib_prose" (capped
    at `target_bytes` when > 0), "download" (`train_url` and `valid_url`, checked against
    `train_sha256`/`valid_sha256` when given, cached under `downloads_dir`) or "local"
    (`train_path`, and `valid_path` or a split of `train_path`). Without a validation file the text
    is split by document with `valid_fraction` and `seed`. The result maps "train" and "valid" to
    `corpus_stats` of each file.
    """
    if source not in SOURCES:
        raise ValueError(f"unknown corpus source {source!r} for {out_dir}; expected " + ", ".join(SOURCES))
    out = Path(out_dir)
    train, valid = out / "train.txt", out / "valid.txt"
    remove_stale_partials(out)
    if source == "download":
        if downloads_dir is None:
            raise ValueError("a download corpus needs downloads_dir, where the downloads are cached")
        downloads = ((train_url, train_sha256, train), (valid_url, valid_sha256, valid))
        for url, sha256, _ in downloads:
            cached = download_cache_path(downloads_dir, url)
            if log:
                log(f"downloading {url} -> {cached}")
            download(url, cached, sha256=sha256 or None, progress=progress)
            _check_text(cached, f"the download of {url} (kept as {cached}; delete it to download again)",
                        ENDOFTEXT if url in _HANDOUT_URLS else None)
        for url, _, dest in downloads:  # only once both are good: no new train beside an old valid
            atomic_copy(download_cache_path(downloads_dir, url), dest, link=True)
    elif source == "local" and valid_path:
        for src in (train_path, valid_path):
            _check_text(src, "the local corpus file")
        for src, dest in ((train_path, train), (valid_path, valid)):
            _copy_as_text(src, dest)
    else:
        whole: PathLike = out / "all.txt"
        if source == "generated_stories":
            generate_stories(whole, target_bytes=target_bytes, seed=seed, progress=progress)
        elif source == "stdlib_prose":
            stdlib_prose(whole, max_bytes=target_bytes or None, progress=progress)
        else:
            whole = train_path
        _check_text(whole, f"the {source} corpus", None if source == "local" else ENDOFTEXT)
        split_documents(whole, train, valid, valid_fraction=valid_fraction, seed=seed)
    stats = {split: corpus_stats(path) for split, path in (("train", train), ("valid", valid))}
    atomic_write_json(out / "stats.json", {"source": source, **stats})
    return stats
