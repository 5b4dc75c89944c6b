"""Typed views of a fingerprint's metadata: what the comparison reads, as frozen records.

`TensorRecord` is one tensor's record (shape, stored dtype, value hash,
summary statistics, stored name), `VocabularyRecord` what a fingerprint
keeps of the tokenizer, and `architecture_of` the architecture as
`architectures.descriptor.Architecture`. They are made from the metadata
`store.py` read and checked (`load_fingerprint`), or that the builder
returned, and never written: the file's layout is `store.py`'s alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Mapping

from ..architectures.descriptor import Architecture

ARCHITECTURE_FIELDS = frozenset(spec.name for spec in fields(Architecture))


@dataclass(frozen=True)
class TensorRecord:
    """One tensor of a fingerprint, under its canonical name (or a generic fingerprint's own key)."""

    shape: tuple[int, ...]
    dtype: str | None = None  # the stored dtype ("BF16", "F32", "Q4_K", ...)
    sha256: str | None = None  # the value hash (XXH3-128 of the values since schema 2; the name is historical)
    stats: Mapping[str, float] = field(default_factory=dict)  # summary statistics: numel, mean, std, skew, kurtosis, ... (read only)
    source: str | None = None  # the stored tensor's name in the checkpoint

    @property
    def numel(self) -> int:
        return int(self.stats.get("numel", 0))


def tensor_record(record: Mapping[str, Any]) -> TensorRecord:
    """The typed record of one entry of the metadata's `tensors` section."""
    return TensorRecord(tuple(record.get("shape") or ()), record.get("dtype"), record.get("sha256"),
                        dict(record.get("stats") or {}), record.get("source"))


@dataclass(frozen=True)
class StoredRecord:
    """One tensor as the checkpoint stores it (before fused tensors are split): its value hash and size."""

    sha256: str | None
    numel: int = 0


def stored_records(stored: Mapping[str, Mapping[str, Any]] | None) -> dict[str, StoredRecord]:
    """The metadata's `stored_tensors` section, typed (empty when the fingerprint has none)."""
    return {name: StoredRecord(record.get("sha256"), int(record.get("numel", 0))) for name, record in (stored or {}).items()}


def tensor_records(tensors: Mapping[str, Mapping[str, Any]]) -> dict[str, TensorRecord]:
    """Every tensor's typed record, in the metadata's order."""
    return {key: tensor_record(record) for key, record in tensors.items()}


@dataclass(frozen=True)
class VocabularyRecord:
    """What a fingerprint keeps of its tokenizer: no tokens, but hashes, a MinHash and the anchor tokens' strings."""

    kind: str | None = None
    size: int | None = None
    vocab_sha256: str | None = None
    merges_sha256: str | None = None
    special_tokens: tuple[str, ...] = ()
    source: str | None = None
    minhash: tuple[int, ...] = ()  # MinHash of the set of token strings (`fingerprint.parts.minhash`)
    anchor_tokens: tuple[str, ...] = ()  # the strings of the anchor tokens whose rows `anchors/` holds, in order


def vocabulary_of(vocabulary: Mapping[str, Any] | None) -> VocabularyRecord | None:
    """The metadata's `vocabulary` section, typed; None when the fingerprint has none."""
    if not vocabulary:
        return None
    return VocabularyRecord(vocabulary.get("kind"), vocabulary.get("size"), vocabulary.get("vocab_sha256"),
                            vocabulary.get("merges_sha256"), tuple(vocabulary.get("special_tokens") or ()),
                            vocabulary.get("source"), tuple(vocabulary.get("minhash") or ()),
                            tuple(vocabulary.get("anchor_tokens") or ()))


def architecture_of(architecture: Mapping[str, Any]) -> Architecture:
    """The metadata's `architecture` section as an `Architecture` (fields it leaves out take their defaults)."""
    values = {k: v for k, v in architecture.items() if k in ARCHITECTURE_FIELDS}
    if "disagreements" in values:
        values["disagreements"] = tuple(values["disagreements"] or ())
    return Architecture(**values)
