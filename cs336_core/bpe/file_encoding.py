"""`encode_file`: a whole text file to a 1-D `.npy` of token ids, in parallel, streaming, atomically.

With the C accelerator, threads encode chunks straight from their bytes (one `Merger` each, without
the GIL); otherwise worker processes run the pure-Python tokenizer.
"""

from __future__ import annotations

import io
import itertools
import os
import time
from pathlib import Path

from cs336_core.bpe import chunks
from cs336_core.bpe.parallel import file_job_arguments, map_in_order, map_in_threads
from cs336_core.bpe.pretokenize import decode_utf8, max_special_bytes, special_pattern
from cs336_core.bpe.tokenizer import Tokenizer
from cs336_core.files import atomic_path, remove_stale_partials
from cs336_core.progress import ProgressFn


def encode_file(tokenizer: Tokenizer, input_path: str | os.PathLike, output_path: str | os.PathLike, *,
                num_workers: int | None = None, progress: ProgressFn | None = None,
                invalid_utf8: str = "error") -> dict:
    """Encode a text file (gzip allowed) to a 1-D `.npy` of token ids, in parallel, atomically.

    The file is cut at special tokens (or safe newlines) into chunks that encode independently;
    workers encode chunks and the results are appended in order to the output, whose header is
    rewritten with the final length at the end. Memory is a few chunks, whatever the file size.
    Temporary files that a killed encode left beside the output are removed first. Reports the
    phase "encode" in bytes read. Returns {"tokens", "bytes", "seconds", "dtype", "path"}.

    >>> import numpy as np
    >>> from pathlib import Path
    >>> _ = Path("story.txt").write_text("hi there<|endoftext|>hi")
    >>> tokenizer = Tokenizer({b: bytes([b]) for b in range(256)} | {256: b"hi"}, [(b"h", b"i")], ["<|endoftext|>"])
    >>> encode_file(tokenizer, "story.txt", "story.npy", num_workers=1)["tokens"]
    9
    >>> np.load("story.npy").tolist()
    [256, 32, 116, 104, 101, 114, 101, 257, 256]
    """
    path, workers = file_job_arguments(input_path, num_workers, invalid_utf8)
    start = time.perf_counter()
    stream, total_bytes = chunks.open_corpus(path)
    dtype = token_dtype(tokenizer)
    special_re = special_pattern(tokenizer.special_tokens, as_bytes=True)
    max_special_len = max_special_bytes(tokenizer.special_tokens)

    num_tokens = done_bytes = 0
    with stream:
        remove_stale_partials(Path(output_path).parent)
        with atomic_path(output_path) as tmp, open(tmp, "wb") as out:
            header_length = len(_npy_header(dtype, 0))
            out.write(_npy_header(dtype, 0))
            chunk_bytes = chunks.chunk_size(total_bytes, workers)
            pieces = chunks.iter_chunks(stream, special_re, max_special_len, chunk_bytes,
                                        min(chunk_bytes, chunks.MIN_CHUNK_BYTES))
            worker_args = (tokenizer, invalid_utf8, str(path))
            if tokenizer._merger is not None:
                results = _encode_in_threads(pieces, workers, *worker_args)
            else:
                # A small first chunk is encoded here: it fills the tokenizer's cache with the most
                # common words, which forked workers inherit, so they do not each redo those first
                # encounters.
                _EncodeWorker.start(*worker_args)
                results = itertools.chain(map(_encode_chunk, itertools.islice(pieces, 1)),
                                          map_in_order(_encode_chunk, pieces, workers, _EncodeWorker.start, worker_args))
            for length, packed in results:  # (ids as bytes of `dtype`)
                out.write(packed)
                num_tokens += len(packed) // dtype.itemsize
                done_bytes += length
                if progress is not None:
                    progress("encode", done_bytes, total_bytes)
            final_header = _npy_header(dtype, num_tokens)
            if len(final_header) != header_length:  # cannot happen below 10**40 tokens; never write a corrupt file
                raise RuntimeError("npy header length changed")
            out.seek(0)
            out.write(final_header)
            out.flush()
    return {"tokens": num_tokens, "bytes": done_bytes, "seconds": time.perf_counter() - start,
            "dtype": dtype.name, "path": str(output_path)}


def token_dtype(tokenizer: Tokenizer):
    """uint16 when every id of the tokenizer fits in 16 bits, else uint32."""
    import numpy as np

    return np.dtype(np.uint16) if tokenizer.max_token_id < 1 << 16 else np.dtype(np.uint32)


def _npy_header(dtype, num_tokens: int) -> bytes:
    """The `.npy` (version 1.0) header of a 1-D array of `num_tokens` values of `dtype`."""
    from numpy.lib import format as npy_format

    buffer = io.BytesIO()
    npy_format.write_array_header_1_0(buffer, {"descr": npy_format.dtype_to_descr(dtype), "fortran_order": False,
                                               "shape": (num_tokens,)})
    return buffer.getvalue()


class _EncodeWorker:
    """What an encoding process needs for every chunk, set once per process by `start` (the pool's
    initializer); the counting workers of `counting` keep their own."""

    current: _EncodeWorker

    def __init__(self, tokenizer: Tokenizer, invalid_utf8: str, source: str):
        self.tokenizer = tokenizer
        self.invalid_utf8 = invalid_utf8
        self.source = source
        self.dtype = token_dtype(tokenizer)

    @classmethod
    def start(cls, tokenizer: Tokenizer, invalid_utf8: str, source: str) -> None:
        cls.current = cls(tokenizer, invalid_utf8, source)


def _encode_chunk(job: tuple[int, bytes]):
    """(chunk length, the chunk's token ids as a numpy array)."""
    import numpy as np

    worker = _EncodeWorker.current
    offset, chunk = job
    text = decode_utf8(chunk, offset, worker.invalid_utf8, worker.source)
    return len(chunk), np.array(worker.tokenizer.encode(text), dtype=worker.dtype).tobytes()


def _encode_in_threads(pieces, workers: int, tokenizer: Tokenizer, invalid_utf8: str, source: str):
    """(chunk length, the chunk's ids as bytes of the token dtype) for each chunk, in order, by
    `workers` threads with a C `Merger` each."""
    import numpy as np

    dtype = token_dtype(tokenizer)

    def encode(merger, job: tuple[int, bytes]) -> tuple[int, bytes]:
        offset, chunk = job
        packed = merger.encode_bytes(chunk, dtype.itemsize)
        if isinstance(packed, int):  # not UTF-8 at that offset: the reference decoding decides
            text = decode_utf8(chunk, offset, invalid_utf8, source)
            packed = np.array(merger.encode(text), dtype=dtype).tobytes()
        return len(chunk), packed

    # Fresh Mergers (a few ms each): the tokenizer's own may be in use by the thread that made it.
    mergers = [tokenizer.new_merger() for _ in range(workers)]
    return map_in_threads(encode, pieces, mergers)
