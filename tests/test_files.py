import json

import pytest

from cs336_core.files import atomic_path, atomic_write_json, atomic_write_text
from cs336_core.progress import ThrottledLog


def test_atomic_write_replaces_whole_file(tmp_path):
    dest = tmp_path / "sub" / "a.json"
    atomic_write_json(dest, {"x": 1})
    assert json.loads(dest.read_text()) == {"x": 1}
    atomic_write_text(dest, "second")
    assert dest.read_text() == "second"
    assert [p.name for p in dest.parent.iterdir()] == ["a.json"]


def test_atomic_path_failure_keeps_old_file_and_leaves_no_temp(tmp_path):
    dest = tmp_path / "a.txt"
    dest.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(dest) as tmp:
            tmp.write_text("half-writ")
            raise RuntimeError("killed mid-write")
    assert dest.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def test_throttled_log_reports_percent_and_eta():
    lines = []
    log = ThrottledLog(lines.append, interval=3600)
    log("phase", 0, 10)
    log("phase", 5, 10)  # throttled away
    log("phase", 10, 10)  # completion always reported
    assert len(lines) == 2
    assert "10/10 (100.0%)" in lines[-1] and "ETA" in lines[-1]


def test_atomic_writes_get_ordinary_file_permissions(tmp_path):
    import os

    umask = os.umask(0)
    os.umask(umask)
    dest = atomic_write_text(tmp_path / "a.txt", "x")
    assert dest.stat().st_mode & 0o777 == 0o666 & ~umask  # what open() would give, not mkstemp's 0600


def test_throttled_log_eta_at_zero_is_unknown_not_nan():
    lines = []
    ThrottledLog(lines.append, interval=0)("phase", 0, 10)
    assert "ETA unknown" in lines[0] and "nan" not in lines[0]


def test_throttled_log_first_report_survives_a_freshly_booted_clock(monkeypatch):
    """monotonic() counts from boot: at 30 s of uptime an interval of 60 s must still let the first
    report through (it used to compare against a start value of 0.0 and drop it)."""
    import cs336_core.progress as progress

    clock = iter([30.0, 31.0, 95.0])
    monkeypatch.setattr(progress.time, "monotonic", lambda: next(clock))
    lines = []
    log = ThrottledLog(lines.append, interval=60)
    log("phase", 1, 10)  # first report: always shown
    log("phase", 2, 10)  # 1 s later: throttled
    log("phase", 3, 10)  # 65 s after the first: shown
    assert [line.split(":")[1].split()[0] for line in lines] == ["1/10", "3/10"]


def test_atomic_path_temp_names_carry_the_writers_pid(tmp_path):
    import os

    with atomic_path(tmp_path / "a.bin") as tmp:
        assert tmp.name.startswith(f".a.bin.{os.getpid()}.") and tmp.name.endswith(".partial")
        tmp.write_bytes(b"x")


def test_remove_stale_partials_removes_only_a_dead_writers_leftovers(tmp_path):
    """A real writer killed mid-write leaves its temporary file; a live writer's and anything that
    is not an atomic_path temporary (old-style names, the download's resumable partial) stay."""
    import os
    import subprocess
    import sys

    from cs336_core.files import remove_stale_partials

    killed = subprocess.run(
        [sys.executable, "-c",
         "import os, sys; from cs336_core.files import atomic_path\n"
         "with atomic_path(sys.argv[1]) as tmp:\n"
         "    tmp.write_bytes(b'half'); os._exit(9)\n", str(tmp_path / "tokens.npy")], timeout=60)
    assert killed.returncode == 9
    [leftover] = tmp_path.glob(".tokens.npy.*.partial")
    keep = [tmp_path / "data.bin.partial", tmp_path / ".old.json.x1y2z3.partial", tmp_path / "tokens.npy.txt"]
    for path in keep:
        path.write_bytes(b"keep")
    with atomic_path(tmp_path / "live.bin") as live:  # this process is alive: its temp file stays
        live.write_bytes(b"in progress")
        assert remove_stale_partials(tmp_path) == [leftover]
        assert live.exists() and all(path.exists() for path in keep) and not leftover.exists()
    assert (tmp_path / "live.bin").read_bytes() == b"in progress"
    assert remove_stale_partials(tmp_path / "missing") == []


def test_atomic_path_names_a_destination_that_cannot_be_a_file(tmp_path):
    a_dir, a_file = tmp_path / "a_dir", tmp_path / "a_file"
    a_dir.mkdir()
    a_file.write_text("x")
    with pytest.raises(IsADirectoryError) as error:
        atomic_write_text(a_dir, "y")
    assert error.value.filename == str(a_dir)
    with pytest.raises(NotADirectoryError) as error:  # mkdir would have said "File exists"
        atomic_write_text(a_file / "sub" / "b.txt", "y")
    assert error.value.filename == str(a_file) and "b.txt" in str(error.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_dir", "a_file"] and a_file.read_text() == "x"


def test_open_binary_recognises_gzip_by_its_bytes_not_its_name(tmp_path):
    import gzip

    from cs336_core.files import is_gzip, open_binary

    text = b"Once upon a time.\n<|endoftext|>\n" * 1000
    files = {"packed.txt": gzip.compress(text), "packed.txt.gz": gzip.compress(text),
             "plain.gz": text, "plain.txt": text}
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
        assert is_gzip(tmp_path / name) == name.startswith("packed"), name
        with open_binary(tmp_path / name) as f:
            assert f.read() == text, name
    (tmp_path / "empty.txt").write_bytes(b"")
    assert not is_gzip(tmp_path / "empty.txt") and open_binary(tmp_path / "empty.txt").read() == b""
    with pytest.raises(FileNotFoundError, match="missing.txt"):
        open_binary(tmp_path / "missing.txt")


def test_sha256_file_streams_the_files_bytes(tmp_path):
    import hashlib

    from cs336_core.files import READ_CHUNK, sha256_file

    data = bytes(range(256)) * (READ_CHUNK // 256 + 7)  # more than one read
    (tmp_path / "a.bin").write_bytes(data)
    assert sha256_file(tmp_path / "a.bin") == hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("link", [False, True])
def test_atomic_copy_puts_a_whole_copy_in_place(tmp_path, link):
    import os

    from cs336_core.files import atomic_copy

    src, dest = tmp_path / "src.txt", tmp_path / "out" / "dest.txt"
    src.write_text("corpus")
    assert atomic_copy(src, dest, link=link) == dest and dest.read_text() == "corpus"
    assert os.path.samefile(src, dest) == link  # a hard link where asked (tmp_path allows one)
    src.write_text("other")
    atomic_copy(src, dest, link=link)  # replaces what was there
    assert dest.read_text() == "other" and sorted(p.name for p in dest.parent.iterdir()) == ["dest.txt"]
    with pytest.raises(FileNotFoundError):
        atomic_copy(tmp_path / "missing.txt", dest, link=link)
    assert dest.read_text() == "other" and sorted(p.name for p in dest.parent.iterdir()) == ["dest.txt"]


def test_atomic_copy_falls_back_to_copying_where_links_fail(tmp_path, monkeypatch):
    import os

    from cs336_core.files import atomic_copy

    def no_links(*args):
        raise OSError(18, "Invalid cross-device link")

    monkeypatch.setattr(os, "link", no_links)
    (tmp_path / "src.txt").write_text("corpus")
    atomic_copy(tmp_path / "src.txt", tmp_path / "dest.txt", link=True)
    assert (tmp_path / "dest.txt").read_text() == "corpus"
    assert not os.path.samefile(tmp_path / "src.txt", tmp_path / "dest.txt")
