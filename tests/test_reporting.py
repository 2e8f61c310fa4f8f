"""Loss-curve tables and plots from real metrics files, token rendering, Markdown helpers."""

from __future__ import annotations

import base64
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cs336_core.curve_plot import FIGURE_PIXELS, smooth, throughput_spread
from cs336_core.reporting import (
    SUMMARY_COLUMNS,
    curves_headline,
    loss_curve_table,
    longest_tokens,
    markdown_table,
    plot_loss_curves,
    png_markdown,
    read_metrics,
    render_report,
    render_token,
    run_details,
    run_summary,
    write_loss_curves,
)


def _write_run(run_dir: Path, losses: list[float | None], *, status: str = "completed", eval_every: int = 5,
               seconds_per_step: float = 0.5, extra_lines: str = "") -> Path:
    """A run directory in cs336_core.training's layout: metrics.jsonl (val loss every `eval_every`
    steps, null otherwise; non-finite losses as null) and result.json."""
    run_dir.mkdir(parents=True)
    lines = []
    for step, loss in enumerate(losses, start=1):
        val = None if loss is None or step % eval_every else loss + 0.05
        lines.append(json.dumps({"step": step, "tokens": step * 1024, "wall_seconds": step * seconds_per_step,
                                 "train_loss": loss, "val_loss": val, "lr": 1e-3, "grad_norm": 1.0,
                                 "tokens_per_second": 1024 / seconds_per_step}))
    metrics = run_dir / "metrics.jsonl"
    metrics.write_text("\n".join(lines) + "\n" + extra_lines)
    (run_dir / "result.json").write_text(json.dumps({"status": status, "steps": len(losses)}))
    return metrics


@pytest.fixture
def runs(tmp_path) -> dict[str, Path]:
    steps = np.arange(1, 41)
    baseline = list(9.0 * np.exp(-steps / 12) + 1.8)
    fast = list(9.0 * np.exp(-steps / 6) + 1.6)
    diverged = list(9.0 * np.exp(-steps[:22] / 10) + 2.0) + [40.0, 300.0, None]
    return {
        "lr=1e-3": _write_run(tmp_path / "a", baseline),
        "lr=3e-3": _write_run(tmp_path / "b", fast, seconds_per_step=0.55),
        "lr=1e-1": _write_run(tmp_path / "c", diverged, status="diverged"),
    }


def test_read_metrics_handles_nulls_resumes_and_torn_lines(tmp_path):
    resumed = json.dumps({"step": 2, "tokens": 2048, "wall_seconds": 9.0, "train_loss": 5.5, "val_loss": 5.6})
    path = _write_run(tmp_path / "run", [7.0, 6.0, 5.0], eval_every=2,
                      extra_lines=resumed + "\n" + '{"step": 3, "train_lo')
    frame = read_metrics(path)
    assert list(frame["step"]) == [1, 2, 3]
    assert frame.loc[1, "train_loss"] == 5.5 and frame.loc[1, "wall_seconds"] == 9.0  # the last record wins
    assert math.isnan(frame.loc[0, "val_loss"]) and frame.loc[1, "val_loss"] == 5.6
    assert math.isnan(frame.loc[1, "lr"])  # a field the record lacks is NaN, the column still exists
    assert frame["tokens"].tolist() == [1024, 2048, 3072]

    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"step": 1}\nnot json\n{"step": 2}\n')
    with pytest.raises(ValueError, match="line 2"):
        read_metrics(broken)
    with pytest.raises(FileNotFoundError, match="nope.jsonl"):
        read_metrics(tmp_path / "nope.jsonl")


def test_loss_curve_table_round_trips_through_csv(runs, tmp_path):
    table = loss_curve_table(runs)
    assert list(table.columns) == ["variant", "step", "tokens", "wall_seconds", "train_loss", "val_loss",
                                   "tokens_per_second", "diverged"]
    assert table.groupby("variant", sort=False).size().to_dict() == {"lr=1e-3": 40, "lr=3e-3": 40, "lr=1e-1": 25}
    assert table.groupby("variant")["diverged"].first().to_dict() == {"lr=1e-1": True, "lr=1e-3": False, "lr=3e-3": False}
    baseline = table[table["variant"] == "lr=1e-3"].set_index("step")
    assert baseline.loc[10, "val_loss"] == pytest.approx(9.0 * math.exp(-10 / 12) + 1.85)
    assert math.isnan(baseline.loc[11, "val_loss"])
    assert table[table["variant"] == "lr=3e-3"]["wall_seconds"].max() == pytest.approx(22.0)
    # Frames already read give the same table (divergence then comes from the losses alone).
    from_frames = loss_curve_table({variant: read_metrics(path) for variant, path in runs.items()})
    pd.testing.assert_frame_equal(from_frames, table)
    table.to_csv(tmp_path / "curves.csv", index=False)
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "curves.csv"), table, check_dtype=False)


