"""The handout's corpus URLs (`CORPUS_SOURCES`) and `download`: streamed, resumable, verified.

A download lands in `<dest>.partial` and becomes `dest` only once every size and checksum anyone
stated (the caller, Content-Length, a Hugging Face `X-Linked-Etag`) matches; a gzip is decompressed.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import os
import re
import socket
import time
import urllib.error
import urllib.request
import warnings
import zlib
from http.client import HTTPException
from pathlib import Path

from cs336_core.files import (PathLike, atomic_path, atomic_write_json, is_gzip, prepare_destination,
                              remove_stale_partials, sha256_file)
from cs336_core.progress import ProgressFn

_HF_TINYSTORIES = "https://huggingface.co/datasets/roneneldan/TinyStories/resolve/main"
_HF_OWT = "https://huggingface.co/datasets/stanford-cs336/owt-sample/resolve/main"
# The handout's download URLs (section 1.3). The .gz files are decompressed by `download`.
CORPUS_SOURCES: dict[str, dict[str, str]] = {
    "tinystories": {
        "train": f"{_HF_TINYSTORIES}/TinyStoriesV2-GPT4-train.txt",
        "valid": f"{_HF_TINYSTORIES}/TinyStoriesV2-GPT4-valid.txt",
    },
    "owt": {
        "train": f"{_HF_OWT}/owt_train.txt.gz",
        "valid": f"{_HF_OWT}/owt_valid.txt.gz",
    },
}


class DownloadError(RuntimeError):
    """A download failed for a reason retrying will not fix (HTTP error status, bad checksum, ...)."""


_RETRYABLE = (urllib.error.URLError, ConnectionError, socket.timeout, TimeoutError, HTTPException, OSError)
# Generous: the handout's largest file (owt_train.txt.gz) over a slow link fits easily; a server
# that drips a byte a second does not hold the pipeline forever.
DEFAULT_DEADLINE_S = 12 * 3600.0
# Far above OWT's 11.9 GB; a gzip bomb stops here instead of filling the disk.
DEFAULT_MAX_DECOMPRESSED_BYTES = 64 << 30
# An error page is not a corpus, whatever status it came with.
_HTML_TYPES = {"text/html", "application/xhtml+xml"}
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")


class _Served:
    """What the server stated about the file during one attempt, redirects included.

    A Hugging Face resolve URL answers an LFS file with `X-Linked-Etag` (the sha256 of the file)
    and `X-Linked-Size` before redirecting to the CDN; `huggingface_hub` verifies downloads with
    them, and so do we, even when the caller gives no checksum.
    """

    def __init__(self) -> None:
        self.total: int | None = None  # from Content-Length or Content-Range
        self.linked_sha256: str | None = None
        self.linked_size: int | None = None

    def note_linked(self, headers) -> None:
        etag = (headers.get("X-Linked-Etag") or "").strip().removeprefix("W/").strip('"').lower()
        if _SHA256_HEX.fullmatch(etag):  # a git sha1 (non-LFS file) says nothing about our bytes
            self.linked_sha256 = etag
        size = (headers.get("X-Linked-Size") or "").strip()
        if size.isdigit():
            self.linked_size = int(size)


class _NoteLinkedHeaders(urllib.request.HTTPRedirectHandler):
    """Redirects as usual, but first keeps the X-Linked-* headers of the response that redirects."""

    def __init__(self, served: _Served) -> None:
        self.served = served

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        self.served.note_linked(headers)
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _partial_path(dest: Path) -> Path:
    return dest.with_name(dest.name + ".partial")


def _record_path(dest: Path) -> Path:
    """Where download() records what it verified about `dest` (hidden: not part of a product)."""
    return dest.with_name(f".{dest.name}.download.json")


def _content_range_total(header: str | None) -> int | None:
    """The total size from a Content-Range header ("bytes 10-99/100" or "bytes */100")."""
    match = re.fullmatch(r"bytes\s+(?:\d+-\d+|\*)/(\d+)", (header or "").strip())
    return int(match.group(1)) if match else None


def _open_url(url: str, offset: int, served: _Served, timeout: float):
    """The response to a GET of `url` from `offset`, or None when the partial is already complete.

    Raises a retryable error for 429/5xx and DownloadError for other HTTP error statuses.
    """
    headers = {"User-Agent": "cs336-pipeline", "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    opener = urllib.request.build_opener(_NoteLinkedHeaders(served))
    try:
        response = opener.open(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as error:
        served.note_linked(error.headers)
        error.close()
        if error.code == 416 and offset:
            # Nothing left to send from `offset`: either the partial is already complete, or it is
            # longer than the remote file (the file changed); the caller's size check decides.
            served.total = _content_range_total(error.headers.get("Content-Range"))
            return None
        if error.code == 429 or error.code >= 500:  # the server is busy or broken right now: retry
            raise ConnectionError(f"HTTP {error.code} {error.reason} for {url}") from None
        raise DownloadError(f"HTTP {error.code} {error.reason} for {url}") from None
    served.note_linked(response.headers)
    return response


def _fetch_into_partial(url: str, partial: Path, *, chunk_size: int, timeout: float, deadline_at: float,
                        allow_html: bool, progress: ProgressFn | None) -> _Served:
    """One attempt: append the rest of `url` to `partial`, resuming with a Range request.

    Returns what the server stated about the file. Raises a retryable error if the connection
    breaks or the body ends before its announced length or chunked framing says, and
    DownloadError for HTTP error statuses, an HTML body or a passed deadline.
    """
    offset = partial.stat().st_size if partial.exists() else 0
    served = _Served()
    response = _open_url(url, offset, served, min(timeout, max(deadline_at - time.monotonic(), 0.1)))
    if response is None:
        if served.total is not None and served.total != offset:
            partial.unlink()
            raise ConnectionError(f"partial download of {url} is {offset} bytes but the file has {served.total}; "
                                  "restarting")
        served.total = offset if served.total is None else served.total
        return served
    with response:
        content_type = response.headers.get_content_type()
        if content_type in _HTML_TYPES and not allow_html:
            raise DownloadError(f"{url} answered with an HTML page (Content-Type {content_type}), not the file; "
                                f"nothing was kept from it")
        if response.status == 206:
            start_match = re.match(r"bytes\s+(\d+)-", response.headers.get("Content-Range", ""))
            if not start_match or int(start_match.group(1)) != offset:
                raise DownloadError(f"{url} answered Range {offset}- with Content-Range "
                                    f"{response.headers.get('Content-Range')!r}")
            served.total = _content_range_total(response.headers.get("Content-Range"))
            mode = "ab"
        else:
            # 200: a server that ignores Range sends the whole file again, so start over.
            offset, mode = 0, "wb"
            length = response.headers.get("Content-Length")
            served.total = int(length) if length is not None else None
        done = offset
        with open(partial, mode) as f:
            # read1, not read: read(n) waits for all n bytes, so a dripping server would never
            # let the deadline be checked.
            while chunk := response.read1(chunk_size):
                f.write(chunk)
                done += len(chunk)
                if progress:
                    progress("download", done, served.total or 0)
                if time.monotonic() > deadline_at:
                    raise DownloadError(f"download of {url} passed its deadline after {done} bytes; "
                                        f"{partial} is kept and the next call resumes it")
            f.flush()
            os.fsync(f.fileno())
    if served.total is not None and done < served.total:
        raise ConnectionError(f"connection closed after {done} of {served.total} bytes of {url}")
    return served


def _fetch_with_retries(url: str, partial: Path, *, retries: int, deadline: float, **fetch_options) -> _Served:
    deadline_at = time.monotonic() + deadline
    retries = max(retries, 0)
    for attempt in range(retries + 1):
        try:
            return _fetch_into_partial(url, partial, deadline_at=deadline_at, **fetch_options)
        except DownloadError:
            raise
        except _RETRYABLE as error:
            pause = min(2.0 ** attempt, 30.0) * 0.5
            if attempt == retries or time.monotonic() + pause > deadline_at:
                why = (f"failed after {attempt + 1} attempts" if attempt == retries
                       else f"passed its deadline of {deadline:g} s")
                raise DownloadError(f"download of {url} {why} ({error}); "
                                    f"{partial} is kept and the next call resumes it") from error
            time.sleep(pause)
    raise AssertionError("unreachable")


def _verify_served(url: str, partial: Path, served: _Served, sha256: str | None,
                   expected_size: int | None) -> tuple[int, str]:
    """Check the bytes as served against every size and checksum anyone stated; returns both."""
    size = partial.stat().st_size
    actual = sha256_file(partial)
    for name, expected, got in (
        ("size", expected_size, size),
        ("size announced by the server", served.total, size),
        ("size stated by the server (X-Linked-Size)", served.linked_size, size),
        ("sha256", sha256 and sha256.lower(), actual),
        ("sha256 stated by the server (X-Linked-Etag)", served.linked_sha256, actual),
    ):
        if expected is not None and expected != got:
            partial.unlink()
            raise DownloadError(f"{name} mismatch for {url}: expected {expected}, got {got}; "
                                f"the partial download was deleted")
    return size, actual


def _gunzip(url: str, partial: Path, dest: Path | None, *, chunk_size: int, max_bytes: int | None,
            progress: ProgressFn | None) -> tuple[int, str]:
    """Decompress `partial` into `dest` atomically (or only check it, when `dest` is None).

    The gzip trailer (CRC and length) is what reveals a body cut short when the server announced
    no length. Returns the size and sha256 of the decompressed bytes.
    """
    digest, written = hashlib.sha256(), 0
    packed = partial.stat().st_size
    try:
        with contextlib.ExitStack() as stack:
            src = stack.enter_context(gzip.open(partial, "rb"))
            out = stack.enter_context(open(stack.enter_context(atomic_path(dest)), "wb")) if dest else None
            while chunk := src.read(chunk_size):
                written += len(chunk)
                if max_bytes is not None and written > max_bytes:
                    raise DownloadError(f"{url} decompresses to more than max_decompressed_bytes={max_bytes}; "
                                        f"the download was deleted")
                digest.update(chunk)
                if out:
                    out.write(chunk)
                if progress:
                    progress("decompress", src.fileobj.tell(), packed)  # type: ignore[union-attr]
    except DownloadError:
        partial.unlink()
        raise
    except EOFError as error:
        partial.unlink()
        raise DownloadError(f"{url} ends before its gzip trailer: the body was cut short ({error}); "
                            f"the download was deleted") from error
    except (gzip.BadGzipFile, zlib.error) as error:
        partial.unlink()
        raise DownloadError(f"{url} is not valid gzip data ({error}); the download was deleted") from error
    return written, digest.hexdigest()


def _cached_copy_is_intact(url: str, dest: Path, sha256: str | None, expected_size: int | None) -> str | None:
    """Why the existing `dest` cannot be reused (None when it can): it must carry a record of this
    download, and still have the size and sha256 recorded (a truncated or edited file does not)."""
    try:
        record = json.loads(_record_path(dest).read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):
        record = None
    if not isinstance(record, dict):
        return "it has no download record, so it was never verified complete"
    if record.get("url") != url:
        return f"it was downloaded from {record.get('url')!r}"
    if sha256 is not None and record.get("served_sha256") != sha256.lower():
        return f"it was verified against sha256 {record.get('served_sha256')}, not {sha256.lower()}"
    if expected_size is not None and record.get("served_size") != expected_size:
        return f"it was {record.get('served_size')} bytes as served, not {expected_size}"
    size = dest.stat().st_size
    if size != record.get("size"):
        return f"it is {size} bytes but was {record.get('size')} when downloaded"
    if sha256_file(dest) != record.get("sha256"):
        return "its sha256 changed since it was downloaded"
    return None


def download(url: str, dest: PathLike, *, sha256: str | None = None, expected_size: int | None = None,
             decompress_gzip: bool | None = None, chunk_size: int = 1 << 20, timeout: float = 60,
             deadline: float = DEFAULT_DEADLINE_S, retries: int = 3, overwrite: bool = False,
             allow_html: bool = False, max_decompressed_bytes: int | None = DEFAULT_MAX_DECOMPRESSED_BYTES,
             progress: ProgressFn | None = None) -> Path:
    """Download `url` to `dest`: streamed, resumable, verified, and never half-written.

    Bytes arrive in `dest.partial`, which survives failures so the next attempt (a retry here, or a
    later call) resumes it with `Range: bytes=N-`. The bytes as served (the compressed file for a
    .gz) are checked against `sha256` and `expected_size`, against the length the server announced
    and against the `X-Linked-Etag`/`X-Linked-Size` a Hugging Face resolve URL states; on a
    mismatch the partial is deleted and a DownloadError names expected and actual values. A body
    cut short (Content-Length, chunked framing, gzip trailer) is never taken as complete. An HTML
    body is refused unless `allow_html`. `timeout` bounds each read, `deadline` the whole call.

    A gzip file (decided by `decompress_gzip`, or when None by the gzip magic bytes, unless `dest`
    itself ends in .gz) is decompressed into `dest` atomically, at most `max_decompressed_bytes`.
    An existing `dest` is reused unless `overwrite`, but only after checking it against the size
    and sha256 recorded when it was downloaded; otherwise it is downloaded again.
    """
    if sha256 is not None and not _SHA256_HEX.fullmatch(sha256.lower()):
        raise ValueError(f"sha256 must be 64 hex digits, got {sha256!r}")  # it could never match
    dest = prepare_destination(dest)
    partial = _partial_path(dest)
    remove_stale_partials(dest.parent)
    if dest.exists() and not overwrite:
        why_not = _cached_copy_is_intact(url, dest, sha256, expected_size)
        if why_not is None:
            partial.unlink(missing_ok=True)  # an abandoned re-download of a file that is complete
            return dest
        warnings.warn(f"downloading {url} again: the existing {dest} cannot be reused ({why_not})", stacklevel=2)
    served = _fetch_with_retries(url, partial, retries=retries, deadline=deadline, chunk_size=chunk_size,
                                 timeout=timeout, allow_html=allow_html, progress=progress)
    served_size, served_sha256 = _verify_served(url, partial, served, sha256, expected_size)

    gzipped = is_gzip(partial)
    if decompress_gzip is None:
        decompress_gzip = gzipped and not dest.name.endswith(".gz")
    if decompress_gzip and not gzipped:
        raise DownloadError(f"decompress_gzip=True but {url} is not gzip data (no 1f 8b magic bytes)")
    gunzip_options = {"chunk_size": chunk_size, "max_bytes": max_decompressed_bytes, "progress": progress}
    if decompress_gzip:
        size, digest = _gunzip(url, partial, dest, **gunzip_options)
        partial.unlink()
    else:
        if gzipped:  # kept packed, but a stream cut short must still not be cached as complete
            _gunzip(url, partial, None, **{**gunzip_options, "max_bytes": None})
        size, digest = served_size, served_sha256
        os.replace(partial, dest)
    atomic_write_json(_record_path(dest), {"url": url, "size": size, "sha256": digest,
                                           "served_size": served_size, "served_sha256": served_sha256})
    return dest
