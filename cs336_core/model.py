"""A decoder-only Transformer language model, written from scratch (handout sections 3.4-3.6).

Only nn.Parameter, the container modules and torch.nn.init.trunc_normal_ come from torch.nn. The one
exception is the opt-in `fused_attention=True` path, which calls
torch.nn.functional.scaled_dot_product_attention; the default path is the from-scratch one and
tests/test_model.py checks that both agree.

Variants (keyword-only, defaults = the handout's baseline) cover the handout's ablations:
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

Generation feeds only new tokens through `forward(token_ids, kv_cache=cache)` with a `KVCache`;
positions continue from `cache.length`.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass
from typing import Any, Literal

import torch
from einops import rearrange
from torch import Tensor, nn

NormPlacement = Literal["pre", "post", "none"]
PositionScheme = Literal["rope", "nope"]
FeedForwardKind = Literal["swiglu", "silu"]


def default_d_ff(d_model: int, multiple_of: int = 64) -> int:
    """8/3 * d_model rounded to the nearest multiple of 64 (1344 for d_model 512, as in the handout)."""
    return multiple_of * max(1, round(8 * d_model / 3 / multiple_of))


def _trunc_normal_(weight: Tensor, std: float) -> Tensor:
    return nn.init.trunc_normal_(weight, mean=0.0, std=std, a=-3 * std, b=3 * std)


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


def _at_least_float32(dtype: torch.dtype) -> torch.dtype:
    return torch.promote_types(dtype, torch.float32)


class _NoGradContext:
    """Stands in for autograd's ctx when a Function's forward runs without autograd."""

    def save_for_backward(self, *tensors: Tensor) -> None:
        pass


def _differentiable(function: type[torch.autograd.Function], *args):
    """function.apply(*args), minus autograd's bookkeeping (tens of microseconds a call, the bulk of
    a decoding step's time) when no gradient can flow, as in generation."""
    if torch.is_grad_enabled() and any(isinstance(a, Tensor) and a.requires_grad for a in args):
        return function.apply(*args)
    return function.forward(_NoGradContext(), *args)


class _RMSNorm(torch.autograd.Function):
    """y = x / rms(x) * w in float32; backward dx = r * (g w - x_hat * mean(g w x_hat)), r = 1 / rms."""

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, eps: float) -> Tensor:
        x32 = x.to(_at_least_float32(x.dtype))
        inv_rms = torch.rsqrt(x32.square().mean(dim=-1, keepdim=True).add_(eps))
        ctx.save_for_backward(x, weight, inv_rms)
        return (x32 * inv_rms).mul_(weight).to(x.dtype)

    @staticmethod
    def backward(ctx, grad: Tensor):
        x, weight, inv_rms = ctx.saved_tensors
        grad32 = grad.to(inv_rms.dtype)
        x_hat = x.to(inv_rms.dtype) * inv_rms
        grad_weight = (grad32 * x_hat).reshape(-1, x.shape[-1]).sum(dim=0)
        grad_w = grad32 * weight
        dot = (grad_w * x_hat).mean(dim=-1, keepdim=True)
        grad_x = grad_w.sub_(x_hat.mul_(dot)).mul_(inv_rms)
        return grad_x.to(x.dtype), grad_weight.to(weight.dtype), None


class RMSNorm(nn.Module):
    """x / RMS(x) * g, computed in float32 so bf16/fp16 inputs do not overflow the square."""

    def __init__(self, d_model: int, eps: float = 1e-5, device=None, dtype=None):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(d_model, device=device, dtype=dtype))

    def forward(self, x: Tensor) -> Tensor:
        return _differentiable(_RMSNorm, x, self.weight, self.eps)


# RMSNorm, silu, softmax and RoPE have hand-written backward passes: autograd would otherwise save and
# revisit every intermediate (sigmoid, the max, exp, the sum, the quotient), and these run on the
# largest activations of the model (T x T attention scores, d_ff-wide FFN hidden states).


def _silu_derivative(x: Tensor, s: Tensor) -> Tensor:
    """d/dx x*s(x) = s + x*s*(1-s) = s * (1 + x*(1-s)), with s = sigmoid(x)."""
    return (1 - s).mul_(x).add_(1).mul_(s)


class _SiLU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        ctx.save_for_backward(x)
        return torch.sigmoid(x).mul_(x)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        (x,) = ctx.saved_tensors
        return _silu_derivative(x, torch.sigmoid(x)).mul_(grad)


