"""The sweeps in prose: `learning_rate` (the best rate against the edge of stability),
`batch_size_experiment`, and the four ablations, with a detector for results that go against the
handout's expectation and the evidence the run has for them.

Everything reads a curves summary as `cs336_core.reporting.write_loss_curves` writes it: `runs`
(one row per run: variant, status, steps, tokens, final/best val loss, tokens/s, wall seconds,
late gradient norm) and `details` (per variant: lr_max, batch_size, grad_clip, model, first grad
norm, clipped fraction, message). Which run is which comes from its config, not its name.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

# What each ablation changes in the model config, the handout problem it answers, what it removes,
# and why the handout expects it to do no better than the baseline.
ABLATIONS = (
    ({"norm": "none"}, "layer_norm_ablation", "removing RMSNorm",
     "RMSNorm keeps the residual stream and the attention logits at a fixed scale; without it the "
     "activations can grow with depth and training, and the handout expects instability at the "
     "baseline's best learning rate"),
    ({"norm": "post"}, "pre_norm_ablation", "post-norm instead of pre-norm",
     "pre-norm leaves an identity path through the residual stream for the gradient; post-norm puts a "
     "normalisation on it in every block, which the handout expects to train less stably"),
    ({"position": "nope"}, "no_pos_emb", "no position embedding (NoPE)",
     "without RoPE the model only knows positions through the causal mask (a token can count how many "
     "came before it), so word order is harder to use"),
    ({"ffn": "silu"}, "swiglu_ablation", "a SiLU feed-forward instead of SwiGLU",
     "SwiGLU's gate lets each hidden unit scale another multiplicatively; the plain SiLU network has "
     "d_ff = 4 d_model to match the parameter count, and the handout expects it to be slightly worse"),
)
PROBLEMS = tuple(problem for _, problem, _, _ in ABLATIONS)


def _fmt(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _lr(value: float) -> str:
    return f"{value:.0e}".replace("e-0", "e-").replace("e+0", "e")


def completed(rows: Sequence[Mapping]) -> list[Mapping]:
    return [r for r in rows if r.get("status") == "completed" and r.get("final_val_loss") is not None]


def best(rows: Sequence[Mapping]) -> Mapping | None:
    done = completed(rows)
    return min(done, key=lambda r: r["final_val_loss"]) if done else None


# ---------------------------------------------------------------------------------------------
# learning_rate


def lr_analysis(curves: Mapping) -> dict:
    """The best rate and the edge of stability of an lr sweep: the largest rate that did not
    diverge and the smallest that did (None where the grid has none)."""
    details = curves.get("details", {})
    rows = sorted(({**row, "lr": details.get(row["variant"], {}).get("lr_max"),
                    "message": details.get(row["variant"], {}).get("message", "")} for row in curves["runs"]),
                  key=lambda r: r["lr"] or 0.0)
    rows = [r for r in rows if r["lr"] is not None]
    top = best(rows)
    stable = [r for r in rows if r["status"] == "completed"]
    diverged = [r for r in rows if r["status"] == "diverged"]
    edge = max(stable, key=lambda r: r["lr"]) if stable else None
    first_diverged = min((r for r in diverged if not edge or r["lr"] > edge["lr"]), key=lambda r: r["lr"],
                         default=None)
    grid = [r["lr"] for r in rows]
    return {"rows": rows, "best": top, "edge": edge, "first_diverged": first_diverged, "diverged": diverged,
            "grid_steps_below_edge": grid.index(edge["lr"]) - grid.index(top["lr"]) if top and edge else None,
            "best_at_grid_top": bool(top) and top["lr"] == grid[-1],
            "best_at_grid_bottom": bool(top) and top["lr"] == grid[0] and len(grid) > 1}


def learning_rate_markdown(curves: Mapping, run_lr: float | None) -> str:
    found = lr_analysis(curves)
    top, edge, broke = found["best"], found["edge"], found["first_diverged"]
    if top is None:
        return "No learning rate completed its run, so the sweep has no best rate yet."
    text = [f"The best rate is **{_lr(top['lr'])}**, final validation loss {_fmt(top['final_val_loss'])} after "
            f"{top['steps']:,} steps."]
    if broke is None:
        text.append(f"No rate diverged (the largest, {_lr(edge['lr'])}, completed with "
                    f"{_fmt(edge['final_val_loss'])}), so this grid does not reach the edge of stability; a "
                    f"sweep to larger rates would find it.")
    else:
        why = f" ({broke['message']})" if broke.get("message") else ""
        text.append(f"The edge of stability lies between **{_lr(edge['lr'])}**, the largest rate that did not "
                    f"diverge (final loss {_fmt(edge['final_val_loss'])}), and **{_lr(broke['lr'])}**, the "
                    f"smallest that did, at step {broke['steps']:,}{why}." if edge else
                    f"Every rate diverged, from {_lr(broke['lr'])} up.")
        steps_below = found["grid_steps_below_edge"]
        if steps_below == 0:
            text.append("The best rate is the largest stable one: it sits at the edge of stability, as the "
                        "handout's folklore says.")
        elif steps_below is not None:
            text.append(f"The best rate is {steps_below} grid step{'s' * (steps_below > 1)} "
                        f"({edge['lr'] / top['lr']:.3g}x) below the largest stable rate, whose run trained but "
                        f"ended {edge['final_val_loss'] - top['final_val_loss']:+.3f} worse: near the edge of "
                        f"stability, not on it, since close to the edge the steps are large enough to keep the "
                        f"loss bouncing within a short budget.")
    if found["best_at_grid_top"]:
        text.append("The best rate is the largest in the grid, so a larger one may be better still.")
    if found["best_at_grid_bottom"]:
        text.append("The best rate is the smallest in the grid, so a smaller one may be better still.")
    if run_lr is not None and abs(run_lr - top["lr"]) > 1e-12:
        text.append(f"The main runs and ablations train at {_lr(run_lr)}, "
                    f"{'below' if run_lr < top['lr'] else 'above'} this sweep's best rate, which matters when "
                    f"reading the ablations below.")
    return " ".join(text)


# ---------------------------------------------------------------------------------------------
# batch_size_experiment


def batch_size_markdown(curves: Mapping) -> str:
    details = curves.get("details", {})
    rows = sorted(({**r, "batch": details.get(r["variant"], {}).get("batch_size")} for r in curves["runs"]),
                  key=lambda r: r["batch"] or 0)
    top = best(rows)
    if top is None:
        return "No batch size completed its run yet."
    tokens = {r["tokens"] for r in rows if r.get("tokens")}
    budget = (f"every run saw about {max(tokens):,} tokens" if tokens else "the runs share a token budget")
    steps = "; ".join(f"batch {r['batch']}: {r['steps']:,} steps, loss {_fmt(r['final_val_loss'])}" for r in rows)
    text = [f"At a constant token budget ({budget}; the plot's x axis is tokens): {steps}. The best is "
            f"**batch {top['batch']}**."]
    largest = rows[-1]
    if top is not largest:
        text.append(f"Larger batches take fewer, larger steps for the same tokens (batch {largest['batch']} "
                    f"makes {largest['steps']:,} updates), and the sweep keeps one learning rate and schedule "
                    f"for every batch size: at so few steps the large-batch runs are limited by the number of "
                    f"updates, not by gradient noise. A larger batch would need a larger rate (or more tokens) "
                    f"to catch up.")
    else:
        text.append("The largest batch is best: the gradient noise of small batches costs more here than the "
                    "extra updates gain.")
    return " ".join(text)


# ---------------------------------------------------------------------------------------------
# ablations


@dataclass
class Ablation:
    variant: str
    problem: str
    change: str
    expectation: str
    delta: float | None  # final val loss minus the baseline's (negative: better)
    row: Mapping
    details: Mapping
    surprising: bool = False
    evidence: list[str] = field(default_factory=list)


def _diff(model: Mapping, baseline: Mapping) -> dict:
    return {k: v for k, v in model.items() if baseline.get(k) != v}


def identify_ablations(curves: Mapping, baseline_model: Mapping) -> tuple[Mapping | None, list[Ablation]]:
    """(the baseline's row, one Ablation per run whose model differs from `baseline_model` in one of
    ABLATIONS' ways), matched by config, not by name."""
    details = curves.get("details", {})
    baseline = next((r for r in curves["runs"]
                     if not _diff(details.get(r["variant"], {}).get("model") or {}, baseline_model)), None)
    found = []
    for row in curves["runs"]:
        changed = _diff(details.get(row["variant"], {}).get("model") or {}, baseline_model)
        for change, problem, what, why in ABLATIONS:
            if changed and all(changed.get(k) == v for k, v in change.items()):
                loss, base = row.get("final_val_loss"), (baseline or {}).get("final_val_loss")
                delta = loss - base if loss is not None and base is not None else None
                found.append(Ablation(row["variant"], problem, what, why, delta, row, details.get(row["variant"], {})))
    return baseline, found


def noise_tolerance(baseline_loss: float) -> float:
    """Loss differences below this are what one seed can not tell apart: 0.05 nats or 2% of the loss."""
    return max(0.05, 0.02 * baseline_loss)


def find_surprises(curves: Mapping, baseline_model: Mapping, best_lr: float | None = None,
                   tolerance: float | None = None) -> tuple[Mapping | None, list[Ablation]]:
    """The ablations, each marked `surprising` when it beat the baseline by more than `tolerance`
    (nats, default `noise_tolerance`; the handout expects none to do better) and given the run's evidence:
    gradient norms and clipping against the baseline's, and whether the sweep's best learning rate
    is above the one the ablation trained at (a baseline held back by its step size)."""
    baseline, ablations = identify_ablations(curves, baseline_model)
    base_details = curves.get("details", {}).get(baseline["variant"], {}) if baseline else {}
    if baseline is not None and baseline.get("final_val_loss") is not None and tolerance is None:
        tolerance = noise_tolerance(baseline["final_val_loss"])
    for ablation in ablations:
        if ablation.delta is None or baseline is None or ablation.delta >= -tolerance:
            continue
        ablation.surprising = True
        norm, base_norm = ablation.row.get("grad_norm"), baseline.get("grad_norm")
        if norm and base_norm and (norm / base_norm > 1.5 or base_norm / norm > 1.5):
            ablation.evidence.append(
                f"its gradient norm over the last quarter of training was {norm:.2f} against the baseline's "
                f"{base_norm:.2f} ({norm / base_norm:.1f}x)")
        clipped, base_clipped = ablation.details.get("clipped_fraction"), base_details.get("clipped_fraction")
        if clipped is not None and base_clipped is not None and clipped - base_clipped > 0.25:
            ablation.evidence.append(
                f"{clipped:.0%} of its logged steps had a gradient norm above the clipping threshold "
                f"{ablation.details.get('grad_clip')} (baseline: {base_clipped:.0%})")
        first, base_first = ablation.details.get("first_grad_norm"), base_details.get("first_grad_norm")
        if first and base_first and first / base_first > 3:
            ablation.evidence.append(f"its first logged gradient norm was {first:.1f} (baseline {base_first:.2f})")
        lr = ablation.details.get("lr_max")
        if best_lr and lr and best_lr > lr * 1.5:
            ablation.evidence.append(
                f"the learning-rate sweep's best rate ({_lr(best_lr)}) is above the {_lr(lr)} the ablations "
                f"train at, so in {ablation.row.get('steps', 0):,} steps the baseline is held back by its step "
                f"size, and a change that makes updates effectively larger looks like an improvement")
    return baseline, ablations


def ablations_markdown(curves: Mapping, baseline_model: Mapping, best_lr: float | None = None) -> dict[str, str]:
    """problem name -> its paragraph, for each of ABLATIONS that the curves have a run of."""
    baseline, ablations = find_surprises(curves, baseline_model, best_lr)
    tolerance = noise_tolerance(baseline["final_val_loss"]) if baseline and baseline.get("final_val_loss") else 0.05
    out = {}
    for a in ablations:
        loss = a.row.get("final_val_loss")
        if a.row.get("status") == "diverged":
            result = f"diverged at step {a.row.get('steps')} ({a.details.get('message', '')})"
        elif a.delta is None:
            result = f"ended with status {a.row.get('status')}"
        else:
            result = (f"final validation loss {_fmt(loss)} against the baseline's "
                      f"{_fmt(baseline['final_val_loss'])} ({a.delta:+.3f}, "
                      + ("worse" if a.delta > tolerance else "better" if a.delta < -tolerance
                         else f"within the {tolerance:.2f} that one seed cannot resolve") + ")")
        text = f"Run `{a.variant}`, {a.change}: {result}. Expected: no better than the baseline, since {a.expectation}."
        if a.surprising:
            evidence = "; ".join(a.evidence) if a.evidence else "none beyond the losses themselves"
            text += (f"\n\n**Surprising:** {a.change} *lowered* the loss by {-a.delta:.3f}. Evidence in this run: "
                     f"{evidence}. The likely reading: at this short budget the change trades stability for "
                     f"faster early progress; the handout's claim is about training at the best rate to the "
                     f"end, which this run does not test (no such run of this variant).")
        out[a.problem] = text
    return out
