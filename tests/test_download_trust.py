"""Downloads that cannot be accepted half-done, against real HTTP servers on 127.0.0.1.

Each route of the server writes its response by hand, so a test can send what a broken or hostile
server sends: an HTML error page with status 200, a body cut short under Content-Length or chunked
framing or gzip, Hugging Face's X-Linked-Etag redirect, a body dripped a byte at a time.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from cs336_core.corpora import CORPUS_SOURCES, DownloadError, check_plausible_text, download

TEXT = b"".join(b"Once upon a time there was story %d.\n<|endoftext|>\n" % i for i in range(5000))
HTML = b"<!DOCTYPE html>\n<html><head><title>502 Bad Gateway</title></head><body>oops</body></html>\n"


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _send(handler, body: bytes, *, status: str = "200 OK", content_type: str = "text/plain; charset=utf-8",
          length: int | None = -1, extra: dict[str, str] | None = None) -> None:
    """Write a raw HTTP/1.1 response; `length` -1 announces len(body), None announces nothing."""
    head = [f"HTTP/1.1 {status}", f"Content-Type: {content_type}", "Connection: close"]
    if length is not None:
        head.append(f"Content-Length: {len(body) if length == -1 else length}")
    head += [f"{name}: {value}" for name, value in (extra or {}).items()]
    handler.wfile.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)
    handler.wfile.flush()


def _plain(body: bytes, **options):
    return lambda handler: _send(handler, body, **options)


def _chunked_cut_short(body: bytes):
    """Chunked framing, but the connection closes before the terminating zero-size chunk."""
    def route(handler):
        _send(handler, b"", length=None, extra={"Transfer-Encoding": "chunked"})
        for start in range(0, len(body), 4096):
            piece = body[start:start + 4096]
            handler.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
        handler.wfile.flush()  # ... and no b"0\r\n\r\n"
    return route


def _redirect(location: str, headers: dict[str, str]):
    return _plain(b"", status="302 Found", extra={"Location": location, **headers})


def _drip(stop: threading.Event):
    """Announces 1000 bytes and sends one every 0.2 s, until the client hangs up or the test ends."""
    def route(handler):
        _send(handler, b"", length=1000)
        try:
            while not stop.wait(0.2):
                handler.wfile.write(b"x")
                handler.wfile.flush()
        except OSError:
            pass  # the client gave up: what the test wants
    return route


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (http.server's naming)
        self.server.requests.append((self.path, self.headers.get("Range")))
        route = self.server.routes.get(self.path)
        if route is None:
            _send(self, b"not found", status="404 Not Found")
        else:
            route(self)
        self.close_connection = True

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.routes, httpd.requests, httpd.stop = {}, [], threading.Event()
    httpd.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield httpd
    httpd.stop.set()
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=5)


def _names(directory) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def test_an_html_error_page_with_status_200_is_refused(server, tmp_path):
    server.routes["/train.txt"] = _plain(HTML, content_type="text/html; charset=utf-8")
    with pytest.raises(DownloadError, match=r"HTML page \(Content-Type text/html\)"):
        download(f"{server.url}/train.txt", tmp_path / "train.txt", retries=0)
    assert _names(tmp_path) == []
    # A partial from an earlier attempt is not clobbered by the error page answering its resume.
    (tmp_path / "train.txt.partial").write_bytes(TEXT[:1000])
    with pytest.raises(DownloadError, match="HTML"):
        download(f"{server.url}/train.txt", tmp_path / "train.txt", retries=0)
    assert _names(tmp_path) == ["train.txt.partial"]
    assert (tmp_path / "train.txt.partial").read_bytes() == TEXT[:1000]
    # A caller that really wants a page can have it.
    page = download(f"{server.url}/train.txt", tmp_path / "page.html", allow_html=True, retries=0)
    assert page.read_bytes() == HTML


@pytest.mark.parametrize("route", ["content_length", "chunked"])
def test_a_body_cut_short_is_never_taken_as_complete(server, tmp_path, route):
    server.routes["/train.txt"] = (_plain(TEXT[:20_000], length=len(TEXT)) if route == "content_length"
                                   else _chunked_cut_short(TEXT[:20_000]))
    with pytest.raises(DownloadError, match="resumes"):
        download(f"{server.url}/train.txt", tmp_path / "train.txt", retries=1)
    assert len(server.requests) == 2  # retried once, cut short both times
    assert not (tmp_path / "train.txt").exists() and not (tmp_path / ".train.txt.download.json").exists()


def test_a_gzip_body_cut_short_without_a_length_is_caught_by_its_trailer(server, tmp_path):
    packed = gzip.compress(TEXT)
    server.routes["/owt.txt.gz"] = _plain(packed[:len(packed) // 2], content_type="application/gzip", length=None)
    for dest in (tmp_path / "owt.txt", tmp_path / "owt.txt.gz"):  # decompressed, or kept packed
        with pytest.raises(DownloadError, match="cut short"):
            download(f"{server.url}/owt.txt.gz", dest, retries=0)
    assert _names(tmp_path) == []
    server.routes["/owt.txt.gz"] = _plain(packed, content_type="application/gzip", length=None)
    assert download(f"{server.url}/owt.txt.gz", tmp_path / "owt.txt.gz").read_bytes() == packed


def test_a_cached_file_is_reverified_before_reuse(server, tmp_path):
    server.routes["/train.txt"] = _plain(TEXT)
    url, dest = f"{server.url}/train.txt", tmp_path / "train.txt"
    download(url, dest)
    record = json.loads((tmp_path / ".train.txt.download.json").read_text())
    assert record["size"] == len(TEXT) and record["sha256"] == _sha(TEXT) and record["url"] == url
    download(url, dest)
    assert len(server.requests) == 1  # intact: reused without a request

    dest.write_bytes(TEXT[:-100])  # truncated in place
    with pytest.warns(UserWarning, match="bytes but was"):
        download(url, dest)
    assert dest.read_bytes() == TEXT and len(server.requests) == 2
    dest.write_bytes(TEXT.replace(b"story 7.", b"story 8."))  # same size, other bytes
    with pytest.warns(UserWarning, match="sha256 changed"):
        download(url, dest)
    assert dest.read_bytes() == TEXT and len(server.requests) == 3
    (tmp_path / ".train.txt.download.json").unlink()  # e.g. an HTML page cached by an older version
    with pytest.warns(UserWarning, match="no download record"):
        download(url, dest)
    assert dest.read_bytes() == TEXT and len(server.requests) == 4


@pytest.mark.parametrize("etag", ['"{sha}"', "{sha}", 'W/"{sha}"'])
def test_hugging_face_linked_etag_is_verified_without_a_given_checksum(server, tmp_path, etag):
    """As huggingface.co/.../resolve/main/<file> answers an LFS file: 302 to the CDN, stating the
    file's sha256 (X-Linked-Etag, quoted) and size (X-Linked-Size) on the redirect."""
    linked = {"X-Linked-Etag": etag.format(sha=_sha(TEXT)), "X-Linked-Size": str(len(TEXT)),
              "ETag": '"0123456789abcdef0123456789abcdef01234567"'}
    server.routes["/resolve/main/train.txt"] = _redirect("/cdn/train.txt", linked)
    server.routes["/cdn/train.txt"] = _plain(TEXT)
    dest = download(f"{server.url}/resolve/main/train.txt", tmp_path / "train.txt")
    assert dest.read_bytes() == TEXT
    assert [path for path, _ in server.requests] == ["/resolve/main/train.txt", "/cdn/train.txt"]

    server.routes["/cdn/other.txt"] = _plain(TEXT.replace(b"story 7.", b"story 8."))  # same size, other bytes
    server.routes["/resolve/main/other.txt"] = _redirect("/cdn/other.txt", linked)
    with pytest.raises(DownloadError, match=rf"X-Linked-Etag\).*expected {_sha(TEXT)}"):
        download(f"{server.url}/resolve/main/other.txt", tmp_path / "other.txt")
    assert _names(tmp_path) == [".train.txt.download.json", "train.txt"]


