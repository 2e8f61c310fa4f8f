"""Loss-curve tables and plots, run summaries, token rendering and Markdown helpers for the report.

Reads the run directories written by `cs336_core.training` (`metrics.jsonl`, `result.json`),
turns them into pandas tables, PNG plots (matplotlib's Agg canvas, no display, no global pyplot
state) and JSON summaries, and renders Markdown that Dagster's UI shows ("Show Markdown"). No
torch at import (`read_metrics` takes the metric names from cs336_core.training when called).
"""

from __future__ import annotations

import base64
import json
import math
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np
import pandas as pd

from cs336_core.curve_plot import plot_loss_curves, throughput_spread
from cs336_core.files import PathLike, atomic_write_json, atomic_write_text

__all__ = ["read_metrics", "loss_curve_table", "plot_loss_curves", "png_markdown", "run_summary", "run_details",
           "best_run", "curves_headline",
           "write_loss_curves", "render_token", "printable", "longest_tokens", "markdown_table", "render_report"]

CURVE_COLUMNS = ("variant", "step", "tokens", "wall_seconds", "train_loss", "val_loss", "tokens_per_second",
                 "diverged")
# A run's row in a curves summary: its variant name, these fields of its result.json, and `grad_norm`:
# the mean gradient norm (before clipping) over the last quarter of its logged steps.
SUMMARY_COLUMNS = ("variant", "status", "steps", "tokens", "final_val_loss", "best_val_loss", "tokens_per_second",
                   "wall_seconds", "grad_norm")


def read_metrics(path: PathLike) -> pd.DataFrame:
    """One row per logged step of a run's metrics.jsonl (see cs336_core.training.metrics.read_metrics)."""
    from cs336_core.training.metrics import read_metrics as read  # here, so that importing reporting needs no torch

    return read(path)


def _run_status(metrics_path: Path) -> str | None:
    result = metrics_path.with_name("result.json")
    if result.is_file():
        return json.loads(result.read_text(encoding="utf-8")).get("status")
    return None


def loss_curve_table(runs: Mapping[str, PathLike | pd.DataFrame]) -> pd.DataFrame:
    """Long table (variant, step, tokens, wall_seconds, train_loss, val_loss, diverged) of several runs.

    `runs` maps a variant name to its metrics.jsonl (or to a `read_metrics` frame). `diverged` is
    true on every row of a run whose result.json (beside metrics.jsonl) says "diverged" or whose
    training loss became non-finite (null in metrics.jsonl).
    """
    frames = []
    for variant, source in runs.items():
        if isinstance(source, pd.DataFrame):
            metrics, status = source, None
        else:
            metrics, status = read_metrics(source), _run_status(Path(source))
        diverged = status == "diverged" or bool(metrics["train_loss"].isna().any())
        frame = metrics.loc[:, ["step", "tokens", "wall_seconds", "train_loss", "val_loss", "tokens_per_second"]]
        frame.insert(0, "variant", variant)
        frame["diverged"] = diverged
        frames.append(frame)
    if not frames:
        return pd.DataFrame(columns=list(CURVE_COLUMNS))
    return pd.concat(frames, ignore_index=True)


def png_markdown(path: PathLike, alt: str) -> str:
    """A Markdown image with the PNG inlined as a base64 data URI (rendered by Dagster's UI)."""
    encoded = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return f"![{alt}](data:image/png;base64,{encoded})"