def test_diverged_by_nan_without_a_result_file(tmp_path):
    path = _write_run(tmp_path / "run", [5.0, 4.0, None])
    (tmp_path / "run" / "result.json").unlink()
    assert loss_curve_table({"nan": path})["diverged"].all()
    assert list(loss_curve_table({}).columns)[:2] == ["variant", "step"]


def _png_pixels(path: Path) -> np.ndarray:
    from matplotlib.image import imread

    return imread(path)


def _colour_pixels(path: Path, rgb: tuple[int, int, int], tolerance: int = 12) -> int:
    pixels = _png_pixels(path)
    return int(np.all(np.abs(pixels[..., :3] * 255 - rgb) < tolerance, axis=-1).sum())


NOTE_FILL = (0xFF, 0xF3, 0xCD)  # the throughput note's box


def test_plot_loss_curves_writes_a_real_png_that_fits_the_ui_dialog(runs, tmp_path):
    out = plot_loss_curves(loss_curve_table(runs), tmp_path / "plots" / "lr_sweep.png", title="LR sweep", target=2.0)
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 30_000
    # Dagster's Markdown dialog shows 984 px at a 1280 px window and crops a wider image.
    assert _png_pixels(out).shape[:2] == (FIGURE_PIXELS[1], FIGURE_PIXELS[0]) and FIGURE_PIXELS[0] <= 984
    # Lines in the first three colours of matplotlib's cycle (blue, orange, green) were drawn.
    for rgb in ((0x1F, 0x77, 0xB4), (0xFF, 0x7F, 0x0E), (0x2C, 0xA0, 0x2C)):
        assert _colour_pixels(out, rgb) > 200, rgb
    assert sorted(p.name for p in out.parent.iterdir()) == ["lr_sweep.png"]  # atomic: no temp file left


def test_throughput_note_only_when_runs_differ_by_more_than_a_fifth(tmp_path):
    steps = list(9.0 * np.exp(-np.arange(1, 31) / 8) + 2.0)
    close = {"a": _write_run(tmp_path / "a", steps, seconds_per_step=0.50),
             "b": _write_run(tmp_path / "b", steps, seconds_per_step=0.55)}
    apart = {**close, "c": _write_run(tmp_path / "c", steps, seconds_per_step=0.8)}
    assert throughput_spread(loss_curve_table(close))[0] == pytest.approx(0.1)
    assert throughput_spread(loss_curve_table(apart))[0] == pytest.approx(0.6)
    quiet = plot_loss_curves(loss_curve_table(close), tmp_path / "close.png", title="t")
    noted = plot_loss_curves(loss_curve_table(apart), tmp_path / "apart.png", title="t")
    assert _colour_pixels(quiet, NOTE_FILL, 4) == 0
    assert _colour_pixels(noted, NOTE_FILL, 4) > 2_000


def test_smoothing_is_centred_and_skips_non_finite_values():
    values = pd.Series([1.0, 2.0, 3.0, 4.0, 5.0] * 4 + [float("nan")])
    smoothed = smooth(values, window=5)
    assert smoothed.iloc[2] == pytest.approx(3.0) and smoothed.iloc[7] == pytest.approx(3.0)  # no lag
    assert smoothed.iloc[-1] == pytest.approx(np.mean([4.0, 5.0]))  # the NaN is left out
    assert smooth(pd.Series(np.arange(40.0))).iloc[20] == pytest.approx(20.0)  # default window: odd


def test_plot_options_change_the_picture(runs, tmp_path):
    table = loss_curve_table(runs)
    plain = plot_loss_curves(table, tmp_path / "plain.png", title="t")
    logged = plot_loss_curves(table, tmp_path / "log.png", title="t", log_y=True)
    by_tokens = plot_loss_curves(table, tmp_path / "tokens.png", title="t", x="tokens")
    assert len({plain.read_bytes(), logged.read_bytes(), by_tokens.read_bytes()}) == 3
    with pytest.raises(ValueError, match="x must be one of"):
        plot_loss_curves(table, tmp_path / "bad.png", title="t", x="epochs")
    empty = plot_loss_curves(loss_curve_table({}), tmp_path / "empty.png", title="nothing yet")
    assert empty.read_bytes()[:4] == b"\x89PNG"
    (tmp_path / "just_started.jsonl").write_text("")  # a run that has not logged a step yet
    started = loss_curve_table({"new": tmp_path / "just_started.jsonl"})
    assert len(started) == 0 and list(started.columns) == list(table.columns)
    assert plot_loss_curves(started, tmp_path / "started.png", title="t").read_bytes()[:4] == b"\x89PNG"