def test_hugging_face_linked_size_and_compressed_etag(server, tmp_path):
    """OWT's files are .gz: the linked sha256 and size are of the bytes as served, before gunzip."""
    packed = gzip.compress(TEXT)
    server.routes["/resolve/owt.txt.gz"] = _redirect("/cdn/owt.txt.gz", {
        "X-Linked-Etag": f'"{_sha(packed)}"', "X-Linked-Size": str(len(packed))})
    server.routes["/cdn/owt.txt.gz"] = _plain(packed, content_type="application/gzip")
    assert download(f"{server.url}/resolve/owt.txt.gz", tmp_path / "owt.txt").read_bytes() == TEXT
    server.routes["/resolve/short.txt"] = _redirect("/cdn/short.txt", {"X-Linked-Size": str(len(TEXT) + 1)})
    server.routes["/cdn/short.txt"] = _plain(TEXT)
    with pytest.raises(DownloadError, match=rf"X-Linked-Size\) mismatch .*: expected {len(TEXT) + 1}, got {len(TEXT)}"):
        download(f"{server.url}/resolve/short.txt", tmp_path / "short.txt")
    assert not (tmp_path / "short.txt").exists() and not (tmp_path / "short.txt.partial").exists()


def test_a_dripping_server_meets_the_overall_deadline(server, tmp_path):
    """Each byte arrives well within the per-read timeout; only the overall deadline ends it."""
    server.routes["/drip.txt"] = _drip(server.stop)
    outcome = {}

    def fetch():
        try:
            download(f"{server.url}/drip.txt", tmp_path / "drip.txt", timeout=30, deadline=1.5, retries=3)
        except DownloadError as error:
            outcome["error"] = error

    worker = threading.Thread(target=fetch, daemon=True)
    worker.start()
    worker.join(timeout=120)  # generous bound; without a deadline the download would run for hours
    assert not worker.is_alive(), "the download ignored its deadline"
    assert "deadline" in str(outcome["error"]) and "drip.txt" in str(outcome["error"])
    assert not (tmp_path / "drip.txt").exists() and (tmp_path / "drip.txt.partial").exists()


