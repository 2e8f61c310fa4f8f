"""How BPE training scales, measured on 5, 50 and ~200 MB, and projected to OpenWebText's 32K tokenizer.

    python bench/bench_bpe_scaling.py --corpus ../shared/corpora/bench_50mb.txt.gz --json-out scaling.json
    python bench/bench_bpe_scaling.py --sizes 1,2,8 --base-mb 2 --vocab-sizes 2000,1000   # a quick smoke run

Corpora (built in a temporary --work-dir, never in the repository): for each of --sizes (MB,
10^6 bytes) not above --base-mb (default: the whole corpus), the corpus' prefix cut at the last
document boundary ("\\n<|endoftext|>\\n") at or before that size (5 -> the 4,991,067-byte benchmark
prefix, 50 -> the whole 49,926,825 bytes); a larger size is round(size / base) copies of the base,
copy 1 verbatim and copies 2.. "varied" so that the number of distinct pre-tokens grows as new text
would make it grow: in copy k, each word of 4+ ASCII letters that occurs at most --vary-max-count
(50) times in the base is, with probability --vary-fraction (0.55) decided by a keyed hash of (k,
word), renamed throughout that copy by appending a letter chosen by the same hash. Frequent words
are never renamed, so the pair statistics of common text stay those of the base. The fraction was
calibrated so that 4 varied copies of the 5 MB prefix have as many distinct pre-tokens as the real
20 MB prefix (x2.14 vs x2.15; the real corpus grows as bytes^0.54 from 5 to 50 MB): the ~200 MB
point therefore carries the corpus' own Heaps exponent to 4x its size rather than measuring a new
one; what it adds is scale for the time and memory measurements.

Each corpus and vocab size (--vocab-sizes, default 32,000 (OpenWebText's in the handout) and
10,000, each counting the 256 bytes and <|endoftext|>) is trained in its own child process:
train_bpe(path, vocab, ["<|endoftext|>"], num_workers=--workers), recording wall and CPU time of
the whole child, peak RSS of its process tree (bench_tokenizer.communicate_with_peak_rss), and the
split into the pre-tokenize/count phase and the merge phase. The split and the number of distinct
pre-tokens come from wrapping the counting function that train_bpe calls (cs336_core.bpe.train's
count_pretokens / count_pretokens_native): its return is timestamped and len() of its result is the
distinct count, at no extra cost. If that wrapping finds nothing (the code moved), the split falls
back to the last "pretokenize" progress report and the distinct count to a separate child running
count_pretokens (say which: the "split" and "distinct_from" fields).

Fits (least squares, printed and in --json-out):
  pre-tokenize: core-seconds per byte = the phase's CPU time (all threads and worker processes)
                over bytes, fitted through the origin; wall on N cores = that x bytes / N
                (assumes linear scaling over cores and reading never the bottleneck);
  merge:        wall = c x distinct^a x merges^g (log-linear), single-threaded at any core count;
  distinct:     Heaps' law distinct = K x bytes^beta over the corpora;
  memory:       peak RSS = r0 + r1 x distinct (the runs at the target vocab), and the counting
                phase's RSS (the child's VmHWM when counting returns) = q0 + q1 x distinct. On N cores
                each counting worker keeps its own table of the pre-tokens of its share of the
                text (as the threaded C counter does), so the counting phase is projected as
                q0 + q1 x (distinct + N x d(bytes/N) - W x d(bytes/W)) with W = --workers, and the
                peak as the larger of that and the fitted peak (text in flight, a few chunks of at
                most 4 MB per worker, is left out).
Projection target: OpenWebText's train split, owt_train.txt, --target-bytes 11,920,510,000 bytes
(11.92 GB = 11.1 GiB, as gigatoken's README measures it, 11,920.51 MB), vocab --target-vocab 32,000, on --workers cores (this machine) and on 16.
It extrapolates a corpus of manuals, a Bible, novels and fortunes to web text, ~60x beyond the
largest measurement: web text has more distinct words per byte (names, URLs, numbers), so the
distinct count, merge time and memory are likely underestimates.
"""

