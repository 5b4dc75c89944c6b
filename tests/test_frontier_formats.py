"""Frontier MoEs in their released formats: DeepSeek-V3's FP8 block scales, gpt-oss's stacked MXFP4 experts.

The bench's checkpoints (`bench/moe_models.py`) are written as released
(`MoeSpec.quant`) by `bench/zoo/quantized.py`'s writers; their fine-tunes are
bf16 from the released values, as real fine-tunes of them are. The reader
must give back exactly the values an independent dequantization gives, the
release must be `identical` to itself, a bf16 copy of its values `identical`
(the storage rule), and permuted-plus-noise or half-the-experts copies
`derived` with the experts named.
"""

from __future__ import annotations

import pytest
import torch

import math

import numpy as np

from bench.moe_models import MoeEdit, MoeSpec, float_layer, released_values, write_moe
from provenance.compare.engine import compare_fingerprints
from provenance.fingerprint import build_fingerprint
from provenance.fingerprint.load import fingerprint_for
from provenance.formats.quantized.dequantizing import DequantizingSource
from provenance.model import Checkpoint

from .range_server import RangeServer

SPECS = {
    "fp8": MoeSpec(layers=2, experts=8, shared_dim=32, vocab=128, quant="fp8", fp8_block=(32, 32), shards=1),
    "mxfp4": MoeSpec(layers=2, experts=8, layout="gpt-oss", vocab=128, quant="mxfp4", shards=1),
}
STORAGE = {"fp8": "FP8_E4M3_BLOCK", "mxfp4": "MXFP4"}
SHUFFLED = (3, 1, 0, 2, 7, 6, 5, 4)


def _fingerprint(path):
    with Checkpoint.open(path) as checkpoint:
        return build_fingerprint(checkpoint)


@pytest.fixture(scope="module", params=sorted(SPECS))
def release(request, tmp_path_factory):
    root = tmp_path_factory.mktemp(request.param)
    spec = SPECS[request.param]
    return request.param, spec, root, write_moe(root / "release", spec)


def test_release_is_stored_quantized_and_read_as_its_dequantized_values(release):
    quant, spec, _, path = release
    with Checkpoint.open(path) as checkpoint:
        source = checkpoint.files.source
        assert isinstance(source, DequantizingSource)
        stored = source.inner.tensor_infos()
        assert len(stored) == spec.tensor_count()
        assert {"F8_E4M3"} <= {i.dtype for i in stored} if quant == "fp8" else {"U8"} <= {i.dtype for i in stored}
        assert STORAGE[quant] in {i.dtype for i in source.tensor_infos()}
        expected = released_values(float_layer(spec, 1), spec)
        quantized = [i.name for i in source.tensor_infos() if i.dtype == STORAGE[quant] and ".layers.1." in i.name]
        assert quantized
        for name in quantized:  # the reader against `bench/zoo/quantized.py`'s dequantization, bit for bit
            assert torch.equal(source.read_tensor(name), expected[name].float())


def test_release_is_identical_to_itself_and_to_a_bf16_copy_of_its_values(release):
    _, spec, root, path = release
    base = _fingerprint(path)
    assert compare_fingerprints(base, base).verdict == "identical"
    float_copy = _fingerprint(write_moe(root / "float", spec, MoeEdit(keep=SHUFFLED, stored="float")))
    result = compare_fingerprints(float_copy, base)
    assert result.verdict == "identical" and "experts permuted" in result.summary


def test_bf16_fine_tunes_of_the_release_are_derived_with_the_experts_named(release):
    _, spec, root, path = release
    base = _fingerprint(path)
    noisy = _fingerprint(write_moe(root / "noisy", spec, MoeEdit(keep=SHUFFLED, noise=0.05, stored="float")))
    result = compare_fingerprints(noisy, base)
    assert result.verdict == "derived" and "experts permuted" in result.summary
    half = _fingerprint(write_moe(root / "half", spec, MoeEdit(keep=(0, 2, 4, 6), stored="float")))
    result = compare_fingerprints(half, base)
    assert result.verdict == "derived" and "4 of 8 experts kept" in result.summary


