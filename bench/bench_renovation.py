"""This tree against an earlier commit, side by side: did a refactor cost speed?

    python bench/bench_renovation.py --old 7239f61 --corpus ../shared/corpora/bench_50mb.txt.gz

The earlier commit is checked out into a temporary git worktree (its C accelerator built in place),
and every measurement runs in a fresh subprocess whose `PYTHONPATH` puts one tree or the other first,
alternating old/new per repeat so that load from other processes hits both alike. Measured: BPE
training (vocab 10,000 + <|endoftext|>, 2 workers) and single-process `Tokenizer.encode` on a prefix
of the corpus, and training steps of the handout's TinyStories model (batch 8, context 256). Prints
medians and new/old ratios as a Markdown table (ratio > 1: the new tree is faster).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

# Each probe prints one JSON object; it imports cs336_core from whichever tree is first on the path.
PROBE = r"""
import json, sys, time
import cs336_core
kind, corpus, work = sys.argv[1], sys.argv[2], sys.argv[3]
out = {"tree": cs336_core.__file__}
if kind == "bpe":
    from cs336_core import train_bpe, Tokenizer
    start = time.perf_counter()
    vocab, merges = train_bpe(corpus, 10_000, ["<|endoftext|>"], num_workers=2)
    out["train_s"] = time.perf_counter() - start
    tokenizer = Tokenizer(vocab, merges, ["<|endoftext|>"])
    text = open(corpus, encoding="utf-8").read()
    start = time.perf_counter()
    ids = tokenizer.encode(text)
    seconds = time.perf_counter() - start
    out["encode_mb_s"] = len(text.encode()) / seconds / 1e6
    out["tokens"] = len(ids)
else:
    import torch
    from cs336_core import AdamW, ModelConfig, TransformerLM, cross_entropy
    torch.manual_seed(0)
    config = ModelConfig(vocab_size=10_000, context_length=256, d_model=512, num_layers=4, num_heads=16,
                         d_ff=1344, rope_theta=10_000.0)
    model = TransformerLM.from_config(config)
    optimizer = AdamW(model.parameters(), lr=1e-3)
    x = torch.randint(0, 10_000, (8, 257))
    def step():
        loss = cross_entropy(model(x[:, :-1]), x[:, 1:])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    step()  # warm-up
    start = time.perf_counter()
    for _ in range(2):
        step()
    out["train_tok_s"] = 2 * 8 * 256 / (time.perf_counter() - start)
print(json.dumps(out))
"""


def run_probe(tree: Path, kind: str, corpus: Path, work: Path) -> dict:
    env = dict(os.environ, PYTHONPATH=str(tree))
    done = subprocess.run([sys.executable, "-c", PROBE, kind, str(corpus), str(work)], env=env, cwd=work,
                          capture_output=True, text=True, check=True)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    if not result["tree"].startswith(str(tree)):
        raise RuntimeError(f"the probe imported {result['tree']}, not the tree under test {tree}")
    return result


def prefix_of(corpus: Path, prefix_bytes: int, dest: Path) -> Path:
    opener = gzip.open if corpus.read_bytes()[:2] == b"\x1f\x8b" else open
    with opener(corpus, "rb") as f:
        data = f.read(prefix_bytes)
    dest.write_bytes(data.decode("utf-8", errors="ignore").encode("utf-8"))
    return dest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--old", required=True, help="the earlier commit to compare against (e.g. 7239f61)")
    parser.add_argument("--corpus", type=Path, required=True, help="text or .gz corpus (read-only)")
    parser.add_argument("--prefix-bytes", type=int, default=5_000_000, help="bytes of the corpus to use")
    parser.add_argument("--repeats", type=int, default=3, help="alternating old/new rounds")
    parser.add_argument("--skip-model", action="store_true", help="tokenizer only")
    args = parser.parse_args(argv)
    if not args.corpus.is_file():
        parser.error(f"--corpus {args.corpus}: no such file")

    with tempfile.TemporaryDirectory(prefix="bench_renovation_") as tmp:
        tmp = Path(tmp)
        old = tmp / "old"
        subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", "-q", str(old), args.old], check=True)
        try:
            subprocess.run([sys.executable, "setup.py", "-q", "build_ext", "--inplace"], cwd=old, check=True,
                           capture_output=True)
            corpus = prefix_of(args.corpus, args.prefix_bytes, tmp / "corpus.txt")
            trees = {"old": old, "new": REPO}
            results: dict[str, dict[str, list[float]]] = {"old": {}, "new": {}}
            kinds = ["bpe"] + ([] if args.skip_model else ["model"])
            for repeat in range(args.repeats):
                order = ("old", "new") if repeat % 2 == 0 else ("new", "old")
                for kind in kinds:
                    for name in order:
                        out = run_probe(trees[name], kind, corpus, tmp)
                        for key, value in out.items():
                            if isinstance(value, float):
                                results[name].setdefault(key, []).append(value)
                        print(f"repeat {repeat + 1} {name} {kind}: "
                              + ", ".join(f"{k} {v:.3g}" for k, v in out.items() if isinstance(v, float)),
                              file=sys.stderr)
        finally:
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(old)], check=False)

    higher_is_better = {"encode_mb_s", "train_tok_s"}
    print(f"| measure | old ({args.old}) median | new median | new vs old |\n| --- | ---: | ---: | ---: |")
    for key in results["new"]:
        old_m, new_m = statistics.median(results["old"][key]), statistics.median(results["new"][key])
        speedup = new_m / old_m if key in higher_is_better else old_m / new_m
        print(f"| {key} | {old_m:.3f} | {new_m:.3f} | {speedup:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