def test_decompression_stops_at_its_cap(server, tmp_path):
    bomb = gzip.compress(b"\0" * 5_000_000)
    server.routes["/bomb.txt.gz"] = _plain(bomb, content_type="application/gzip")
    with pytest.raises(DownloadError, match="max_decompressed_bytes=1000000"):
        download(f"{server.url}/bomb.txt.gz", tmp_path / "bomb.txt", max_decompressed_bytes=1_000_000)
    assert _names(tmp_path) == []  # neither the output, its temporary file, nor the download
    assert download(f"{server.url}/bomb.txt.gz", tmp_path / "bomb.txt").stat().st_size == 5_000_000


def test_stale_partials_are_removed_when_safe(server, tmp_path):
    import subprocess
    import sys

    server.routes["/train.txt"] = _plain(TEXT)
    url, dest = f"{server.url}/train.txt", tmp_path / "train.txt"
    download(url, dest)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True, timeout=60).stdout.strip()
    (tmp_path / f".train.txt.{dead}.abc123.partial").write_bytes(b"a killed writer's leftover")
    (tmp_path / f".train.txt.{os.getpid()}.def456.partial").write_bytes(b"a live writer's file")
    (tmp_path / "train.txt.partial").write_bytes(b"an abandoned re-download")
    download(url, dest)  # the cached file verifies, so its abandoned resumable partial can go
    assert _names(tmp_path) == sorted([".train.txt.download.json", f".train.txt.{os.getpid()}.def456.partial",
                                       "train.txt"])
    assert len(server.requests) == 1

    # While the file is not verified complete, its resumable partial is what the next call resumes.
    (tmp_path / "other.txt.partial").write_bytes(TEXT[:100])
    server.routes["/other.txt"] = _plain(TEXT[:100], length=len(TEXT))
    with pytest.raises(DownloadError):
        download(f"{server.url}/other.txt", tmp_path / "other.txt", retries=0)
    assert (tmp_path / "other.txt.partial").exists()


def test_check_plausible_text_names_the_file_and_the_problem(tmp_path):
    good = tmp_path / "good.txt"
    good.write_bytes(TEXT)
    assert check_plausible_text(good, separator="<|endoftext|>")["bytes"] == len(TEXT)
    packed = tmp_path / "good.txt.gz"
    packed.write_bytes(gzip.compress(TEXT))
    check_plausible_text(packed, separator="<|endoftext|>")
    cases = {
        "empty.txt": (b"", "is empty"),
        "blank.txt": (b" \n\n \t\n", "is empty"),
        "page.txt": (b"\n  " + HTML, "HTML page"),
        "binary.txt": (os.urandom(20_000), "not UTF-8 text"),
        "utf16.txt": ("Once upon a time.\n<|endoftext|>\n".encode("utf-16"), "not UTF-8 text"),
        "corrupt.txt.gz": (gzip.compress(TEXT)[:-8] + os.urandom(20), "not valid gzip data"),
        "cut.txt.gz": (gzip.compress(TEXT)[:5000], "not valid gzip data"),
        "nosep.txt": (b"Just some text without any separator.\n" * 100, "no '<|endoftext|>' document separator"),
    }
    for name, (data, problem) in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(ValueError, match=problem) as error:
            check_plausible_text(tmp_path / name, separator="<|endoftext|>")
        assert str(tmp_path / name) in str(error.value)
    check_plausible_text(tmp_path / "nosep.txt")  # without a separator to expect, plain text is fine
    # A stray invalid byte in a large real corpus is tolerated; a file of them is not.
    (tmp_path / "stray.txt").write_bytes(TEXT + b"\xff" + TEXT)
    check_plausible_text(tmp_path / "stray.txt", separator="<|endoftext|>")
    with pytest.raises(FileNotFoundError, match="missing.txt"):
        check_plausible_text(tmp_path / "missing.txt")


