"""The report: every written problem of the handout answered with one run's numbers, under the
problem's own name, each section saying which preset and which data produced it.

`build_report(sources, out_path)` reads the files the graph wrote (`ReportSources` names them) and
returns the Markdown twice, with the plots linked relative to `out_path` (the file) and inlined as
data URIs (Dagster's metadata), plus the headline numbers. The two corpus roles are "stories"
(TinyStories or its stand-in) and "web" (OpenWebText or its stand-in).
"""

from __future__ import annotations

import base64
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from cs336_core.writeup import accounting_text, runs_text, sgd_toy, sweeps_text, tokenizer_text, unicode_answers

# The handout's written problems, in the handout's order: the report's sections.
PROBLEMS = ("unicode1", "unicode2", "train_bpe_tinystories", "train_bpe_expts_owt", "tokenizer_experiments",
            "transformer_accounting", "learning_rate_tuning", "adamwAccounting", "learning_rate",
            "batch_size_experiment", "generate", "layer_norm_ablation", "pre_norm_ablation", "no_pos_emb",
            "swiglu_ablation", "main_experiment", "leaderboard")
TITLES = {
    "unicode1": "Understanding Unicode", "unicode2": "Unicode encodings",
    "train_bpe_tinystories": "BPE training on TinyStories", "train_bpe_expts_owt": "BPE training on OpenWebText",
    "tokenizer_experiments": "Experiments with tokenizers", "transformer_accounting": "Transformer LM resource accounting",
    "learning_rate_tuning": "Tuning the learning rate (SGD toy)", "adamwAccounting": "Resource accounting for AdamW",
    "learning_rate": "Tune the learning rate", "batch_size_experiment": "Batch size variations",
    "generate": "Generate text", "layer_norm_ablation": "Remove RMSNorm", "pre_norm_ablation": "Pre-norm vs post-norm",
    "no_pos_emb": "Implement NoPE", "swiglu_ablation": "SwiGLU vs SiLU", "main_experiment": "Experiment on OWT",
    "leaderboard": "Leaderboard",
}
# How a corpus source is named wherever one of its numbers could be mistaken for the real corpus.
STAND_INS = {"generated_stories": "generated stories, a stand-in for TinyStories",
             "stdlib_prose": "Python standard-library prose, a stand-in for OpenWebText"}
REAL = {"stories": "TinyStories", "web": "OpenWebText (the handout's sample)"}
SHORT = {"generated_stories": "generated-stories", "stdlib_prose": "stdlib-prose"}
# unicode2's byte counts and the generated words' check read at most this much of each corpus.
TEXT_SAMPLE_CHARS = 1_000_000
VOCABULARY_SAMPLE_BYTES = 20_000_000
_IMAGE = re.compile(r"\x00IMG:(?P<path>[^\x00]*)\x00(?P<alt>[^\x00]*)\x00")


@dataclass(frozen=True)
class ReportSources:
    """The files the report reads (what the graph's assets wrote)."""

    preset: Mapping[str, Any]  # the preset as a dict: name, description, corpora, model, run, samples, target_val_loss
    corpora: Mapping[str, Path]  # role -> corpus directory (stats.json, train.txt, valid.txt)
    tokenizers: Mapping[str, Path]  # role -> tokenizer directory (stats.json)
    valid_tokens: Mapping[str, Path]  # role -> the valid split's token file (.npy)
    curves: Mapping[str, Path]  # lr_sweep, batch_size_sweep, ablations, main_runs, leaderboard -> <name>.json
    experiments: Path  # tokenizer_experiments.json
    accounting: Path  # accounting.json
    samples: Path  # samples.json
    submission: Path | None = None  # leaderboard/submission.json, where the graph has a leaderboard


@dataclass
class Report:
    markdown: str  # plots linked relative to the report file
    inline_markdown: str  # plots inlined as data URIs
    headline: dict = field(default_factory=dict)


