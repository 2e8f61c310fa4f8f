"""The `cs336-generate` command: sample text from a trained checkpoint and its tokenizer.

    cs336-generate --checkpoint RUN/ckpt/final.pt --vocab vocab.json --merges merges.txt \\
        --prompt "Once upon a time" --max-new-tokens 200 --temperature 0.8 --top-p 0.95 --seed 0

Prints the completion (the new text only, without the end-of-text token that stopped it). The
model's shape comes from the run config the checkpoint carries (any ckpt/*.pt that `train` wrote).
An empty prompt starts a new document: the model is conditioned on the first special token
(`<|endoftext|>` unless --special-token says otherwise), which also ends generation when sampled.
A missing or unreadable checkpoint or tokenizer file, or one that does not fit the other, is a
one-line error naming the file (exit status 2).
"""

from __future__ import annotations

import argparse
import os
import sys

import torch

from cs336_core.decoding import generate
from cs336_core.model import TransformerLM
from cs336_core.tokenization import Tokenizer
from cs336_core.training.checkpoint import CheckpointError, load_model
from cs336_core.training.runtime import resolve_device

ENDOFTEXT = "<|endoftext|>"


class GenerateError(ValueError):
    """A file or argument that keeps generation from starting; the message names it."""


def load_trained_model(path: str | os.PathLike, device: torch.device | str = "cpu") -> TransformerLM:
    """`training.load_model` on `device`, its failures as GenerateErrors naming the file."""
    try:
        model = load_model(path)
    except (FileNotFoundError, CheckpointError) as error:
        raise GenerateError(str(error)) from None
    except (ValueError, RuntimeError) as error:  # a bad model config, or weights of another shape
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise GenerateError(f"{path}: its weights do not fit the model config it carries ({first_line})") from None
    return model.to(device)


def load_tokenizer(vocab: str, merges: str, special_tokens: list[str]) -> Tokenizer:
    try:
        return Tokenizer.from_files(vocab, merges, special_tokens)
    except FileNotFoundError as error:
        raise GenerateError(str(error)) from None
    except (ValueError, UnicodeDecodeError, OSError) as error:  # JSON errors are ValueErrors that name no file
        raise GenerateError(f"cannot load the tokenizer from {vocab} and {merges}: {error}") from None


def prompt_ids(tokenizer: Tokenizer, prompt: str, vocab_size: int, special_tokens: list[str]) -> list[int]:
    """The prompt's token ids, checked against the model (or the document start, for an empty prompt)."""
    if tokenizer.max_token_id >= vocab_size:
        raise GenerateError(f"the tokenizer's ids reach {tokenizer.max_token_id}, past the model's vocab_size="
                            f"{vocab_size}: was the checkpoint trained with this --vocab/--merges and these special "
                            "tokens?")
    if prompt:
        return tokenizer.encode(prompt)
    if not special_tokens:
        raise GenerateError("--prompt is empty and no --special-token marks a document start to condition on")
    return [tokenizer.special_to_id[special_tokens[0]]]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cs336-generate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", required=True, help="a checkpoint written by train (RUN/ckpt/final.pt)")
    parser.add_argument("--vocab", required=True, help="the tokenizer's vocab.json")
    parser.add_argument("--merges", required=True, help="the tokenizer's merges.txt")
    parser.add_argument("--special-token", action="append", default=None, dest="special_tokens",
                        help=f"repeatable (default {ENDOFTEXT}); the first one ends generation when sampled")
    parser.add_argument("--prompt", default="", help="text to continue (default: start a new document)")
    parser.add_argument("--max-new-tokens", type=int, default=256,
                        help="at most this many new tokens (default 256; also capped by the context length)")
    parser.add_argument("--temperature", type=float, default=1.0, help="0 = greedy (default 1.0)")
    parser.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling mass in (0, 1] (default 1.0)")
    parser.add_argument("--seed", type=int, default=None, help="makes sampling reproducible (default: random)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps (default auto)")
    return parser


def complete(args: argparse.Namespace) -> str:
    special_tokens = [ENDOFTEXT] if args.special_tokens is None else args.special_tokens
    try:
        device = resolve_device(args.device)
    except (ValueError, RuntimeError) as error:
        raise GenerateError(f"--device {args.device}: {error}") from None
    model = load_trained_model(args.checkpoint, device)
    tokenizer = load_tokenizer(args.vocab, args.merges, special_tokens)
    ids = prompt_ids(tokenizer, args.prompt, model.config.vocab_size, special_tokens)
    eos_id = tokenizer.special_to_id[special_tokens[0]] if special_tokens else None
    try:
        new_ids = generate(model, ids, args.max_new_tokens, temperature=args.temperature, top_p=args.top_p,
                           eos_id=eos_id, seed=args.seed)
    except ValueError as error:  # a prompt past the context window, a bad temperature or top-p
        raise GenerateError(str(error)) from None
    if new_ids and new_ids[-1] == eos_id:
        new_ids = new_ids[:-1]
    return tokenizer.decode(new_ids)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        text = complete(args)
    except GenerateError as error:
        print(f"cs336-generate: error: {error}", file=sys.stderr)
        return 2
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