# ---------------------------------------------------------------------------------------------
# The corpus asset: nothing implausible reaches <data>/corpora/, and a rebuild is a new version
# ---------------------------------------------------------------------------------------------

def _materialize_corpus(defs, instance, config: dict):
    from dagster import materialize

    return materialize(list(defs.assets), instance=instance, resources=defs.resources, selection=["stories_corpus"],
                       raise_on_error=False, run_config={"ops": {"stories_corpus": {"config": config}}})


def _failure(result) -> str:
    assert not result.success
    return next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE").event_specific_data.error.to_string()


def test_the_corpus_asset_refuses_implausible_downloads_and_keeps_the_good_corpus(server, tmp_path, monkeypatch):
    from dagster import DagsterInstance

    import cs336_core.corpora.materialize as corpus_assets  # where the asset's corpus is made
    from cs336_assets.definitions import build_defs

    server.routes.update({
        "/train.txt": _plain(TEXT), "/valid.txt": _plain(TEXT[:2000]),
        "/error.txt": _plain(HTML),  # an error page that even claims to be text/plain
        "/error.html": _plain(HTML, content_type="text/html"),
        "/empty.txt": _plain(b""),
        "/nosep.txt": _plain(b"Some text, but not one of the handout's documents.\n" * 50),
    })
    data = tmp_path / "data"
    defs = build_defs("test", data)
    corpus = data / "corpora" / "stories"
    good = {"train_url": f"{server.url}/train.txt", "valid_url": f"{server.url}/valid.txt"}
    # What the handout's URLs get: here the local server's stands in for one of them.
    monkeypatch.setattr(corpus_assets, "_HANDOUT_URLS", {f"{server.url}/nosep.txt"}, raising=False)
    with DagsterInstance.ephemeral() as instance:
        assert _materialize_corpus(defs, instance, good).success
        for valid, problem in (("error.txt", "is an HTML page"), ("error.html", "Content-Type text/html"),
                               ("empty.txt", "is empty"), ("nosep.txt", "no '<|endoftext|>' document separator")):
            url = f"{server.url}/{valid}"
            error = _failure(_materialize_corpus(defs, instance, {**good, "valid_url": url}))
            assert problem in error and url in error, (valid, error)
            assert (corpus / "train.txt").read_bytes() == TEXT and (corpus / "valid.txt").read_bytes() == TEXT[:2000]
    assert corpus_assets._HANDOUT_URLS != {url for urls in CORPUS_SOURCES.values() for url in urls.values()}
    monkeypatch.undo()
    assert corpus_assets._HANDOUT_URLS == {url for urls in CORPUS_SOURCES.values() for url in urls.values()}


def test_the_corpus_asset_refuses_an_implausible_local_file(tmp_path):
    from dagster import DagsterInstance

    from cs336_assets.definitions import build_defs

    binary = tmp_path / "binary.txt"
    binary.write_bytes(b"\0" + os.urandom(50_000))
    defs = build_defs("test", tmp_path / "data")
    with DagsterInstance.ephemeral() as instance:
        error = _failure(_materialize_corpus(defs, instance, {"local_train_path": str(binary)}))
    assert f"{binary} is not UTF-8 text" in error
    assert not (tmp_path / "data" / "corpora" / "stories" / "train.txt").exists()


def test_a_corpus_rebuilt_differently_gets_a_new_data_version(tmp_path):
    """What lets Dagster mark the tokenizer and everything after it stale."""
    from dagster import DagsterInstance

    from cs336_assets.definitions import build_defs

    def version(result) -> str:
        [event] = result.get_asset_materialization_events()
        return event.materialization.tags["dagster/data_version"]

    defs = build_defs("test", tmp_path / "data")
    with DagsterInstance.ephemeral() as instance:
        first = version(_materialize_corpus(defs, instance, {}))
        again = version(_materialize_corpus(defs, instance, {}))
        other = version(_materialize_corpus(defs, instance, {"valid_fraction": 0.3}))
    assert first == again != other
