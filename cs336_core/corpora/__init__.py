"""Corpora: two embedded corpora that need no network, the handout's downloads, and document tools.

* `generate_stories` (`stories.py`, word lists in `story_data.py`): simple children's stories in
  the TinyStories format from a procedural generator; deterministic by seed, any size, streamed.
* `stdlib_prose` (`prose.py`): real English prose from the running Python's standard library
  (docstrings read with `ast`, so no module is imported, plus `pydoc_data.topics`), the offline
  stand-in for OpenWebText.
* `download` (`downloader.py`): streamed, resumable, verified downloads of the handout's corpora
  (`CORPUS_SOURCES`).
* `iter_documents`, `split_documents`, `sample_documents`, `corpus_stats`, `check_plausible_text`
  (`documents.py`): streaming, constant-memory document tools and a loud error for a "corpus" that
  is an HTML page, empty, or not text.
* `materialize_corpus` (`materialize.py`): a corpus spec (any of the sources above, or local
  files) to checked `train.txt` and `valid.txt`.
* `python -m cs336_core.corpora stories|prose|download|split|stats|sample` (`cli.py`).

Documents are separated as in TinyStoriesV2: each document is followed by "\\n<|endoftext|>\\n".
Nothing here imports torch or Dagster.
"""

from cs336_core.corpora.cli import main
from cs336_core.corpora.documents import (
    ENDOFTEXT,
    PREVIEW_CHARS,
    check_plausible_text,
    corpus_stats,
    iter_documents,
    sample_documents,
    split_documents,
)
from cs336_core.corpora.downloader import (
    CORPUS_SOURCES,
    DEFAULT_DEADLINE_S,
    DEFAULT_MAX_DECOMPRESSED_BYTES,
    DownloadError,
    download,
)
from cs336_core.corpora.materialize import download_cache_path, materialize_corpus
from cs336_core.corpora.prose import stdlib_prose
from cs336_core.corpora.stories import generate_stories, generate_story

__all__ = [
    "CORPUS_SOURCES", "DEFAULT_DEADLINE_S", "DEFAULT_MAX_DECOMPRESSED_BYTES", "DownloadError", "ENDOFTEXT",
    "PREVIEW_CHARS", "check_plausible_text", "corpus_stats", "download", "download_cache_path", "generate_stories",
    "generate_story", "iter_documents", "main", "materialize_corpus", "sample_documents", "split_documents",
    "stdlib_prose",
]
