"""The fused per-tensor pass, the value hash and the read-ahead thread behind fast fingerprints."""

from __future__ import annotations

import math
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch

from provenance.fingerprint.sketch import projection
import provenance.fingerprint.tensor_pass as tensor_pass_module
from provenance.fingerprint.tensor_pass import STATS_SAMPLE, TILE, statistics_sample, tensor_pass, value_hash
from provenance.formats.base import TensorInfo, TensorSource
from provenance.formats.read_ahead import HELD, read_ahead


def _weights(rows: int, cols: int, seed: int = 0, dtype=torch.bfloat16) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(rows, cols, generator=g) * 0.02).to(dtype)


def summary_statistics(tensor: torch.Tensor) -> dict[str, float]:
    """Reference statistics over every value: mean, std, skewness, excess kurtosis, mean |x|, L2 norm, min, max.

    Each chunk of (1 << 20) values is reduced in float32 (PyTorch sums
    pairwise, so a 1M-element sum keeps about 7 significant digits) and the
    chunk results are accumulated in float64. Reducing in float64 directly
    would copy every chunk to float64 and cost ten times as much.
    """
    flat = tensor.reshape(-1).to(torch.float32)
    n = flat.numel()
    if n == 0:
        return {"numel": 0}
    chunks = [flat[start:start + (1 << 20)] for start in range(0, n, (1 << 20))]
    mean = sum(float(c.sum()) for c in chunks) / n
    m2 = m3 = m4 = abs_total = 0.0
    lo, hi = float("inf"), float("-inf")
    for chunk in chunks:
        centred = chunk - mean
        squared = centred * centred
        m2 += float(squared.sum())
        m3 += float(torch.dot(squared, centred))
        m4 += float(torch.dot(squared, squared))
        abs_total += float(chunk.abs().sum())
        lo, hi = min(lo, float(chunk.min())), max(hi, float(chunk.max()))
    var = m2 / n
    std = var ** 0.5
    skew = (m3 / n) / std ** 3 if std > 0 else 0.0
    kurt = (m4 / n) / var ** 2 - 3.0 if var > 0 else 0.0
    l2 = (m2 + n * mean * mean) ** 0.5
    return {"numel": n, "mean": mean, "std": std, "skew": skew, "kurtosis": kurt,
            "abs_mean": abs_total / n, "l2": l2, "min": lo, "max": hi}


# --------------------------------------------------------------------------- value hash

def test_value_hash_equal_across_lossless_casts_and_different_otherwise():
    bf16 = _weights(64, 48)
    h = value_hash(bf16)
    assert value_hash(bf16.to(torch.float32)) == h
    assert value_hash(bf16.to(torch.float16)) == h  # these small values are exact in float16
    assert value_hash(bf16.to(torch.float64)) == h
    assert value_hash(bf16.clone()) == h and len(h) == 32
    changed = bf16.clone()
    changed[3, 7] = changed[3, 7] * 2
    assert value_hash(changed) != h
    assert value_hash(bf16.reshape(48, 64)) == h  # values only, as the sha256 of float32 bytes was


def test_value_hash_of_float16_and_float32_models():
    f16 = (torch.randn(300, 17, generator=torch.Generator().manual_seed(1)) * 0.05).to(torch.float16)
    assert value_hash(f16.to(torch.float32)) == value_hash(f16)
    f32 = torch.randn(300, 17, generator=torch.Generator().manual_seed(2))
    assert value_hash(f32) != value_hash(f32.to(torch.bfloat16))  # rounding is not lossless
    assert value_hash(f32) == value_hash(f32.clone())
    # -0.0 and 0.0 are different bits, as before
    assert value_hash(torch.tensor([0.0, 1.0])) != value_hash(torch.tensor([-0.0, 1.0]))


# --------------------------------------------------------------------------- statistics and projections