def _json(path: Path | None, required: bool = True):
    if path is None or not Path(path).exists():
        if required:
            raise FileNotFoundError(f"{path} is missing: materialize the asset that writes it before the report")
        return None
    return json.loads(Path(path).read_text(encoding="utf-8"))


def _image(png: Path, alt: str) -> str:
    return f"\x00IMG:{png}\x00{alt}\x00"


class _Context:
    """The preset and the names of its data, for every section's first line."""

    def __init__(self, preset: Mapping[str, Any], corpora: Mapping[str, Mapping]):
        self.preset = preset
        self.sources = {role: stats.get("source") or preset["corpora"][role]["source"] for role, stats in corpora.items()}

    def label(self, role: str) -> str:
        """The corpus's name, with "a stand-in for ..." when it is not the real one."""
        source = self.sources[role]
        return STAND_INS.get(source) or (REAL[role] if source == "download" else f"local text ({role} role)")

    def short(self, role: str) -> str:
        source = self.sources[role]
        return SHORT.get(source) or (REAL[role].split(" (")[0] if source == "download" else role)

    def line(self, *roles: str, what: str = "") -> str:
        data = "; ".join(f"**{role}** = {self.label(role)}" for role in roles) or "no corpus"
        return f"_Preset `{self.preset['name']}`; data: {data}{'; ' + what if what else ''}._\n\n"


def _read_text(path: Path, chars: int) -> str:
    with open(path, encoding="utf-8", errors="replace") as f:
        return f.read(chars)


def _vocabulary(path: Path) -> set[str]:
    with open(path, "rb") as f:
        text = f.read(VOCABULARY_SAMPLE_BYTES).decode("utf-8", errors="ignore")
    return {w.lower() for w in runs_text.WORD.findall(text)}


def _curves(sources: ReportSources, name: str) -> Mapping | None:
    return _json(sources.curves.get(name), required=False)


def _curves_body(curves: Mapping | None, path: Path | None, name: str) -> str:
    from cs336_core.reporting import markdown_table  # pandas: only when rendering

    if curves is None or path is None:
        return f"_The {name} curves are not materialized yet._"
    spread = curves.get("throughput_spread") or 0.0
    note = (f"\n\nThroughput differed by {spread:.0%} between these runs (the machine is shared), so their "
            f"wall-clock panel compares load as much as the method: compare them on "
            f"{'tokens' if curves.get('x') == 'tokens' else 'steps'}." if spread > 0.2 else "")
    return (f"{markdown_table(curves['runs'])}\n\n{_image(Path(path).with_name(curves['plot']), curves['title'])}"
            f"{note}")


