"""The model's hand-written autograd kernels: same results as the plain torch expressions they
replace, faster on CPU. cs336_core/model.py holds the readable modules and calls only the public
functions here; nothing in this file changes what the model computes.

Why hand-written: autograd would save and revisit every intermediate (sigmoid, the max, exp, the sum,
the quotient), and these ops run on the model's largest activations (T x T attention scores,
d_ff-wide FFN hidden states). Each Function saves a few tensors for backward (its inputs, or its
output) and recomputes the rest, mostly in place; tests/test_model.py checks every backward against
numerical gradients and torch's own ops.

  rms_norm(x, weight, eps)            x / rms(x) * weight, statistics in at least float32
  silu(x), silu_gate(a, b)            x * sigmoid(x); silu(a) * b (SwiGLU's gate)
  softmax(x, dim)                     exp(x - max) / sum(exp(x - max))
  rotate_pairs(x, cos, sin)           RoPE's pairwise rotation
  attention(q, k, v, causal)          softmax(q k^T / sqrt(d_k) + causal mask) v, tiled
  scaled_dot_product_attention(Q, K, V, mask)   the handout's function, any mask
"""

from __future__ import annotations

import functools

import torch
from torch import Tensor

# ----------------------------------------------------------------------------------------------
# Plumbing


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


# ----------------------------------------------------------------------------------------------
# Elementwise and row-wise kernels


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



def rms_norm(x: Tensor, weight: Tensor, eps: float) -> Tensor:
    """x / sqrt(mean(x^2) + eps) * weight, computed in at least float32, returned in x's dtype."""
    return _differentiable(_RMSNorm, x, weight, eps)


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



def silu_gate(a: Tensor, b: Tensor) -> Tensor:
    """silu(a) * b."""
    return _differentiable(_SiLUGate, a, b)


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



def rotate_pairs(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate each pair (x[2k], x[2k+1]) by the angle whose cos/sin are given per (position, k)."""
    return _differentiable(_Rotate, x, cos, sin)


# ----------------------------------------------------------------------------------------------
# Tiled attention

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


def attention(q: Tensor, k: Tensor, v: Tensor, causal: bool) -> Tensor:
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