def silu(x: Tensor) -> Tensor:
    """x * sigmoid(x)."""
    return _differentiable(_SiLU, x)


class _SiLUGate(torch.autograd.Function):
    """silu(a) * b, SwiGLU's gate, as one operation that keeps only a and b for backward."""

    @staticmethod
    def forward(ctx, a: Tensor, b: Tensor) -> Tensor:
        ctx.save_for_backward(a, b)
        return torch.sigmoid(a).mul_(a).mul_(b)

    @staticmethod
    def backward(ctx, grad: Tensor):
        a, b = ctx.saved_tensors
        s = torch.sigmoid(a)
        grad_a = _silu_derivative(a, s).mul_(b).mul_(grad)
        grad_b = s.mul_(a).mul_(grad)
        return grad_a, grad_b


def _softmax_(x: Tensor, dim: int) -> Tensor:
    """Softmax of a freshly computed tensor, overwriting it (saves two allocations per call)."""
    x -= x.amax(dim=dim, keepdim=True)
    x.exp_()
    x /= x.sum(dim=dim, keepdim=True)
    return x


def _softmax_backward_(grad: Tensor, probs: Tensor, dim: int) -> Tensor:
    """dL/dx = y * (g - sum(g * y)), overwriting the fresh tensor `grad`."""
    grad *= probs
    return grad.addcmul_(probs, grad.sum(dim=dim, keepdim=True), value=-1)


class _Softmax(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, dim: int) -> Tensor:
        probs = _softmax_(x.clone(), dim)
        ctx.dim = dim
        ctx.save_for_backward(probs)
        return probs

    @staticmethod
    def backward(ctx, grad: Tensor):
        (probs,) = ctx.saved_tensors
        return _softmax_backward_(grad.clone(), probs, ctx.dim), None


def softmax(x: Tensor, dim: int) -> Tensor:
    """exp(x - max) / sum(exp(x - max)); subtracting the max keeps exp from overflowing."""
    return _differentiable(_Softmax, x, dim)


class SwiGLU(nn.Module):
    """w2(silu(w1 x) * w3 x)."""

    def __init__(self, d_model: int, d_ff: int, device=None, dtype=None):
        super().__init__()
        self.w1 = Linear(d_model, d_ff, device=device, dtype=dtype)
        self.w2 = Linear(d_ff, d_model, device=device, dtype=dtype)
        self.w3 = Linear(d_model, d_ff, device=device, dtype=dtype)

    def forward(self, x: Tensor) -> Tensor:
        return self.w2(_differentiable(_SiLUGate, self.w1(x), self.w3(x)))


class SiLUFeedForward(nn.Module):
    """The ungated ablation: w2(silu(w1 x))."""

    def __init__(self, d_model: int, d_ff: int, device=None, dtype=None):
        super().__init__()
        self.w1 = Linear(d_model, d_ff, device=device, dtype=dtype)
        self.w2 = Linear(d_ff, d_model, device=device, dtype=dtype)

    def forward(self, x: Tensor) -> Tensor:
        return self.w2(silu(self.w1(x)))


class RotaryPositionalEmbedding(nn.Module):
    """RoPE: rotates each pair (x[2k], x[2k+1]) at position i by angle i * theta^(-2k/d_k)."""

    def __init__(self, theta: float, d_k: int, max_seq_len: int, device=None):
        super().__init__()
        if d_k % 2:
            raise ValueError(f"RoPE needs an even head dimension, got d_k={d_k}")
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
        return _differentiable(_Rotate, x, cos, sin)


def _broadcasts_into(small: torch.Size, big: torch.Size) -> bool:
    return len(small) <= len(big) and all(a in (1, b) for a, b in zip(reversed(small), reversed(big)))


