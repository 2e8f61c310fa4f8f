"""`train_bpe_tinystories`, `train_bpe_expts_owt` and `tokenizer_experiments` in prose, from the
tokenizer assets' stats.json (`cs336_core.tokenizer_profile.train_tokenizer`) and the experiments'
rows (`cs336_core.tokenizer_experiments.compare_tokenizers`)."""

from __future__ import annotations

from typing import Mapping, Sequence


def describe_token(token: str) -> str:
    """What kind of string a rendered token (␣ for a space) is, in a few words."""
    body = token.lstrip("␣")
    if body and len(set(body)) <= 3 and not any(ch.isalnum() for ch in body):
        return "a run of punctuation repeated verbatim in the corpus (a table rule or separator line)"
    if token.startswith("␣") and body.isalpha():
        return "a whole word with its leading space"
    if body.isalpha():
        return "a word (or word piece) without a leading space"
    if "␣" in body:
        return "several words merged into one token (a phrase frequent enough to earn its own merges)"
    return "a mixed string of letters and symbols"


def _longest(stats: Mapping, n: int = 5) -> str:
    return ", ".join(f"`{t['token']}` ({t['bytes']} B)" for t in stats["longest_tokens"][:n])


def _profile(stats: Mapping) -> str:
    phases = stats.get("phase_seconds") or {}
    if not phases:
        return "No per-phase timings were recorded."
    total = sum(phases.values()) or 1.0
    parts = ", ".join(f"{phase} {seconds:.2f} s ({100 * seconds / total:.0f}%)" for phase, seconds in phases.items())
    slowest = max(phases, key=phases.get)
    return (f"Timed per phase: {parts}. The largest part is **{slowest}**. Pre-tokenization runs the GPT-2 "
            f"regex over every byte of the corpus (in parallel over chunks), so it grows with the corpus; the "
            f"merge loop works on the distinct pre-tokens only and updates pair counts incrementally, so it "
            f"grows with the vocabulary and the number of distinct words.")


def train_bpe_markdown(stats: Mapping, label: str) -> str:
    """(a) time, memory, longest token and whether it makes sense; (b) the profile. `label` names
    the text, e.g. "generated-stories"."""
    top = stats["longest_tokens"][0]
    return (f"(a) Trained on {stats['train_bytes']:,} bytes of {label} text to {stats['vocab_size']:,} tokens "
            f"({stats['merges']:,} merges) in **{stats['training_seconds']} s**, needing at most "
            f"**{stats['peak_memory_mb']} MB** beyond the process's baseline (worker processes included). The "
            f"longest token is `{top['token']}` ({top['bytes']} bytes), {describe_token(top['token'])}; the "
            f"five longest are {_longest(stats)} (␣ marks a space). That makes sense: BPE merges what occurs "
            f"most often, so the longest tokens are strings the corpus repeats verbatim.\n\n"
            f"(b) {_profile(stats)}")


def compare_tokenizers_markdown(stories: Mapping, web: Mapping, labels: Mapping[str, str]) -> str:
    """train_bpe_expts_owt (b): the two tokenizers side by side."""
    kinds = {name: describe_token(stats["longest_tokens"][0]["token"]) for name, stats in
             (("stories", stories), ("web", web))}
    return (f"(b) The {labels['stories']} tokenizer's longest token is {kinds['stories']} ({_longest(stories, 3)}); "
            f"the {labels['web']} tokenizer's is {kinds['web']} ({_longest(web, 3)}). The stories' vocabulary "
            f"is small and repetitive, so its merges run out of new words and spend the vocabulary on whole "
            f"words; the web-like text is more varied, so its vocabulary holds more pieces of rarer words, "
            f"symbols and formatting.")


def _row(rows: Sequence[Mapping], tokenizer: str, text: str) -> Mapping:
    return next(r for r in rows if r["tokenizer"].split()[0] == tokenizer and r["text"] == text)


def _sources(row: Mapping) -> str:
    return " + ".join(f"{s['bytes']:,} B of {s['file']}" for s in row.get("large_sources", [])) or "n/a"


def tokenizer_experiments_markdown(rows: Sequence[Mapping], labels: Mapping[str, str], pile_bytes: int) -> str:
    """(a)-(d), saying for every number whether it comes from the handout's sample or the large one."""
    from cs336_core.reporting import markdown_table  # pandas: only when rendering

    handout = markdown_table([{k: r[k] for k in ("tokenizer", "text", "documents", "bytes", "tokens",
                                                  "bytes_per_token")} for r in rows])
    has_large = all("large_bytes" in r for r in rows)
    ss, ww, sw, ws = (_row(rows, t, x) for t, x in (("stories", "stories"), ("web", "web"), ("stories", "web"),
                                                    ("web", "stories")))
    key = "large_bytes_per_token" if has_large else "bytes_per_token"
    where = "the 1 MB sample" if has_large else "the handout's sample"
    large = ""
    if has_large:
        large = ("\n\n**Large sample** (whole documents from the start of each corpus's valid split, continued "
                 "into its train split where the valid split is shorter: part of it is text the tokenizer was "
                 "trained on, which flatters its own-corpus ratio slightly; throughput is timed here):\n\n"
                 + markdown_table([{"tokenizer": r["tokenizer"], "text": r["text"], "documents": r["large_documents"],
                                    "bytes": r["large_bytes"], "tokens": r["large_tokens"],
                                    "bytes_per_token": r["large_bytes_per_token"], "from": _sources(r),
                                    "throughput_mb_per_s": r["throughput_mb_per_s"]} for r in rows]))
    few = min(r["bytes"] for r in rows)
    return (
        f"**Handout's sample** ({ss['documents']} documents drawn at random from each corpus's valid split; "
        f"the smallest sample is {few:,} bytes, too little for a stable ratio):\n\n{handout}{large}\n\n"
        f"(a) On {where}, the {labels['stories']} tokenizer compresses its corpus to **{ss[key]} bytes/token** "
        f"and the {labels['web']} tokenizer its own to **{ww[key]} bytes/token** (handout's sample: "
        f"{ss['bytes_per_token']} and {ww['bytes_per_token']}).\n\n"
        f"(b) Cross case, on {where}: the stories tokenizer on web-like text gets **{sw[key]} bytes/token** "
        f"against {ww[key]} with the web tokenizer ({100 * (1 - sw[key] / ww[key]):.0f}% worse): its merges fit "
        f"the stories' small vocabulary, so other text falls apart into shorter pieces. The web tokenizer on "
        f"stories gets {ws[key]} against {ss[key]}.\n\n"
        f"(c) Throughput{' (on the 1 MB sample)' if has_large else ''}: {ss['throughput_mb_per_s']:.1f} MB/s "
        f"(stories tokenizer) and {ww['throughput_mb_per_s']:.1f} MB/s (web tokenizer) in one process, so the "
        f"{pile_bytes / 1e9:,.0f} GB Pile would take about **{ww['pile_825gb_hours']:,} hours** with the web "
        f"tokenizer, single-process; `encode_file` splits a file across workers, dividing that by their number.\n\n"
        f"(d) Token ids are stored as **uint16**: every vocabulary here has fewer than 65,536 entries, so 2 bytes "
        f"hold any id, half of int32's size, and the training loader reads them without conversion.")
