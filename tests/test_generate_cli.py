"""cs336-generate: text from a checkpoint that train() wrote and its tokenizer; one-line errors naming the file."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from cs336_core.decoding import generate
from cs336_core.generate_cli import load_trained_model, main
from cs336_core.model import ModelConfig
from cs336_core.optim import AdamW
from cs336_core.tokenization import Tokenizer, save_vocab_merges
from cs336_core.training import TrainConfig, save_checkpoint, train

TEXT = "Once upon a time there was a small cat. The cat liked milk.<|endoftext|>A dog ran home.<|endoftext|>" * 40


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A byte-level tokenizer (no merges) and a tiny model trained 3 steps on its encoding of TEXT."""
    root = tmp_path_factory.mktemp("generate")
    vocab = {i: bytes([i]) for i in range(256)}
    save_vocab_merges(vocab, [], root / "vocab.json", root / "merges.txt")
    tokenizer = Tokenizer.from_files(root / "vocab.json", root / "merges.txt", ["<|endoftext|>"])
    np.save(root / "tokens.npy", np.array(tokenizer.encode(TEXT), dtype=np.uint16))
    model = ModelConfig(vocab_size=257, context_length=32, d_model=32, num_layers=1, num_heads=2, d_ff=64)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        result = train(TrainConfig(train_path=str(root / "tokens.npy"), out_dir=str(root / "run"), model=model,
                                   batch_size=4, max_steps=3, eval_every=0, device="cpu"))
    finally:
        torch.set_num_threads(before)
    assert result.status == "completed"
    return root, Path(result.checkpoint_path), tokenizer


def args_for(root, checkpoint, *extra):
    return ["--checkpoint", str(checkpoint), "--vocab", str(root / "vocab.json"), "--merges", str(root / "merges.txt"),
            "--device", "cpu", *extra]


def expected_completion(checkpoint, tokenizer, prompt, **sampling) -> str:
    model = load_trained_model(checkpoint)
    eos = tokenizer.special_to_id["<|endoftext|>"]
    ids = generate(model, tokenizer.encode(prompt), 12, eos_id=eos, **sampling)
    return tokenizer.decode(ids[:-1] if ids and ids[-1] == eos else ids)


def test_generate_in_a_subprocess_prints_the_seeded_completion(trained):
    root, checkpoint, tokenizer = trained
    command = [sys.executable, "-m", "cs336_core.generate_cli",
               *args_for(root, checkpoint, "--prompt", "Once upon", "--max-new-tokens", "12", "--temperature", "0.9",
                         "--top-p", "0.95", "--seed", "7")]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONIOENCODING": "utf-8"}
    done = subprocess.run(command, env=env, capture_output=True, text=True, encoding="utf-8", timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout == expected_completion(checkpoint, tokenizer, "Once upon", temperature=0.9, top_p=0.95,
                                              seed=7) + "\n"


@pytest.mark.skipif(shutil.which("cs336-generate") is None, reason="the package's scripts are not installed")
def test_the_installed_console_script_runs(trained):
    root, checkpoint, _ = trained
    done = subprocess.run(["cs336-generate", "--help"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "--checkpoint" in done.stdout and "--top-p" in done.stdout


def test_greedy_and_an_empty_prompt(trained, capsys):
    root, checkpoint, tokenizer = trained
    assert main(args_for(root, checkpoint, "--prompt", "The cat", "--max-new-tokens", "12", "--temperature", "0")) == 0
    assert capsys.readouterr().out == expected_completion(checkpoint, tokenizer, "The cat", temperature=0) + "\n"
    # An empty prompt starts a document: the model is conditioned on <|endoftext|>.
    assert main(args_for(root, checkpoint, "--max-new-tokens", "5", "--seed", "1")) == 0
    capsys.readouterr()
    assert main(args_for(root, checkpoint, "--max-new-tokens", "5", "--special-token", "<|x|>", "--special-token",
                         "<|endoftext|>")) == 2  # <|x|> gets id 257, past the model's vocabulary
    assert "vocab_size=257" in capsys.readouterr().err


def one_line_error(capsys, argv) -> str:
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.startswith("cs336-generate: error: ")
    assert len(captured.err.strip().splitlines()) == 1, captured.err
    return captured.err


def test_bad_files_are_one_line_errors_naming_the_file(trained, tmp_path, capsys):
    root, checkpoint, _ = trained
    missing = tmp_path / "nope.pt"
    assert str(missing) in one_line_error(capsys, args_for(root, missing))

    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint at all")
    assert f"{garbage} is not a readable checkpoint" in one_line_error(capsys, args_for(root, garbage))

    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(checkpoint.read_bytes()[:1000])
    assert str(truncated) in one_line_error(capsys, args_for(root, truncated))

    bare = tmp_path / "bare.pt"
    model = load_trained_model(checkpoint)
    save_checkpoint(model, AdamW(model.parameters()), 3, bare)
    assert f"{bare} holds no model config (not written by train())" in one_line_error(capsys, args_for(root, bare))

    mismatched = tmp_path / "mismatched.pt"
    other_shape = {**load_trained_model(checkpoint).config.to_dict(), "d_ff": 96}
    save_checkpoint(model, AdamW(model.parameters()), 3, mismatched, config={"model": other_shape})
    assert f"{mismatched}: its weights do not fit the model config" in one_line_error(capsys,
                                                                                       args_for(root, mismatched))

    base = ["--checkpoint", str(checkpoint), "--device", "cpu"]
    no_vocab = tmp_path / "vocab.json"
    err = one_line_error(capsys, base + ["--vocab", str(no_vocab), "--merges", str(root / "merges.txt")])
    assert f"tokenizer file not found: {no_vocab}" in err

    no_vocab.write_text("{ not json")
    err = one_line_error(capsys, base + ["--vocab", str(no_vocab), "--merges", str(root / "merges.txt")])
    assert f"cannot load the tokenizer from {no_vocab}" in err


def test_a_tokenizer_that_does_not_fit_the_model_and_bad_sampling_arguments(trained, tmp_path, capsys):
    root, checkpoint, _ = trained
    big = {i: bytes([i]) for i in range(256)} | {256 + i: bytes([97, 97 + i]) for i in range(10)}
    save_vocab_merges(big, [(b"a", bytes([97 + i])) for i in range(10)], tmp_path / "vocab.json",
                      tmp_path / "merges.txt")
    err = one_line_error(capsys, ["--checkpoint", str(checkpoint), "--vocab", str(tmp_path / "vocab.json"),
                                  "--merges", str(tmp_path / "merges.txt"), "--device", "cpu"])
    assert "past the model's vocab_size=257" in err

    assert "top_p must be in (0, 1]" in one_line_error(capsys, args_for(root, checkpoint, "--top-p", "0"))
    assert "temperature must be >= 0" in one_line_error(capsys, args_for(root, checkpoint, "--temperature", "-1"))
    err = one_line_error(capsys, args_for(root, checkpoint, "--prompt", "x" * 40))
    assert "longer than context_length=32" in err