@pytest.mark.parametrize("make", [
    lambda: _weights(200, 300, 3),
    lambda: (torch.randn(5000, generator=torch.Generator().manual_seed(4)) * 0.01 + 1.0).to(torch.bfloat16),  # a norm
    lambda: torch.ones(4096, dtype=torch.bfloat16),  # constant
    lambda: torch.rand(3, 7, 11, generator=torch.Generator().manual_seed(5)) ** 3,  # skewed, 3-D, float32
    lambda: torch.arange(10, dtype=torch.int64),
])
def test_statistics_of_a_tensor_within_the_sample_size_are_exact(make):
    values = make()
    assert values.numel() <= STATS_SAMPLE
    got = tensor_pass(values).stats
    want = summary_statistics(values.to(torch.float32))
    assert got["numel"] == want["numel"] == got["sample"]
    spread = want["std"] or 1.0
    for name in ("mean", "std", "abs_mean", "l2", "min", "max"):
        assert got[name] == pytest.approx(want[name], rel=1e-5, abs=1e-6 * spread), name
    for name in ("skew", "kurtosis"):
        assert got[name] == pytest.approx(want[name], rel=1e-3, abs=1e-4), name


def test_statistics_of_a_large_tensor_come_from_a_deterministic_sample_close_to_the_whole():
    g = torch.Generator().manual_seed(8)
    # rows of different scale: the sample must cover them all (evenly spaced runs), not one end
    values = (torch.randn(1024, 1024, generator=g) * torch.linspace(0.5, 1.5, 1024)[:, None] * 0.02).to(torch.bfloat16)
    got = tensor_pass(values).stats
    want = summary_statistics(values.to(torch.float32))
    assert got["numel"] == values.numel() and got["sample"] == STATS_SAMPLE
    assert got["std"] == pytest.approx(want["std"], rel=0.01)
    assert got["l2"] == pytest.approx(want["l2"], rel=0.01)
    assert got["abs_mean"] == pytest.approx(want["abs_mean"], rel=0.01)
    assert abs(got["kurtosis"] - want["kurtosis"]) < 0.1 and abs(got["skew"] - want["skew"]) < 0.05
    assert want["min"] <= got["min"] < got["max"] <= want["max"]
    assert tensor_pass(values.clone()).stats == got  # a copy has the same statistics
    assert tensor_pass(values.to(torch.float32)).stats == got  # and a lossless cast
    reshaped = tensor_pass(values.reshape(512, 2048)).stats  # the sample depends on the number of values only
    assert reshaped == got


def test_nonfinite_values_are_counted_and_taken_as_zero():
    values = _weights(64, 64, 6).to(torch.float32)
    values[1, 2], values[5, 5], values[9, 0] = float("nan"), float("inf"), float("-inf")
    done = tensor_pass(values)
    assert done.nonfinite == 3
    want = summary_statistics(torch.nan_to_num(values, nan=0.0, posinf=0.0, neginf=0.0))
    assert done.stats["std"] == pytest.approx(want["std"], rel=1e-5)
    assert all(math.isfinite(v) for v in done.stats.values())


