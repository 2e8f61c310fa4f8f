"""A decoder-only Transformer language model, written from scratch (handout sections 3.4-3.6).

Only nn.Parameter, the container modules and torch.nn.init.trunc_normal_ come from torch.nn, except
on the opt-in `fused_attention=True` path (torch's scaled_dot_product_attention; tests check that both
agree). Speed-only code lives elsewhere and is re-exported here: the hand-written autograd kernels
(behind silu, softmax, scaled_dot_product_attention, RMSNorm, RoPE, attention) in kernels.py, and
`KVCache` in decoding.py: `forward(new_ids, kv_cache=cache)` continues from position `cache.length`.

`TransformerLM(config)` and `TransformerBlock(config)` take a `ModelConfig`, validated when built;
the handout's positional signatures (what its adapters call) build one. Variants (defaults = the
handout's baseline) cover the handout's ablations:
  norm="pre"    pre-norm blocks (baseline); "post" = post-norm blocks, z = norm(x + sublayer(x));
                "none" = every RMSNorm removed, ln1/ln2 *and* ln_final (the handout's
                layer_norm_ablation says "remove all of the RMSNorms"), so those keys leave the state
                dict. Post-norm keeps ln_final so its state dict has the baseline's keys.
  position="rope" | "nope" (no positional information at all; causal masking is the only signal)
  ffn="swiglu" | "silu"  (w2(silu(w1 x)), no gate; d_ff defaults to 4*d_model so the parameter
                count matches SwiGLU's 3 * d_model * 8/3 d_model)
  tie_embeddings  lm_head shares token_embeddings' weight (initialised like lm_head, std
                sqrt(2/(vocab+d_model)): embedding-scale std 1 would give huge initial logits)
  fused_attention opt-in F.scaled_dot_product_attention
The leaderboard's options (handout section 7.5), each off by default; off, the model's state dict,
initialisation and outputs are the baseline's, bit for bit, and ModelConfig.to_dict leaves them out
(so a baseline run directory's stored config, which resume compares, reads as it did before them):
  qk_norm       RMSNorm (gain of size d_k, shared by the heads) on each head's q and k before RoPE;
                adds the keys attn.q_norm.weight and attn.k_norm.weight
  ffn="relu2"   w2(relu(w1 x)^2), no gate; d_ff defaults to 4*d_model as for SiLU
  zero_init_output  each block's attn.output_proj and ffn.w2 start at zero (each block starts as the
                identity); every other parameter draws the same random numbers as without it
  logit_softcap cap: logits = cap * tanh(logits / cap), so |logits| < cap
Muon, z-loss and the optimizer choice live in cs336_core/muon.py and cs336_core/optim.py.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Literal

import torch
from einops import rearrange
from torch import Tensor, nn

from cs336_core import decoding, kernels
from cs336_core.configs import check_number, dataclass_from_dict
from cs336_core.decoding import KVCache, LayerCache  # KVCache is re-exported
# silu, softmax and scaled_dot_product_attention are the handout's functions, re-exported from here.
from cs336_core.kernels import (attention, rms_norm, rotate_pairs, scaled_dot_product_attention, silu, silu_gate,
                                softmax)

NormPlacement = Literal["pre", "post", "none"]
PositionScheme = Literal["rope", "nope"]
FeedForwardKind = Literal["swiglu", "silu", "relu2"]


def default_d_ff(d_model: int, multiple_of: int = 64) -> int:
    """8/3 * d_model rounded to the nearest multiple of 64 (1344 for d_model 512, as in the handout)."""
    return multiple_of * max(1, round(8 * d_model / 3 / multiple_of))


def _trunc_normal_(weight: Tensor, std: float) -> Tensor:
    return nn.init.trunc_normal_(weight, mean=0.0, std=std, a=-3 * std, b=3 * std)


def _check_heads(d_model: int, num_heads: int) -> None:
    if d_model % num_heads:
        raise ValueError(f"d_model={d_model} is not divisible by num_heads={num_heads}")


def _check_rope_head_dim(d_k: int) -> None:
    if d_k % 2:
        raise ValueError(f"RoPE needs an even head dimension, got d_k={d_k}")


# ----------------------------------------------------------------------------------------------
# Building blocks


class Linear(nn.Module):
    """y = x W^T without bias; W has shape (out_features, in_features)."""

    def __init__(self, in_features: int, out_features: int, device=None, dtype=None):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.weight = nn.Parameter(torch.empty(out_features, in_features, device=device, dtype=dtype))
        _trunc_normal_(self.weight, std=math.sqrt(2.0 / (in_features + out_features)))

    def forward(self, x: Tensor) -> Tensor:
        return x @ self.weight.T

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}"


class Embedding(nn.Module):
    """A lookup table of shape (num_embeddings, embedding_dim)."""

    def __init__(self, num_embeddings: int, embedding_dim: int, device=None, dtype=None):
        super().__init__()
        self.num_embeddings, self.embedding_dim = num_embeddings, embedding_dim
        self.weight = nn.Parameter(torch.empty(num_embeddings, embedding_dim, device=device, dtype=dtype))
        _trunc_normal_(self.weight, std=1.0)

    def forward(self, token_ids: Tensor) -> Tensor:
        return self.weight[token_ids]

    def extra_repr(self) -> str:
        return f"num_embeddings={self.num_embeddings}, embedding_dim={self.embedding_dim}"


class RMSNorm(nn.Module):
    """x / RMS(x) * g, computed in float32 so bf16/fp16 inputs do not overflow the square."""

    def __init__(self, d_model: int, eps: float = 1e-5, device=None, dtype=None):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(d_model, device=device, dtype=dtype))

    def forward(self, x: Tensor) -> Tensor:
        return rms_norm(x, self.weight, self.eps)


class SwiGLU(nn.Module):
    """w2(silu(w1 x) * w3 x)."""

    def __init__(self, d_model: int, d_ff: int, device=None, dtype=None):
        super().__init__()
        self.w1 = Linear(d_model, d_ff, device=device, dtype=dtype)
        self.w2 = Linear(d_ff, d_model, device=device, dtype=dtype)
        self.w3 = Linear(d_model, d_ff, device=device, dtype=dtype)

    def forward(self, x: Tensor) -> Tensor:
        return self.w2(silu_gate(self.w1(x), self.w3(x)))


class SiLUFeedForward(nn.Module):
    """The ungated ablation: w2(silu(w1 x))."""

    def __init__(self, d_model: int, d_ff: int, device=None, dtype=None):
        super().__init__()
        self.w1 = Linear(d_model, d_ff, device=device, dtype=dtype)
        self.w2 = Linear(d_ff, d_model, device=device, dtype=dtype)

    def forward(self, x: Tensor) -> Tensor:
        return self.w2(silu(self.w1(x)))


class ReLUSquaredFeedForward(SiLUFeedForward):
    """The leaderboard's FFN: w2(relu(w1 x)^2), the ungated FFN's two matrices with another activation."""

    def forward(self, x: Tensor) -> Tensor:
        # torch.relu saves its output for backward, the very tensor square() saves: one copy, not two.
        return self.w2(torch.relu(self.w1(x)).square())


def soft_cap(logits: Tensor, cap: float) -> Tensor:
    """cap * tanh(logits / cap): close to the identity for |logits| << cap, never beyond +-cap."""
    return cap * torch.tanh(logits / cap)  # not in place: tanh's backward reads its output


class RotaryPositionalEmbedding(nn.Module):
    """RoPE: rotates each pair (x[2k], x[2k+1]) at position i by angle i * theta^(-2k/d_k)."""

    def __init__(self, theta: float, d_k: int, max_seq_len: int, device=None):
        super().__init__()
        _check_rope_head_dim(d_k)
        self.max_seq_len = max_seq_len
        inv_freq = theta ** (-torch.arange(0, d_k, 2, device=device, dtype=torch.float32) / d_k)
        angles = torch.outer(torch.arange(max_seq_len, device=device, dtype=torch.float32), inv_freq)
        # Non-persistent: derived from (theta, d_k, max_seq_len), so they stay out of the state dict.
        self.register_buffer("cos", torch.cos(angles), persistent=False)
        self.register_buffer("sin", torch.sin(angles), persistent=False)

    def forward(self, x: Tensor, token_positions: Tensor) -> Tensor:
        """x: (..., seq, d_k); token_positions: (..., seq), broadcastable against x's batch dims."""
        cos = self.cos[token_positions].to(x.dtype)
        sin = self.sin[token_positions].to(x.dtype)
        return rotate_pairs(x, cos, sin)


