"""The write-up's answers and prose (cs336_core.writeup), on computed answers and synthetic results."""

import math

import pytest

from cs336_core.accounting import accounting_tables
from cs336_core.model import ModelConfig
from cs336_core.reporting import printable
from cs336_core.tokenizer_experiments import large_sample
from cs336_core.writeup import accounting_text, runs_text, sgd_toy, sweeps_text, tokenizer_text, unicode_answers

BASE_MODEL = {"d_model": 32, "norm": "pre", "position": "rope", "ffn": "swiglu", "d_ff": 64}


# ---------------------------------------------------------------------------------------------
# unicode1, unicode2


def test_unicode1_is_computed():
    answers = unicode_answers.unicode1()
    assert answers["code_point"] == "U+0000" and answers["category"] == "Cc"
    assert answers["repr"] == "'\\x00'" and answers["printed"] == "\x00"
    assert answers["text_repr"] == "'this is a test\\x00string'"
    assert answers["text_printed"] == "this is a test\x00string"
    text = unicode_answers.unicode1_markdown(answers)
    assert "`'\\x00'`" in text and "`this is a teststring`" in text and "\x00" not in text


def test_unicode2_counts_bytes_and_checks_decoders():
    answers = unicode_answers.unicode2({"ascii": "hello world", "accents": "héllo wörld"})
    sizes = {row["text"]: row for row in answers["sizes"]}
    assert sizes["ascii"]["utf-8_bytes"] == 11 and sizes["ascii"]["utf-16-le_bytes"] == 22
    assert sizes["ascii"]["utf-32-le_bytes"] == 44 and sizes["ascii"]["ascii_%"] == 100
    assert sizes["accents"]["utf-8_bytes"] == 13 and sizes["accents"]["utf-16-le_bytes"] == 22
    # The example where UTF-16 is shorter than UTF-8 really is.
    example = sizes["multilingual example"]
    assert example["utf-16-le_bytes"] < example["utf-8_bytes"]
    # (b) the handout's decoder fails on a two-byte character and works on ASCII; (c) invalid UTF-8.
    assert "0xc3" in answers["wrong_error"] and answers["wrong_ascii_result"] == "hello"
    with pytest.raises(UnicodeDecodeError):
        unicode_answers.decode_utf8_bytes_to_str_wrong(answers["wrong_input"].encode())
    assert "invalid continuation byte" in answers["invalid_error"]
    with pytest.raises(UnicodeDecodeError):
        unicode_answers.INVALID_UTF8.decode("utf-8")
    text = unicode_answers.unicode2_markdown(answers, "test text")
    assert "2x and 4x on ascii" in text and answers["invalid_error"] in text


# ---------------------------------------------------------------------------------------------
# learning_rate_tuning


def test_sgd_toy_behaves_as_the_handout_says():
    rows = {row["lr"]: row for row in sgd_toy.learning_rate_tuning()}
    slow, fast, broken = rows[1e1]["losses"], rows[1e2]["losses"], rows[1e3]["losses"]
    assert len(slow) == len(fast) == len(broken) == 10
    assert slow[0] == fast[0] == broken[0]  # the same seeded start
    assert all(b < a for a, b in zip(slow, slow[1:])) and slow[-1] > 0.05 * slow[0]  # steady, slow decay
    assert fast[1] == pytest.approx(fast[0]) and fast[-1] < 1e-6 * fast[0]  # first step flips w, then collapses
    assert all(b > 10 * a for a, b in zip(broken, broken[1:]))  # grows every step: diverges
    assert [rows[lr]["verdict"] for lr in (1e1, 1e2, 1e3)] == ["decays slowly", "converges fast", "diverges"]
    text = sgd_toy.learning_rate_tuning_markdown(list(rows.values()))
    assert "at lr 1000 it diverges" in text and "| step | lr 10 | lr 100 | lr 1000 |" in text


def test_verdict_of_a_non_finite_loss_is_divergence():
    assert sgd_toy.verdict([1.0, math.inf]) == "diverges"
    assert sgd_toy.verdict([1.0, 0.5]) == "decays slowly"


# ---------------------------------------------------------------------------------------------
# learning_rate, batch_size_experiment


def _run(variant, status, loss, *, steps=100, grad_norm=0.5, tokens=None, speed=1000.0, **details):
    row = {"variant": variant, "status": status, "steps": steps, "tokens": tokens or steps * 64,
           "final_val_loss": loss, "best_val_loss": loss, "tokens_per_second": speed, "wall_seconds": 10.0,
           "grad_norm": grad_norm}
    return row, {"status": status, "steps": steps, "message": details.pop("message", ""), **details}