def test_over_http_the_release_costs_few_requests_and_gives_the_local_row_samples(release):
    """The dequantizing reader passes a fingerprint's row reads to the remote source in one batch: before, each
    quantized weight's codes and scale were two requests (the FP8 release: about one per stored tensor), and
    each of gpt-oss's stacked MXFP4 tensors was read whole once per expert."""
    _, spec, root, _ = release
    with RangeServer(root) as server:
        remote = fingerprint_for(server.url("release/model.safetensors.index.json"), cache=False)
        requests, served = server.requests("release/"), server.served("release/")
    size = sum(f.stat().st_size for f in (root / "release").glob("*.safetensors"))
    # before: FP8 151 requests (its groups read one by one), MXFP4 145 and 5.2x the file's bytes (each stacked
    # tensor read whole once per expert); now 22 and 33, and the bytes at most the file's
    assert requests < 40, requests
    assert served <= size, (served, size)
    local = fingerprint_for(root / "release", cache=False)
    rows = [k for k in local.arrays if k.startswith("rows/")]
    assert rows and all(np.array_equal(remote.arrays[k], local.arrays[k]) for k in rows)


def test_many_reads_equal_the_reads_one_by_one(release):
    _, _, _, path = release
    with Checkpoint.open(path) as checkpoint:
        source = checkpoint.files.source
        infos = [i for i in source.tensor_infos() if len(i.shape) >= 2]
        reads = [(i.name, None if n % 3 == 0 else np.array([1, 0, 5, 1]) % math.prod(i.shape[:-1]))
                 for n, i in enumerate(infos)]
        many = dict(source.read_many(reads))
        assert sorted(many) == list(range(len(reads)))
        for index, (name, rows) in enumerate(reads):
            one = source.read_tensor(name) if rows is None else source.read_rows(name, rows)
            assert torch.equal(many[index], one)


def test_a_layout_without_a_writer_is_refused():
    with pytest.raises(ValueError, match="no writer"):
        MoeSpec(layers=1, experts=2, layout="gpt-oss", quant="fp8")
    with pytest.raises(ValueError, match="stored"):
        write_moe(None, SPECS["fp8"], MoeEdit(stored="int4"))


def test_over_http_stacked_mxfp4_experts_are_read_by_rows(tmp_path):
    """gpt-oss's stacked experts are [experts, in, out] as floats but stored [experts, out, in/32, 16]: the
    canonical rows of every expert are stored rows of blocks and scales, so a remote fingerprint reads its row
    sample by range (before: each stacked tensor whole, 68% of this checkpoint's bytes), gives the local rows,
    and notes nothing read whole."""
    spec = MoeSpec(layers=2, experts=4, layout="gpt-oss", hidden=256, expert_dim=256, heads=4, kv_heads=2, vocab=128,
                   quant="mxfp4", shards=1)
    write_moe(tmp_path / "release", spec)
    with RangeServer(tmp_path) as server:
        remote = fingerprint_for(server.url("release/model.safetensors.index.json"), cache=False)
        served = server.served("release/")
    size = sum(f.stat().st_size for f in (tmp_path / "release").glob("*.safetensors"))
    assert served < 0.3 * size, (served, size)
    assert not remote.meta["remote"].get("notes")
    local = fingerprint_for(tmp_path / "release", cache=False)
    rows = [k for k in local.arrays if k.startswith("rows/") and ".experts." in k]
    assert len(rows) == 2 * 4 * 3 and all(np.array_equal(remote.arrays[k], local.arrays[k]) for k in rows)
    with Checkpoint.open(tmp_path / "release") as checkpoint:  # the transposed rows equal the whole tensor's
        source = checkpoint.files.source
        name = next(i.name for i in source.tensor_infos() if i.name.endswith("experts.down_proj"))
        assert source.reads_transposed_rows(name)
        whole = source.read_tensor(name).transpose(-1, -2)
        rows_wanted = np.array([5, 0, 700, 5, whole.shape[0] * whole.shape[1] - 1])
        (_, got), = source.read_many_transposed([(name, rows_wanted)])
        assert torch.equal(got, whole.reshape(-1, whole.shape[-1])[torch.from_numpy(rows_wanted)])