def test_png_markdown_embeds_the_file(tmp_path, runs):
    png = plot_loss_curves(loss_curve_table(runs), tmp_path / "p.png", title="t")
    markdown = png_markdown(png, "val loss")
    prefix = "![val loss](data:image/png;base64,"
    assert markdown.startswith(prefix) and markdown.endswith(")")
    assert base64.b64decode(markdown[len(prefix):-1]) == png.read_bytes()


@pytest.mark.parametrize("token, shown", [
    (b" the", "␣the"),
    (b"\n\n", "\\n\\n"),
    (b"\t}", "\\t}"),
    (b"caf\xc3\xa9", "café"),
    (b"\xf0\x9f\x98\x80", "😀"),
    (b"\xe2\x80", "\\xe2\\x80"),  # the first two bytes of a three-byte character
    (b"\xff", "\\xff"),
    (b"a\\xff", "a\\\\xff"),  # a literal backslash cannot be mistaken for an escape
    (b"\x00\x7f", "\\x00\\x7f"),
    (b"<|endoftext|>", "<|endoftext|>"),
])
def test_render_token(token, shown):
    assert render_token(token) == shown


def test_longest_tokens():
    vocab = {i: bytes([i]) for i in range(256)}
    vocab |= {256: b" the", 257: b" once upon", 258: b"\xe2\x80\x9d.", 259: b" tomorrow"}
    longest = longest_tokens(vocab, n=3)
    assert longest == [
        {"id": 257, "bytes": 10, "token": "␣once␣upon"},
        {"id": 259, "bytes": 9, "token": "␣tomorrow"},
        {"id": 256, "bytes": 4, "token": "␣the"},
    ]
    assert [t["id"] for t in longest_tokens(vocab, n=4)] == [257, 259, 256, 258]  # ties by id
    assert longest_tokens(vocab, n=4)[3]["token"] == "”."


def _parse_table(markdown: str) -> list[list[str]]:
    return [[cell.strip() for cell in line.strip("|").split(" | ")] for line in markdown.splitlines()]


def test_markdown_table_from_rows_and_frames():
    rows = [{"tokenizer": "stories-10k", "bytes/token": 4.1234567, "tokens": 1234567},
            {"tokenizer": "web|32k", "bytes/token": float("nan"), "tokens": 12, "note": "a\nb"}]
    lines = _parse_table(markdown_table(rows))
    assert lines[0] == ["tokenizer", "bytes/token", "tokens", "note"]
    assert lines[1] == ["---|---:|---:|---"]
    assert lines[2] == ["stories-10k", "4.123", "1,234,567", ""]
    assert lines[3] == ["web\\|32k", "", "12", "a b"]
    frame = pd.DataFrame({"variant": ["pre", "post"], "val_loss": [1.5, 1.75], "steps": [100, 100]})
    assert _parse_table(markdown_table(frame))[2:] == [["pre", "1.5", "100"], ["post", "1.75", "100"]]
    assert markdown_table([]) == "_(no rows)_"
    as_lists = markdown_table(["variant", "val_loss", "steps"], [["pre", 1.5, 100], ["post", np.float64(1.75), 100]])
    assert as_lists == markdown_table(frame)
    with pytest.raises(ValueError):
        markdown_table(["a", "b"], [[1, 2, 3]])


def test_render_report_keeps_section_order():
    text = render_report({"Tokenizers": "longest token: ␣accomplishment\n", "Training": "val loss 1.9"},
                         title="CS336 assignment 1")
    assert text == ("# CS336 assignment 1\n\n## Tokenizers\n\nlongest token: ␣accomplishment\n\n"
                    "## Training\n\nval loss 1.9\n")
    assert render_report([("B", "2"), ("A", "1")]).index("## B") < render_report([("B", "2"), ("A", "1")]).index("## A")


def test_importing_reporting_pulls_in_neither_torch_nor_dagster():
    code = "import sys, cs336_core.reporting; print(sorted(m for m in ('torch', 'dagster') if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.strip() == "[]"