def _curves(*runs, x="step", spread=0.0):
    return {"title": "t", "x": x, "plot": "t.png", "runs": [row for row, _ in runs],
            "details": {row["variant"]: details for row, details in runs}, "throughput_spread": spread}


def _lr_curves(*points):
    return _curves(*(_run(f"rate {lr}", status, loss, lr_max=lr, message="loss exploded" if status == "diverged" else "")
                     for lr, status, loss in points))


def test_lr_analysis_finds_the_best_rate_and_the_edge_of_stability():
    curves = _lr_curves((1e-1, "completed", 4.3), (1e-3, "completed", 4.4), (1e-2, "completed", 1.9),
                        (1.0, "diverged", None), (3e-3, "completed", 2.8))
    found = sweeps_text.lr_analysis(curves)
    assert found["best"]["lr"] == 1e-2 and found["edge"]["lr"] == 1e-1 and found["first_diverged"]["lr"] == 1.0
    assert found["grid_steps_below_edge"] == 1
    text = sweeps_text.learning_rate_markdown(curves, run_lr=3e-3)
    assert "The best rate is **1e-2**" in text and "between **1e-1**" in text and "**1e0**" in text
    assert "loss exploded" in text and "train at 3e-3, below this sweep's best rate" in text


def test_lr_text_when_the_best_rate_is_the_edge_or_nothing_diverged():
    at_edge = _lr_curves((1e-3, "completed", 3.0), (1e-2, "completed", 2.0), (1e-1, "diverged", None))
    assert "sits at the edge of stability" in sweeps_text.learning_rate_markdown(at_edge, None)
    calm = _lr_curves((1e-3, "completed", 3.0), (1e-2, "completed", 2.0))
    text = sweeps_text.learning_rate_markdown(calm, None)
    assert "No rate diverged" in text and "largest in the grid" in text
    assert "No learning rate completed" in sweeps_text.learning_rate_markdown(
        _lr_curves((1.0, "diverged", None)), None)


def test_batch_size_text_compares_at_equal_tokens():
    curves = _curves(_run("b", "completed", 2.8, steps=150, batch_size=16, tokens=9600),
                     _run("a", "completed", 2.0, steps=600, batch_size=4, tokens=9600),
                     _run("c", "completed", 4.5, steps=37, batch_size=64, tokens=9472), x="tokens")
    text = sweeps_text.batch_size_markdown(curves)
    assert text.index("batch 4:") < text.index("batch 16:") < text.index("batch 64:")  # ordered by batch size
    assert "The best is **batch 4**" in text and "batch 64 makes 37 updates" in text


# ---------------------------------------------------------------------------------------------
# ablations and the surprise detector


def _ablations(no_norm_loss, *, no_norm_grad=1.5, clipped=1.0, first=17.8, lr=3e-3, name="no_rmsnorm"):
    return _curves(
        _run("base", "completed", 2.8, grad_norm=0.45, model=BASE_MODEL, lr_max=lr, grad_clip=1.0,
             clipped_fraction=0.0, first_grad_norm=0.95),
        _run(name, "completed", no_norm_loss, grad_norm=no_norm_grad, model={**BASE_MODEL, "norm": "none"},
             lr_max=lr, grad_clip=1.0, clipped_fraction=clipped, first_grad_norm=first),
        _run("post", "completed", 2.79, model={**BASE_MODEL, "norm": "post"}, lr_max=lr, clipped_fraction=0.0),
        _run("nope", "completed", 2.94, model={**BASE_MODEL, "position": "nope"}, lr_max=lr),
        _run("silu", "diverged", None, steps=40, model={**BASE_MODEL, "ffn": "silu", "d_ff": 128}, lr_max=lr,
             message="loss 30 exceeded 3 x initial loss"))


def test_ablations_are_identified_by_their_config_not_their_names():
    baseline, found = sweeps_text.identify_ablations(_ablations(3.0, name="variant-7"), BASE_MODEL)
    assert baseline["variant"] == "base"
    assert {a.problem: a.variant for a in found} == {"layer_norm_ablation": "variant-7", "pre_norm_ablation": "post",
                                                     "no_pos_emb": "nope", "swiglu_ablation": "silu"}


