"""Tokenizer benchmark: this project's BPE against its peers, side by side, same corpus and cores.

    python bench/bench_tokenizer.py --corpus ../shared/corpora/bench_50mb.txt.gz            # 50 MB
    python bench/bench_tokenizer.py --corpus ../shared/corpora/bench_50mb.txt.gz --prefix-bytes 4991067

Contenders (each run in its own subprocess; peak RSS is the sampled sum over its process tree):
  train   ours: train_bpe(vocab 10,000 + <|endoftext|>, 2 workers)
          hf:   HuggingFace tokenizers BpeTrainer + ByteLevel, RAYON_NUM_THREADS=2
  encode  ours: Tokenizer.encode (one process) with our trained 10K vocab
          tiktoken: an Encoding built from the same vocab/merges (ids asserted identical)
          ours encode_file with 1 and with 2 workers (output asserted identical)
The compressed corpus is unpacked once to a temporary plain-text file that every contender reads.
Prints a Markdown table of medians over --repeats runs. "CPU s" is user+system time of the whole
child process tree, imports and file reading included: on a shared machine it shows the work
done even when the wall time is stretched by other load.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_CORPUS = REPO.parent / "shared" / "corpora" / "bench_50mb.txt.gz"
EOT = "<|endoftext|>"


# ----------------------------------------------------------------------------------------------
# The contenders, run inside a child process: `bench_tokenizer.py --child TASK JSON`


def child_train_ours(args: dict) -> dict:
    from cs336_core.bpe import save_vocab_merges, train_bpe

    start = time.perf_counter()
    vocab, merges = train_bpe(args["corpus"], args["vocab_size"], [EOT], num_workers=args["workers"])
    seconds = time.perf_counter() - start
    if args.get("out_dir"):
        save_vocab_merges(vocab, merges, Path(args["out_dir"]) / "vocab.json", Path(args["out_dir"]) / "merges.txt")
    return {"seconds": seconds, "vocab": len(vocab)}


def child_train_hf(args: dict) -> dict:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=args["vocab_size"], special_tokens=[EOT], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    start = time.perf_counter()
    tokenizer.train([args["corpus"]], trainer)
    return {"seconds": time.perf_counter() - start, "vocab": tokenizer.get_vocab_size()}


def _load_ours(args: dict):
    from cs336_core.bpe import Tokenizer

    return Tokenizer.from_files(Path(args["tok_dir"]) / "vocab.json", Path(args["tok_dir"]) / "merges.txt", [EOT])


def _timed_encode(encode, args: dict) -> dict:
    """Time `encode` on the whole corpus (read beforehand) and save the ids for the comparison."""
    import numpy as np

    text = Path(args["corpus"]).read_text(encoding="utf-8")
    start = time.perf_counter()
    ids = encode(text)
    seconds = time.perf_counter() - start
    np.save(args["ids_out"], np.array(ids, dtype=np.uint16))
    return {"seconds": seconds, "tokens": len(ids)}


def child_encode_ours(args: dict) -> dict:
    return _timed_encode(_load_ours(args).encode, args)


def child_encode_tiktoken(args: dict) -> dict:
    import tiktoken

    from cs336_core.bpe import GPT2_PRETOKENIZE_PATTERN

    ours = _load_ours(args)
    special_ids = set(ours.special_to_id.values())
    ranks = {token: i for i, token in ours.vocab.items() if i not in special_ids}
    encoding = tiktoken.Encoding(name="ours-10k", pat_str=GPT2_PRETOKENIZE_PATTERN, mergeable_ranks=ranks,
                                 special_tokens=dict(ours.special_to_id))
    return _timed_encode(lambda text: encoding.encode(text, allowed_special="all"), args)


def child_encode_file_ours(args: dict) -> dict:
    from cs336_core.bpe import encode_file

    tokenizer = _load_ours(args)
    stats = encode_file(tokenizer, args["corpus"], args["ids_out"], num_workers=args["workers"])
    return {"seconds": stats["seconds"], "tokens": stats["tokens"]}


CHILDREN = {
    "train_ours": child_train_ours, "train_hf": child_train_hf, "encode_ours": child_encode_ours,
    "encode_tiktoken": child_encode_tiktoken, "encode_file_ours": child_encode_file_ours,
}


# ----------------------------------------------------------------------------------------------
# The parent: run children, sample their process tree's memory, tabulate medians


def communicate_with_peak_rss(process: subprocess.Popen) -> tuple[str, int]:
    """`process.communicate()`'s stdout, and the peak RSS of its process tree sampled every 20 ms
    (workers it forks included; the child's own ru_maxrss would miss them)."""
    import psutil

    peak = 0
    watched = psutil.Process(process.pid)

    def sample():
        nonlocal peak
        while process.poll() is None:
            try:
                tree = [watched] + watched.children(recursive=True)
                peak = max(peak, sum(p.memory_info().rss for p in tree if p.is_running()))
            except psutil.Error:
                pass
            time.sleep(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    stdout, _ = process.communicate()
    sampler.join()
    return stdout, peak


def run_child(task: str, args: dict, env: dict | None = None) -> dict:
    import resource

    cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)

    process = subprocess.Popen([sys.executable, __file__, "--child", task, json.dumps(args)], stdout=subprocess.PIPE,
                               text=True, env={**os.environ, **(env or {})}, cwd=REPO)
    stdout, peak = communicate_with_peak_rss(process)
    if process.returncode != 0:
        raise SystemExit(f"{task} failed with exit code {process.returncode}")
    result = json.loads(stdout.strip().splitlines()[-1])
    result["peak_rss"] = peak
    cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)  # the child and every process it reaped
    result["cpu"] = (cpu_after.ru_utime + cpu_after.ru_stime) - (cpu_before.ru_utime + cpu_before.ru_stime)
    return result


