"""The downloader against a real HTTP server on 127.0.0.1 (Range, dropped connections, gzip, errors)."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import re
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from cs336_core.corpora import CORPUS_SOURCES, DownloadError, download

DATA = os.urandom(3 * 1024 * 1024 + 12345)
TEXT = b"".join(b"Once upon a time there was a story number %d.\n<|endoftext|>\n" % i for i in range(60000))


class _Handler(BaseHTTPRequestHandler):
    """Serves `server.files`; honours `Range: bytes=N-` unless the path is in `server.ignore_range`;
    for paths in `server.drop_after` sends only that many body bytes once, then hangs up; for paths in
    `server.fail_once` answers once with that error status."""

    def do_GET(self):  # noqa: N802 (http.server's naming)
        server = self.server
        server.requests.append((self.path, self.headers.get("Range")))
        if self.path.startswith("/redirect/"):  # like huggingface.co/.../resolve/... -> a CDN
            self.send_response(302)
            self.send_header("Location", self.path.removeprefix("/redirect"))
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = server.files.get(self.path)
        if self.path in server.fail_once:
            self.send_error(server.fail_once.pop(self.path))
            return
        if body is None:
            self.send_error(404, "Not Found")
            return
        start = 0
        range_header = self.headers.get("Range")
        if range_header and self.path not in server.ignore_range:
            start = int(re.fullmatch(r"bytes=(\d+)-", range_header).group(1))
            if start >= len(body):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(body)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        cut = server.drop_after.pop(self.path, None)
        self.wfile.write(body[start:start + cut] if cut is not None else body[start:])

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.files = {"/data.bin": DATA, "/corpus.txt.gz": gzip.compress(TEXT), "/stubborn.bin": DATA}
    httpd.ignore_range = {"/stubborn.bin"}
    httpd.drop_after = {}
    httpd.fail_once = {}
    httpd.requests = []
    httpd.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=5)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_download_success_is_verified_and_reports_progress(server, tmp_path):
    dest = tmp_path / "sub" / "data.bin"
    calls = []
    path = download(f"{server.url}/data.bin", dest, sha256=_sha(DATA), expected_size=len(DATA),
                    chunk_size=256 * 1024, progress=lambda *a: calls.append(a))
    assert path == dest and dest.read_bytes() == DATA
    # No partial left behind; the hidden record is what lets a later call re-verify the file.
    assert sorted(p.name for p in dest.parent.iterdir()) == [".data.bin.download.json", "data.bin"]
    assert calls[-1] == ("download", len(DATA), len(DATA)) and len(calls) >= 10
    assert server.requests == [("/data.bin", None)]
    # An existing file is kept (no request) unless overwrite=True.
    download(f"{server.url}/data.bin", dest)
    assert len(server.requests) == 1
    download(f"{server.url}/data.bin", dest, overwrite=True)
    assert len(server.requests) == 2 and dest.read_bytes() == DATA


def test_gzip_is_verified_compressed_then_decompressed(server, tmp_path):
    packed = server.files["/corpus.txt.gz"]
    dest = download(f"{server.url}/corpus.txt.gz", tmp_path / "corpus.txt", sha256=_sha(packed),
                    expected_size=len(packed))
    assert dest.read_bytes() == TEXT
    assert sorted(p.name for p in tmp_path.iterdir()) == [".corpus.txt.download.json", "corpus.txt"]
    kept = download(f"{server.url}/corpus.txt.gz", tmp_path / "kept.txt.gz")  # a .gz dest stays packed
    assert kept.read_bytes() == packed
    with pytest.raises(DownloadError, match="not gzip"):
        download(f"{server.url}/data.bin", tmp_path / "forced.bin", decompress_gzip=True)
    assert not (tmp_path / "forced.bin").exists()


def test_interrupted_download_resumes_with_range(server, tmp_path):
    dest = tmp_path / "data.bin"
    server.drop_after["/data.bin"] = 1_000_000
    with pytest.raises(DownloadError, match="resumes"):
        download(f"{server.url}/data.bin", dest, retries=0)
    partial = tmp_path / "data.bin.partial"
    assert not dest.exists() and partial.read_bytes() == DATA[:1_000_000]

    download(f"{server.url}/data.bin", dest, sha256=_sha(DATA), retries=0)
    assert server.requests[-1] == ("/data.bin", "bytes=1000000-")
    assert dest.read_bytes() == DATA and not partial.exists()


def test_a_dropped_connection_is_retried_within_one_call(server, tmp_path):
    server.drop_after["/data.bin"] = 123_456
    dest = download(f"{server.url}/data.bin", tmp_path / "data.bin", expected_size=len(DATA), retries=2)
    assert dest.read_bytes() == DATA
    assert server.requests == [("/data.bin", None), ("/data.bin", "bytes=123456-")]


def test_redirects_are_followed_with_the_range(server, tmp_path):
    (tmp_path / "data.bin.partial").write_bytes(DATA[:5000])
    download(f"{server.url}/redirect/data.bin", tmp_path / "data.bin", sha256=_sha(DATA))
    assert server.requests == [("/redirect/data.bin", "bytes=5000-"), ("/data.bin", "bytes=5000-")]
    assert (tmp_path / "data.bin").read_bytes() == DATA


def test_server_errors_are_retried_but_client_errors_are_not(server, tmp_path):
    server.fail_once["/data.bin"] = 503
    download(f"{server.url}/data.bin", tmp_path / "data.bin", retries=1)
    assert [r[0] for r in server.requests] == ["/data.bin", "/data.bin"]
    server.fail_once["/stubborn.bin"] = 403
    with pytest.raises(DownloadError, match="HTTP 403"):
        download(f"{server.url}/stubborn.bin", tmp_path / "stubborn.bin", retries=3)
    assert len(server.requests) == 3 and not (tmp_path / "stubborn.bin").exists()


def test_checksum_mismatch_leaves_nothing(server, tmp_path):
    wrong = "0" * 64
    with pytest.raises(DownloadError) as error:
        download(f"{server.url}/data.bin", tmp_path / "data.bin", sha256=wrong)
    assert wrong in str(error.value) and _sha(DATA) in str(error.value)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(DownloadError, match=f"expected 10, got {len(DATA)}"):
        download(f"{server.url}/data.bin", tmp_path / "data.bin", expected_size=10)
    assert list(tmp_path.iterdir()) == []


def test_http_404_names_url_and_status(server, tmp_path):
    url = f"{server.url}/missing.txt"
    with pytest.raises(DownloadError, match=rf"HTTP 404 .*{re.escape(url)}"):
        download(url, tmp_path / "missing.txt")
    assert list(tmp_path.iterdir()) == []


def test_server_ignoring_range_restarts_from_zero(server, tmp_path):
    dest = tmp_path / "stubborn.bin"
    (tmp_path / "stubborn.bin.partial").write_bytes(b"stale bytes from an earlier attempt")
    download(f"{server.url}/stubborn.bin", dest, sha256=_sha(DATA))
    assert server.requests == [("/stubborn.bin", "bytes=35-")]  # asked to resume; got a 200
    assert dest.read_bytes() == DATA


def test_complete_partial_is_finished_after_416(server, tmp_path):
    (tmp_path / "data.bin.partial").write_bytes(DATA)
    dest = download(f"{server.url}/data.bin", tmp_path / "data.bin", sha256=_sha(DATA))
    assert server.requests == [("/data.bin", f"bytes={len(DATA)}-")]
    assert dest.read_bytes() == DATA and not (tmp_path / "data.bin.partial").exists()


def test_corpus_sources_are_the_handout_urls():
    assert CORPUS_SOURCES["tinystories"]["train"].endswith("/TinyStoriesV2-GPT4-train.txt")
    assert CORPUS_SOURCES["owt"]["valid"] == \
        "https://huggingface.co/datasets/stanford-cs336/owt-sample/resolve/main/owt_valid.txt.gz"
    assert all(url.startswith("https://huggingface.co/") for urls in CORPUS_SOURCES.values() for url in urls.values())


def test_command_line_download(server, tmp_path):
    done = subprocess.run([sys.executable, "-m", "cs336_core.corpora", "download", f"{server.url}/corpus.txt.gz",
                           str(tmp_path / "corpus.txt")], capture_output=True, text=True, timeout=60, check=True)
    assert json.loads(done.stdout)["path"] == str(tmp_path / "corpus.txt")
    assert (tmp_path / "corpus.txt").read_bytes() == TEXT


def test_materialize_corpus_downloads_once_and_links_the_cache(server, tmp_path, monkeypatch):
    import cs336_core.corpora.materialize as materialize
    from cs336_core.corpora import download_cache_path, materialize_corpus

    server.files["/valid.txt"] = TEXT[:5000]
    server.files["/nosep.txt"] = b"Plain text without the handout's separator.\n" * 20
    urls = {"train_url": f"{server.url}/corpus.txt.gz", "valid_url": f"{server.url}/valid.txt"}
    out, cache = tmp_path / "corpora" / "stories", tmp_path / "downloads"
    logged = []
    stats = materialize_corpus(out, source="download", downloads_dir=cache, **urls, log=logged.append)
    assert (out / "train.txt").read_bytes() == TEXT and (out / "valid.txt").read_bytes() == TEXT[:5000]
    assert stats["train"]["documents"] == 60000
    cached = download_cache_path(cache, urls["train_url"])
    assert os.path.samefile(cached, out / "train.txt")  # linked, not a second copy
    assert logged == [f"downloading {url} -> {download_cache_path(cache, url)}" for url in urls.values()]
    requests = len(server.requests)
    materialize_corpus(out, source="download", downloads_dir=cache, **urls)  # the cache is reused as is
    assert len(server.requests) == requests
    assert sorted(p.name for p in out.iterdir()) == ["stats.json", "train.txt", "valid.txt"]
    # A handout URL must carry the separator; a bad download never replaces the good corpus.
    monkeypatch.setattr(materialize, "_HANDOUT_URLS", {f"{server.url}/nosep.txt"})
    with pytest.raises(ValueError, match="no '<\\|endoftext\\|>' document separator"):
        materialize_corpus(out, source="download", downloads_dir=cache,
                           **{**urls, "valid_url": f"{server.url}/nosep.txt"})
    assert (out / "train.txt").read_bytes() == TEXT and (out / "valid.txt").read_bytes() == TEXT[:5000]
