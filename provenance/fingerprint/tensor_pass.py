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
- **Summary statistics** (`sample_statistics`): computed in float64 from a
  deterministic sample of the tensor: STATS_RUNS runs of consecutive values at
  evenly spaced offsets, STATS_SAMPLE values in all (every value of a smaller
  tensor). The runs depend only on the number of values, so two tensors of
  one shape are sampled alike and a copy has the same statistics. The
  statistics describe a tensor (screening, reports, the "looks untrained"
  note); none of them is evidence, and 65,536 values give the excess
  kurtosis to about 0.02 and the std to 0.3%. `numel` is exact; `min` and
  `max` are those of the sample. Before fingerprint schema 3 every value was
  reduced, which cost half the CPU time of a fingerprint.
- **Unit projections** (`tensor_pass` with a basis): the only per-value
  arithmetic besides the hash. The matrix is taken in tiles of TILE values,
  each converted to float32 into a buffer that is reused (it stays in the
  CPU cache; no float32 copy of the tensor is made) and multiplied by the
  basis: rows times the basis when units are rows, the transposed tile times
  the basis when units are columns (each worker then owns a block of
  columns, so the partial products need no reduction). The tiles are split
  among `workers` threads; PyTorch releases the GIL in each product, and a
  tile is large enough (about 0.2 ms of work) that the Python between tiles
  stays a small share.

