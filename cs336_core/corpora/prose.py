"""Real English prose from the running Python's standard library: the offline stand-in for OWT.

Docstrings are read with `ast`, so no module is imported (or run), plus `pydoc_data.topics`.
"""

from __future__ import annotations

import ast
import hashlib
import os
import re
import sys
import sysconfig
from pathlib import Path
from typing import Iterator

from cs336_core.corpora.documents import ENDOFTEXT, document_record, preview
from cs336_core.files import PathLike, atomic_path
from cs336_core.progress import ProgressFn

# Directories of the stdlib tree that are not the standard library's own prose.
_SKIP_DIRS = {"site-packages", "dist-packages", "test", "tests", "idle_test", "__pycache__", "__phello__"}
_DOCSTRING_NODES = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
_MIN_WORDS = 8


def _stdlib_sources() -> list[Path]:
    root = Path(sysconfig.get_paths()["stdlib"])
    sources = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS and not d.startswith("config-"))
        sources.extend(Path(dirpath, name) for name in sorted(filenames) if name.endswith(".py"))
    return sources


def _docstrings(source_path: Path) -> Iterator[str]:
    """Docstrings of a source file in source order, read with `ast` (nothing is imported or run)."""
    try:
        tree = ast.parse(source_path.read_bytes(), filename=str(source_path))
    except (SyntaxError, ValueError, UnicodeDecodeError):
        return  # e.g. test data written in Python 2 syntax
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, _DOCSTRING_NODES):
            doc = ast.get_docstring(node, clean=True)
            if doc:
                yield doc
            # Only definitions can hold docstrings; skip expression subtrees for speed.
            stack.extend(reversed([child for child in node.body if isinstance(child, (*_DOCSTRING_NODES, ast.If, ast.Try))]))
        elif isinstance(node, (ast.If, ast.Try)):
            children = [*node.body, *getattr(node, "orelse", []), *getattr(node, "finalbody", [])]
            for handler in getattr(node, "handlers", []):
                children.extend(handler.body)
            stack.extend(reversed([c for c in children if isinstance(c, (*_DOCSTRING_NODES, ast.If, ast.Try))]))


def _normalise_prose(text: str, separator: str = ENDOFTEXT) -> str:
    text = text.replace(separator, "").replace("\r\n", "\n").replace("\t", "    ")
    lines = [line.rstrip() for line in text.split("\n")]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def _stdlib_documents(sources: list[Path], progress: ProgressFn | None) -> Iterator[str]:
    steps = len(sources) + 1  # every source file, then the pydoc topics
    for done, source in enumerate(sources, start=1):
        yield from _docstrings(source)
        if progress and done % 20 == 0:
            progress("stdlib prose", done, steps)
    from pydoc_data.topics import topics  # a plain dict literal; importing it has no side effects

    for name in sorted(topics):
        yield topics[name]


def stdlib_prose(out_path: PathLike, *, max_bytes: int | None = None, progress: ProgressFn | None = None) -> dict:
    """Write the running Python's stdlib docstrings and pydoc topics as one document each.

    Tiny (fewer than 8 words) and duplicate documents are dropped; the order is deterministic for a
    given Python installation. Stops before the document that would exceed `max_bytes`. Progress
    counts source files read.
    """
    if max_bytes is not None and max_bytes <= 0:
        raise ValueError(f"max_bytes must be positive or None, got {max_bytes}")
    sources = _stdlib_sources()
    seen: set[bytes] = set()
    written = documents = 0
    first = ""
    with atomic_path(out_path) as tmp, open(tmp, "wb") as f:
        for raw in _stdlib_documents(sources, progress):
            document = _normalise_prose(raw)
            if len(document.split()) < _MIN_WORDS:
                continue
            digest = hashlib.blake2b(document.encode("utf-8"), digest_size=16).digest()
            if digest in seen:
                continue
            seen.add(digest)
            record = document_record(document).encode("utf-8")
            if max_bytes is not None and written + len(record) > max_bytes:
                break
            f.write(record)
            written += len(record)
            documents += 1
            first = first or document
    if progress:
        progress("stdlib prose", len(sources) + 1, len(sources) + 1)
    return {"path": str(out_path), "bytes": written, "documents": documents, "preview": preview(first),
            "python": sys.version.split()[0], "source_files": len(sources)}

