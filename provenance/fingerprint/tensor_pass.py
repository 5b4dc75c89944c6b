"""One pass over a canonical tensor in its stored dtype: value hash, summary statistics, unit projections.

A fingerprint needs of every tensor a hash of its values, eight summary
statistics and, for matrices with a role, the projection of each unit on a
few fixed directions. None of that needs a float32 copy of the tensor:

- **Value hash** (`value_hash`): XXH3-128 of the tensor's values written in
  the first of float16, bfloat16 and float32 that holds every one of them
  exactly (bit for bit). An f16 tensor is hashed as stored, and so is a bf16
  one unless all its values also fit float16 (a bf16 weight matrix has
  values too small for float16, found in its first few thousand values); a
  float32 or lossless float16 copy of either gets the same hash, so
  "bit-identical as float32 across lossless casts" keeps its meaning.
  Other dtypes (integers, f64, fp8) are taken as float32 first, as before.
  (NaN payloads need not survive a cast, so a tensor holding NaN may hash
  differently in another dtype.)
- **Statistics and unit projections** (`tensor_pass`): the tensor is taken
  in chunks of CHUNK values, each converted to float32 into a buffer that is
  reused (it stays in the CPU cache; no page is touched twice), and every
  quantity is accumulated from that buffer: the moments of (x - shift) for a
  shift near the mean (the mean of the tensor's sketch), so that a tensor
  far from zero (a norm weight near 1) keeps its small variance exact; sum
  of |x|; min; max; and the chunk's rows times the projection basis (or the
  basis times them, for units that are columns). Moments are combined in
  float64. The rows are split among `workers` threads (NumPy and PyTorch
  release the GIL in their loops).

The statistics equal `sketch.summary_statistics` to float rounding (same
definitions, one pass instead of several); NaN and infinities are handled as
before (counted, then taken as 0 in a second pass).
"""

from __future__ import annotations

import math
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import xxhash

HASH_NAME = "xxh3-128 of the values in the first of f16/bf16/f32 holding them exactly"
CHUNK = 1 << 16  # float32 values per working tile (256 KiB: three such buffers stay in a 2 MiB L2 cache)
TILE_ROWS = 16  # rows per tile at least (long rows are cut), so that each product has some depth
HASH_CHUNK = 1 << 20  # values per step when a tensor is checked or re-encoded for hashing
FIRST_CHECK = 1 << 15  # values checked first (most tensors that do not fit a narrower type are told here)
PARALLEL_MIN = 1 << 21  # tensors smaller than this are done by one thread


# --------------------------------------------------------------------------- value hash

def _hash_pieces(pieces) -> str:
    hasher = xxhash.xxh3_128()
    for piece in pieces:
        hasher.update(piece.contiguous().reshape(-1).view(torch.uint8).numpy())
    return hasher.hexdigest()


def _fits(flat: torch.Tensor, narrow: torch.dtype) -> bool:
    """Whether every value of `flat` comes back bit for bit from a round trip through `narrow`.

    Checked a chunk at a time, the first one small: a tensor that does not fit
    (a bf16 weight matrix holds values too small for float16) is told at once.
    """
    ints = {torch.float32: torch.int32, torch.bfloat16: torch.int16}[flat.dtype]
    start, size = 0, FIRST_CHECK
    while start < flat.numel():
        piece = flat[start:start + size]
        if narrow == torch.bfloat16:  # float32 to bfloat16: the low 16 bits are 0
            if bool((piece.view(torch.int32) & 0xFFFF).any()):
                return False
        elif not torch.equal(piece.to(narrow).to(flat.dtype).view(ints), piece.view(ints)):
            return False
        start, size = start + size, HASH_CHUNK
    return True


def _converted(flat: torch.Tensor, dtype: torch.dtype):
    """`flat` converted to `dtype` a chunk at a time, into one reused buffer (exact: the values fit)."""
    buffer = torch.empty(min(HASH_CHUNK, flat.numel()), dtype=dtype)
    for start in range(0, flat.numel(), HASH_CHUNK):
        piece = flat[start:start + HASH_CHUNK]
        part = buffer[:piece.numel()]
        part.copy_(piece)
        yield part


