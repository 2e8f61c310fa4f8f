from collections import Counter

import numpy as np
import pytest
import torch

from cs336_core.data import check_token_ids, get_batch, load_tokens, validation_batches


def test_get_batch_shapes_and_shift():
    dataset = np.arange(1000, 1100, dtype=np.uint16)
    x, y = get_batch(dataset, batch_size=8, context_length=7, device="cpu", generator=np.random.default_rng(0))
    assert x.shape == y.shape == (8, 7)
    assert x.dtype == y.dtype == torch.long
    # Consecutive ids make every window an arithmetic run, so the shift is checkable exactly.
    assert torch.equal(y, x + 1)
    assert torch.equal(x[:, 1:], y[:, :-1])
    assert torch.equal(x - x[:, :1], torch.arange(7).expand(8, 7))


def test_get_batch_uniform_over_all_valid_starts_including_the_last():
    dataset = np.arange(100)
    context_length, batch_size, iterations = 7, 32, 1000
    generator = np.random.default_rng(1234)
    counts = Counter()
    for _ in range(iterations):
        x, _ = get_batch(dataset, batch_size, context_length, "cpu", generator)
        counts.update(x[:, 0].tolist())
    num_starts = len(dataset) - context_length  # starts 0 .. 92
    assert min(counts) == 0
    assert max(counts) == num_starts - 1
    assert len(counts) == num_starts
    expected = iterations * batch_size / num_starts
    observed = np.array([counts[i] for i in range(num_starts)])
    chi2 = float(((observed - expected) ** 2 / expected).sum())
    # 92 degrees of freedom: the 99.9th percentile of chi^2 is about 141.
    assert chi2 < 141, chi2


def test_get_batch_global_numpy_rng_when_no_generator():
    dataset = np.arange(500)
    np.random.seed(7)
    first = get_batch(dataset, 4, 10, "cpu")
    np.random.seed(7)
    second = get_batch(dataset, 4, 10, "cpu")
    assert torch.equal(first[0], second[0])


def test_get_batch_invalid_device_raises():
    with pytest.raises((RuntimeError, AssertionError)):
        get_batch(np.arange(100), 4, 7, "cuda:99")


def test_get_batch_on_memmap_reads_written_tokens(tmp_path):
    tokens = np.random.default_rng(0).integers(0, 50_000, size=10_000).astype(np.uint16)
    np.save(tmp_path / "tokens.npy", tokens)
    dataset = load_tokens(tmp_path / "tokens.npy")
    assert isinstance(dataset, np.memmap)
    assert dataset.dtype == np.uint16 and len(dataset) == 10_000
    x, y = get_batch(dataset, 16, 32, "cpu", np.random.default_rng(3))
    for row_x, row_y in zip(x.numpy(), y.numpy()):
        # Locate the window and check it against the array we wrote.
        matches = [s for s in range(len(tokens) - 32) if np.array_equal(tokens[s : s + 32], row_x)]
        assert matches, "window not found in the source tokens"
        assert np.array_equal(tokens[matches[0] + 1 : matches[0] + 33], row_y)


def test_load_tokens_raw_bin_needs_dtype(tmp_path):
    tokens = np.arange(300, dtype=np.uint16)
    path = tmp_path / "tokens.bin"
    tokens.tofile(path)
    with pytest.raises(ValueError, match="dtype"):
        load_tokens(path)
    loaded = load_tokens(path, dtype=np.uint16)
    assert np.array_equal(loaded, tokens)
    with pytest.raises(ValueError, match="multiple"):
        (tmp_path / "odd.bin").write_bytes(b"\x00\x01\x02")
        load_tokens(tmp_path / "odd.bin", dtype=np.uint16)


def test_load_tokens_names_a_truncated_or_padded_npy(tmp_path):
    path = tmp_path / "tokens.npy"
    np.save(path, np.arange(1000, dtype=np.uint16))
    whole = path.read_bytes()
    path.write_bytes(whole[:-10])  # a copy or a download cut short
    with pytest.raises(ValueError, match=r"tokens.npy is truncated: its header promises 1,000 uint16 values "
                                         r"\(2,128 bytes with the header\) but the file has 2,118 bytes"):
        load_tokens(path)
    path.write_bytes(whole + b"\0\0")
    with pytest.raises(ValueError, match=r"tokens.npy is corrupt: .* but the file has 2,130 bytes"):
        load_tokens(path)
    path.write_bytes(whole[:40])  # cut inside the header
    with pytest.raises(ValueError, match=r"tokens.npy: not a valid .npy file .*truncated or corrupt"):
        load_tokens(path)
    path.write_bytes(b"not numpy at all")
    with pytest.raises(ValueError, match=r"tokens.npy: not a valid .npy file"):
        load_tokens(path)
    path.write_bytes(whole)
    assert load_tokens(path).tolist() == list(range(1000))


def test_load_tokens_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.npy"):
        load_tokens(tmp_path / "missing.npy")
    (tmp_path / "empty.npy").write_bytes(b"")
    with pytest.raises(ValueError, match="empty"):
        load_tokens(tmp_path / "empty.npy")
    np.save(tmp_path / "none.npy", np.zeros(0, dtype=np.uint16))
    with pytest.raises(ValueError, match="no tokens"):
        load_tokens(tmp_path / "none.npy")
    np.save(tmp_path / "floats.npy", np.zeros(10, dtype=np.float32))
    with pytest.raises(ValueError, match="integer"):
        load_tokens(tmp_path / "floats.npy")


def test_dataset_shorter_than_context_raises():
    with pytest.raises(ValueError, match="8 tokens.*context_length \\+ 1 = 9"):
        get_batch(np.arange(8), 2, 8, "cpu")
    # Exactly context_length + 1 tokens leaves one valid window.
    x, y = get_batch(np.arange(9), 3, 8, "cpu")
    assert torch.equal(x, torch.arange(8).expand(3, 8))
    assert torch.equal(y, torch.arange(1, 9).expand(3, 8))


def test_validation_batches_fixed_by_seed():
    dataset = np.arange(5000)
    first = validation_batches(dataset, 4, 16, num_batches=3, seed=11)
    again = validation_batches(dataset, 4, 16, num_batches=3, seed=11)
    other = validation_batches(dataset, 4, 16, num_batches=3, seed=12)
    assert len(first) == 3
    for (x1, y1), (x2, y2) in zip(first, again):
        assert torch.equal(x1, x2) and torch.equal(y1, y2)
        assert torch.equal(y1, x1 + 1)
    assert not all(torch.equal(a[0], b[0]) for a, b in zip(first, other))
    with pytest.raises(ValueError, match="validation set"):
        validation_batches(np.arange(10), 2, 16, num_batches=1)


def test_check_token_ids_names_the_offending_id():
    check_token_ids(np.arange(100, dtype=np.uint16), vocab_size=100)
    with pytest.raises(ValueError, match="train.npy holds token id 100, out of range for vocab_size=100"):
        check_token_ids(np.arange(101, dtype=np.uint16), vocab_size=100, name="train.npy")
    with pytest.raises(ValueError, match="negative"):
        check_token_ids(np.array([3, -1, 2]), vocab_size=100)
