"""The typed views of a fingerprint's metadata (`fingerprint/records.py`) say what the metadata says."""

from __future__ import annotations

import dataclasses

import pytest

from provenance.architectures.descriptor import Architecture
from provenance.fingerprint.records import (FamilyRecord, GenericTensorRecord, LineageClaim, MadeRecord, RecordError,
                                            RenamedTensor, SourceRecord, StoredRecord, TensorRecord, VocabularyRecord)
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


SECTIONS = {
    **META,
    "schema": "provenance.fingerprint/4", "tool_version": "1.2.3", "created": "2026-01-01T00:00:00+00:00",
    "source": {"path": "/m", "format": "safetensors", "files": [{"name": "model.safetensors", "bytes": 10}]},
    "family": {"name": "llama", "reason": "config.json model_type"},
    "renamed_tensors": [{"role": "mlp.up", "standard": "layers.0.mlp.up.weight", "tensor": "w1"}, "not an object"],
    "lineage_claims": [{"where": "config.json", "value": "meta-llama/Llama-2-7b"}],
    "notes": ["a note"],
    "generic": {"unmapped_share": 0.5, "tensors": {"w": {"shape": [2, 3], "dtype": "F32", "order": 0}}},
}


def test_sections_read_the_metadata():
    fp = Fingerprint(SECTIONS, {})
    assert fp.source == SourceRecord("/m", "safetensors", ({"name": "model.safetensors", "bytes": 10},))
    assert fp.family == FamilyRecord("llama", "config.json model_type")
    assert fp.renamed_tensors == (RenamedTensor("w1", "layers.0.mlp.up.weight", "mlp.up"),)
    assert [r.to_dict() for r in fp.renamed_tensors] == SECTIONS["renamed_tensors"][:1]  # as recorded, keys sorted
    assert fp.lineage_claims == (LineageClaim("config.json", "meta-llama/Llama-2-7b"),)
    assert fp.notes == ("a note",)
    assert fp.made == MadeRecord("provenance.fingerprint/4", "1.2.3", "2026-01-01T00:00:00+00:00", "full", {})
    assert list(fp.generic.records()) == [("w", GenericTensorRecord((2, 3), "F32", 0))]


def test_missing_sections_read_as_empty():
    fp = Fingerprint(META, {})
    assert fp.source == SourceRecord() and fp.family == FamilyRecord() and fp.renamed_tensors == ()
    assert fp.lineage_claims is None  # made before claims were recorded: not the same as none claimed
    assert fp.notes == () and fp.generic is None and fp.made.variant == "full"


def test_a_bad_generic_record_is_named_when_read():
    fp = Fingerprint({**SECTIONS, "generic": {"tensors": {"w": {"shape": "2x3"}}}}, {})
    with pytest.raises(RecordError, match="generic tensor record 'w'"):
        list(fp.generic.records())


def test_a_hub_pin_makes_a_new_fingerprint():
    fp = Fingerprint(SECTIONS, {})
    pinned = fp.with_hub({"repo": "org/m", "commit": "abc"})
    assert pinned.source.hub == {"repo": "org/m", "commit": "abc"} and fp.source.hub is None
    assert pinned.section_json("source").endswith('"hub": {"repo": "org/m", "commit": "abc"}}')