def value_hash(tensor: torch.Tensor) -> str:
    """XXH3-128 (hex) of the values in the first of f16, bf16, f32 that holds them all exactly."""
    flat = tensor.detach().reshape(-1)
    if flat.dtype not in (torch.bfloat16, torch.float16, torch.float32):
        flat = flat.to(torch.float32)
    if flat.dtype == torch.float16:
        return _hash_pieces([flat])
    for narrow in (torch.float16, torch.bfloat16):
        if narrow != flat.dtype and _fits(flat, narrow):
            return _hash_pieces(_converted(flat, narrow))
    return _hash_pieces([flat])


# --------------------------------------------------------------------------- statistics and projections

@dataclass
class PassResult:
    stats: dict[str, float]
    nonfinite: int  # NaN or infinite values (taken as 0 in stats and projections)
    projections: torch.Tensor | None  # (units x count) float32, when a basis was given


_SUMS = 6  # n, s1, s2, s3, s4, sum |x|


def _work(values: torch.Tensor, start: int, stop: int, shift: float, basis: torch.Tensor | None,
          rows: bool, clean: bool, out: torch.Tensor | None) -> tuple[list[float], float, float, torch.Tensor | None]:
    """Sums over values[start:stop] (first axis), one tile of at most CHUNK values at a time.

    A 2-D table is cut in tiles of whole rows, or of TILE_ROWS rows by part of
    the columns when its rows are long; a 1-D one in runs of CHUNK values.
    """
    if values.dim() == 2:
        width = values.shape[1]
        span = min(width, max(1, CHUNK // TILE_ROWS))  # columns per tile
        step = max(1, CHUNK // span)  # rows per tile
    else:
        width = span = 1
        step = CHUNK
    size = min(step, max(stop - start, 1)) * span
    buffer = torch.empty(size, dtype=torch.float32)
    scratch = np.empty(size, dtype=np.float32)
    ones = np.ones(size, dtype=np.float32)
    sums = [0.0] * _SUMS
    low, high = [math.inf], [-math.inf]
    tiles = range(0, width, span)
    # when units are columns: one contiguous (count x span) sum per column tile
    columns = torch.zeros(len(tiles), basis.shape[1], span, dtype=torch.float32) if basis is not None and not rows else None
    with np.errstate(all="ignore"):  # NaN or overflow shows in the sums, and is handled by the caller
        for begin in range(start, stop, step):
            end = min(begin + step, stop)
            for number, left in enumerate(tiles):
                right = min(left + span, width)
                tile = values[begin:end, left:right] if values.dim() == 2 else values[begin:end]
                block = buffer[:tile.numel()].view(tile.shape)
                block.copy_(tile)
                if clean:
                    torch.nan_to_num_(block, nan=0.0, posinf=0.0, neginf=0.0)
                if basis is not None and rows:
                    if span == width:
                        torch.mm(block, basis, out=out[begin:end])
                    else:
                        out[begin:end].addmm_(block, basis[left:right])
                elif basis is not None:
                    columns[number, :, :right - left].addmm_(basis[begin:end].t(), block)
                _add(block.numpy().reshape(-1), scratch, ones, sums, low, high, shift)
    if columns is not None:
        columns = torch.cat(list(columns), dim=1)[:, :width]
    return sums, low[0], high[0], columns


def _add(x: np.ndarray, scratch: np.ndarray, ones: np.ndarray, sums: list[float], low: list[float],
         high: list[float], shift: float) -> None:
    """Add one tile's moments, sum of |x|, min and max (x is overwritten)."""
    count = x.size
    low[0], high[0] = min(low[0], float(x.min())), max(high[0], float(x.max()))
    t, one = scratch[:count], ones[:count]
    np.abs(x, out=t)
    sums[5] += float(np.dot(t, one))
    if shift:
        np.subtract(x, np.float32(shift), out=x)
    np.multiply(x, x, out=t)
    sums[0] += count
    sums[1] += float(np.dot(x, one))
    sums[2] += float(np.dot(t, one))
    sums[3] += float(np.dot(t, x))
    sums[4] += float(np.dot(t, t))


def _statistics(sums: list[float], lo: float, hi: float, shift: float) -> dict[str, float]:
    n, s1, s2, s3, s4, absolute = sums
    n = int(n)
    if n == 0:
        return {"numel": 0}
    d = s1 / n  # mean of (x - shift)
    mean = shift + d
    m2 = max(s2 - n * d * d, 0.0)
    m3 = s3 - 3 * d * s2 + 2 * n * d ** 3
    m4 = s4 - 4 * d * s3 + 6 * d * d * s2 - 3 * n * d ** 4
    var = m2 / n
    std = var ** 0.5
    tiny = var <= (abs(mean) + std) ** 2 * 1e-14  # constant up to rounding: no shape to speak of
    skew = (m3 / n) / std ** 3 if std > 0 and not tiny else 0.0
    kurt = (m4 / n) / var ** 2 - 3.0 if var > 0 and not tiny else 0.0
    l2 = max(m2 + n * mean * mean, 0.0) ** 0.5
    return {"numel": n, "mean": mean, "std": std, "skew": skew, "kurtosis": kurt,
            "abs_mean": absolute / n, "l2": l2, "min": lo, "max": hi}


def _run(values: torch.Tensor, shift: float, basis: torch.Tensor | None, rows: bool, clean: bool,
         executor: Executor | None, workers: int) -> tuple[dict[str, float], torch.Tensor | None]:
    if basis is not None:
        table = values
        out = torch.zeros(values.shape[0], basis.shape[1], dtype=torch.float32) if rows else None
    else:
        table, out = values.reshape(-1), None
    length = table.shape[0]
    parts = workers if executor is not None and workers > 1 and values.numel() >= PARALLEL_MIN else 1
    bounds = [length * i // parts for i in range(parts + 1)]
    jobs = [(table, bounds[i], bounds[i + 1], shift, basis, rows, clean, out) for i in range(parts)]
    if parts == 1:
        results = [_work(*jobs[0])]
    else:
        results = list(executor.map(lambda job: _work(*job), jobs))
    sums = [sum(r[0][i] for r in results) for i in range(_SUMS)]
    lo = min(r[1] for r in results)
    hi = max(r[2] for r in results)
    projections = out
    if basis is not None and not rows:
        projections = sum(r[3] for r in results).t().contiguous()
    return _statistics(sums, lo, hi, shift), projections


def tensor_pass(values: torch.Tensor, shift: float = 0.0, basis: torch.Tensor | None = None, rows: bool = True,
                executor: Executor | None = None, workers: int = 1) -> PassResult:
    """Statistics of `values` and, with a basis, its units projected on it.

    With `rows`, units are the rows of the 2-D `values` and `basis` is (columns x
    count); otherwise units are its columns and `basis` is (rows x count). The
    projections are (units x count), as `units @ basis` in float32.
    """
    values = values.detach()
    if values.numel() == 0:
        units = (values.shape[0] if rows else values.shape[1]) if basis is not None else 0
        empty = torch.zeros(units, basis.shape[1]) if basis is not None else None
        return PassResult(stats={"numel": 0}, nonfinite=0, projections=empty)
    if not values.is_contiguous():
        values = values.contiguous()
    if not math.isfinite(shift):
        shift = 0.0
    stats, projections = _run(values, shift, basis, rows, False, executor, workers)
    nonfinite = 0
    if not all(math.isfinite(v) for v in stats.values()):
        nonfinite = int(values.numel() - int(torch.isfinite(values).sum())) if values.is_floating_point() else 0
        if nonfinite:  # counted, then taken as 0 like nan_to_num (statistics, projections)
            stats, projections = _run(values, shift, basis, rows, True, executor, workers)
        stats = {k: v if math.isfinite(v) else 0.0 for k, v in stats.items()}  # overflow
    return PassResult(stats=stats, nonfinite=nonfinite, projections=projections)


def sketch_shift(sample: np.ndarray) -> float:
    """A shift near the tensor's mean, from its sketch (finite values only); 0 when the mean is small.

    Moments about 0 lose nothing while the mean is under a tenth of the spread
    (most weight matrices); then the subtraction is skipped.
    """
    finite = sample[np.isfinite(sample)].astype(np.float64)
    if not finite.size:
        return 0.0
    mean, spread = float(finite.mean()), float(finite.std())
    return 0.0 if abs(mean) < 0.1 * spread else mean


def describe() -> dict[str, Any]:
    return {"value_hash": HASH_NAME}