# ----------------------------------------------------------------------------------------------
# Attention


class MultiHeadSelfAttention(nn.Module):
    """Causal multi-head self-attention; q/k/v/output projections store heads as (num_heads, d_k) rows."""

    def __init__(self, d_model: int, num_heads: int, max_seq_len: int | None = None, theta: float | None = None,
                 device=None, dtype=None, *, fused_attention: bool = False, qk_norm: bool = False):
        super().__init__()
        _check_heads(d_model, num_heads)
        self.num_heads, self.d_k = num_heads, d_model // num_heads
        self.fused_attention = fused_attention
        self.q_proj = Linear(d_model, d_model, device=device, dtype=dtype)
        self.k_proj = Linear(d_model, d_model, device=device, dtype=dtype)
        self.v_proj = Linear(d_model, d_model, device=device, dtype=dtype)
        self.output_proj = Linear(d_model, d_model, device=device, dtype=dtype)
        self.rope = None
        if theta is not None:
            if max_seq_len is None:
                raise ValueError("RoPE (theta given) needs max_seq_len")
            self.rope = RotaryPositionalEmbedding(theta, self.d_k, max_seq_len, device=device)
        # QK-norm: one gain over d_k shared by the heads; None (no state-dict keys) when off.
        self.q_norm = RMSNorm(self.d_k, device=device, dtype=dtype) if qk_norm else None
        self.k_norm = RMSNorm(self.d_k, device=device, dtype=dtype) if qk_norm else None
        self._causal_mask: Tensor | None = None  # for the fused path; grown on demand, sliced per call

    def _causal(self, offset: int, length: int, device: torch.device) -> Tensor:
        """Rows offset..offset+length of a lower-triangular mask, columns 0..offset+length."""
        total = offset + length
        mask = self._causal_mask
        if mask is None or mask.shape[0] < total or mask.device != device:
            self._causal_mask = torch.ones(total, total, dtype=torch.bool, device=device).tril()
        return self._causal_mask[offset:total, :total]

    def forward(self, x: Tensor, token_positions: Tensor | None = None, kv_cache: LayerCache | None = None) -> Tensor:
        batch_shape, seq_len = x.shape[:-2], x.shape[-2]
        offset = kv_cache.offset if kv_cache is not None else 0
        # Heads become rows, (batch * heads, seq, d_k), the layout attention's matmuls and the KV cache
        # want; RoPE writes q and k straight into it, so only v is copied.
        q, k, v = (rearrange(proj(x), "... t (h d) -> ... h t d", h=self.num_heads)
                   for proj in (self.q_proj, self.k_proj, self.v_proj))
        if self.q_norm is not None:  # per head and token, so before RoPE and before k enters the cache
            q, k = self.q_norm(q), self.k_norm(k)
        if self.rope is not None:
            if token_positions is None:
                token_positions = torch.arange(offset, offset + seq_len, device=x.device)
            positions = token_positions.unsqueeze(-2)  # broadcast over the head dim
            q, k = self.rope(q, positions), self.rope(k, positions)
        q, k, v = (t.reshape(-1, seq_len, self.d_k) for t in (q, k, v))
        if kv_cache is not None:
            k, v = kv_cache.append(k, v)
        if self.fused_attention:
            from torch.nn.functional import scaled_dot_product_attention as fused_sdpa  # opt-in only

            # is_causal lets torch pick its flash kernel; it aligns the triangle top-left, so a
            # cached prefix (offset > 0) needs the explicit mask instead. A single new token may
            # attend to everything cached: no mask at all.
            q, k, v = (t.unflatten(0, (-1, self.num_heads)) for t in (q, k, v))
            if seq_len == 1:
                out = fused_sdpa(q, k, v)
            elif offset == 0:
                out = fused_sdpa(q, k, v, is_causal=True)
            else:
                out = fused_sdpa(q, k, v, attn_mask=self._causal(offset, seq_len, x.device))
        else:
            out = attention(q, k, v, causal=True)
        out = rearrange(out.reshape(-1, self.num_heads, seq_len, self.d_k), "b h t d -> b t (h d)")
        return self.output_proj(out.reshape(*batch_shape, seq_len, -1))


