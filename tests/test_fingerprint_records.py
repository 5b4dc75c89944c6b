"""The typed views of a fingerprint's metadata (`fingerprint/records.py`) say what the metadata says."""

from __future__ import annotations

import dataclasses

import pytest

from provenance.architectures.descriptor import Architecture
from provenance.fingerprint.records import StoredRecord, TensorRecord, VocabularyRecord
from provenance.fingerprint.store import Fingerprint

META = {
    "architecture": {"family": "llama", "num_layers": 2, "num_heads": 4, "norm_type": "rmsnorm",
                     "disagreements": ["num_heads"], "not_a_field": 1},
    "tensors": {"layers.0.attn.q.weight": {"shape": [8, 8], "dtype": "BF16", "sha256": "ab", "source": "q_proj.weight",
                                           "stats": {"numel": 64, "std": 0.02}},
                "final_norm.weight": {"shape": [8], "sha256": "cd"}},
    "stored_tensors": {"q_proj.weight": {"sha256": "ab", "numel": 64}},
    "vocabulary": {"kind": "bpe", "size": 10, "minhash": [3, 1], "anchor_tokens": ["a", "b"], "special_tokens": []},
    "value_hash": "xxh3",
}


def test_records_read_the_metadata():
    fp = Fingerprint(META, {})
    q = fp.records["layers.0.attn.q.weight"]
    assert q == TensorRecord((8, 8), "BF16", "ab", {"numel": 64, "std": 0.02}, "q_proj.weight") and q.numel == 64
    assert fp.records["final_norm.weight"] == TensorRecord((8,), None, "cd") and list(fp.records) == list(META["tensors"])
    assert fp.arch == Architecture(family="llama", num_layers=2, num_heads=4, norm_type="rmsnorm",
                                   disagreements=("num_heads",))
    assert fp.stored_records == {"q_proj.weight": StoredRecord("ab", 64)}
    assert fp.vocabulary == VocabularyRecord("bpe", 10, minhash=(3, 1), anchor_tokens=("a", "b"))
    assert fp.value_hash == "xxh3" and Fingerprint({**META, "value_hash": None}, {}).value_hash is None
    assert Fingerprint({k: v for k, v in META.items() if k != "value_hash"}, {}).value_hash == "sha256"
    assert Fingerprint({**META, "vocabulary": None}, {}).vocabulary is None


def test_records_are_frozen():
    fp = Fingerprint(META, {})
    with pytest.raises(dataclasses.FrozenInstanceError):
        fp.records["final_norm.weight"].dtype = "F32"
    with pytest.raises(dataclasses.FrozenInstanceError):
        fp.arch.num_layers = 3