def _rotate_pairs(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """(x[2k], x[2k+1]) -> (x[2k] cos - x[2k+1] sin, x[2k] sin + x[2k+1] cos), written in place of a stack."""
    x_even, x_odd = x[..., 0::2], x[..., 1::2]
    if torch.compiler.is_compiling():  # the compiler fuses this itself and rejects out= below
        return torch.stack((x_even * cos - x_odd * sin, x_even * sin + x_odd * cos), dim=-1).flatten(-2)
    # Contiguous in x's logical order even when x is a permuted view: RoPE doubles as the layout change.
    if _broadcasts_into(cos.shape[:-1], x.shape[:-1]):  # torch.broadcast_shapes costs 25-200 us
        out = x.new_empty(x.shape)
    else:  # positions carry batch dims that x lacks
        out = x.new_empty(torch.broadcast_shapes(x.shape, (*cos.shape[:-1], x.shape[-1])))
    out_even, out_odd = out[..., 0::2], out[..., 1::2]
    torch.mul(x_even, cos, out=out_even).addcmul_(x_odd, sin, value=-1)
    torch.mul(x_even, sin, out=out_odd).addcmul_(x_odd, cos)
    return out


class _Rotate(torch.autograd.Function):
    """Pairwise rotation; its gradient is the rotation by the opposite angle (the transpose)."""

    @staticmethod
    def forward(ctx, x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
        ctx.save_for_backward(cos, sin)
        return _rotate_pairs(x, cos, sin)

    @staticmethod
    def backward(ctx, grad: Tensor):
        cos, sin = ctx.saved_tensors
        return _rotate_pairs(grad, cos, -sin), None, None


# Score tiles: (queries per block, score elements per tile). On CPU a tile of float32 scores is <= 4 MB,
# so it is scaled, masked, exponentiated and multiplied by v while it is still in cache, and each bmm
# covers enough heads to run near matmul speed. On accelerators tiles are large so launches stay few.
_CPU_TILE = (64, 1 << 20)
_ACCELERATOR_TILE = (256, 1 << 26)


def _tile_shape(device: torch.device) -> tuple[int, int]:
    return _CPU_TILE if device.type == "cpu" else _ACCELERATOR_TILE


@functools.lru_cache(maxsize=16)
def _above_diagonal(size: int, device: torch.device) -> Tensor:
    """Within a causal tile the last `size` columns hold the diagonal: keys after each query are masked."""
    return torch.ones(size, size, dtype=torch.bool, device=device).triu_(1)


class _ScoreTiles:
    """The (entries, queries, keys_end) tiles that cover every score a query may attend to.

    With causal=True query i sits at position k_len - q_len + i (a KV cache's prefix comes first),
    so the query block [s, e) only reads keys [0, k_len - q_len + e): tiles above the diagonal,
    half of all scores, are never computed.
    """

    def __init__(self, rows: int, q_len: int, k_len: int, causal: bool, device: torch.device):
        block, elements = _tile_shape(device)
        self.block = min(block, q_len)
        self.group = max(1, elements // (self.block * k_len))
        self.rows, self.q_len, self.k_len, self.causal = rows, q_len, k_len, causal
        self.above_diagonal = _above_diagonal(self.block, device) if causal else None

    def __iter__(self):
        for r in range(0, self.rows, self.group):
            for s in range(0, self.q_len, self.block):
                e = min(self.q_len, s + self.block)
                yield slice(r, r + self.group), slice(s, e), (self.k_len - self.q_len + e) if self.causal else self.k_len

    def scores(self, q: Tensor, k: Tensor, entries: slice, queries: slice, keys_end: int,
               bias: Tensor | None) -> Tensor:
        """q k^T of one tile (q comes scaled), masked, as a fresh tensor of at least float32."""
        scores = torch.bmm(q[entries, queries], k[entries, :keys_end].transpose(1, 2))
        scores = scores.to(_at_least_float32(scores.dtype))
        size = queries.stop - queries.start
        if self.causal and size > 1:
            scores[..., keys_end - size :].masked_fill_(self.above_diagonal[:size, :size], float("-inf"))
        if bias is not None:
            scores += bias[queries, :keys_end] if bias.dim() == 2 else bias[entries, queries, :keys_end]
        return scores


class _Attention(torch.autograd.Function):
    """softmax(q k^T / sqrt(d_k) + mask) v, tile by tile, with a hand-written backward.

    q: (N, T, d_k), k: (N, S, d_k), v: (N, S, d_v), N = batch * heads, each row's matrix contiguous
    (a KV cache's views qualify), so every bmm runs on whole matrices at matmul speed. Each tile's
    scores are masked, exponentiated, normalised and multiplied by v while they are still in cache.
    The tiles' probabilities are what backward keeps: with causal masking and 64-query blocks that is
    5/8 of the T x S scores at T = 256, and rebuilding them from q and k instead (as FlashAttention
    does on GPUs) measured slower on CPU than reading them back.
    bias: None, or an additive (T, S) or (N, T, S) tensor, for the public function's arbitrary masks.
    Softmax statistics are kept in at least float32, so bf16 scores keep their precision.
    """

    @staticmethod
    def forward(ctx, q: Tensor, k: Tensor, v: Tensor, causal: bool, bias: Tensor | None) -> Tensor:
        rows, q_len, d_k = q.shape
        q = q * d_k**-0.5  # scaling q once costs d_k/S of scaling every tile of scores
        out = q.new_empty(rows, q_len, v.shape[-1])
        tiles = _ScoreTiles(rows, q_len, k.shape[1], causal, q.device)
        probs = []
        for entries, queries, keys_end in tiles:
            scores = tiles.scores(q, k, entries, queries, keys_end, bias)
            scores = scores.sub_(scores.amax(dim=-1, keepdim=True)).exp_()
            tile_probs = scores.div_(scores.sum(dim=-1, keepdim=True)).to(v.dtype)
            out[entries, queries] = torch.bmm(tile_probs, v[entries, :keys_end])
            probs.append(tile_probs)
        ctx.causal = causal
        ctx.save_for_backward(q, k, v, out, *probs)
        return out

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        q, k, v, out, *probs = ctx.saved_tensors  # q is already scaled by 1/sqrt(d_k)
        rows, q_len, d_k = q.shape
        grad_out = grad_out.contiguous()
        stats_dtype = _at_least_float32(q.dtype)
        # d scores = p * (d p - sum_j p_j d p_j), and sum_j p_j d p_j = grad_out . out per query.
        grad_dot_out = (grad_out.to(stats_dtype) * out).sum(dim=-1, keepdim=True)
        grad_q, grad_k, grad_v = torch.empty_like(q), torch.zeros_like(k), torch.zeros_like(v)
        tiles = _ScoreTiles(rows, q_len, k.shape[1], ctx.causal, q.device)
        for (entries, queries, keys_end), tile_probs in zip(tiles, probs):
            grad_tile = grad_out[entries, queries]
            grad_v[entries, :keys_end] += torch.bmm(tile_probs.transpose(1, 2), grad_tile)
            grad_scores = torch.bmm(grad_tile, v[entries, :keys_end].transpose(1, 2)).to(stats_dtype)
            grad_scores = grad_scores.sub_(grad_dot_out[entries, queries]).mul_(tile_probs).to(q.dtype)
            grad_q[entries, queries] = torch.bmm(grad_scores, k[entries, :keys_end])
            grad_k[entries, :keys_end] += torch.bmm(grad_scores.transpose(1, 2), q[entries, queries])
        return grad_q.mul_(d_k**-0.5), grad_k, grad_v, None, None


def _mask_to_bias(mask: Tensor, dtype: torch.dtype) -> Tensor:
    """Boolean mask (True = attend) -> additive bias (0 or -inf)."""
    return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill_(~mask, float("-inf"))


def _attention(q: Tensor, k: Tensor, v: Tensor, causal: bool) -> Tensor:
    """q (rows, T, d_k), k/v (rows, S, d) -> (rows, T, d_v); each row's matrices must be contiguous."""
    if torch.compiler.is_compiling():
        # The compiler cannot trace the tiles' out= writes but fuses plain math itself: the same
        # query blocks, without row groups, each skipping the keys after its last query.
        q_len, k_len = q.shape[-2], k.shape[-2]
        block = min(_tile_shape(q.device)[0], q_len)
        outs = []
        for start in range(0, q_len, block):
            end = min(q_len, start + block)
            keys_end = k_len - q_len + end if causal else k_len
            scores = (q[:, start:end] @ k[:, :keys_end].transpose(-2, -1)) * q.shape[-1] ** -0.5
            if causal and end - start > 1:
                allowed = torch.ones(end - start, keys_end, dtype=torch.bool, device=q.device).tril_(keys_end - end + start)
                scores = scores.masked_fill(~allowed, float("-inf"))
            outs.append(softmax(scores, dim=-1) @ v[:, :keys_end])
        return torch.cat(outs, dim=1)
    return _differentiable(_Attention, q, k, v, causal, None)


def scaled_dot_product_attention(Q: Tensor, K: Tensor, V: Tensor, mask: Tensor | None = None) -> Tensor:
    """softmax(Q K^T / sqrt(d_k)) V over any batch dims; mask is boolean with True = may attend."""
    batch_shape, q_len, k_len = Q.shape[:-2], Q.shape[-2], K.shape[-2]
    bias = None
    if mask is not None:
        bias = _mask_to_bias(mask, _at_least_float32(Q.dtype))
        if bias.dim() > 2:  # per-batch masks: one (T, S) bias per flattened batch entry
            bias = bias.expand(*batch_shape, q_len, k_len).reshape(-1, q_len, k_len)
    q, k, v = (t.reshape(-1, *t.shape[-2:]).contiguous() for t in (Q, K, V))
    return _differentiable(_Attention, q, k, v, False, bias).view(*batch_shape, q_len, V.shape[-1])


# ----------------------------------------------------------------------------------------------
# KV cache for incremental decoding


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


class _LayerCache:
    """The view of a KVCache that one attention layer sees."""

    def __init__(self, cache: KVCache, layer: int):
        self.cache, self.layer = cache, layer

    @property
    def offset(self) -> int:
        return self.cache.length

    def append(self, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        return self.cache.append(self.layer, k, v)


# ----------------------------------------------------------------------------------------------
# Attention, blocks and the language model


class MultiHeadSelfAttention(nn.Module):
    """Causal multi-head self-attention; q/k/v/output projections store heads as (num_heads, d_k) rows."""

    def __init__(
        self,
        d_model: int,
        num_heads: int,
        max_seq_len: int | None = None,
        theta: float | None = None,
        device=None,
        dtype=None,
        *,
        fused_attention: bool = False,
    ):
        super().__init__()
        if d_model % num_heads:
            raise ValueError(f"d_model={d_model} is not divisible by num_heads={num_heads}")
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
        self._causal_mask: Tensor | None = None  # for the fused path; grown on demand, sliced per call

    def _causal(self, offset: int, length: int, device: torch.device) -> Tensor:
        """Rows offset..offset+length of a lower-triangular mask, columns 0..offset+length."""
        total = offset + length
        mask = self._causal_mask
        if mask is None or mask.shape[0] < total or mask.device != device:
            self._causal_mask = torch.ones(total, total, dtype=torch.bool, device=device).tril()
        return self._causal_mask[offset:total, :total]

    def forward(self, x: Tensor, token_positions: Tensor | None = None, kv_cache: _LayerCache | None = None) -> Tensor:
        batch_shape, seq_len = x.shape[:-2], x.shape[-2]
        offset = kv_cache.offset if kv_cache is not None else 0
        # Heads become rows, (batch * heads, seq, d_k), the layout attention's matmuls and the KV cache
        # want; RoPE writes q and k straight into it, so only v is copied.
        q, k, v = (rearrange(proj(x), "... t (h d) -> ... h t d", h=self.num_heads)
                   for proj in (self.q_proj, self.k_proj, self.v_proj))
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
            out = _attention(q, k, v, causal=True)
        out = rearrange(out.reshape(-1, self.num_heads, seq_len, self.d_k), "b h t d -> b t (h d)")
        return self.output_proj(out.reshape(*batch_shape, seq_len, -1))


class TransformerBlock(nn.Module):
    def __init__(
        self,
        d_model: int,
        num_heads: int,
        d_ff: int,
        max_seq_len: int,
        theta: float | None,
        device=None,
        dtype=None,
        *,
        norm: NormPlacement = "pre",
        ffn: FeedForwardKind = "swiglu",
        fused_attention: bool = False,
    ):
        super().__init__()
        if norm not in ("pre", "post", "none"):
            raise ValueError(f"norm must be 'pre', 'post' or 'none', got {norm!r}")
        if ffn not in ("swiglu", "silu"):
            raise ValueError(f"ffn must be 'swiglu' or 'silu', got {ffn!r}")
        self.norm = norm
        kw = dict(device=device, dtype=dtype)
        self.ln1 = RMSNorm(d_model, **kw) if norm != "none" else None
        self.attn = MultiHeadSelfAttention(d_model, num_heads, max_seq_len, theta, **kw, fused_attention=fused_attention)
        self.ln2 = RMSNorm(d_model, **kw) if norm != "none" else None
        self.ffn = (SwiGLU if ffn == "swiglu" else SiLUFeedForward)(d_model, d_ff, **kw)

    def forward(self, x: Tensor, token_positions: Tensor | None = None, kv_cache: _LayerCache | None = None) -> Tensor:
        if self.norm == "pre":
            x = x + self.attn(self.ln1(x), token_positions, kv_cache)
            return x + self.ffn(self.ln2(x))
        if self.norm == "post":
            x = self.ln1(x + self.attn(x, token_positions, kv_cache))
            return self.ln2(x + self.ffn(x))
        x = x + self.attn(x, token_positions, kv_cache)
        return x + self.ffn(x)


@dataclass
class ModelConfig:
    """The model's shape and variant; JSON round-trips through to_dict/from_dict.

    d_ff=None means the variant's default: default_d_ff(d_model) for SwiGLU, 4*d_model for SiLU.
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

    def __post_init__(self):
        for name in ("vocab_size", "context_length", "d_model", "num_layers", "num_heads"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"ModelConfig.{name} must be a positive int, got {value!r}")
        if self.d_ff is not None and (not isinstance(self.d_ff, int) or self.d_ff <= 0):
            raise ValueError(f"ModelConfig.d_ff must be a positive int or None, got {self.d_ff!r}")
        if self.d_model % self.num_heads:
            raise ValueError(f"d_model={self.d_model} is not divisible by num_heads={self.num_heads}")
        if self.position == "rope" and (self.d_model // self.num_heads) % 2:
            raise ValueError(f"RoPE needs an even head dimension, got d_model/num_heads={self.d_model // self.num_heads}")
        if not self.rope_theta > 0:
            raise ValueError(f"rope_theta must be positive, got {self.rope_theta!r}")
        for name, allowed in (("norm", ("pre", "post", "none")), ("position", ("rope", "nope")),
                              ("ffn", ("swiglu", "silu"))):
            if getattr(self, name) not in allowed:
                raise ValueError(f"ModelConfig.{name} must be one of {allowed}, got {getattr(self, name)!r}")

    @property
    def resolved_d_ff(self) -> int:
        if self.d_ff is not None:
            return self.d_ff
        return default_d_ff(self.d_model) if self.ffn == "swiglu" else 4 * self.d_model

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown ModelConfig fields: {sorted(unknown)}")
        return cls(**data)


class TransformerLM(nn.Module):
    def __init__(
        self,
        vocab_size: int,
        context_length: int,
        d_model: int,
        num_layers: int,
        num_heads: int,
        d_ff: int | None,
        rope_theta: float,
        device=None,
        dtype=None,
        *,
        norm: NormPlacement = "pre",
        position: PositionScheme = "rope",
        ffn: FeedForwardKind = "swiglu",
        tie_embeddings: bool = False,
        fused_attention: bool = False,
    ):
        super().__init__()
        self.config = ModelConfig(
            vocab_size=vocab_size, context_length=context_length, d_model=d_model, num_layers=num_layers,
            num_heads=num_heads, d_ff=d_ff, rope_theta=float(rope_theta), norm=norm, position=position,
            ffn=ffn, tie_embeddings=tie_embeddings, fused_attention=fused_attention,
        )
        kw = dict(device=device, dtype=dtype)
        theta = rope_theta if position == "rope" else None
        self.context_length = context_length
        self.token_embeddings = Embedding(vocab_size, d_model, **kw)
        self.layers = nn.ModuleList(
            TransformerBlock(d_model, num_heads, self.config.resolved_d_ff, context_length, theta, **kw,
                             norm=norm, ffn=ffn, fused_attention=fused_attention)
            for _ in range(num_layers)
        )
        self.ln_final = RMSNorm(d_model, **kw) if norm != "none" else None
        self.lm_head = Linear(d_model, vocab_size, **kw)
        if tie_embeddings:
            self.token_embeddings.weight = self.lm_head.weight

    @classmethod
    def from_config(cls, config: ModelConfig, device=None, dtype=None) -> "TransformerLM":
        fields = config.to_dict()
        shape = [fields.pop(name) for name in ("vocab_size", "context_length", "d_model", "num_layers",
                                               "num_heads", "d_ff", "rope_theta")]
        return cls(*shape, device=device, dtype=dtype, **fields)

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
            x = layer(x, None, _LayerCache(kv_cache, index) if kv_cache is not None else None)
        if kv_cache is not None:
            kv_cache.length += seq_len
        if self.ln_final is not None:
            x = self.ln_final(x)
        return self.lm_head(x)