# ----------------------------------------------------------------------------------------------
# The configuration, the block and the language model


@dataclass
class ModelConfig:
    """The model's shape and variant, validated once, here; JSON round-trips through to_dict/from_dict.

    d_ff=None means the variant's default: default_d_ff(d_model) for SwiGLU, 4*d_model for SiLU, ReLU^2.
    to_dict leaves out the leaderboard options while they are off (from_dict restores their defaults).
    """

    vocab_size: int = 10_000
    context_length: int = 256
    d_model: int = 512
    num_layers: int = 4
    num_heads: int = 16
    d_ff: int | None = 1344
    rope_theta: float = 10_000.0
    norm: NormPlacement = "pre"
    position: PositionScheme = "rope"
    ffn: FeedForwardKind = "swiglu"
    tie_embeddings: bool = False
    fused_attention: bool = False
    qk_norm: bool = False
    zero_init_output: bool = False
    logit_softcap: float | None = None

    def __post_init__(self):
        for name in ("vocab_size", "context_length", "d_model", "num_layers", "num_heads"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"ModelConfig.{name} must be a positive int, got {value!r}")
        if self.d_ff is not None and (not isinstance(self.d_ff, int) or self.d_ff <= 0):
            raise ValueError(f"ModelConfig.d_ff must be a positive int or None, got {self.d_ff!r}")
        _check_heads(self.d_model, self.num_heads)
        if self.position == "rope":
            _check_rope_head_dim(self.d_model // self.num_heads)
        if not self.rope_theta > 0:
            raise ValueError(f"rope_theta must be positive, got {self.rope_theta!r}")
        for name, allowed in (("norm", ("pre", "post", "none")), ("position", ("rope", "nope")),
                              ("ffn", ("swiglu", "silu", "relu2")), ("qk_norm", (False, True)),
                              ("zero_init_output", (False, True))):
            if getattr(self, name) not in allowed:
                raise ValueError(f"ModelConfig.{name} must be one of {allowed}, got {getattr(self, name)!r}")
        if self.logit_softcap is not None:
            self.logit_softcap = check_number("ModelConfig.logit_softcap", self.logit_softcap, 0.0, exclusive=True)

    @property
    def resolved_d_ff(self) -> int:
        if self.d_ff is not None:
            return self.d_ff
        return default_d_ff(self.d_model) if self.ffn == "swiglu" else 4 * self.d_model  # SiLU, ReLU^2

    def to_dict(self) -> dict[str, Any]:
        off = {f.name: f.default for f in dataclasses.fields(self) if f.name in _LEADERBOARD_OPTIONS}
        return {name: value for name, value in dataclasses.asdict(self).items()
                if not (name in off and value == off[name])}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelConfig":
        return dataclass_from_dict(cls, data)


_LEADERBOARD_OPTIONS = ("qk_norm", "zero_init_output", "logit_softcap")
_FEED_FORWARD = {"swiglu": SwiGLU, "silu": SiLUFeedForward, "relu2": ReLUSquaredFeedForward}


def _config_arguments(config: ModelConfig, device=None, dtype=None):
    return config, device, dtype


def _bind(args: tuple, kwargs: dict, handout_arguments) -> tuple[ModelConfig, Any, Any]:
    """(config, device, dtype), Python binding (and rejecting) the arguments as for a plain __init__."""
    if isinstance(args[0] if args else kwargs.get("config"), ModelConfig):
        return _config_arguments(*args, **kwargs)
    return handout_arguments(*args, **kwargs)


class TransformerBlock(nn.Module):
    """One residual block: attention then the feed-forward network, each with the config's norm placement.

    TransformerBlock(config, device=None, dtype=None), or the handout's TransformerBlock(d_model,
    num_heads, d_ff, max_seq_len, theta, device=None, dtype=None, *, norm="pre", ffn="swiglu",
    fused_attention=False), where theta=None means no RoPE.
    """

    def __init__(self, *args, **kwargs):
        super().__init__()
        config, device, dtype = _bind(args, kwargs, self._handout_arguments)
        kw = dict(device=device, dtype=dtype)
        theta = config.rope_theta if config.position == "rope" else None
        self.norm = config.norm
        self.ln1 = RMSNorm(config.d_model, **kw) if config.norm != "none" else None
        self.attn = MultiHeadSelfAttention(config.d_model, config.num_heads, config.context_length, theta, **kw,
                                           fused_attention=config.fused_attention, qk_norm=config.qk_norm)
        self.ln2 = RMSNorm(config.d_model, **kw) if config.norm != "none" else None
        self.ffn = _FEED_FORWARD[config.ffn](config.d_model, config.resolved_d_ff, **kw)
        if config.zero_init_output:  # zeroed after the random draws, so every other weight is unchanged
            nn.init.zeros_(self.attn.output_proj.weight)
            nn.init.zeros_(self.ffn.w2.weight)

    @staticmethod
    def _handout_arguments(d_model: int, num_heads: int, d_ff: int, max_seq_len: int, theta: float | None,
                           device=None, dtype=None, *, norm: NormPlacement = "pre", ffn: FeedForwardKind = "swiglu",
                           fused_attention: bool = False):
        # theta=None is the handout's "no RoPE"; vocab_size and num_layers keep defaults a block never reads.
        config = ModelConfig(
            context_length=max_seq_len, d_model=d_model, num_heads=num_heads, d_ff=d_ff,
            position="nope" if theta is None else "rope", rope_theta=10_000.0 if theta is None else float(theta),
            norm=norm, ffn=ffn, fused_attention=fused_attention,
        )
        return config, device, dtype

    def forward(self, x: Tensor, token_positions: Tensor | None = None, kv_cache: LayerCache | None = None) -> Tensor:
        if self.norm == "pre":
            x = x + self.attn(self.ln1(x), token_positions, kv_cache)
            return x + self.ffn(self.ln2(x))
        if self.norm == "post":
            x = self.ln1(x + self.attn(x, token_positions, kv_cache))
            return self.ln2(x + self.ffn(x))
        x = x + self.attn(x, token_positions, kv_cache)
        return x + self.ffn(x)


class TransformerLM(nn.Module):
    """Token embeddings, config.num_layers blocks, the final norm and the projection to logits.

    TransformerLM(config, device=None, dtype=None), or the handout's TransformerLM(vocab_size,
    context_length, d_model, num_layers, num_heads, d_ff, rope_theta, device=None, dtype=None, *,
    norm="pre", position="rope", ffn="swiglu", tie_embeddings=False, fused_attention=False).
    """

    def __init__(self, *args, **kwargs):
        super().__init__()
        config, device, dtype = _bind(args, kwargs, self._handout_arguments)
        # A copy (the caller may change theirs), theta a float as the handout's arguments store it.
        self.config = config = dataclasses.replace(config, rope_theta=float(config.rope_theta))
        kw = dict(device=device, dtype=dtype)
        self.context_length = config.context_length
        self.token_embeddings = Embedding(config.vocab_size, config.d_model, **kw)
        self.layers = nn.ModuleList(TransformerBlock(config, **kw) for _ in range(config.num_layers))
        self.ln_final = RMSNorm(config.d_model, **kw) if config.norm != "none" else None
        self.lm_head = Linear(config.d_model, config.vocab_size, **kw)
        self.logit_softcap = config.logit_softcap
        if config.tie_embeddings:
            self.token_embeddings.weight = self.lm_head.weight

    @staticmethod
    def _handout_arguments(vocab_size: int, context_length: int, d_model: int, num_layers: int, num_heads: int,
                           d_ff: int | None, rope_theta: float, device=None, dtype=None, *, norm: NormPlacement = "pre",
                           position: PositionScheme = "rope", ffn: FeedForwardKind = "swiglu",
                           tie_embeddings: bool = False, fused_attention: bool = False):
        config = ModelConfig(
            vocab_size=vocab_size, context_length=context_length, d_model=d_model, num_layers=num_layers,
            num_heads=num_heads, d_ff=d_ff, rope_theta=float(rope_theta), norm=norm, position=position,
            ffn=ffn, tie_embeddings=tie_embeddings, fused_attention=fused_attention,
        )
        return config, device, dtype

    @classmethod
    def from_config(cls, config: ModelConfig, device=None, dtype=None) -> "TransformerLM":
        return cls(config, device=device, dtype=dtype)

    def new_kv_cache(self) -> KVCache:
        return KVCache(len(self.layers), self.context_length)

    def forward(self, token_ids: Tensor, kv_cache: KVCache | None = None) -> Tensor:
        """token_ids (..., seq) -> logits (..., seq, vocab). With a cache, token_ids are the new tokens only."""
        offset = kv_cache.length if kv_cache is not None else 0
        seq_len = token_ids.shape[-1]
        if offset + seq_len > self.context_length:
            raise ValueError(f"sequence of {offset + seq_len} tokens exceeds context_length={self.context_length}")
        x = self.token_embeddings(token_ids)
        for index, layer in enumerate(self.layers):
            x = layer(x, None, kv_cache.layer(index) if kv_cache is not None else None)
        if kv_cache is not None:
            kv_cache.length += seq_len
        if self.ln_final is not None:
            x = self.ln_final(x)
        logits = self.lm_head(x)
        return logits if self.logit_softcap is None else soft_cap(logits, self.logit_softcap)


def __getattr__(name: str):
    # Private names that were importable from here before the kernels moved out resolve in their new home.
    renamed = {"_attention": (kernels, "attention"), "_LayerCache": (decoding, "LayerCache")}
    module, new_name = renamed.get(name, (kernels, name))
    if name.startswith("_") and not name.startswith("__") and hasattr(module, new_name):
        return getattr(module, new_name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