def build_report(sources: ReportSources, out_path: str | os.PathLike) -> Report:
    import numpy as np

    preset = sources.preset
    roles = ("stories", "web")
    corpora = {role: _json(sources.corpora[role] / "stats.json") for role in roles}
    tokenizers = {role: _json(sources.tokenizers[role] / "stats.json") for role in roles}
    ctx = _Context(preset, corpora)
    labels = {role: ctx.short(role) for role in roles}
    sections: dict[str, str] = {}
    headline: dict[str, Any] = {"preset": preset["name"]}

    sections["unicode1"] = ctx.line(what="computed in this Python") + unicode_answers.unicode1_markdown(
        unicode_answers.unicode1())
    texts = {f"{role} ({ctx.short(role)}, valid split)": _read_text(sources.corpora[role] / "valid.txt",
                                                                     TEXT_SAMPLE_CHARS) for role in roles}
    sections["unicode2"] = ctx.line(*roles) + unicode_answers.unicode2_markdown(
        unicode_answers.unicode2(texts), f"the first {TEXT_SAMPLE_CHARS:,} characters of each valid split at most")

    sections["train_bpe_tinystories"] = ctx.line("stories") + tokenizer_text.train_bpe_markdown(
        tokenizers["stories"], ctx.short("stories"))
    sections["train_bpe_expts_owt"] = (ctx.line("stories", "web") + tokenizer_text.train_bpe_markdown(
        tokenizers["web"], ctx.short("web")).replace("\n\n(b) Timed", "\n\nProfile, timed", 1) + "\n\n"
        + tokenizer_text.compare_tokenizers_markdown(tokenizers["stories"], tokenizers["web"], labels))
    sections["tokenizer_experiments"] = ctx.line(*roles) + tokenizer_text.tokenizer_experiments_markdown(
        _json(sources.experiments), labels, preset.get("pile_bytes", 825 * 10**9))

    accounting = _json(sources.accounting)
    sections["transformer_accounting"] = (ctx.line(what="formulas on the handout's GPT-2 shapes and this preset's "
                                                            "models")
                                          + accounting_text.transformer_accounting_markdown(accounting))
    sections["learning_rate_tuning"] = ctx.line(what="the handout's toy problem, run when this report was built") + \
        sgd_toy.learning_rate_tuning_markdown(sgd_toy.learning_rate_tuning())
    sections["adamwAccounting"] = ctx.line(what="formulas on the handout's GPT-2 XL") + \
        accounting_text.adamw_accounting_markdown(accounting)

    lr_curves = _curves(sources, "lr_sweep")
    run_lr = (preset.get("run") or {}).get("lr_max")
    best_lr = None
    sweep = f"{preset['sweep']['max_steps']:,}-step runs" if preset.get("sweep") else "sweep runs"
    if lr_curves:
        analysis = sweeps_text.lr_analysis(lr_curves)
        best_lr = analysis["best"]["lr"] if analysis["best"] else None
        headline |= {"best_lr": best_lr, "largest_stable_lr": analysis["edge"]["lr"] if analysis["edge"] else None}
        sections["learning_rate"] = (ctx.line("stories", what=sweep) + sweeps_text.learning_rate_markdown(
            lr_curves, run_lr) + "\n\n" + _curves_body(lr_curves, sources.curves.get("lr_sweep"), "lr_sweep"))
    else:
        sections["learning_rate"] = ctx.line("stories") + _curves_body(None, None, "lr_sweep")
    bs_curves = _curves(sources, "batch_size_sweep")
    sections["batch_size_experiment"] = ctx.line("stories", what=sweep) + (
        sweeps_text.batch_size_markdown(bs_curves) + "\n\n" if bs_curves else "") + _curves_body(
        bs_curves, sources.curves.get("batch_size_sweep"), "batch_size_sweep")

    main_curves = _curves(sources, "main_runs")
    samples = _json(sources.samples)
    val = {row["variant"]: row.get("final_val_loss") for row in (main_curves or {}).get("runs", [])}
    rates = {role: runs_text.known_word_rate([s["completion"] for s in samples if s["model"] == role],
                                             _vocabulary(sources.corpora[role] / "train.txt")) for role in roles}
    spec = preset.get("samples") or {}
    sections["generate"] = ctx.line(*roles, what="samples from the main runs' final checkpoints") + \
        runs_text.generate_markdown(samples, spec, preset["model"]["context_length"], "<|endoftext|>", val, rates,
                                    labels) + "\n\n" + _samples_markdown(samples)

    ab_curves = _curves(sources, "ablations")
    if ab_curves:
        texts = sweeps_text.ablations_markdown(ab_curves, preset["model"], best_lr)
        _, found = sweeps_text.find_surprises(ab_curves, preset["model"], best_lr)
        headline["surprises"] = ", ".join(a.variant for a in found if a.surprising) or "none"
        shared = _curves_body(ab_curves, sources.curves.get("ablations"), "ablations")
        for i, problem in enumerate(sweeps_text.PROBLEMS):
            body = texts.get(problem, "_No run of this ablation in this preset._")
            sections[problem] = ctx.line("stories", what=sweep) + body + (
                f"\n\nAll four ablations beside the baseline:\n\n{shared}" if i == len(sweeps_text.PROBLEMS) - 1 else
                "\n\n(The table and plot of all ablations are under `swiglu_ablation`.)")
    else:
        for problem in sweeps_text.PROBLEMS:
            sections[problem] = ctx.line("stories") + _curves_body(None, None, "ablations")

    valid_bpt = {role: corpora[role]["valid"]["bytes"] / max(len(np.load(sources.valid_tokens[role], mmap_mode="r")), 1)
                 for role in roles}
    target = preset["target_val_loss"]
    if main_curves:
        run = preset.get("run") or {}
        what = (f"main runs of {run.get('max_steps', 0):,} steps x batch {run.get('batch_size')} x context "
                f"{preset['model']['context_length']}")
        sections["main_experiment"] = ctx.line(*roles, what=what) + runs_text.main_experiment_markdown(
            main_curves["runs"], valid_bpt, labels, target) + "\n\n" + _curves_body(
            main_curves, sources.curves.get("main_runs"), "main_runs")
        headline |= {"stories_final_val_loss": val.get("stories"), "target_val_loss": target,
                     "meets_target": val.get("stories") is not None and val["stories"] <= target,
                     "web_final_val_loss": val.get("web")}
    else:
        sections["main_experiment"] = ctx.line(*roles) + _curves_body(None, None, "main_runs")
    board_curves, submission = _curves(sources, "leaderboard"), _json(sources.submission, required=False)
    board_image = (_image(Path(sources.curves["leaderboard"]).with_name(board_curves["plot"]), "leaderboard")
                   if board_curves else None)
    sections["leaderboard"] = ctx.line("web") + runs_text.leaderboard_markdown(board_curves, submission,
                                                                                preset["name"], board_image)
    headline["leaderboard"] = "ran" if board_curves or submission else "not run by this preset"

    body = _assemble(preset, ctx, sections, roles)
    out_dir = Path(out_path).parent
    return Report(markdown=_IMAGE.sub(lambda m: _link(Path(m["path"]), m["alt"], out_dir), body),
                  inline_markdown=_IMAGE.sub(lambda m: _inline(Path(m["path"]), m["alt"]), body), headline=headline)


