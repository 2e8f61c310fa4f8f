"""The C accelerators under AddressSanitizer and UndefinedBehaviorSanitizer.

A memory error in C need not change any output (a freed block is often handed straight back), so
the parity tests alone cannot see one. Here both extensions are rebuilt with -fsanitize=address,
undefined into a temporary directory and a child process, with the sanitizer runtime preloaded,
runs them through the paths that allocate, grow, reset and free: tiny caches that empty on every
few pre-tokens, long pre-tokens, special tokens, threads, training with ties and long words, and
invalid UTF-8. Any report fails the test; results are also compared with the pure-Python path.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent

CHILD = textwrap.dedent('''
    import importlib.util, random, sys, threading
    build = sys.argv[1]
    for name in ("_fastbpe", "_fasttrain"):
        path = next(p for p in __import__("pathlib").Path(build, "cs336_core", "bpe").glob(name + ".*.so"))
        spec = importlib.util.spec_from_file_location("cs336_core.bpe." + name, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        sys.modules["cs336_core.bpe." + name] = module
    from cs336_core.bpe import Tokenizer, accelerator, counting, train, train_bpe
    assert accelerator.FASTBPE is sys.modules["cs336_core.bpe._fastbpe"], "the sanitized build must be the one in use"

    rng = random.Random(0)
    pieces = ["a1b2c3", " the", " cat", "\\n", " \\u00e9t\\u00e9", "\\u65e5\\u672c", " 42", "!!", "  ", "'s", " " + "ab" * 60,
              "x" * 300, "<|endoftext|>", "\\U0001F642", "\\t", "a"]
    corpus = "".join(rng.choice(pieces) for _ in range(20000))
    path = sys.argv[2]
    open(path, "w", encoding="utf-8").write(corpus)
    fast = train_bpe(path, 500, ["<|endoftext|>"], num_workers=2)
    train.FASTTRAIN = counting.FASTTRAIN = None
    assert train_bpe(path, 500, ["<|endoftext|>"], num_workers=1) == fast, "training differs from the reference"
    vocab, merges = fast

    pure = Tokenizer(vocab, merges, ["<|endoftext|>"])
    pure._merger = None
    expected = pure.encode(corpus)
    for limit in (1, 2, 5, 1 << 20):
        tokenizer = Tokenizer(vocab, merges, ["<|endoftext|>"])
        tokenizer._merger = accelerator.FASTBPE.Merger(tokenizer._byte_ids, tokenizer._merge_ranks, tokenizer._merged_id_of_rank,
                                                       [(b"<|endoftext|>", tokenizer.special_to_id["<|endoftext|>"])],
                                                       cache_limit=limit)
        assert tokenizer.encode(corpus) == expected, limit
        assert tokenizer.encode(corpus) == expected, limit  # from the cache
    shared = Tokenizer(vocab, merges, ["<|endoftext|>"])
    results = []
    threads = [threading.Thread(target=lambda: results.append(shared.encode(corpus))) for _ in range(3)]
    for thread in threads: thread.start()
    for thread in threads: thread.join()
    assert results == [expected] * 3
    merger = shared.new_merger()
    packed = merger.encode_bytes(corpus.encode(), 4)
    assert list(memoryview(packed).cast("I")) == expected
    assert merger.encode_bytes(b"ok \\xff", 4) == 3
    table = sys.modules["cs336_core.bpe._fasttrain"].PretokenCounts()
    assert table.count(b"bad \\xc3", ()) == 4
    print("sanitized run ok")
''')


def sanitizer_runtime() -> Path | None:
    compiler = shutil.which("gcc") or shutil.which("cc")
    if compiler is None:
        return None
    found = subprocess.run([compiler, "-print-file-name=libasan.so"], capture_output=True, text=True).stdout.strip()
    return Path(found) if found and Path(found).is_absolute() and Path(found).exists() else None


@pytest.mark.slow
def test_accelerators_run_clean_under_address_and_undefined_behaviour_sanitizers(tmp_path):
    runtime = sanitizer_runtime()
    if runtime is None:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail("gcc with libasan is needed to check the C accelerators (CI=true: not skipped)")
        pytest.skip("no gcc with libasan here")
    build = tmp_path / "build"
    flags = "-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer -O1 -g"
    env = {**os.environ, "CFLAGS": flags, "LDFLAGS": "-fsanitize=address,undefined"}
    built = subprocess.run([sys.executable, "setup.py", "build_ext", "--force", "-b", str(build), "-t", str(tmp_path / "tmp")],
                           cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr[-3000:]
    runtime_env = {**os.environ, "LD_PRELOAD": str(runtime), "ASAN_OPTIONS": "detect_leaks=0:abort_on_error=1",
                   "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=1", "PYTHONPATH": str(REPO_ROOT)}
    runtime_env.pop("CS336_PURE_PYTHON", None)
    result = subprocess.run([sys.executable, "-c", CHILD, str(build), str(tmp_path / "corpus.txt")], env=runtime_env,
                            capture_output=True, text=True, timeout=600)
    report = result.stdout + result.stderr
    assert "Sanitizer" not in report, report[-6000:]
    assert result.returncode == 0 and "sanitized run ok" in result.stdout, report[-6000:]