def test_a_better_ablation_is_surprising_and_comes_with_the_run_s_evidence():
    _, found = sweeps_text.find_surprises(_ablations(2.2), BASE_MODEL, best_lr=1e-2)
    surprising = {a.variant: a for a in found if a.surprising}
    assert list(surprising) == ["no_rmsnorm"]  # post-norm's -0.01 is within one seed's noise
    evidence = " ".join(surprising["no_rmsnorm"].evidence)
    assert "1.50 against the baseline's 0.45 (3.3x)" in evidence
    assert "100% of its logged steps" in evidence and "17.8" in evidence
    assert "best rate (1e-2) is above the 3e-3" in evidence
    texts = sweeps_text.ablations_markdown(_ablations(2.2), BASE_MODEL, best_lr=1e-2)
    assert "**Surprising:** removing RMSNorm *lowered* the loss by 0.600" in texts["layer_norm_ablation"]
    assert "Surprising" not in texts["pre_norm_ablation"] and "one seed cannot resolve" in texts["pre_norm_ablation"]
    assert "+0.140, worse" in texts["no_pos_emb"]
    assert "diverged at step 40 (loss 30 exceeded 3 x initial loss)" in texts["swiglu_ablation"]


def test_no_surprise_when_the_ablation_is_worse_and_no_lr_evidence_without_a_sweep():
    _, found = sweeps_text.find_surprises(_ablations(3.1), BASE_MODEL, best_lr=1e-2)
    assert not any(a.surprising for a in found)
    _, found = sweeps_text.find_surprises(_ablations(2.2, no_norm_grad=0.5, clipped=0.0, first=1.0), BASE_MODEL)
    (surprise,) = [a for a in found if a.surprising]
    assert surprise.evidence == []  # nothing in the run explains it, and the text says so
    assert "none beyond the losses themselves" in sweeps_text.ablations_markdown(
        _ablations(2.2, no_norm_grad=0.5, clipped=0.0, first=1.0), BASE_MODEL)["layer_norm_ablation"]


# ---------------------------------------------------------------------------------------------
# tokenizers, accounting, main runs, samples, leaderboard


@pytest.mark.parametrize("token, kind", [("␣butterflies", "a whole word with its leading space"),
                                         ("+-----+-----+", "a run of punctuation"),
                                         ("␣once␣upon", "several words"), ("ing", "a word (or word piece)")])
def test_describe_token(token, kind):
    assert tokenizer_text.describe_token(token).startswith(kind)


def test_large_sample_continues_into_the_next_file(tmp_path):
    valid, train = tmp_path / "valid.txt", tmp_path / "train.txt"
    valid.write_text("".join(f"valid document {i}.\n<|endoftext|>\n" for i in range(3)))
    train.write_text("".join(f"train document {i}.\n<|endoftext|>\n" for i in range(50)))
    documents, sources = large_sample([valid, train], n_bytes=200)
    assert documents[:3] == [f"valid document {i}." for i in range(3)] and documents[3] == "train document 0."
    assert sum(len(d) for d in documents) >= 200 > sum(len(d) for d in documents[:-1])  # whole documents, no more
    assert [s["file"] for s in sources] == ["valid.txt", "train.txt"]
    assert sum(s["bytes"] for s in sources) == sum(len(d) for d in documents)
    assert large_sample([valid], 10**6)[1] == [{"file": "valid.txt", "bytes": 3 * len("valid document 0.")}]


def test_tokenizer_experiments_text_names_which_sample_each_number_comes_from():
    def row(tok, text, bpt, large_bpt):
        return {"tokenizer": f"{tok} (400)", "text": text, "documents": 10, "bytes": 1000, "tokens": int(1000 / bpt),
                "bytes_per_token": bpt, "large_documents": 900, "large_bytes": 10**6,
                "large_tokens": int(10**6 / large_bpt), "large_bytes_per_token": large_bpt,
                "large_sources": [{"file": "valid.txt", "bytes": 10**6}], "throughput_mb_per_s": 2.0,
                "pile_825gb_hours": 114.58}
    rows = [row("stories", "stories", 4.1, 4.0), row("stories", "web", 2.1, 1.9), row("web", "stories", 2.5, 2.6),
            row("web", "web", 3.8, 3.5)]
    text = tokenizer_text.tokenizer_experiments_markdown(rows, {"stories": "s", "web": "w"}, 825 * 10**9)
    assert "**Handout's sample** (10 documents" in text and "**Large sample**" in text
    assert "On the 1 MB sample, the s tokenizer compresses its corpus to **4.0 bytes/token**" in text
    assert "(handout's sample: 4.1 and 3.8)" in text and "**1.9 bytes/token** against 3.5" in text
    assert "**114.58 hours**" in text and "1,000,000 B of valid.txt" in text