def _link(png: Path, alt: str, out_dir: Path) -> str:
    return f"![{alt}]({Path(os.path.relpath(png, out_dir)).as_posix()})"


def _inline(png: Path, alt: str) -> str:
    if not png.exists():
        return f"_(plot {png.name} missing)_"
    return f"![{alt}](data:image/png;base64,{base64.b64encode(png.read_bytes()).decode('ascii')})"


def _samples_markdown(samples: list[Mapping]) -> str:
    from cs336_core.reporting import printable

    parts = []
    for role in dict.fromkeys(s["model"] for s in samples):
        parts.append(f"**{role} model**\n")
        for s in (s for s in samples if s["model"] == role):
            parts.append(f"Prompt `{s['prompt']}` ({s['new_tokens']} new tokens):\n\n> "
                         + printable(f"**{s['prompt']}**{s['completion']}").replace("\n", "\n> ") + "\n")
    return "\n".join(parts)


def _assemble(preset: Mapping, ctx: _Context, sections: Mapping[str, str], roles: tuple[str, ...]) -> str:
    from cs336_core.reporting import render_report

    setup = (f"Preset **{preset['name']}**: {preset['description']}\n\n"
             + "\n".join(f"- **{role}**: {ctx.label(role)}" for role in roles)
             + "\n\nEach section below is one written problem of the handout, named as in the handout; its first "
               "line says which preset and data produced its numbers. Numbers from a stand-in corpus say "
               "nothing about TinyStories or OpenWebText themselves.")
    ordered = [("Setup", setup)] + [(f"`{p}`: {TITLES[p]}", sections[p]) for p in PROBLEMS]
    return render_report(ordered, title=f"CS336 assignment 1: results of the `{preset['name']}` preset")
