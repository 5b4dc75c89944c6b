"""Deterministic samples and summary statistics of one tensor.

Positions are drawn from a generator seeded by the tensor's *shape* only, so
two models with tensors of one shape sample the same positions and their
samples can be correlated directly. Projections for per-unit signatures are
seeded by the input width the same way.

The *row sample* of a matrix is the same idea laid out for remote reads:
ROW_BLOCKS blocks of ROWS_PER_BLOCK consecutive rows, at block positions
seeded by the shape, each row cut down to ROW_SAMPLE_COLUMNS columns seeded
by the shape. A local fingerprint takes it from the whole tensor; a remote
one fetches only those rows (a few contiguous byte ranges per tensor) and
gets exactly the same values.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache

import numpy as np
import torch

from .store import FULL_VECTOR_LIMIT, SKETCH_SIZE

UNIT_PROJECTIONS = 32  # projections per MLP unit signature (half to match, half to test)
ROW_BLOCKS = 4  # contiguous blocks of rows per matrix in the row sample
ROWS_PER_BLOCK = 8
ROW_SAMPLE_COLUMNS = 256  # columns kept of each sampled row


def _seed(label: str) -> int:
    return int.from_bytes(hashlib.sha256(label.encode()).digest()[:8], "little")


def sketch_positions(shape: tuple[int, ...]) -> np.ndarray:
    """Flat indices sampled for tensors of this shape (sorted, without repeats)."""
    return _sketch_positions(tuple(int(d) for d in shape)).copy()


@lru_cache(maxsize=512)
def _sketch_positions(shape: tuple[int, ...]) -> np.ndarray:
    # drawing 2048 of 45M positions takes ~10 ms; a model repeats a few shapes hundreds of times
    numel = int(np.prod(shape)) if shape else 1
    if len(shape) == 1 and numel <= FULL_VECTOR_LIMIT or numel <= SKETCH_SIZE:
        return np.arange(numel, dtype=np.int64)
    rng = np.random.default_rng(_seed(f"sketch:{tuple(shape)}"))
    return np.sort(rng.choice(numel, size=SKETCH_SIZE, replace=False)).astype(np.int64)


def row_sample_rows(shape: tuple[int, ...]) -> np.ndarray:
    """Rows of a matrix of this shape in its row sample: ROW_BLOCKS aligned blocks of
    ROWS_PER_BLOCK consecutive rows (all rows of a small matrix), sorted."""
    rows = int(shape[0])
    blocks = rows // ROWS_PER_BLOCK
    if blocks <= ROW_BLOCKS:
        return np.arange(rows, dtype=np.int64)
    rng = np.random.default_rng(_seed(f"rows:{tuple(shape)}"))
    chosen = np.sort(rng.choice(blocks, size=ROW_BLOCKS, replace=False))
    return (chosen[:, None] * ROWS_PER_BLOCK + np.arange(ROWS_PER_BLOCK)[None, :]).reshape(-1).astype(np.int64)


def row_sample_columns(shape: tuple[int, ...]) -> np.ndarray:
    """Columns kept of each sampled row (all of them up to ROW_SAMPLE_COLUMNS), sorted."""
    columns = int(shape[1])
    if columns <= ROW_SAMPLE_COLUMNS:
        return np.arange(columns, dtype=np.int64)
    rng = np.random.default_rng(_seed(f"rowcols:{tuple(shape)}"))
    return np.sort(rng.choice(columns, size=ROW_SAMPLE_COLUMNS, replace=False)).astype(np.int64)


def row_sample(rows: torch.Tensor, shape: tuple[int, ...]) -> np.ndarray:
    """The stored row sample (float16) from the already selected rows of a matrix of `shape`."""
    columns = torch.from_numpy(row_sample_columns(shape))
    picked = rows.detach().to(torch.float32)[:, columns]
    return picked.clamp(-65504.0, 65504.0).to(torch.float16).numpy()  # float16's range


@lru_cache(maxsize=32)
def projection(width: int, count: int = UNIT_PROJECTIONS) -> torch.Tensor:
    """A fixed (width x count) matrix with orthonormal columns, shared by every model of this width.

    Orthonormal columns keep a row's projections on different columns
    uncorrelated, which the held-out unit-matching test relies on.
    """
    rng = np.random.default_rng(_seed(f"projection:{width}:{count}"))
    gaussian = rng.standard_normal((width, min(count, width)))
    # torch's QR (float64) rather than NumPy's: NumPy's BLAS threads cannot be limited here and,
    # on a busy machine, took seconds for an 11008 x 16 matrix; the results agree to float64 rounding.
    q, r = torch.linalg.qr(torch.from_numpy(gaussian))
    q = q * torch.sign(torch.diagonal(r))[None, :]  # a unique, deterministic orthonormal basis
    return q.to(torch.float32).contiguous()
