"""Text generation from a TransformerLM: temperature, nucleus (top-p) sampling and a KV cache.

`KVCache` lives here and is re-exported by cs336_core.model, whose forward takes one; this module
imports the model only for type hints, so the two import each other without a cycle.

Policies (chosen to keep every step exact, never approximate):
  - The context window is never exceeded: generation stops once prompt + new tokens fill
    `context_length` (no sliding window, which would invalidate the RoPE positions of a KV cache and
    need a full recompute per token). A prompt longer than the window is an error.
  - When `eos_id` is sampled it is appended to the output and generation stops, so the caller can
    tell an end-of-text stop from a length stop.
  - temperature=0 means greedy (argmax); top_p keeps the smallest set of most likely tokens whose
    probability reaches top_p (the most likely token is always kept, so top_p -> 0 is greedy).
  - seed makes sampling reproducible through a private torch.Generator (the global RNG is untouched).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import torch
from torch import Tensor

from cs336_core.kernels import softmax

if TYPE_CHECKING:
    from cs336_core.model import TransformerLM


# ----------------------------------------------------------------------------------------------
# KV cache: the model reads it, generate() creates it


class KVCache:
    """Keys and values of every layer for the tokens seen so far, in preallocated buffers.

    `TransformerLM.forward(new_ids, kv_cache=cache)` appends the new tokens' keys/values in every
    layer and then advances `length`, so each decoding step costs O(length) instead of O(length^2).
    """

    def __init__(self, num_layers: int, max_seq_len: int):
        self.max_seq_len = max_seq_len
        self.length = 0
        self.keys: list[Tensor | None] = [None] * num_layers
        self.values: list[Tensor | None] = [None] * num_layers

    def append(self, layer: int, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Store k, v of shape (rows, new, d) after the cached ones; return all of them (rows, length, d).

        Rows are (batch * heads), as attention reads them: the returned views need no copy.
        """
        end = self.length + k.shape[1]
        if end > self.max_seq_len:
            raise ValueError(f"KV cache holds at most {self.max_seq_len} tokens, asked to reach {end}")
        if self.keys[layer] is None:
            self.keys[layer] = k.new_empty(k.shape[0], self.max_seq_len, k.shape[2])
            self.values[layer] = v.new_empty(v.shape[0], self.max_seq_len, v.shape[2])
        keys, values = self.keys[layer], self.values[layer]
        if keys.shape[0] != k.shape[0]:
            raise ValueError(f"KV cache was filled for {keys.shape[0]} batch*head rows, got {k.shape[0]}")
        keys[:, self.length : end] = k
        values[:, self.length : end] = v
        return keys[:, :end], values[:, :end]

    def layer(self, index: int) -> LayerCache:
        return LayerCache(self, index)


class LayerCache:
    """The view of a KVCache that one attention layer sees: where its new tokens start, and append."""

    def __init__(self, cache: KVCache, layer: int):
        self.cache, self.layer = cache, layer

    @property
    def offset(self) -> int:
        return self.cache.length

    def append(self, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        return self.cache.append(self.layer, k, v)


# ----------------------------------------------------------------------------------------------
# Sampling and generation


def sample_next_token(logits: Tensor, temperature: float, top_p: float, generator: torch.Generator | None) -> int:
    """Pick the next token id from one row of logits (vocab,)."""
    if temperature == 0:
        return int(torch.argmax(logits))
    probs = softmax(logits.float() / temperature, dim=-1)
    if top_p < 1.0:
        sorted_probs, order = torch.sort(probs, descending=True)
        # Keep a token if the mass strictly before it is still short of top_p.
        keep = (torch.cumsum(sorted_probs, dim=-1) - sorted_probs) < top_p
        keep[0] = True
        probs = torch.zeros_like(probs).scatter_(-1, order[keep], sorted_probs[keep])
    return int(torch.multinomial(probs / probs.sum(), 1, generator=generator))


def _validate(model: TransformerLM, prompt: list[int], max_new_tokens: int, temperature: float, top_p: float) -> None:
    vocab_size = model.config.vocab_size
    if not prompt:
        raise ValueError("prompt_ids is empty: generation needs at least one token to condition on")
    bad = [t for t in prompt if not 0 <= t < vocab_size]
    if bad:
        raise ValueError(f"prompt_ids contains ids outside [0, {vocab_size}): {bad[:5]}")
    if len(prompt) > model.context_length:
        raise ValueError(f"prompt of {len(prompt)} tokens is longer than context_length={model.context_length}")
    if max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0 (0 = greedy), got {temperature}")
    if not 0 < top_p <= 1:
        raise ValueError(f"top_p must be in (0, 1], got {top_p}")


@torch.no_grad()
def generate(
    model: TransformerLM,
    prompt_ids: Sequence[int] | Tensor,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_p: float = 1.0,
    eos_id: int | None = None,
    seed: int | None = None,
    use_kv_cache: bool = True,
) -> list[int]:
    """Continue `prompt_ids`; return the new token ids only (ending with eos_id if it was sampled)."""
    prompt = [int(t) for t in (prompt_ids.tolist() if isinstance(prompt_ids, Tensor) else prompt_ids)]
    _validate(model, prompt, max_new_tokens, temperature, top_p)
    device = next(model.parameters()).device
    generator = None
    if seed is not None:
        generator = torch.Generator(device=device).manual_seed(seed)
    budget = min(max_new_tokens, model.context_length - len(prompt))

    new_tokens: list[int] = []
    cache = model.new_kv_cache() if use_kv_cache else None
    pending = torch.tensor([prompt], device=device)  # what the model has not seen yet (cache) or everything
    for _ in range(budget):
        logits = model(pending, kv_cache=cache)[0, -1]
        token = sample_next_token(logits, temperature, top_p, generator)
        new_tokens.append(token)
        if token == eos_id:
            break
        step = torch.tensor([[token]], device=device)
        pending = step if cache is not None else torch.cat([pending, step], dim=1)
    return new_tokens