NaN and infinities: a tensor whose sample or projections hold one is
counted over all its values and taken as 0 in its statistics and
projections, as before. One that holds them only outside the sample and
has no projections is not counted (nothing computed from it is affected).
"""

from __future__ import annotations

from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import xxhash

HASH_NAME = "xxh3-128 of the values in the first of f16/bf16/f32 holding them exactly"
TILE = 1 << 18  # float32 values per projection tile (1 MiB: stays in a core's 2 MiB L2 cache)
COLUMN_BLOCK = 1024  # columns per tile when units are columns (256 rows deep at TILE)
STATS_SAMPLE = 1 << 16  # values the summary statistics come from (all values of a smaller tensor)
STATS_RUNS = 64  # in this many evenly spaced runs of consecutive values
STATS_RUN = STATS_SAMPLE // STATS_RUNS
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


def statistics_offsets(numel: int) -> np.ndarray:
    """Start of each run of STATS_RUN consecutive values in the statistics sample (evenly spaced)."""
    if numel <= STATS_SAMPLE:
        return np.zeros(1, dtype=np.int64)
    return np.linspace(0, numel - STATS_RUN, STATS_RUNS).round().astype(np.int64)


def statistics_sample(values: torch.Tensor) -> torch.Tensor:
    """The values the statistics are computed from (all of them up to STATS_SAMPLE), flat, in float64."""
    flat = values.detach().reshape(-1)
    if flat.numel() <= STATS_SAMPLE:
        return flat.to(torch.float64)
    starts = torch.from_numpy(statistics_offsets(flat.numel()))
    positions = (starts[:, None] + torch.arange(STATS_RUN)[None, :]).reshape(-1)
    return flat[positions].to(torch.float64)


def sample_statistics(values: torch.Tensor) -> tuple[dict[str, float], int]:
    """Summary statistics of `values` from its statistics sample, and the NaN/infinite count seen there.

    Mean, std, skewness, excess kurtosis, mean |x|, L2 norm (scaled from the
    sample's mean square), min and max; `numel` is the tensor's, `sample` how
    many values they come from. NaN and infinities are taken as 0.
    """
    numel = values.numel()
    if numel == 0:
        return {"numel": 0}, 0
    sample = statistics_sample(values)
    finite = torch.isfinite(sample)
    nonfinite = int(sample.numel() - int(finite.sum()))
    if nonfinite:
        sample = torch.where(finite, sample, torch.zeros((), dtype=torch.float64))
    # torch rather than NumPy: NumPy's BLAS (OpenBLAS) runs its own thread pool, whose threads spin
    # after each call and took a quarter of a fingerprint's CPU time; torch's follow set_num_threads.
    count = sample.numel()
    mean = float(sample.mean())
    centred = sample - mean
    squared = centred * centred
    var = float(squared.mean())
    std = var ** 0.5
    tiny = var <= (abs(mean) + std) ** 2 * 1e-14  # constant up to rounding: no shape to speak of
    skew = float(torch.dot(squared, centred)) / count / std ** 3 if std > 0 and not tiny else 0.0
    kurt = float(torch.dot(squared, squared)) / count / var ** 2 - 3.0 if var > 0 and not tiny else 0.0
    l2 = (numel * (var + mean * mean)) ** 0.5
    low, high = torch.aminmax(sample)
    stats = {"numel": numel, "sample": count, "mean": mean, "std": std, "skew": skew, "kurtosis": kurt,
             "abs_mean": float(sample.abs().mean()), "l2": l2, "min": float(low), "max": float(high)}
    return stats, nonfinite


def _tile_buffer(values: torch.Tensor, size: int) -> torch.Tensor | None:
    """A reused float32 tile, or None when `values` is float32 already (multiplied in place)."""
    return None if values.dtype == torch.float32 else torch.empty(size, dtype=torch.float32)


def _as_tile(part: torch.Tensor, buffer: torch.Tensor | None, clean: bool) -> torch.Tensor:
    if buffer is None and not clean:
        return part
    if buffer is None:
        block = part.clone()
    else:
        block = buffer[:part.numel()].view(part.shape)
        block.copy_(part)
    if clean:
        torch.nan_to_num_(block, nan=0.0, posinf=0.0, neginf=0.0)
    return block


def _project_rows(values: torch.Tensor, basis: torch.Tensor, start: int, stop: int, out: torch.Tensor,
                  clean: bool) -> None:
    """out[start:stop] = values[start:stop] @ basis, TILE values at a time."""
    step = max(1, TILE // values.shape[1])
    buffer = _tile_buffer(values, min(step, stop - start) * values.shape[1])
    for begin in range(start, stop, step):
        end = min(begin + step, stop)
        torch.mm(_as_tile(values[begin:end], buffer, clean), basis, out=out[begin:end])


def _project_columns(values: torch.Tensor, basis: torch.Tensor, left: int, right: int, out: torch.Tensor,
                     clean: bool) -> None:
    """out[left:right] = values[:, left:right].T @ basis, TILE values at a time (COLUMN_BLOCK columns)."""
    rows = values.shape[0]
    width = min(COLUMN_BLOCK, right - left)
    step = max(1, TILE // width)
    buffer = _tile_buffer(values, min(step, rows) * width)
    for low in range(left, right, width):
        high = min(low + width, right)
        acc = out[low:high]
        for begin in range(0, rows, step):
            end = min(begin + step, rows)
            acc.addmm_(_as_tile(values[begin:end, low:high], buffer, clean).t(), basis[begin:end])


def _projections(values: torch.Tensor, basis: torch.Tensor, rows: bool, clean: bool, executor: Executor | None,
                 workers: int) -> torch.Tensor:
    units = values.shape[0] if rows else values.shape[1]
    out = torch.zeros(units, basis.shape[1], dtype=torch.float32)
    parts = workers if executor is not None and workers > 1 and values.numel() >= PARALLEL_MIN else 1
    if rows:
        align = max(1, TILE // values.shape[1])
        work = _project_rows
    else:
        align = COLUMN_BLOCK  # each worker owns whole column blocks
        work = _project_columns
    blocks = -(-units // align)
    bounds = [min(units, align * (blocks * i // parts)) for i in range(parts + 1)]
    jobs = [(values, basis, bounds[i], bounds[i + 1], out, clean) for i in range(parts) if bounds[i] < bounds[i + 1]]
    if len(jobs) == 1:
        work(*jobs[0])
    else:
        for _ in executor.map(lambda job: work(*job), jobs):
            pass
    return out


def tensor_pass(values: torch.Tensor, basis: torch.Tensor | None = None, rows: bool = True,
                executor: Executor | None = None, workers: int = 1) -> PassResult:
    """Statistics of `values` (from its statistics sample) and, with a basis, its units projected on it.

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
    stats, nonfinite = sample_statistics(values)
    projections = None
    if basis is not None:
        projections = _projections(values, basis, rows, False, executor, workers)
        if not bool(torch.isfinite(projections).all()):  # NaN or infinity somewhere: taken as 0, as in the sample
            nonfinite = max(nonfinite, 1)
            projections = _projections(values, basis, rows, True, executor, workers)
    if nonfinite and values.is_floating_point():  # seen: counted over every value (a rare, slow path)
        nonfinite = int(values.numel() - int(torch.isfinite(values).sum()))
    return PassResult(stats=stats, nonfinite=nonfinite, projections=projections)


def describe() -> dict[str, Any]:
    return {"value_hash": HASH_NAME}