def _burn(n: int) -> int:
    total = 0
    for i in range(n):
        total += i
    return total


def available_parallelism(workers: int, n: int = 10_000_000) -> float:
    """Speedup of `workers` processes over one on a trivially parallel pure-Python loop.

    About `workers` on a quiet machine; near 1 when other load already saturates the cores, in
    which case no parallel speedup below can show either.
    """
    import multiprocessing

    start = time.perf_counter()
    for _ in range(workers):
        _burn(n)
    serial = time.perf_counter() - start
    with multiprocessing.get_context().Pool(workers) as pool:
        start = time.perf_counter()
        pool.map(_burn, [n] * workers)
        parallel = time.perf_counter() - start
    return serial / parallel


def prepare_corpus(source: Path, prefix_bytes: int, work: Path) -> Path:
    target = work / "corpus.txt"
    opener = gzip.open if source.suffix == ".gz" else open
    with opener(source, "rb") as src, open(target, "wb") as dst:
        if prefix_bytes:
            dst.write(src.read(prefix_bytes))
        else:
            shutil.copyfileobj(src, dst, 1 << 20)
    return target


def median_row(name: str, runs: list[dict], corpus_bytes: int, baseline: float | None) -> dict:
    seconds = statistics.median(r["seconds"] for r in runs)
    rss = statistics.median(r["peak_rss"] for r in runs)
    cpu = statistics.median(r["cpu"] for r in runs)
    return {"name": name, "seconds": seconds, "rss": rss, "cpu": cpu, "mbps": corpus_bytes / 1e6 / seconds,
            "speedup": (baseline / seconds) if baseline else None, "rss_ratio": rss / corpus_bytes}


