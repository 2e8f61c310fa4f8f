"""Token datasets on disk and the batches the trainer draws from them.

A token file is a flat array of ids (`.npy` written by `tokenization.encode_file`, or a raw `.bin`
of uint16 as in nanoGPT). It is memory-mapped, never read whole: a batch touches only the
`batch_size * (context_length + 1)` tokens it needs, so a multi-GB training set costs no RAM.

Batch sampling is split in two (`sample_starts`, `batch_at`) so that the trainer can draw one
global batch and give each data-parallel rank its slice: the global batch is then identical to the
single-process one, whatever the world size.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch

TokenArray = np.ndarray  # np.memmap is a subclass; any 1-D integer array works


def load_tokens(path: str | os.PathLike, dtype: npt.DTypeLike | None = None) -> np.ndarray:
    """Open a token file read-only as a memory map.

    `.npy` files carry their own dtype and shape. Any other extension is read as a raw flat
    array and needs `dtype` (e.g. `np.uint16`), since the bytes alone do not say it.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"token file not found: {path}")
    if path.stat().st_size == 0:
        raise ValueError(f"token file is empty (0 bytes): {path}")
    if path.suffix == ".npy":
        _check_npy_size(path)
        try:
            tokens = np.load(path, mmap_mode="r")
        except ValueError as err:
            raise ValueError(f"{path}: cannot be opened as a token array ({err})") from None
        if dtype is not None and tokens.dtype != np.dtype(dtype):
            raise ValueError(f"{path} holds {tokens.dtype} tokens but dtype={np.dtype(dtype)} was requested")
    else:
        if dtype is None:
            raise ValueError(f"{path} is a raw token file (not .npy): pass dtype=, e.g. np.uint16")
        itemsize = np.dtype(dtype).itemsize
        if path.stat().st_size % itemsize:
            raise ValueError(f"{path} has {path.stat().st_size} bytes, not a multiple of {np.dtype(dtype)} size {itemsize}")
        tokens = np.memmap(path, dtype=dtype, mode="r")
    if tokens.ndim != 1:
        raise ValueError(f"{path} must hold a 1-D token array, got shape {tokens.shape}")
    if not np.issubdtype(tokens.dtype, np.integer):
        raise ValueError(f"{path} must hold integer token ids, got dtype {tokens.dtype}")
    if len(tokens) == 0:
        raise ValueError(f"token file holds no tokens: {path}")
    return tokens


def _check_npy_size(path: Path) -> None:
    """The file must hold exactly what its header promises (numpy would only say 'mmap length is
    greater than file size' for a truncated one, and map a padded one silently)."""
    from numpy.lib import format as npy_format

    header_readers = {(1, 0): npy_format.read_array_header_1_0, (2, 0): npy_format.read_array_header_2_0}
    with open(path, "rb") as f:
        try:
            read_header = header_readers.get(npy_format.read_magic(f))
            if read_header is None:  # a newer format version: np.load checks it
                return
            shape, _, dtype = read_header(f)
        except ValueError as err:
            raise ValueError(f"{path}: not a valid .npy file ({err}); it is truncated or corrupt") from None
        data_start = f.tell()
    if dtype.hasobject:  # not a token array; np.load refuses it
        return
    count = math.prod(shape)
    expected, actual = data_start + count * dtype.itemsize, path.stat().st_size
    if actual != expected:
        problem = "truncated" if actual < expected else "corrupt"
        raise ValueError(f"{path} is {problem}: its header promises {count:,} {dtype} values ({expected:,} bytes "
                         f"with the header) but the file has {actual:,} bytes; re-create it")


def check_long_enough(dataset: TokenArray, context_length: int, name: str = "dataset") -> None:
    """A batch needs context_length inputs plus one target beyond them."""
    if context_length <= 0:
        raise ValueError(f"context_length must be positive, got {context_length}")
    if len(dataset) < context_length + 1:
        raise ValueError(
            f"{name} has {len(dataset)} tokens, fewer than context_length + 1 = {context_length + 1}"
        )


def check_token_ids(dataset: TokenArray, vocab_size: int, name: str = "dataset") -> None:
    """Every id must index the embedding table; one pass over the file is cheap next to training on it."""
    largest = int(dataset.max())
    if largest >= vocab_size:
        raise ValueError(f"{name} holds token id {largest}, out of range for vocab_size={vocab_size}")
    if int(dataset.min()) < 0:
        raise ValueError(f"{name} holds negative token ids")


def sample_starts(
    num_tokens: int, batch_size: int, context_length: int, generator: np.random.Generator | None = None
) -> np.ndarray:
    """`batch_size` start offsets, uniform over every valid start 0 .. num_tokens - context_length - 1.

    With `generator=None` numpy's global RNG is used (so `np.random.seed` makes it repeatable).
    """
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    num_starts = num_tokens - context_length  # exclusive upper bound: the last start still has a target
    if generator is None:
        return np.random.randint(0, num_starts, size=batch_size, dtype=np.int64)
    return generator.integers(0, num_starts, size=batch_size, dtype=np.int64)


def batch_at(
    dataset: TokenArray, starts: np.ndarray, context_length: int, device: str | torch.device = "cpu"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs and next-token targets for the windows beginning at `starts`; each (len(starts), context_length)."""
    # Fancy indexing a memmap reads only these positions from disk.
    windows = dataset[starts[:, None] + np.arange(context_length + 1)]
    windows = torch.from_numpy(windows.astype(np.int64))
    x, y = windows[:, :-1], windows[:, 1:]
    device = torch.device(device)
    if device.type == "cpu":
        return x.contiguous(), y.contiguous()
    # Pinned memory lets the copy overlap with compute on an accelerator.
    pin = device.type == "cuda"
    x, y = (t.contiguous().pin_memory() if pin else t.contiguous() for t in (x, y))
    return x.to(device, non_blocking=pin), y.to(device, non_blocking=pin)


def get_batch(
    dataset: TokenArray,
    batch_size: int,
    context_length: int,
    device: str | torch.device = "cpu",
    generator: np.random.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The handout's get_batch: random windows `x` and their one-token-shifted targets `y`.

    Both are LongTensors of shape (batch_size, context_length) on `device`, with
    `y[:, i] == x[:, i + 1]` and `y[:, -1]` the token after the window.
    """
    check_long_enough(dataset, context_length)
    starts = sample_starts(len(dataset), batch_size, context_length, generator)
    return batch_at(dataset, starts, context_length, device)


def validation_batches(
    dataset: TokenArray,
    batch_size: int,
    context_length: int,
    num_batches: int,
    seed: int = 0,
    device: str | torch.device = "cpu",
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """A fixed list of `num_batches` batches, chosen by `seed` alone.

    Every evaluation of every run with the same data, shape and seed scores the same windows, so
    validation losses are comparable across steps and across runs (e.g. in a learning-rate sweep).
    """
    check_long_enough(dataset, context_length, name="validation set")
    if num_batches <= 0:
        raise ValueError(f"num_batches must be positive, got {num_batches}")
    generator = np.random.default_rng(seed)
    return [
        batch_at(dataset, sample_starts(len(dataset), batch_size, context_length, generator), context_length, device)
        for _ in range(num_batches)
    ]