def _json_file(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def _late_mean(values: pd.Series) -> float | None:
    """The mean of the last quarter of the finite values (at least one), or None without any."""
    finite = values[np.isfinite(values)]
    if not len(finite):
        return None
    return float(finite.iloc[-max(1, len(finite) // 4):].mean())


def run_summary(runs: Mapping[str, PathLike]) -> list[dict]:
    """One row per run directory (variant -> directory), with the SUMMARY_COLUMNS of its
    result.json and metrics.jsonl; a run without a result (unfinished) has status "incomplete"."""
    rows = []
    for variant, run_dir in runs.items():
        result = _json_file(Path(run_dir) / "result.json") or {"status": "incomplete"}
        metrics_path = Path(run_dir) / "metrics.jsonl"
        metrics = read_metrics(metrics_path) if metrics_path.is_file() else None
        grad_norm = _late_mean(metrics["grad_norm"]) if metrics is not None else None
        row = {"variant": variant, **{column: result.get(column) for column in SUMMARY_COLUMNS[1:]}}
        row["grad_norm"] = None if grad_norm is None else round(grad_norm, 4)
        rows.append(row)
    return rows


def best_run(summary: Iterable[Mapping]) -> Mapping | None:
    """The completed run with the lowest final validation loss, or None."""
    done = [row for row in summary if row.get("status") == "completed" and row.get("final_val_loss") is not None]
    return min(done, key=lambda row: row["final_val_loss"]) if done else None


def curves_headline(summary: list[Mapping]) -> dict:
    """A curves summary's key results, for the top of an asset's metadata: the best run with its
    final and best validation loss, steps and tokens/s, how many runs ended in each status, and
    the range of throughput."""
    best = best_run(summary)
    statuses: dict[str, int] = {}
    for row in summary:
        statuses[row.get("status") or "incomplete"] = statuses.get(row.get("status") or "incomplete", 0) + 1
    speeds = [row["tokens_per_second"] for row in summary if row.get("tokens_per_second")]
    headline = {
        "best_variant": best["variant"] if best else "none completed",
        "best_final_val_loss": round(best["final_val_loss"], 4) if best else None,
        "best_best_val_loss": round(best["best_val_loss"], 4) if best and best.get("best_val_loss") else None,
        "best_steps": best.get("steps") if best else None,
        "status": ", ".join(f"{count} {status}" for status, count in statuses.items()),
        "diverged": ", ".join(row["variant"] for row in summary if row.get("status") == "diverged") or "none",
        "tokens_per_second": (f"{min(speeds):,.0f} to {max(speeds):,.0f}" if len(speeds) > 1
                              else f"{speeds[0]:,.0f}" if speeds else "n/a"),
    }
    return headline


def run_details(run_dir: PathLike) -> dict:
    """What a write-up needs of a run beyond its summary row, from config.json, result.json and
    metrics.jsonl: its learning rate, batch size, clipping threshold and model; its first logged
    gradient norm and the fraction of logged steps whose norm exceeded the clipping threshold; the
    step it stopped at and why (a diverged run's message)."""
    run_dir = Path(run_dir)
    config, result = _json_file(run_dir / "config.json"), _json_file(run_dir / "result.json")
    details = {key: config.get(key) for key in ("lr_max", "batch_size", "grad_clip", "max_steps", "model")}
    details |= {"status": result.get("status", "incomplete"), "steps": result.get("steps"),
                "message": result.get("message", "")}
    if (run_dir / "metrics.jsonl").is_file():
        norms = read_metrics(run_dir / "metrics.jsonl")["grad_norm"]
        norms = norms[np.isfinite(norms)]
        clip = config.get("grad_clip")
        details["first_grad_norm"] = round(float(norms.iloc[0]), 4) if len(norms) else None
        details["clipped_fraction"] = (round(float((norms > clip).mean()), 3) if clip and len(norms) else None)
    return details


def write_loss_curves(runs: Mapping[str, PathLike], out_dir: PathLike, name: str, *, title: str,
                      target: float | None = None, x: str = "step") -> tuple[dict[str, Path], list[dict]]:
    """The curves of `runs` (variant -> run directory) as four files under `out_dir`: <name>.csv
    (`loss_curve_table`), <name>.png (`plot_loss_curves` against `x`, "step" or "tokens"),
    <name>.json (what a report reads: title, target, x, plot file name, the `run_summary` rows,
    each run's `run_details` and the runs' throughput spread) and <name>.md (the summary table and
    the plot, for people). Returns their paths by suffix, and the summary rows."""
    out_dir = Path(out_dir)
    paths = {suffix: out_dir / f"{name}.{suffix}" for suffix in ("csv", "png", "json", "md")}
    table = loss_curve_table({variant: Path(run_dir) / "metrics.jsonl" for variant, run_dir in runs.items()})
    atomic_write_text(paths["csv"], table.to_csv(index=False))
    plot_loss_curves(table, paths["png"], title=title, target=target, x=x)
    summary = run_summary(runs)
    spread, _ = throughput_spread(table)
    atomic_write_json(paths["json"], {
        "title": title, "target": target, "x": x, "plot": paths["png"].name, "runs": summary,
        "details": {variant: run_details(run_dir) for variant, run_dir in runs.items()},
        "throughput_spread": round(spread, 3)})
    atomic_write_text(paths["md"], f"## {title}\n\n{markdown_table(summary)}\n\n![{title}]({paths['png'].name})\n")
    return paths, summary


# ---------------------------------------------------------------------------------------------
# Tokens
# ---------------------------------------------------------------------------------------------

_VISIBLE = {" ": "␣", "\n": "\\n", "\t": "\\t", "\r": "\\r", "\\": "\\\\"}


def render_token(token: bytes) -> str:
    """A token as readable text: spaces as ␣, newlines and tabs escaped, other control characters
    as \\uNNNN, and bytes that are not valid UTF-8 (a piece of a character) as \\xNN."""
    pieces = []
    for char in token.decode("utf-8", errors="surrogateescape"):
        code = ord(char)
        if 0xDC80 <= code <= 0xDCFF:  # an undecodable byte, smuggled through as a lone surrogate
            pieces.append(f"\\x{code - 0xDC00:02x}")
        elif char in _VISIBLE:
            pieces.append(_VISIBLE[char])
        elif not char.isprintable():
            pieces.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")
        else:
            pieces.append(char)
    return "".join(pieces)


def printable(text: str) -> str:
    """`text` with control characters other than newline and tab escaped (\\xNN, \\uNNNN), so that
    an untrained model's sampled bytes cannot put a NUL or a terminal escape into a report."""
    return "".join(ch if ch.isprintable() or ch in "\n\t" else
                   f"\\x{ord(ch):02x}" if ord(ch) < 0x100 else f"\\u{ord(ch):04x}" for ch in text)


def longest_tokens(vocab: Mapping[int, bytes], n: int = 10) -> list[dict]:
    """The `n` longest tokens (by bytes; ties by id): id, length in bytes, readable rendering."""
    ranked = sorted(vocab.items(), key=lambda item: (-len(item[1]), item[0]))[:n]
    return [{"id": token_id, "bytes": len(token), "token": render_token(token)} for token_id, token in ranked]


# ---------------------------------------------------------------------------------------------
# Markdown
# ---------------------------------------------------------------------------------------------

def _cell(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1e6 else f"{value:,.0f}"
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10_000:
        return f"{value:,}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def markdown_table(rows: Iterable[Mapping] | pd.DataFrame | list[str], values: Iterable[Iterable] | None = None) -> str:
    """A GitHub-flavoured Markdown table; numeric columns right-aligned, floats to 4 significant digits.

    Either `markdown_table(rows)` with dicts (or a DataFrame), or `markdown_table(columns, values)`
    with a header list and one sequence of cells per row.
    """
    if values is not None:
        columns = list(rows)
        rows = [dict(zip(columns, row, strict=True)) for row in values]
    elif isinstance(rows, pd.DataFrame):
        rows = rows.to_dict("records")
    rows = [{k: (v.item() if hasattr(v, "item") else v) for k, v in row.items()} for row in rows]
    if not rows:
        return "_(no rows)_"
    columns: list[str] = []
    for row in rows:
        columns.extend(k for k in row if k not in columns)
    numeric = {c: all(isinstance(r.get(c), (int, float)) and not isinstance(r.get(c), bool)
                      for r in rows if r.get(c) is not None) for c in columns}
    lines = ["| " + " | ".join(_cell(c) for c in columns) + " |",
             "|" + "|".join("---:" if numeric[c] else "---" for c in columns) + "|"]
    lines += ["| " + " | ".join(_cell(row.get(c)) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


def render_report(sections: Mapping[str, str] | Iterable[tuple[str, str]], title: str | None = None) -> str:
    """Assemble a Markdown document from (heading, body) sections, in order."""
    items = sections.items() if isinstance(sections, Mapping) else sections
    parts = [f"# {title}"] if title else []
    parts += [f"## {heading}\n\n{body.strip()}" for heading, body in items]
    return "\n\n".join(parts) + "\n"