def print_table(title: str, rows: list[dict], speedup_label: str) -> None:
    print(f"\n{title}\n")
    print(f"| contender | wall s (median) | CPU s, whole child | peak RSS MB | RSS / corpus | MB/s | {speedup_label} |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        speedup = f"{row['speedup']:.2f}x" if row["speedup"] is not None else "1.00x (baseline)"
        print(f"| {row['name']} | {row['seconds']:.2f} | {row['cpu']:.1f} | {row['rss'] / 1e6:.0f} | {row['rss_ratio']:.2f} | "
              f"{row['mbps']:.2f} | {speedup} |")
    sys.stdout.flush()


def main() -> None:
    if len(sys.argv) >= 2 and sys.argv[1] == "--child":
        result = CHILDREN[sys.argv[2]](json.loads(sys.argv[3]))
        print(json.dumps(result))
        return

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--prefix-bytes", type=int, default=0, help="use only the first N bytes (4991067 = 5 MB prefix)")
    parser.add_argument("--vocab-size", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-train", action="store_true", help="only encode (still trains once for the vocab)")
    parser.add_argument("--skip-encode", action="store_true")
    opts = parser.parse_args()
    if not opts.corpus.is_file():
        raise SystemExit(f"corpus not found: {opts.corpus}")

    with tempfile.TemporaryDirectory(prefix="bench_tok_") as tmp:
        work = Path(tmp)
        corpus = prepare_corpus(opts.corpus, opts.prefix_bytes, work)
        size = corpus.stat().st_size
        print(f"available parallelism at start ({opts.workers} processes vs 1 on a pure-Python loop): "
              f"{available_parallelism(opts.workers):.2f}x", flush=True)
        print(f"corpus {opts.corpus} ({'prefix ' + str(opts.prefix_bytes) + ' bytes' if opts.prefix_bytes else 'whole'}): "
              f"{size:,} bytes; {opts.workers} workers; {opts.repeats} repeats; python {platform.python_version()}; "
              f"{os.cpu_count()} cpus; {platform.platform()}")
        tok_dir = work / "tok"
        tok_dir.mkdir()
        common = {"corpus": str(corpus), "vocab_size": opts.vocab_size, "workers": opts.workers}
        repeats = 1 if opts.skip_train else opts.repeats

        ours, hf = [], []
        for repeat in range(repeats):  # interleaved so that load changes hit both alike
            ours.append(run_child("train_ours", {**common, "out_dir": str(tok_dir) if repeat == 0 else ""}))
            if not opts.skip_train:
                hf.append(run_child("train_hf", common, env={"RAYON_NUM_THREADS": str(opts.workers)}))
            print(f"  train repeat {repeat + 1}: ours {ours[-1]['seconds']:.2f}s"
                  + (f", hf {hf[-1]['seconds']:.2f}s" if hf else ""), flush=True)
        if not opts.skip_train:
            hf_row = median_row("HF tokenizers (BpeTrainer, ByteLevel)", hf, size, None)
            ours_row = median_row("ours train_bpe", ours, size, hf_row["seconds"])
            print_table(f"BPE training, vocab {opts.vocab_size} + {EOT}, {opts.workers} cores", [hf_row, ours_row],
                        "speed vs HF")

        if opts.skip_encode:
            return
        import numpy as np

        encode_args = {**common, "tok_dir": str(tok_dir)}
        runs: dict[str, list[dict]] = {"tiktoken": [], "ours": [], "file1": [], "file2": []}
        for repeat in range(opts.repeats):
            runs["tiktoken"].append(run_child("encode_tiktoken", {**encode_args, "ids_out": str(work / "tiktoken.npy")}))
            runs["ours"].append(run_child("encode_ours", {**encode_args, "ids_out": str(work / "ours.npy")}))
            runs["file1"].append(run_child("encode_file_ours", {**encode_args, "workers": 1, "ids_out": str(work / "file1.npy")}))
            runs["file2"].append(run_child("encode_file_ours", {**encode_args, "workers": opts.workers,
                                                                "ids_out": str(work / "file2.npy")}))
            print("  encode repeat {}: tiktoken {:.2f}s, ours {:.2f}s, encode_file 1 worker {:.2f}s, {} workers {:.2f}s".format(
                repeat + 1, runs["tiktoken"][-1]["seconds"], runs["ours"][-1]["seconds"], runs["file1"][-1]["seconds"],
                opts.workers, runs["file2"][-1]["seconds"]), flush=True)
        print(f"available parallelism now ({opts.workers} processes vs 1 on a pure-Python loop): "
              f"{available_parallelism(opts.workers):.2f}x", flush=True)
        reference = np.load(work / "tiktoken.npy")
        for name in ("ours", "file1", "file2"):
            if not np.array_equal(np.load(work / f"{name}.npy"), reference):
                raise SystemExit(f"MISMATCH: {name} ids differ from tiktoken's")
        print(f"ids identical across tiktoken, ours, encode_file (1 and {opts.workers} workers): {len(reference):,} tokens, "
              f"{size / len(reference):.2f} bytes/token")
        tiktoken_row = median_row("tiktoken (same vocab/merges)", runs["tiktoken"], size, None)
        ours_row = median_row("ours Tokenizer.encode", runs["ours"], size, tiktoken_row["seconds"])
        print_table("Encoding, single process (text in memory)", [tiktoken_row, ours_row], "speed vs tiktoken")
        file1 = median_row("ours encode_file, 1 worker", runs["file1"], size, None)
        file2 = median_row(f"ours encode_file, {opts.workers} workers", runs["file2"], size, file1["seconds"])
        print_table("Whole-file encoding to .npy", [file1, file2], "speed vs 1 worker")


if __name__ == "__main__":
    main()
