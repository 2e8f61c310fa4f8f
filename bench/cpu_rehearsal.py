"""A rehearsal of the `cpu` preset at its real shapes on local text: a benchmark, not a test.

    nice python bench/cpu_rehearsal.py                                   # defaults: ~15 min on 2 cores
    python bench/cpu_rehearsal.py --corpus my.txt.gz --slice-mb 5 --steps 10 --out /tmp/rehearsal

The `cpu` preset trains the handout's tokenizers (10K on TinyStories, 32K on OpenWebText), encodes
both corpora and trains the handout's 17M-parameter model (22.7M with the output head; vocab 10,000,
context 256, d_model 512, 4 layers, 16 heads, d_ff 1,344) for 4,883 steps of 32 x 256 = 40M tokens.
Here the corpora are stand-ins cut from local real text (default ../shared/corpora/bench_50mb.txt.gz,
read its README): the first --slice-mb MB of whole documents is the "stories" stand-in, the next
--slice-mb MB the "web" one. Stages, each in its own process so that its peak memory (the RSS of
its process tree, sampled every 20 ms with psutil) and CPU time are its own:
  split            the two stand-ins, plus --valid-mb MB of stories validation text
  bpe_10k / bpe_32k  train_bpe on the stories / web stand-in (--workers processes)
  encode_10k / encode_32k  encode_file of each stand-in with its tokenizer (and the validation text)
  train            cs336_core.training.train(): --steps steps of the handout model, batch 32 x 256,
                   AdamW, lr 3e-3 cosine, clipping (the preset's settings), float32, --threads threads
  eval             forward passes over --eval-batches validation batches of 32 x 256 (the preset
                   evaluates 20 of them every 250 steps and at the end)
Then the projected wall-clock of the preset's 4,883 steps with its 20 evaluations on this machine.
MFU is against the best fp32 2048^2 torch.matmul rate measured next to the training stage.

Writes <out>/cpu_rehearsal.json and <out>/cpu_rehearsal.md; the stand-ins, tokenizers, token files
and the run directory go under <out>/work and are deleted at the end unless --keep-work. Everything
here derives from the corpus, so --out must not be a tracked location of this repository (the
default, bench/results/, is git-ignored).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
DEFAULT_CORPUS = REPO.parent / "shared" / "corpora" / "bench_50mb.txt.gz"
DEFAULT_OUT = REPO / "bench" / "results" / "cpu_rehearsal"
EOT = "<|endoftext|>"
MB = 1_000_000

# The `cpu` preset (cs336_assets/presets.py), restated so this benchmark needs no Dagster import.
PRESET_STEPS = 4_883
PRESET_BATCH = 32
PRESET_LR = 3e-3
PRESET_EVAL_INTERVAL = 250
PRESET_EVAL_BATCHES = 20
HANDOUT_MODEL = dict(vocab_size=10_000, context_length=256, d_model=512, num_layers=4, num_heads=16, d_ff=1344,
                     rope_theta=10_000.0)
VOCABS = {"stories": 10_000, "web": 32_000}


# ----------------------------------------------------------------------------------------------
# Stages, each run in a child process: `cpu_rehearsal.py --stage NAME JSON` prints one JSON line


def stage_split(a: dict) -> dict:
    """Whole documents from the corpus: stories, web, then the stories validation text, in that order."""
    from cs336_core.files import open_binary

    targets = [("stories", a["slice_bytes"]), ("web", a["slice_bytes"]), ("stories_valid", a["valid_bytes"])]
    work = Path(a["work"])
    written = {name: 0 for name, _ in targets}
    documents = {name: 0 for name, _ in targets}
    separator = EOT.encode()
    start = time.perf_counter()
    index, buffer = 0, b""
    outputs = {name: open(work / f"{name}.txt", "wb") for name, _ in targets}
    try:
        with open_binary(a["corpus"]) as stream:
            while index < len(targets):
                chunk = stream.read(4 * MB)
                buffer += chunk
                *whole, buffer = buffer.split(separator)
                if not chunk:  # end of the corpus: what is left has no separator after it
                    whole, buffer = whole + ([buffer] if buffer.strip() else []), b""
                for document in whole:
                    if index == len(targets):
                        break
                    name, target = targets[index]
                    outputs[name].write(document + separator)
                    written[name] += len(document) + len(separator)
                    documents[name] += 1
                    if written[name] >= target:
                        index += 1
                if not chunk:
                    break
    finally:
        for f in outputs.values():
            f.close()
    if index < len(targets):
        short = targets[index][0]
        raise SystemExit(f"--corpus {a['corpus']} ran out of documents while filling the {short} stand-in: it holds "
                         f"{sum(written.values()):,} bytes, the slices need {sum(t for _, t in targets):,} "
                         f"(2 x --slice-mb + --valid-mb); use smaller slices or a larger corpus")
    return {"seconds": time.perf_counter() - start, "bytes": written, "documents": documents}


def stage_bpe(a: dict) -> dict:
    from cs336_core.tokenization import save_vocab_merges, train_bpe

    work = Path(a["work"])
    start = time.perf_counter()
    vocab, merges = train_bpe(work / f"{a['role']}.txt", a["vocab_size"], [EOT], num_workers=a["workers"])
    seconds = time.perf_counter() - start
    save_vocab_merges(vocab, merges, work / f"{a['role']}_vocab.json", work / f"{a['role']}_merges.txt")
    return {"seconds": seconds, "vocab": len(vocab), "merges": len(merges)}


def stage_encode(a: dict) -> dict:
    from cs336_core.tokenization import Tokenizer, encode_file

    work, role = Path(a["work"]), a["role"]
    tokenizer = Tokenizer.from_files(work / f"{role}_vocab.json", work / f"{role}_merges.txt", [EOT])
    result = encode_file(tokenizer, work / f"{role}.txt", work / f"{role}.npy", num_workers=a["workers"])
    out = {"seconds": result["seconds"], "tokens": result["tokens"], "bytes": result["bytes"], "dtype": result["dtype"]}
    if role == "stories":  # the validation text, untimed in the figures above
        out["valid_tokens"] = encode_file(tokenizer, work / "stories_valid.txt", work / "stories_valid.npy",
                                          num_workers=a["workers"])["tokens"]
    return out


def stage_train(a: dict) -> dict:
    import torch

    sys.path.insert(0, str(REPO / "bench"))
    from bench_model import matmul_peak_gflops
    from cs336_core.model import ModelConfig
    from cs336_core.training import TrainConfig, train
    from cs336_core.training.throughput import flops_per_token

    torch.set_num_threads(a["threads"])
    # The best of the rates measured before and after: the machine is shared, take the least disturbed.
    peaks = [matmul_peak_gflops()]
    model = ModelConfig(**HANDOUT_MODEL)
    run_dir = Path(a["work"]) / "run"
    shutil.rmtree(run_dir, ignore_errors=True)
    config = TrainConfig(
        train_path=str(Path(a["work"]) / "stories.npy"), out_dir=str(run_dir), model=model,
        batch_size=a["batch_size"], max_steps=a["steps"], lr_max=PRESET_LR, eval_every=0, eval_batches=1,
        log_every=max(1, a["steps"] // 10), checkpoint_every=0, device="cpu", resume=False,
        warmup_steps=max(1, a["steps"] // 20), peak_flops=peaks[0] * 1e9,
    )
    records = []
    start = time.perf_counter()
    result = train(config, callback=lambda r: records.append({k: r.get(k) for k in ("step", "train_loss",
                                                                                     "tokens_per_second")}))
    seconds = time.perf_counter() - start
    peaks.append(matmul_peak_gflops())
    peak = max(peaks) * 1e9
    tokens_per_s = result.tokens_per_second
    return {"seconds": seconds, "steps": result.steps, "status": result.status, "tokens": result.tokens,
            "tokens_per_s": tokens_per_s, "train_seconds": result.tokens / tokens_per_s,
            "step_seconds": result.tokens / tokens_per_s / result.steps,
            "mfu": tokens_per_s * flops_per_token(model) / peak, "peak_gflops": peak / 1e9,
            "peak_gflops_measured": peaks, "flops_per_token": flops_per_token(model),
            "train_reported_mfu": result.mfu, "final_train_loss": result.final_train_loss, "log": records,
            "threads": a["threads"]}


def stage_eval(a: dict) -> dict:
    import numpy as np
    import torch

    from cs336_core.data import validation_batches
    from cs336_core.model import ModelConfig, TransformerLM
    from cs336_core.optim import cross_entropy

    torch.set_num_threads(a["threads"])
    torch.manual_seed(0)
    model = TransformerLM(ModelConfig(**HANDOUT_MODEL)).eval()  # the cost does not depend on the weights
    tokens = np.load(Path(a["work"]) / "stories_valid.npy", mmap_mode="r")
    batches = validation_batches(tokens, a["batch_size"], HANDOUT_MODEL["context_length"], a["eval_batches"], 0,
                                 torch.device("cpu"))
    start = time.perf_counter()
    with torch.no_grad():
        losses = [cross_entropy(model(x), y).item() for x, y in batches]
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "batches": len(batches), "seconds_per_batch": seconds / len(batches),
            "mean_loss_untrained": sum(losses) / len(losses), "threads": a["threads"]}


STAGES = {"split": stage_split, "bpe": stage_bpe, "encode": stage_encode, "train": stage_train, "eval": stage_eval}


# ----------------------------------------------------------------------------------------------
# The parent: runs each stage in a child, samples its process tree, writes the report


def run_stage(kind: str, label: str, args: dict) -> dict:
    """Run one stage in a child process; its result plus wall s, CPU s and peak RSS of its process tree."""
    from bench_tokenizer import communicate_with_peak_rss  # bench/ is the script's own directory

    load_before = os.getloadavg()[0]
    times_before = os.times()
    start = time.perf_counter()
    process = subprocess.Popen([sys.executable, __file__, "--stage", kind, json.dumps(args)], stdout=subprocess.PIPE,
                               text=True, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    stdout, peak = communicate_with_peak_rss(process)
    wall = time.perf_counter() - start
    times_after = os.times()
    if process.returncode != 0:
        raise SystemExit(f"stage {label} failed (exit code {process.returncode}); its error is printed above")
    result = json.loads(stdout.strip().splitlines()[-1])
    cpu = (times_after.children_user - times_before.children_user
           + times_after.children_system - times_before.children_system)
    record = {"stage": label, "wall_s": wall, "cpu_s": cpu, "peak_rss_mb": peak / MB,
              "load_avg_1min_before": load_before, "load_avg_1min_after": os.getloadavg()[0], **result}
    print(f"{label}: {wall:.1f} s wall, {cpu:.1f} s CPU, peak RSS {peak / MB:.0f} MB", flush=True)
    return record


def check_out_dir(out: Path) -> None:
    """Refuse an --out inside this repository that git would track: the corpus must not be committed."""
    try:
        out.resolve().relative_to(REPO)
    except ValueError:
        return  # outside the repository
    ignored = subprocess.run(["git", "check-ignore", "-q", str(out)], cwd=REPO).returncode == 0
    if not ignored:
        raise SystemExit(f"--out {out} is inside the repository and not git-ignored; everything written there "
                         "derives from the corpus, which must not be committed: use bench/results/... or /tmp")


def projection(train: dict, evaluation: dict) -> dict:
    evals = PRESET_STEPS // PRESET_EVAL_INTERVAL + (PRESET_STEPS % PRESET_EVAL_INTERVAL != 0)  # + the final one
    train_s = PRESET_STEPS * train["step_seconds"]
    eval_s = evals * PRESET_EVAL_BATCHES * evaluation["seconds_per_batch"]
    tokens = PRESET_STEPS * PRESET_BATCH * HANDOUT_MODEL["context_length"]
    # The fastest logged window: what the steps cost when the shared machine's load let up, a
    # better guide to a quiet machine than the mean over the whole stage.
    best = max((r["tokens_per_second"] for r in train.get("log", []) if r.get("tokens_per_second")), default=None)
    return {"steps": PRESET_STEPS, "tokens": tokens,
            "evaluations": evals, "train_hours": train_s / 3600, "eval_hours": eval_s / 3600,
            "total_hours": (train_s + eval_s) / 3600,
            "best_window_tokens_per_s": best,
            "train_hours_at_best_window": tokens / best / 3600 if best else None,
            "excluded": "checkpoint writes (every 500 steps), logging, and the preset's tokenizer and encoding "
                        "stages on the full corpora"}


def render_markdown(report: dict) -> str:
    m, s = report["meta"], {r["stage"]: r for r in report["stages"]}
    lines = ["# CPU rehearsal of the `cpu` preset", "",
             f"Command: `{m['command']}`", "",
             f"Machine: {m['machine']}; Python {m['python']}, torch {m['torch']}; {m['started']}. "
             f"Corpus: {m['corpus']}; stand-ins of {m['slice_mb']:g} MB each (stories = the first "
             "whole documents, web = the next), the same mixed text in both.", "",
             "| stage | what | wall s | CPU s | peak RSS MB | rate | load avg (1 min) before/after |",
             "|---|---|---:|---:|---:|---|---|"]

    def row(key: str, what: str, rate: str) -> None:
        r = s[key]
        lines.append(f"| {key} | {what} | {r['wall_s']:.1f} | {r['cpu_s']:.1f} | {r['peak_rss_mb']:,.0f} | {rate} | "
                     f"{r['load_avg_1min_before']:.1f} / {r['load_avg_1min_after']:.1f} |")

    split = s["split"]
    row("split", f"{sum(split['bytes'].values()) / MB:.1f} MB of whole documents written",
        f"{sum(split['bytes'].values()) / MB / split['seconds']:.1f} MB/s")
    for role, vocab in VOCABS.items():
        key = f"bpe_{vocab // 1000}k"
        r = s[key]
        mb = split["bytes"][role] / MB
        row(key, f"train_bpe, vocab {vocab:,}, {mb:.1f} MB {role} stand-in, {m['workers']} workers",
            f"{mb / r['seconds']:.2f} MB/s (in-stage {r['seconds']:.1f} s)")
    for role, vocab in VOCABS.items():
        key = f"encode_{vocab // 1000}k"
        r = s[key]
        row(key, f"encode_file, {role} stand-in with the {vocab // 1000}K tokenizer, {m['workers']} workers: "
                 f"{r['tokens']:,} tokens, {r['bytes'] / r['tokens']:.2f} bytes/token",
            f"{r['tokens'] / r['seconds']:,.0f} tokens/s, {r['bytes'] / MB / r['seconds']:.2f} MB/s")
    t = s["train"]
    row("train", f"train(): {t['steps']} steps of batch {m['batch_size']} x 256, handout model, fp32, "
                 f"{t['threads']} threads",
        f"{t['tokens_per_s']:,.0f} tokens/s, {t['step_seconds']:.2f} s/step, MFU {t['mfu']:.1%}")
    e = s["eval"]
    row("eval", f"{e['batches']} validation batches of {m['batch_size']} x 256, no grad",
        f"{e['seconds_per_batch']:.2f} s/batch")
    p = report["projection"]
    lines += ["", f"MFU: tokens/s x {t['flops_per_token'] / 1e6:.1f} MFLOPs per token (3 x forward matmuls) / "
                  f"{t['peak_gflops']:.1f} GFLOP/s, the best fp32 2048^2 matmul rate measured before and after "
                  f"training ({', '.join(f'{g:.1f}' for g in t['peak_gflops_measured'])}). Loss over the "
                  f"{t['steps']} steps (step: mean loss of the window, tokens/s): "
                  + ", ".join(f"{r['step']}: {r['train_loss']:.2f}, {r['tokens_per_second']:,.0f}" for r in t["log"])
                  + ".", "",
              f"Projected `cpu` preset on this machine: {p['steps']:,} steps ({p['tokens']:,} tokens) = "
              f"**{p['train_hours']:.1f} h** of training + {p['evaluations']} evaluations of "
              f"{PRESET_EVAL_BATCHES} batches = {p['eval_hours']:.1f} h, **{p['total_hours']:.1f} h** in all "
              f"(excluded: {p['excluded']})."]
    if p.get("best_window_tokens_per_s"):
        lines += ["", f"At the fastest logged window ({p['best_window_tokens_per_s']:,.0f} tokens/s) the training "
                      f"alone would take {p['train_hours_at_best_window']:.1f} h: the load of a shared machine moves "
                      "these figures by 2x or more (see the load averages)."]
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS, help="text or .gz, documents separated by "
                        f"{EOT} (default: {DEFAULT_CORPUS})")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"report directory (default: {DEFAULT_OUT})")
    parser.add_argument("--slice-mb", type=float, default=20.0, help="MB of each stand-in (default 20)")
    parser.add_argument("--valid-mb", type=float, default=1.0, help="MB of stories validation text (default 1)")
    parser.add_argument("--steps", type=int, default=50,
                        help="training steps (default 50: about 10 s each on 2 cores, so ~9 minutes)")
    parser.add_argument("--batch-size", type=int, default=PRESET_BATCH)
    parser.add_argument("--eval-batches", type=int, default=4,
                        help="validation batches timed (default 4; the projection scales to the preset's 20)")
    parser.add_argument("--workers", type=int, default=2, help="tokenizer worker processes (default 2)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads for training/eval (default 2)")
    parser.add_argument("--keep-work", action="store_true", help="keep <out>/work (stand-ins, tokens, run)")
    args = parser.parse_args(argv)
    if not args.corpus.is_file():
        parser.error(f"--corpus {args.corpus} is not a file (the default is described in ../shared/corpora/README)")
    for name in ("slice_mb", "valid_mb"):
        if not getattr(args, name) > 0:
            parser.error(f"--{name.replace('_', '-')} must be positive, got {getattr(args, name)}")
    for name in ("steps", "batch_size", "eval_batches", "workers", "threads"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    return args


def main(argv: list[str] | None = None) -> int:
    if argv is None and len(sys.argv) > 1 and sys.argv[1] == "--stage":
        print(json.dumps(STAGES[sys.argv[2]](json.loads(sys.argv[3]))))
        return 0
    args = parse_args(argv)
    check_out_dir(args.out)
    import torch  # only for the versions reported; the stages import their own

    work = args.out / "work"
    work.mkdir(parents=True, exist_ok=True)
    common = {"work": str(work.resolve()), "workers": args.workers}
    report: dict[str, Any] = {"meta": {
        "command": " ".join(["python", "bench/cpu_rehearsal.py", *(argv if argv is not None else sys.argv[1:])]),
        "machine": f"{os.cpu_count()} CPUs ({platform.processor() or platform.machine()}), "
                   f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB RAM",
        "python": platform.python_version(), "torch": torch.__version__,
        "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "corpus": str(args.corpus), "slice_mb": args.slice_mb,
        "batch_size": args.batch_size, "workers": args.workers}, "stages": []}
    stages = report["stages"]
    stages.append(run_stage("split", "split", {"corpus": str(args.corpus.resolve()), **common,
                                               "slice_bytes": int(args.slice_mb * MB),
                                               "valid_bytes": int(args.valid_mb * MB)}))
    for role, vocab in VOCABS.items():
        stages.append(run_stage("bpe", f"bpe_{vocab // 1000}k", {**common, "role": role, "vocab_size": vocab}))
    for role, vocab in VOCABS.items():
        stages.append(run_stage("encode", f"encode_{vocab // 1000}k", {**common, "role": role}))
    run = {**common, "threads": args.threads, "batch_size": args.batch_size}
    stages.append(run_stage("train", "train", {**run, "steps": args.steps}))
    stages.append(run_stage("eval", "eval", {**run, "eval_batches": args.eval_batches}))
    by_name = {r["stage"]: r for r in stages}
    report["projection"] = projection(by_name["train"], by_name["eval"])
    report["meta"]["finished"] = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    from cs336_core.files import atomic_write_json, atomic_write_text

    atomic_write_json(args.out / "cpu_rehearsal.json", report)
    markdown = render_markdown(report)
    atomic_write_text(args.out / "cpu_rehearsal.md", markdown)
    if not args.keep_work:
        shutil.rmtree(work)
    print(markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
