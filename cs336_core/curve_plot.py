"""The loss-curve figure: smoothed training loss with the validation points, against steps (or tokens)
and against wall-clock, one colour per run, diverged runs marked where they diverged.

Sized for where people look at it: Dagster's Markdown dialog is 80% of the window wide less 40 px
of padding (984 px at a 1280 px window, 1240 px at 1600), and a wider image is cropped, not scaled.
The figure is FIGURE_PIXELS wide, so both panels and the legend show whole from a 1280 px window up.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from cs336_core.files import PathLike, atomic_path

DPI = 100
FIGURE_PIXELS = (960, 540)
# Runs whose median tokens/s differ by more than this are compared on wall-clock with a visible note:
# on a shared machine the gap is the load other processes put on it as much as the method.
THROUGHPUT_SPREAD_NOTE = 0.20
X_LABELS = {"step": "step", "tokens": "tokens"}


def smooth(values: pd.Series, window: int | None = None) -> pd.Series:
    """A centred moving average over about a tenth of the points (odd, so it adds no lag: each logged
    value is already the mean of its logging window); non-finite values are left out."""
    finite = values.where(np.isfinite(values))
    window = window or max(1, len(finite) // 10) | 1
    return finite.rolling(window, center=True, min_periods=1).mean()


def throughput_spread(table: pd.DataFrame) -> tuple[float, dict[str, float]]:
    """(max / min - 1 of the runs' median tokens/s, variant -> median tokens/s); (0, {}) without data."""
    if "tokens_per_second" not in table or not len(table):
        return 0.0, {}
    medians = {str(v): float(rows["tokens_per_second"].median()) for v, rows in table.groupby("variant", sort=False)}
    medians = {v: s for v, s in medians.items() if np.isfinite(s) and s > 0}
    if len(medians) < 2:
        return 0.0, medians
    return max(medians.values()) / min(medians.values()) - 1, medians


def _y_limits(curves: dict[str, pd.DataFrame], target: float | None, log_y: bool) -> tuple[float, float] | None:
    """Clip far above the highest starting loss, so one blown-up run does not flatten the others."""
    values = pd.concat([pd.concat([rows["smoothed"], rows["val_loss"]]) for rows in curves.values()]
                       + [pd.Series([], dtype=float)])
    values = values[np.isfinite(values)]
    if not len(values):
        return None
    starts = [rows["smoothed"].dropna().iloc[0] for rows in curves.values() if rows["smoothed"].notna().any()]
    start = max(starts) if starts else values.max()
    top = min(values.max() * 1.05, max(start * 1.1, values.min() * 1.5))
    low = min(values.min(), target) if target is not None else values.min()
    return (low * 0.9 if log_y else max(low - 0.08 * (top - low), 0.0)), top


def plot_loss_curves(table: pd.DataFrame, out_png: PathLike, *, title: str, target: float | None = None,
                     x: str = "step", log_y: bool = False) -> Path:
    """Two panels, loss against `x` ("step" or "tokens") and against wall-clock seconds.

    Each run is a line of its smoothed training loss and dots of its validation losses, in one
    colour. A diverged run is drawn up to its last finite value and marked with an x at the step
    it diverged (on the top edge when off the chart). The wall-clock panel carries a note when the
    runs' throughput differs by more than THROUGHPUT_SPREAD_NOTE.
    """
    from matplotlib.figure import Figure  # no pyplot: no global state, no display backend needed
    from matplotlib.lines import Line2D
    from matplotlib.ticker import EngFormatter

    if x not in X_LABELS:
        raise ValueError(f"x must be one of {sorted(X_LABELS)}, got {x!r}")
    figure = Figure(figsize=(FIGURE_PIXELS[0] / DPI, FIGURE_PIXELS[1] / DPI), dpi=DPI, layout="constrained")
    by_x, by_time = figure.subplots(1, 2, sharey=True)
    curves = {}
    for variant, rows in table.groupby("variant", sort=False):
        rows = rows.sort_values("step").copy()
        rows["smoothed"] = smooth(rows["train_loss"])
        curves[variant] = rows
    limits = _y_limits(curves, target, log_y)
    top = limits[1] if limits else None
    handles = []
    for variant, rows in curves.items():
        diverged = bool(rows["diverged"].any())
        line = None
        for axis, column in ((by_x, x), (by_time, "wall_seconds")):
            train = rows[np.isfinite(rows["smoothed"])]
            (line,) = axis.plot(train[column], train["smoothed"], linewidth=1.6, alpha=0.9,
                                color=None if line is None else line.get_color())
            val = rows[np.isfinite(rows["val_loss"])]
            axis.plot(val[column], val["val_loss"], marker="o", markersize=5, linestyle="none",
                      markeredgecolor="white", markeredgewidth=0.6, color=line.get_color())
            if diverged and len(rows):  # where it stopped, at the top edge if its loss is off the chart
                last = rows.iloc[-1]
                loss = last["train_loss"] if np.isfinite(last["train_loss"]) else np.inf
                axis.plot([last[column]], [min(loss, top) if top is not None else loss], marker="x",
                          markersize=12, markeredgewidth=2.5, color=line.get_color(), linestyle="none", clip_on=False)
        step = int(rows["step"].iloc[-1]) if len(rows) else 0
        label = f"{variant} (diverged at step {step:,})" if diverged else str(variant)
        handles.append(Line2D([], [], color=line.get_color() if line else "grey", linewidth=1.6, label=label))
    for axis, xlabel in ((by_x, X_LABELS[x]), (by_time, "wall-clock seconds")):
        if target is not None:
            axis.axhline(target, color="black", linestyle="--", linewidth=1)
        axis.set_xlabel(xlabel)
        axis.grid(True, alpha=0.3)
        if log_y:
            axis.set_yscale("log")
    if limits:
        by_x.set_ylim(*limits)
    if x == "tokens":
        by_x.xaxis.set_major_formatter(EngFormatter(sep=""))
    by_x.set_ylabel("loss")
    by_x.set_title(f"loss vs {X_LABELS[x]}s" if x == "step" else "loss vs tokens seen")
    by_time.set_title("loss vs wall-clock")
    spread, medians = throughput_spread(table)
    if spread > THROUGHPUT_SPREAD_NOTE:
        slow, fast = min(medians, key=medians.get), max(medians, key=medians.get)
        by_time.text(0.98, 0.97, f"throughput differs by {spread:.0%}\n({slow} {medians[slow]:,.0f} vs "
                                 f"{fast} {medians[fast]:,.0f} tok/s):\non a shared machine this panel\n"
                                 "is about load as much as the method",
                     transform=by_time.transAxes, ha="right", va="top", fontsize="small",
                     bbox={"boxstyle": "round", "facecolor": "#fff3cd", "edgecolor": "#c9a227"})
    style = [Line2D([], [], color="grey", linewidth=1.6, label="train (smoothed)"),
             Line2D([], [], color="grey", marker="o", linestyle="none", label="validation")]
    if target is not None:
        style.append(Line2D([], [], color="black", linestyle="--", linewidth=1, label=f"target {target:g}"))
    if curves:
        figure.legend(handles=handles + style, loc="outside lower center", ncol=min(4, len(handles) + len(style)),
                      fontsize="small", frameon=False)
    figure.suptitle(title)
    out_png = Path(out_png)
    with atomic_path(out_png) as tmp:
        figure.savefig(tmp, format="png", dpi=DPI)
    return out_png