def test_accounting_text_reads_its_numbers_from_the_tables():
    small = ModelConfig(vocab_size=2000, context_length=64, d_model=96, num_layers=2, num_heads=4, d_ff=256)
    tables = accounting_tables({"tiny": small}, batch_size=16, steps=300)
    for row in tables["gpt2"]:
        assert sum(accounting_text.flop_shares(row).values()) == pytest.approx(100)
    text = accounting_text.transformer_accounting_markdown(tables)
    assert "**2,127,057,600**" in text and "**4.51 TFLOPs**" in text and "**149.5 TFLOPs**" in text
    attention = "attention scores and weighted values (QK^T, softmax V)"
    long_xl = next(r for r in tables["gpt2"] if r["model"] == "GPT-2 XL" and r["context"] == 16_384)
    assert f"**{accounting_text.flop_shares(long_xl)[attention]:.1f}%**" in text
    # The demo-sized model is dominated by its LM head, and the text says so.
    assert max(accounting_text.preset_shares(tables)["tiny"].items(), key=lambda kv: kv[1])[0] == "LM head"
    assert "**tiny** is at the other end: LM head" in text
    adamw = accounting_text.adamw_accounting_markdown(tables)
    assert "P = 2 V d + L (4 d² + 3 d d_ff + 2 d) + d" in adamw and "8 P bytes" in adamw
    assert f"at most **{tables['gpt2_xl_adamw']['max_batch_size_80GB']}**" in adamw


def test_main_experiment_compares_per_byte():
    assert runs_text.bits_per_byte(math.log(2) * 4, 4.0) == pytest.approx(1.0)
    runs = [{"variant": "stories", "status": "completed", "steps": 300, "tokens": 3000, "final_val_loss": 1.75,
             "wall_seconds": 14.0, "tokens_per_second": 220.0},
            {"variant": "web", "status": "completed", "steps": 300, "tokens": 3000, "final_val_loss": 5.2,
             "wall_seconds": 20.0, "tokens_per_second": 150.0}]
    text = runs_text.main_experiment_markdown(runs, {"stories": 4.0, "web": 3.7}, {"stories": "s", "web": "w"}, 2.0)
    assert "**0.631 bits per byte**" in text and "**2.028 bits per byte**" in text
    assert "run meets this preset's target of 2.0" in text and "3.2x the bits" in text
    runs[0]["final_val_loss"] = 2.5
    assert "misses" in runs_text.main_experiment_markdown(runs, {"stories": 4.0, "web": 3.7},
                                                          {"stories": "s", "web": "w"}, 2.0)


def test_generate_text_counts_what_the_samples_did():
    samples = [{"model": "stories", "prompt": "Once", "completion": " a cat sat.\n<|endoftext|>", "new_tokens": 5},
               {"model": "stories", "prompt": "The", "completion": " dog zzq ran", "new_tokens": 4}]
    rate = runs_text.known_word_rate([s["completion"] for s in samples], {"a", "cat", "sat", "dog", "ran"})
    assert rate == pytest.approx(5 / 6)  # "zzq" is not a word of the corpus; <|endoftext|> is not a word
    text = runs_text.generate_markdown(samples, {"temperature": 0.8, "top_p": 0.9, "max_new_tokens": 96}, 64,
                                       "<|endoftext|>", {"stories": 1.75}, {"stories": rate}, {"stories": "s"})
    assert "2 samples of 5, 4 new tokens; 1 of 2 ended at `<|endoftext|>`, the rest at the token limit" in text
    assert "perplexity of 5.8" in text and "83% of the generated words" in text


def test_leaderboard_section_with_and_without_a_leaderboard_run():
    assert "ran no leaderboard run" in runs_text.leaderboard_markdown(None, None, "demo")
    curves = {"runs": [{"variant": "baseline", "status": "budget", "steps": 700, "final_val_loss": 3.8,
                        "wall_seconds": 60.0, "tokens_per_second": 1000.0},
                       {"variant": "leaderboard", "status": "budget", "steps": 400, "final_val_loss": 3.6,
                        "wall_seconds": 61.0, "tokens_per_second": 600.0}]}
    text = runs_text.leaderboard_markdown(curves, {"val_loss": 3.6, "hardware": {"summary": "CPU: 2 cores"}}, "demo")
    assert "**3.600** against the baseline's 3.800 (-0.200)" in text and "won by 0.200 at 0.60x" in text
    assert "| val_loss | 3.6 |" in text and "| hardware | CPU: 2 cores |" in text


def test_printable_escapes_control_characters():
    assert printable("a\x00b\nc\td\x1b[0m\u2028") == "a\\x00b\nc\td\\x1b[0m\\u2028"
