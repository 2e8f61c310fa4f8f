"""`main_experiment`, `generate` and `leaderboard` in prose, from the main runs' curves summary, the
corpora's and token files' sizes, the samples, and the leaderboard's files where the preset ran one."""

from __future__ import annotations

import math
import re
from typing import Mapping, Sequence

WORD = re.compile(r"[A-Za-z]+")
SPECIAL = re.compile(r"<\|[^|>]*\|>")


def bits_per_byte(loss_nats_per_token: float, bytes_per_token: float) -> float:
    """Per-token cross-entropy in nats as bits per byte of text: comparable across tokenizers."""
    return loss_nats_per_token / math.log(2) / bytes_per_token


def _fmt(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def main_experiment_markdown(runs: Sequence[Mapping], valid_bytes_per_token: Mapping[str, float],
                             labels: Mapping[str, str], target: float) -> str:
    """The OWT-like run against the TinyStories-like one (main_experiment), per token and per byte."""
    by_role = {row["variant"]: row for row in runs}
    stories, web = by_role.get("stories"), by_role.get("web")
    if not stories or not web:
        return "_The main runs' curves are not materialized yet._"
    text = []
    for role, row in (("stories", stories), ("web", web)):
        loss = row.get("final_val_loss")
        bpb = bits_per_byte(loss, valid_bytes_per_token[role]) if loss is not None else None
        text.append(f"The {labels[role]} model ({role}) ended with status {row['status']} after "
                    f"{row['steps']:,} steps ({row.get('tokens') or 0:,} tokens, {_fmt(row.get('wall_seconds'), 0)} s, "
                    f"{row.get('tokens_per_second') or 0:,.0f} tokens/s): validation loss **{_fmt(loss)}** nats "
                    f"per token, **{_fmt(bpb)} bits per byte** ({valid_bytes_per_token[role]:.2f} bytes per token "
                    f"on its valid split).")
    loss = stories.get("final_val_loss")
    verdict = "meets" if loss is not None and loss <= target else "misses"
    text.append(f"The {labels['stories']} run {verdict} this preset's target of {target}.")
    if stories.get("final_val_loss") is not None and web.get("final_val_loss") is not None:
        s_bpb = bits_per_byte(stories["final_val_loss"], valid_bytes_per_token["stories"])
        w_bpb = bits_per_byte(web["final_val_loss"], valid_bytes_per_token["web"])
        text.append(
            f"The two per-token losses are not directly comparable: each corpus has its own tokenizer, and a "
            f"token of one holds a different number of bytes than a token of the other. Per byte, the "
            f"{labels['web']} text costs {w_bpb / s_bpb:.1f}x the bits of the {labels['stories']} text at the "
            f"same model and number of steps: it is more varied (a larger vocabulary, rarer words, "
            f"formatting), so the same small model at the same budget is further from its entropy, and part "
            f"of what remains is entropy no model of this size can remove.")
    return " ".join(text[:2]) + "\n\n" + " ".join(text[2:])


def known_word_rate(texts: Sequence[str], vocabulary: set[str]) -> float | None:
    """The share of the words of `texts` (letters only, lower-cased; special tokens like <|endoftext|>
    left out) that occur in `vocabulary`."""
    words = [w.lower() for text in texts for w in WORD.findall(SPECIAL.sub(" ", text))]
    return sum(w in vocabulary for w in words) / len(words) if words else None


def generate_markdown(samples: Sequence[Mapping], spec: Mapping, context_length: int, eos: str,
                      val_losses: Mapping[str, float | None], word_rates: Mapping[str, float | None],
                      labels: Mapping[str, str]) -> str:
    """What the samples show and what sets their quality (generate)."""
    lines = []
    for role in dict.fromkeys(s["model"] for s in samples):
        mine = [s for s in samples if s["model"] == role]
        stopped = sum(eos in s["completion"] for s in mine)
        lengths = ", ".join(str(s["new_tokens"]) for s in mine)
        loss = val_losses.get(role)
        rate = word_rates.get(role)
        lines.append(
            f"- {labels.get(role, role)} model: {len(mine)} samples of {lengths} new tokens; {stopped} of "
            f"{len(mine)} ended at `{eos}`" + (", the rest at the token limit" if stopped < len(mine) else "")
            + (f"; validation loss {loss:.3f}, a perplexity of {math.exp(loss):.1f} (as uncertain as a uniform "
               f"choice among that many tokens)" if loss is not None else "")
            + (f"; {rate:.0%} of the generated words occur in its training text" if rate is not None else "")
            + ".")
    return (
        f"Sampling with temperature {spec['temperature']} and top-p {spec['top_p']}, at most "
        f"{spec['max_new_tokens']} new tokens, which the model's context of {context_length} tokens caps "
        f"further (prompt + new tokens must fit, with no sliding window), stopping at `{eos}`:\n\n"
        + "\n".join(lines) + "\n\n"
        "Fluency: the share of real words above says whether the model has learned to spell its corpus, "
        "and short phrases follow the corpus's own patterns; coherence across sentences (who is who, what "
        "happened) is what a small model at a short budget lacks first, and the samples below show how far "
        "this one gets (the handout expects mostly fluent TinyStories text near a loss of 1.45). What sets the "
        "quality: (1) the model and its training, the validation loss above (a larger model trained on more "
        "tokens has a lower perplexity and stays coherent longer); (2) the decoding: a lower temperature and a "
        "smaller top-p cut the unlikely tail and make text safer but more repetitive, higher values make it "
        "more varied and less coherent; (3) the context length, which bounds how much of the story the model "
        "can condition on and how long a "
        "sample can be.")


def leaderboard_markdown(curves: Mapping | None, submission: Mapping | None, preset: str,
                         image: str | None = None) -> str:
    """The leaderboard run against its baseline at equal wall-clock, or a plain statement that this
    preset ran none."""
    from cs336_core.reporting import markdown_table  # pandas: only when rendering

    if curves is None and submission is None:
        return (f"The `{preset}` preset ran no leaderboard run. The handout's leaderboard (section 7.5) asks "
                f"for the lowest OpenWebText validation loss within 1.5 hours on one H100; no number here "
                f"answers it.")
    text = []
    if curves is not None:
        rows = {row["variant"]: row for row in curves.get("runs", [])}
        base, board = rows.get("baseline"), rows.get("leaderboard")
        if base and board and base.get("final_val_loss") is not None and board.get("final_val_loss") is not None:
            delta = board["final_val_loss"] - base["final_val_loss"]
            text.append(f"At equal wall-clock ({_fmt(base.get('wall_seconds'), 0)} s against "
                        f"{_fmt(board.get('wall_seconds'), 0)} s), the leaderboard configuration reached validation "
                        f"loss **{_fmt(board['final_val_loss'])}** against the baseline's "
                        f"{_fmt(base['final_val_loss'])} ({delta:+.3f}), after {board.get('steps') or 0:,} steps "
                        f"against {base.get('steps') or 0:,} ({board.get('tokens_per_second') or 0:,.0f} against "
                        f"{base.get('tokens_per_second') or 0:,.0f} tokens/s).")
            speed = (board.get("tokens_per_second") or 0) / (base.get("tokens_per_second") or 1)
            if delta >= 0:
                text.append(f"The leaderboard configuration did not win on this machine: it ran at {speed:.2f}x the "
                            f"baseline's tokens/s, so at equal wall-clock it saw that fraction of the tokens; its "
                            f"options are meant to pay off at the handout's scale (a GPU, 1.5 hours), which this "
                            f"preset does not reach.")
            else:
                text.append(f"The leaderboard configuration won by {-delta:.3f} at {speed:.2f}x the baseline's "
                            f"tokens/s.")
        text.append(markdown_table(curves.get("runs", [])))
        if image:
            text.append(image)
    if submission is not None:
        scalars = [{"field": k, "value": v} for k, v in submission.items() if not isinstance(v, (dict, list))]
        summary = (submission.get("hardware") or {}).get("summary") if isinstance(submission.get("hardware"), dict) else None
        if summary:
            scalars.append({"field": "hardware", "value": summary})
        text.append("The submission (`leaderboard/submission.json`):\n\n" + markdown_table(scalars))
    return "\n\n".join(text)