from __future__ import annotations

import argparse
import collections
import gzip
import hashlib
import importlib.util
import json
import math
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_CORPUS = REPO.parent / "shared" / "corpora" / "bench_50mb.txt.gz"
if importlib.util.find_spec("cs336_core") is None:  # not installed (or installed elsewhere): this checkout's
    sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/, for bench_tokenizer

EOT = "<|endoftext|>"
DOC_END = b"\n" + EOT.encode() + b"\n"
OWT_TRAIN_BYTES = 11_920_510_000  # owt_train.txt: 11,920.51 MB in gigatoken's README (11.1 GiB)
WORD = re.compile(rb"[A-Za-z]{4,}")


# ----------------------------------------------------------------------------------------------
# Corpora


def prefix_at_boundary(data: bytes, size: int) -> bytes:
    """The longest prefix of `data` of at most `size` bytes that ends on a document boundary
    (all of `data` when it is no longer than `size`)."""
    if size >= len(data):
        return data
    end = data.rfind(DOC_END, 0, size - len(DOC_END) + 1)
    if end < 0:
        raise SystemExit(f"no document boundary within the first {size} bytes")
    return data[:end + len(DOC_END)]


def renamings(word_counts: dict[bytes, int], copy: int, fraction: float, max_count: int) -> dict[bytes, bytes]:
    """Which words copy `copy` renames, and to what (see the module docstring), given the base's
    counts of words (WORD matches)."""
    renamed = {}
    for word, count in word_counts.items():
        if count > max_count:
            continue
        digest = hashlib.blake2b(word, digest_size=8, key=b"copy%d" % copy).digest()
        if int.from_bytes(digest[:4], "little") < fraction * 2**32:
            renamed[word] = word + bytes([ord("a") + digest[4] % 26])
    return renamed


def varied_copy(base: bytes, word_counts: dict[bytes, int], copy: int, fraction: float, max_count: int) -> bytes:
    """`base` with the words `renamings` picks renamed; special tokens untouched."""
    table = renamings(word_counts, copy, fraction, max_count)
    special = EOT.encode()

    def rename(match: re.Match) -> bytes:
        word = match.group()
        return table.get(word, word)

    return special.join(WORD.sub(rename, piece) for piece in base.split(special))


def build_corpora(source: Path, sizes_mb: list[float], base_mb: float | None, fraction: float, max_count: int,
                  work: Path) -> list[dict]:
    opener = gzip.open if source.suffix == ".gz" else open
    with opener(source, "rb") as f:
        data = f.read()
    base = prefix_at_boundary(data, int(base_mb * 1e6)) if base_mb else data
    corpora = []
    base_limit = base_mb * 1e6 if base_mb else len(data) * 1.01  # 50 MB is the whole 49.9 MB corpus
    for size_mb in sizes_mb:
        path = work / f"corpus_{size_mb:g}mb.txt"
        if size_mb * 1e6 <= base_limit:
            text = prefix_at_boundary(base, int(size_mb * 1e6))
            kind = "prefix" if len(text) < len(data) else "whole corpus"
        else:
            copies = max(2, round(size_mb * 1e6 / len(base)))
            word_counts = collections.Counter(WORD.findall(base))
            with open(path, "wb") as out:
                out.write(base)
                for copy in range(2, copies + 1):
                    out.write(varied_copy(base, word_counts, copy, fraction, max_count))
            text = None
            kind = f"{copies} copies of the {len(base):,}-byte base, {copies - 1} varied"
        if text is not None:
            path.write_bytes(text)
        corpora.append({"size_mb": size_mb, "path": str(path), "bytes": path.stat().st_size, "kind": kind})
    return corpora


# ----------------------------------------------------------------------------------------------
# The children: `bench_bpe_scaling.py --child TASK JSON`