def test_nonfinite_values_outside_the_sample_are_found_through_the_projections():
    values = _weights(512, 1024, 9).to(torch.float32)
    positions = set(statistics_sample(torch.arange(values.numel(), dtype=torch.float64)).long().tolist())
    row, column = next((r, c) for r in range(512) for c in range(1024) if r * 1024 + c not in positions)
    values[row, column] = float("nan")
    basis = projection(1024, 8)
    done = tensor_pass(values, basis=basis, rows=True)
    assert done.nonfinite == 1
    assert bool(torch.isfinite(done.projections).all())
    clean = torch.nan_to_num(values, nan=0.0)
    assert torch.allclose(done.projections, clean @ basis, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("rows", [True, False])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_projections_equal_the_full_product_in_parallel_and_serial(rows, dtype, monkeypatch):
    monkeypatch.setattr(tensor_pass_module, "PARALLEL_MIN", 0)  # split this small tensor between the workers too
    values = _weights(3 * TILE // 2048 + 5, 2048 + 3, 7, dtype)  # several tiles and column blocks, uneven splits
    if not rows:
        values = values.t().contiguous()
    width = values.shape[1] if rows else values.shape[0]
    basis = projection(width, 8) * torch.linspace(0.5, 2.0, width)[:, None]
    full = values.to(torch.float32)
    want = (full @ basis) if rows else (full.t() @ basis)
    serial = tensor_pass(values, basis=basis, rows=rows)
    with ThreadPoolExecutor(2) as pool:
        parallel = tensor_pass(values, basis=basis, rows=rows, executor=pool, workers=2)
    for done in (serial, parallel):
        assert done.projections.shape == want.shape
        assert torch.allclose(done.projections, want, rtol=1e-4, atol=1e-6)
    assert parallel.stats == serial.stats


# --------------------------------------------------------------------------- read-ahead

class _Counting(TensorSource):
    """A fake source that counts tensors alive (read and not yet collected)."""

    def __init__(self, count: int, fail_at: int | None = None):
        super().__init__(path=__import__("pathlib").Path("fake"))
        self.infos = [TensorInfo(f"t{i}", (4,), "F32", 16, "fake") for i in range(count)]
        self.fail_at = fail_at
        self.alive = 0
        self.most = 0
        self.lock = threading.Lock()

    def tensor_infos(self):
        return list(self.infos)

    def read_tensor(self, name):
        index = int(name[1:])
        if index == self.fail_at:
            raise ValueError(f"cannot read {name}")
        tensor = torch.full((4,), float(index))
        with self.lock:
            self.alive += 1
            self.most = max(self.most, self.alive)

        def gone(_):
            with self.lock:
                self.alive -= 1

        import weakref

        weakref.finalize(tensor, gone, None)
        return tensor


def test_read_ahead_keeps_order_and_holds_at_most_two():
    source = _Counting(12)
    seen = []
    stored = []
    for info, extra, tensor in read_ahead(source, [(i, i.name) for i in source.infos],
                                          on_stored=lambda i, t: stored.append(i.name)):
        assert extra == info.name and float(tensor[0]) == int(info.name[1:])
        seen.append(info.name)
        del tensor
    assert seen == stored == [i.name for i in source.infos]
    assert source.most <= HELD


def test_read_ahead_raises_at_the_failing_tensor_and_stops_early():
    source = _Counting(6, fail_at=3)
    seen = []
    with pytest.raises(ValueError, match="cannot read t3"):
        for info, _, _ in read_ahead(source, [(i, None) for i in source.infos]):
            seen.append(info.name)
    assert seen == ["t0", "t1", "t2"]
    early = read_ahead(_Counting(50), [(i, None) for i in _Counting(50).infos])
    next(early)
    early.close()  # the reading thread ends instead of reading the rest
    assert not any(t.name == "read-ahead" and t.is_alive() for t in threading.enumerate())


def test_value_hash_is_xxh3_of_the_stored_bytes_for_weight_matrices():
    import xxhash

    values = _weights(100, 100, 8)  # bf16, with values too small for float16
    raw = values.view(torch.int16).numpy().tobytes()
    assert value_hash(values) == xxhash.xxh3_128(raw).hexdigest()
    assert value_hash(values.to(torch.float32)) == xxhash.xxh3_128(np.frombuffer(raw, np.uint8)).hexdigest()
    f16 = values.to(torch.float16)  # rounded: not lossless
    assert value_hash(f16) == xxhash.xxh3_128(f16.view(torch.int16).numpy().tobytes()).hexdigest() != value_hash(values)


def test_narrower_type_fit_agrees_with_a_round_trip_on_every_bfloat16_bit_pattern():
    from provenance.fingerprint.tensor_pass import _fits

    every = torch.arange(-32768, 32768, dtype=torch.int32).to(torch.int16).view(torch.bfloat16)
    exact = every.to(torch.float16).to(torch.bfloat16).view(torch.int16) == every.view(torch.int16)
    assert 0 < int(exact.sum()) < every.numel()
    assert _fits(every[exact], torch.float16) and not _fits(every, torch.float16)
    for value, fits in zip(every[::97], exact[::97].tolist()):
        assert _fits(value.reshape(1), torch.float16) == fits, value
    as_f32 = every.to(torch.float32)
    assert _fits(as_f32, torch.bfloat16)
    exact &= ~torch.isnan(every)  # NaN payloads need not survive a cast: a NaN tensor hashes as stored
    assert value_hash(as_f32[exact]) == value_hash(every[exact]) == value_hash(every[exact].to(torch.float16))
    finite = ~torch.isnan(every)
    assert value_hash(as_f32[finite]) == value_hash(every[finite])