def test_write_loss_curves_writes_the_table_plot_and_a_summary_a_report_can_read(runs, tmp_path):
    (runs["lr=3e-3"].parent / "result.json").unlink()  # still training: no result yet
    (runs["lr=1e-3"].parent / "config.json").write_text(json.dumps(
        {"lr_max": 1e-3, "batch_size": 8, "grad_clip": 0.9, "max_steps": 40, "model": {"norm": "pre"}}))
    paths, summary = write_loss_curves({v: p.parent for v, p in runs.items()}, tmp_path / "curves", "lr_sweep",
                                       title="Learning-rate sweep", target=2.0, x="tokens")
    assert sorted(p.name for p in (tmp_path / "curves").iterdir()) == [
        "lr_sweep.csv", "lr_sweep.json", "lr_sweep.md", "lr_sweep.png"]
    assert paths == {suffix: tmp_path / "curves" / f"lr_sweep.{suffix}" for suffix in ("csv", "png", "json", "md")}
    assert summary == run_summary({v: p.parent for v, p in runs.items()})
    assert [(row["variant"], row["status"], row["steps"]) for row in summary] == [
        ("lr=1e-3", "completed", 40), ("lr=3e-3", "incomplete", None), ("lr=1e-1", "diverged", 25)]
    assert all(list(row) == list(SUMMARY_COLUMNS) for row in summary)
    assert summary[0]["grad_norm"] == 1.0  # the fixture logs 1.0 at every step
    saved = json.loads(paths["json"].read_text())
    assert {k: saved[k] for k in ("title", "target", "x", "plot", "runs")} == {
        "title": "Learning-rate sweep", "target": 2.0, "x": "tokens", "plot": "lr_sweep.png", "runs": summary}
    assert saved["throughput_spread"] == pytest.approx(0.55 / 0.5 - 1, abs=1e-3)  # 0.5 s and 0.55 s per step
    details = saved["details"]
    assert details["lr=1e-3"]["lr_max"] == 1e-3 and details["lr=1e-3"]["model"] == {"norm": "pre"}
    assert details["lr=1e-3"]["clipped_fraction"] == 1.0  # 1.0 > 0.9 at every step
    assert details["lr=1e-1"]["status"] == "diverged" and details["lr=3e-3"]["status"] == "incomplete"
    assert pd.read_csv(paths["csv"])["variant"].unique().tolist() == ["lr=1e-3", "lr=3e-3", "lr=1e-1"]
    assert paths["png"].read_bytes()[:4] == b"\x89PNG"
    assert paths["md"].read_text() == (f"## Learning-rate sweep\n\n{markdown_table(summary)}\n\n"
                                       "![Learning-rate sweep](lr_sweep.png)\n")


def test_run_details_late_grad_norm_and_clipping(tmp_path):
    metrics = _write_run(tmp_path / "run", [5.0, 4.0, 3.0, 2.5])
    lines = [json.loads(line) for line in metrics.read_text().splitlines()]
    for line, norm in zip(lines, (9.0, 2.0, 0.5, 0.3)):
        line["grad_norm"] = norm
    metrics.write_text("\n".join(map(json.dumps, lines)) + "\n")
    (tmp_path / "run" / "config.json").write_text(json.dumps({"grad_clip": 1.0, "lr_max": 0.01}))
    details = run_details(tmp_path / "run")
    assert details["first_grad_norm"] == 9.0 and details["clipped_fraction"] == 0.5 and details["lr_max"] == 0.01
    assert run_summary({"r": tmp_path / "run"})[0]["grad_norm"] == 0.3  # the last quarter: one of four


def test_curves_headline_names_the_best_completed_run():
    summary = [{"variant": "a", "status": "completed", "steps": 10, "final_val_loss": 3.0, "best_val_loss": 2.9,
                "tokens_per_second": 1000.0},
               {"variant": "b", "status": "completed", "steps": 10, "final_val_loss": 2.5, "best_val_loss": 2.5,
                "tokens_per_second": 1500.0},
               {"variant": "c", "status": "diverged", "steps": 3, "final_val_loss": None, "best_val_loss": None,
                "tokens_per_second": 1200.0}]
    headline = curves_headline(summary)
    assert list(headline)[:3] == ["best_variant", "best_final_val_loss", "best_best_val_loss"]
    assert headline["best_variant"] == "b" and headline["best_final_val_loss"] == 2.5
    assert headline["status"] == "2 completed, 1 diverged" and headline["diverged"] == "c"
    assert headline["tokens_per_second"] == "1,000 to 1,500"
    assert curves_headline(summary[2:])["best_variant"] == "none completed"
