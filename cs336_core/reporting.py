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

from cs336_core.files import PathLike, atomic_path, atomic_write_json, atomic_write_text

CURVE_COLUMNS = ("variant", "step", "tokens", "wall_seconds", "train_loss", "val_loss", "diverged")
# A run's row in a curves summary: its variant name, then these fields of its result.json.
SUMMARY_COLUMNS = ("variant", "status", "steps", "final_val_loss", "best_val_loss", "tokens_per_second",
                   "wall_seconds")


def read_metrics(path: PathLike) -> pd.DataFrame:
    """One row per logged step of a run's metrics.jsonl, sorted by step.

    A torn last line (a run killed mid-write) is ignored; a step logged twice (a resumed run)
    keeps its last record. Null losses (training writes non-finite values as null) become NaN.
    Every metric training writes (`METRIC_FIELDS`) is a column, NaN where a record lacks it.
    """
    from cs336_core.training.metrics import METRIC_FIELDS  # here, so that importing reporting needs no torch

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"metrics file not found: {path}")
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    records = []
    for number, line in enumerate(lines, start=1):
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            if number != len(lines):
                raise ValueError(f"{path}, line {number} is not JSON: {line[:80]!r}") from None
    frame = pd.DataFrame.from_records(records)
    for column in METRIC_FIELDS:
        if column not in frame:
            frame[column] = math.nan
    frame = frame.astype({c: "float64" for c in METRIC_FIELDS if c != "step"})
    if len(frame):
        frame["step"] = frame["step"].astype("int64")
        frame = frame.drop_duplicates("step", keep="last").sort_values("step")
    return frame.reset_index(drop=True)


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
        frame = metrics.loc[:, ["step", "tokens", "wall_seconds", "train_loss", "val_loss"]]
        frame.insert(0, "variant", variant)
        frame["diverged"] = diverged
        frames.append(frame)
    if not frames:
        return pd.DataFrame(columns=list(CURVE_COLUMNS))
    return pd.concat(frames, ignore_index=True)


def plot_loss_curves(table: pd.DataFrame, out_png: PathLike, *, title: str, target: float | None = None,
                     metric: str = "val_loss", log_y: bool = False) -> Path:
    """Two panels, `metric` against steps and against wall-clock seconds, one line per variant.

    A diverged variant is drawn up to its last finite value and marked with an x there; losses far
    above the starting loss are clipped off the chart so they do not flatten the other curves.
    """
    from matplotlib.figure import Figure  # no pyplot: no global state, no display backend needed

    figure = Figure(figsize=(12, 4.8), layout="constrained")
    by_step, by_time = figure.subplots(1, 2, sharey=True)
    curves = {variant: rows.sort_values("step") for variant, rows in table.groupby("variant", sort=False)}
    finite = {variant: rows[np.isfinite(rows[metric])] for variant, rows in curves.items()}
    values = pd.concat([rows[metric] for rows in finite.values()]) if curves else pd.Series([], dtype=float)
    top = None
    if len(values):
        # Clip far above the highest starting loss: a blown-up run must not flatten the others.
        start_loss = max(rows[metric].iloc[0] for rows in finite.values() if len(rows))
        top = min(values.max() * 1.05, max(start_loss * 1.15, values.min() * 1.5))
        low = min(values.min(), target) if target is not None else values.min()
        bottom = low * 0.9 if log_y else max(low - 0.08 * (top - low), 0.0)
        by_step.set_ylim(bottom=bottom, top=top)
    for variant, rows in curves.items():
        points = finite[variant]
        diverged = bool(rows["diverged"].any())
        label = f"{variant} (diverged)" if diverged else str(variant)
        for axis, x in ((by_step, "step"), (by_time, "wall_seconds")):
            (line,) = axis.plot(points[x], points[metric], marker="o", markersize=3, linewidth=1.5, label=label)
            if diverged and len(points):  # an x where the run's curve ends (at the top edge if off-chart)
                axis.plot(points[x].iloc[-1:], points[metric].iloc[-1:].clip(upper=top), marker="x", markersize=11,
                          markeredgewidth=2.5, color=line.get_color(), linestyle="none", clip_on=False)
    for axis, xlabel in ((by_step, "step"), (by_time, "wall-clock seconds")):
        if target is not None:
            axis.axhline(target, color="black", linestyle="--", linewidth=1, label=f"target {target:g}")
        axis.set_xlabel(xlabel)
        axis.grid(True, alpha=0.3)
        if log_y:
            axis.set_yscale("log")
    by_step.set_ylabel(metric.replace("_", " "))
    by_step.set_title(f"{metric.replace('_', ' ')} vs steps")
    by_time.set_title(f"{metric.replace('_', ' ')} vs wall-clock")
    if len(table):
        by_time.legend(loc="upper right", fontsize="small")
    figure.suptitle(title)
    out_png = Path(out_png)
    with atomic_path(out_png) as tmp:
        figure.savefig(tmp, format="png", dpi=110)
    return out_png


def png_markdown(path: PathLike, alt: str) -> str:
    """A Markdown image with the PNG inlined as a base64 data URI (rendered by Dagster's UI)."""
    encoded = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return f"![{alt}](data:image/png;base64,{encoded})"


def run_summary(runs: Mapping[str, PathLike]) -> list[dict]:
    """One row per run directory (variant -> directory), with the SUMMARY_COLUMNS of its
    result.json; a run without one (unfinished) has status "incomplete"."""
    rows = []
    for variant, run_dir in runs.items():
        result_file = Path(run_dir) / "result.json"
        result = (json.loads(result_file.read_text(encoding="utf-8")) if result_file.exists()
                  else {"status": "incomplete"})
        rows.append({"variant": variant, **{column: result.get(column) for column in SUMMARY_COLUMNS[1:]}})
    return rows


def write_loss_curves(runs: Mapping[str, PathLike], out_dir: PathLike, name: str, *, title: str,
                      target: float | None = None) -> tuple[dict[str, Path], list[dict]]:
    """The curves of `runs` (variant -> run directory) as four files under `out_dir`: <name>.csv
    (`loss_curve_table`), <name>.png (`plot_loss_curves`), <name>.json (title, target, plot file
    name and the `run_summary` rows: what a report reads) and <name>.md (the summary table and the
    plot, for people). Returns their paths by suffix, and the summary rows."""
    out_dir = Path(out_dir)
    paths = {suffix: out_dir / f"{name}.{suffix}" for suffix in ("csv", "png", "json", "md")}
    table = loss_curve_table({variant: Path(run_dir) / "metrics.jsonl" for variant, run_dir in runs.items()})
    atomic_write_text(paths["csv"], table.to_csv(index=False))
    plot_loss_curves(table, paths["png"], title=title, target=target)
    summary = run_summary(runs)
    atomic_write_json(paths["json"], {"title": title, "target": target, "plot": paths["png"].name, "runs": summary})
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
