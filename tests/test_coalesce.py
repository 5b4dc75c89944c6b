"""Remote reads grouped into few range requests: counted against the range server, bounded spans."""

from __future__ import annotations

import numpy as np

from bench.moe_models import MoeSpec, write_moe
from provenance.fingerprint.load import fingerprint_for
from provenance.remote.coalesce import SPAN_BYTES, Read, fetch_coalesced, plan_spans

from .range_server import RangeServer


def test_spans_merge_near_ranges_and_stay_bounded():
    reads = [Read(((0, 100), (150, 250))), Read(((250, 300),)), Read(((10_000_000, 10_000_010),)),
             Read(((300, 300 + SPAN_BYTES),))]
    spans = plan_spans(reads)
    assert spans[0] == (0, 300)  # gaps shorter than the ranges they bring in are fetched
    assert all(end - start <= SPAN_BYTES for start, end in spans if (start, end) != (300, 300 + SPAN_BYTES))
    assert (10_000_000, 10_000_010) in spans  # a far range is its own request
    data = bytes(range(256)) * 50_000
    fetched = []

    def fetch(spans):
        fetched.append(len(spans))
        return [data[a:b] for a, b in spans]

    got = dict(fetch_coalesced([Read(((5, 9), (3, 4))), Read(((12, 20),)), Read(())], fetch))
    assert got == {0: data[5:9] + data[3:4], 1: data[12:20], 2: b""}
    assert fetched == [1]  # one span: gaps of 1 and 3 bytes


def test_a_remote_moe_costs_few_requests_and_the_same_fingerprint(tmp_path):
    spec = MoeSpec(layers=2, experts=40, hidden=32, expert_dim=16, vocab=64, shards=2)
    write_moe(tmp_path / "moe", spec)
    tensors = spec.tensor_count()
    with RangeServer(tmp_path) as server:
        remote = fingerprint_for(server.url("moe/model.safetensors.index.json"))
        requests = server.requests("moe/")
    assert tensors > 250
    assert requests < 24, requests  # 267 before (one per tensor); now the files, headers and two reads per shard
    local = fingerprint_for(tmp_path / "moe", cache=False)
    rows = [k for k in local.arrays if k.startswith("rows/")]
    assert len(rows) > 250 and all(np.array_equal(remote.arrays[k], local.arrays[k]) for k in rows)
    assert remote.meta["remote"]["tensor_requests"] <= requests