def _cpu_seconds() -> float:
    import resource

    own, reaped = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + reaped.ru_utime + reaped.ru_stime


def _maxrss_bytes() -> int:
    """This process's peak RSS so far: VmHWM (ru_maxrss would not do: Linux carries it over from the
    parent across exec); the current RSS where /proc is missing."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    import psutil

    return psutil.Process().memory_info().rss


def child_train(args: dict) -> dict:
    import cs336_core.bpe.train as train_module
    from cs336_core.bpe import train_bpe

    marks: dict = {}

    def wrapped(original):
        def counted(*a, **k):
            result = original(*a, **k)
            marks.setdefault("counted_at", time.perf_counter())
            marks.setdefault("counted_cpu", _cpu_seconds())
            marks.setdefault("counted_maxrss", _maxrss_bytes())
            try:
                marks.setdefault("distinct", len(result))
            except TypeError:
                pass
            return result
        return counted

    for name in ("count_pretokens", "count_pretokens_native"):
        if callable(getattr(train_module, name, None)):
            setattr(train_module, name, wrapped(getattr(train_module, name)))

    def progress(phase: str, done: int, total: int) -> None:
        now = time.perf_counter()
        if phase == "pretokenize":
            marks["last_pretokenize_at"], marks["last_pretokenize_cpu"] = now, _cpu_seconds()
            marks["last_pretokenize_maxrss"] = _maxrss_bytes()
        elif phase == "merge":
            marks.setdefault("first_merge_report_at", now)

    cpu_start = _cpu_seconds()
    start = time.perf_counter()
    vocab, merges = train_bpe(args["corpus"], args["vocab_size"], [EOT], num_workers=args["workers"], progress=progress)
    end = time.perf_counter()
    cpu_end = _cpu_seconds()
    if "counted_at" in marks:
        split, split_at, split_cpu, split_rss = "counting's return", marks["counted_at"], marks["counted_cpu"], marks["counted_maxrss"]
    else:
        split, split_at = "last pretokenize report", marks.get("last_pretokenize_at", start)
        split_cpu, split_rss = marks.get("last_pretokenize_cpu", cpu_start), marks.get("last_pretokenize_maxrss", 0)
    try:
        from cs336_core.bpe.accelerator import FASTTRAIN
        path_used = "C accelerator (_fasttrain)" if FASTTRAIN is not None else "pure Python"
    except ImportError:
        path_used = "unknown"
    return {"seconds": end - start, "pretokenize_seconds": split_at - start, "merge_seconds": end - split_at,
            "pretokenize_cpu": split_cpu - cpu_start, "merge_cpu": cpu_end - split_cpu, "count_phase_maxrss": split_rss,
            "maxrss": _maxrss_bytes(), "split": split, "distinct": marks.get("distinct"), "merges": len(merges),
            "vocab": len(vocab), "train_path": path_used}


def child_count(args: dict) -> dict:
    from cs336_core.bpe.counting import count_pretokens

    start = time.perf_counter()
    counts = count_pretokens(Path(args["corpus"]), [EOT], args["workers"])
    return {"distinct": len(counts), "seconds": time.perf_counter() - start}


CHILDREN = {"train": child_train, "count": child_count}


def run_child(task: str, args: dict) -> dict:
    import resource

    from bench_tokenizer import communicate_with_peak_rss

    cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    process = subprocess.Popen([sys.executable, __file__, "--child", task, json.dumps(args)], stdout=subprocess.PIPE,
                               text=True, cwd=REPO)
    stdout, peak = communicate_with_peak_rss(process)
    if process.returncode != 0:
        raise SystemExit(f"{task} {args} failed with exit code {process.returncode}")
    result = json.loads([line for line in stdout.splitlines() if line.startswith("{")][-1])
    cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    result["peak_rss"] = peak
    result["cpu"] = (cpu_after.ru_utime + cpu_after.ru_stime) - (cpu_before.ru_utime + cpu_before.ru_stime)
    return result


# ----------------------------------------------------------------------------------------------
# Fits and projection


def fit_through_origin(xs: list[float], ys: list[float]) -> float:
    """Slope s minimising sum (y - s x)^2."""
    return sum(x * y for x, y in zip(xs, ys)) / sum(x * x for x in xs)


def fit_line(xs: list[float], ys: list[float]) -> tuple[float, float]:
    """(intercept, slope) of the least-squares line; the mean and no slope for a single x."""
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    if sxx == 0:
        return my, 0.0
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx
    return my - slope * mx, slope


def fit_loglinear(rows: list[tuple[float, ...]]) -> list[float]:
    """Least squares of log y = c0 + c1 log x1 + c2 log x2 + ... over rows (y, x1, x2, ...);
    a predictor that never varies gets coefficient 0. Returns [c0, c1, ...]."""
    import numpy as np

    y = np.log([r[0] for r in rows])
    columns = [np.ones(len(rows))]
    varying = []
    for j in range(1, len(rows[0])):
        values = np.log([r[j] for r in rows])
        varying.append(bool(np.ptp(values) > 1e-12))
        if varying[-1]:
            columns.append(values)
    solution, *_ = np.linalg.lstsq(np.stack(columns, axis=1), y, rcond=None)
    coefficients, k = [float(solution[0])], 1
    for used in varying:
        coefficients.append(float(solution[k]) if used else 0.0)
        k += used
    return coefficients


def fit_all(runs: list[dict], workers: int, target_vocab: int) -> dict:
    corpora = {r["bytes"]: r["distinct"] for r in runs}
    heaps_log_k, heaps_beta = fit_loglinear([(d, b) for b, d in corpora.items()])
    pre_core_seconds_per_byte = fit_through_origin([r["bytes"] for r in runs], [r["pretokenize_cpu"] for r in runs])
    pre_wall_per_byte = fit_through_origin([r["bytes"] for r in runs], [r["pretokenize_seconds"] for r in runs])
    merge_log_c, merge_a, merge_g = fit_loglinear([(max(r["merge_seconds"], 1e-6), r["distinct"], r["merges"]) for r in runs])
    at_target = [r for r in runs if r["vocab_size"] == target_vocab] or runs
    rss0, rss1 = fit_line([r["distinct"] for r in at_target], [r["peak_rss"] for r in at_target])
    count0, count1 = fit_line([r["distinct"] for r in at_target], [r["count_phase_maxrss"] for r in at_target])
    return {"heaps_K": math.exp(heaps_log_k), "heaps_beta": heaps_beta,
            "pretokenize_core_seconds_per_byte": pre_core_seconds_per_byte,
            "pretokenize_wall_seconds_per_byte_at_workers": pre_wall_per_byte, "workers": workers,
            "merge_c": math.exp(merge_log_c), "merge_distinct_exponent": merge_a, "merge_merges_exponent": merge_g,
            "peak_rss_intercept": rss0, "peak_rss_per_distinct": rss1,
            "count_rss_intercept": count0, "count_rss_per_distinct": count1,
            "memory_fit_vocab": at_target[0]["vocab_size"]}


def project(fit: dict, target_bytes: int, target_vocab: int, cores: int) -> dict:
    def distinct_at(num_bytes: float) -> float:
        return fit["heaps_K"] * num_bytes ** fit["heaps_beta"]

    distinct = distinct_at(target_bytes)
    merges = target_vocab - 257
    pretokenize = fit["pretokenize_core_seconds_per_byte"] * target_bytes / cores
    merge = fit["merge_c"] * distinct ** fit["merge_distinct_exponent"] * merges ** fit["merge_merges_exponent"]
    workers = fit["workers"]
    tables = distinct + cores * distinct_at(target_bytes / cores) - workers * distinct_at(target_bytes / workers)
    count_rss = fit["count_rss_intercept"] + fit["count_rss_per_distinct"] * tables
    peak = max(count_rss, fit["peak_rss_intercept"] + fit["peak_rss_per_distinct"] * distinct)
    return {"cores": cores, "bytes": target_bytes, "vocab": target_vocab, "merges": merges, "distinct": distinct,
            "pretokenize_seconds": pretokenize, "merge_seconds": merge, "seconds": pretokenize + merge,
            "count_phase_rss": count_rss, "peak_rss": peak}


# ----------------------------------------------------------------------------------------------
# Output


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def print_measurements(runs: list[dict]) -> None:
    print("\n| corpus | bytes | distinct pre-tokens | vocab | merges | wall s | CPU s | pre-tokenize wall s | "
          "pre-tokenize CPU s | merge wall s | peak RSS MB | RSS at counting's end MB |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in runs:
        print(f"| {r['size_mb']:g} MB ({r['kind']}) | {r['bytes']:,} | {r['distinct']:,} | {r['vocab_size']:,} | "
              f"{r['merges']:,} | {r['seconds']:.2f} | {r['cpu']:.2f} | {r['pretokenize_seconds']:.2f} | "
              f"{r['pretokenize_cpu']:.2f} | {r['merge_seconds']:.2f} | {r['peak_rss'] / 1e6:.0f} | "
              f"{r['count_phase_maxrss'] / 1e6:.0f} |")


def print_fits(fit: dict) -> None:
    print(f"\nFits: distinct = {fit['heaps_K']:.3g} x bytes^{fit['heaps_beta']:.3f} (Heaps); pre-tokenize "
          f"{fit['pretokenize_core_seconds_per_byte'] * 1e6:.3f} core-s per MB "
          f"({fit['pretokenize_wall_seconds_per_byte_at_workers'] * 1e6:.3f} wall s per MB on {fit['workers']} workers); "
          f"merge wall = {fit['merge_c']:.3g} x distinct^{fit['merge_distinct_exponent']:.3f} x "
          f"merges^{fit['merge_merges_exponent']:.3f} s; peak RSS = {fit['peak_rss_intercept'] / 1e6:.0f} MB + "
          f"{fit['peak_rss_per_distinct']:.0f} B x distinct; counting's RSS = {fit['count_rss_intercept'] / 1e6:.0f} MB + "
          f"{fit['count_rss_per_distinct']:.0f} B x distinct (memory fits at vocab {fit['memory_fit_vocab']:,})")


def print_projection(projections: list[dict]) -> None:
    print("\n| projection | bytes | distinct pre-tokens (Heaps) | merges | pre-tokenize | merge (1 thread) | total | "
          "counting-phase RSS | peak RSS |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for p in projections:
        print(f"| OpenWebText train, vocab {p['vocab']:,}, {p['cores']} cores | {p['bytes'] / 1e9:.2f} GB | "
              f"{p['distinct']:,.0f} | {p['merges']:,} | {_duration(p['pretokenize_seconds'])} | "
              f"{_duration(p['merge_seconds'])} | {_duration(p['seconds'])} | {p['count_phase_rss'] / 1e9:.2f} GB | "
              f"{p['peak_rss'] / 1e9:.2f} GB |")


def main() -> None:
    if len(sys.argv) >= 2 and sys.argv[1] == "--child":
        print(json.dumps(CHILDREN[sys.argv[2]](json.loads(sys.argv[3]))), flush=True)
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--sizes", default="5,50,200", help="corpus sizes in MB (10^6 bytes); fractions allowed")
    parser.add_argument("--base-mb", type=float, default=None,
                        help="the prefix (MB) that larger sizes copy; default the whole corpus")
    parser.add_argument("--vocab-sizes", default="32000,10000")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--work-dir", type=Path, default=None, help="where the corpora go (kept); default a temporary folder")
    parser.add_argument("--vary-fraction", type=float, default=0.55)
    parser.add_argument("--vary-max-count", type=int, default=50)
    parser.add_argument("--target-bytes", type=int, default=OWT_TRAIN_BYTES)
    parser.add_argument("--target-vocab", type=int, default=32_000)
    parser.add_argument("--project-cores", default="", help="core counts to project to (default: --workers and 16)")
    parser.add_argument("--json-out", type=Path, default=None)
    opts = parser.parse_args()
    if not opts.corpus.is_file():
        raise SystemExit(f"corpus not found: {opts.corpus}")
    sizes = [float(s) for s in opts.sizes.split(",") if s.strip()]
    vocab_sizes = [int(v) for v in opts.vocab_sizes.split(",") if v.strip()]
    cores = [int(c) for c in opts.project_cores.split(",") if c.strip()] or [opts.workers, 16]

    if opts.work_dir is not None:
        work = opts.work_dir.resolve()
        if work == REPO or REPO in work.parents:
            raise SystemExit(f"--work-dir {work} is inside the repository: the corpora must never be committed")
        work.mkdir(parents=True, exist_ok=True)
    else:
        work = Path(tempfile.mkdtemp(prefix="bench_bpe_scaling_"))
    try:
        start = time.perf_counter()
        corpora = build_corpora(opts.corpus, sizes, opts.base_mb, opts.vary_fraction, opts.vary_max_count, work)
        print(f"corpora built in {time.perf_counter() - start:.1f} s: "
              + "; ".join(f"{c['size_mb']:g} MB = {c['bytes']:,} bytes ({c['kind']})" for c in corpora), flush=True)
        print(f"{opts.workers} workers; python {platform.python_version()}; {os.cpu_count()} cpus; {platform.platform()}",
              flush=True)
        runs = []
        for corpus in corpora:
            distinct = None
            for vocab_size in vocab_sizes:
                result = run_child("train", {"corpus": corpus["path"], "vocab_size": vocab_size, "workers": opts.workers})
                result["distinct_from"] = "counting's result in training"
                if result["distinct"] is None:
                    if distinct is None:
                        distinct = run_child("count", {"corpus": corpus["path"], "workers": opts.workers})["distinct"]
                    result["distinct"], result["distinct_from"] = distinct, "a separate count_pretokens child"
                runs.append({**corpus, "vocab_size": vocab_size, **result})
                print(f"  {corpus['size_mb']:g} MB, vocab {vocab_size}: {result['seconds']:.2f} s "
                      f"(pre-tokenize {result['pretokenize_seconds']:.2f} s, merge {result['merge_seconds']:.2f} s), "
                      f"{result['distinct']:,} distinct pre-tokens, peak RSS {result['peak_rss'] / 1e6:.0f} MB "
                      f"[{result['train_path']}; split at {result['split']}]", flush=True)
        fit = fit_all(runs, opts.workers, opts.target_vocab)
        projections = [project(fit, opts.target_bytes, opts.target_vocab, n) for n in cores]
        print_measurements(runs)
        print_fits(fit)
        print_projection(projections)
        print(f"\nProjection assumptions: OpenWebText train = {opts.target_bytes:,} bytes (11.1 GiB); pre-tokenize "
              f"scales linearly over cores and reading the file keeps up; merge single-threaded; distinct pre-tokens "
              f"from the Heaps fit above (likely low for web text); memory per this script's docstring.")
        summary = {"corpus": str(opts.corpus), "workers": opts.workers, "python": platform.python_version(),
                   "cpus": os.cpu_count(), "vary_fraction": opts.vary_fraction, "vary_max_count": opts.vary_max_count,
                   "measurements": [{k: v for k, v in r.items() if k != "path"} for r in runs], "fit": fit,
                   "projection": projections}
        line = json.dumps(summary)
        print("JSON " + line)
        if opts.json_out:
            opts.json_out.write_text(line + "\n", encoding="utf-8")
    finally:
        if opts.work_dir is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
